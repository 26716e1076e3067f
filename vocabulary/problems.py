"""Problems with key paths: pydantic's errors on a config value, each as one line that starts with the key
path it is about (`cloudrepo:slice.vms[1].worker: ...`) and shows the offending value (`vocabulary.shown`).

The one renderer of config problems: the program at `pulumi preview` (`components/`) and a provider that
parses the same input (`vocabulary.ssh_input`) word them alike.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ValidationError

from vocabulary.shown import shown
from vocabulary.values import problem_text, value_problem

PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")


def path_of(prefix: str, loc: Iterable[int | str]) -> str:
    """The key path of `loc` under `prefix`: `.key` for plain keys, `[i]` for list items, `[shown]` for any
    other key (so a hostile key name cannot break the message)."""
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif PLAIN_KEY.fullmatch(part):
            out += part if out.endswith(":") else f".{part}"
        else:
            out += f"[{shown(part)}]"
    return out


def _known_fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def validate_input(model: type[BaseModel], value: Any, where: str, problems: list[str]) -> Any:
    """Validate `value` with `model`; append one readable problem per pydantic error; None when invalid."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            path = path_of(where, loc)
            kind = err["type"]
            if kind == "extra_forbidden":
                # find the model that owns the unknown field, to list the known ones
                owner: type[BaseModel] = model
                for part in loc[:-1]:
                    if isinstance(part, str):
                        field = next(
                            (f for n, f in owner.model_fields.items() if (f.alias or n) == part), None
                        )
                        ann = getattr(field, "annotation", None)
                        if isinstance(ann, type) and issubclass(ann, BaseModel):
                            owner = ann
                known = _known_fields(owner)
                problems.append(
                    f"{path}: unknown key {shown(str(loc[-1]))}{suggest(str(loc[-1]), known)}"
                    f" (known: {', '.join(known)})"
                )
            elif kind == "missing":
                problems.append(f"{path}: required")
            elif kind in ("model_type", "dict_type"):
                problems.append(f"{path}: must be an object, got {shown(err['input'])}")
            else:
                problems.append(f"{path}: {problem_text(err)}")
        return None


def validate_value(tp: Any, value: Any, where: str, problems: list[str]) -> bool:
    """Whether `value` is a `tp` (a `vocabulary.values` type); when not, one problem at `where`."""
    if (why := value_problem(tp, value)) is not None:
        problems.append(f"{where}: {why}")
        return False
    return True

"""The references to Python objects that a stack's state holds: each dynamic resource's `__provider` input
and output is its provider pickled by dill (base64), and a class in it is pickled as a reference to its
module path (GLOBAL or STACK_GLOBAL), which the provider process imports again to run the resource.

Read from the pickle's opcodes (`pickletools.genops`), never from its text: a string that spells a module path
in the pickled data is no reference."""

from __future__ import annotations

import base64
import importlib
import json
import pickletools
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

PROVIDER_KEY = "__provider"
"""Where the SDK's dynamic resources keep their pickled provider (`pulumi.dynamic.dynamic.PROVIDER_KEY`)."""
SECRET_SIG = "4dabf18193072939515e22adb298388d"
"""The key that marks a secret value in an exported state (`pulumi.runtime.rpc._special_sig_key`)."""
STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
)
MEMO_PUTS = frozenset({"PUT", "BINPUT", "LONG_BINPUT"})
MEMO_GETS = frozenset({"GET", "BINGET", "LONG_BINGET"})
NO_PUSH = frozenset({"PROTO", "FRAME", "MEMOIZE", *MEMO_PUTS, "STOP"})


class NotAReference(ValueError):
    """A STACK_GLOBAL whose module and name are not the two strings pushed just before it."""


class Ref(NamedTuple):
    """A reference in a pickle: the module unpickling imports, and the attribute path in it."""

    module: str
    qualname: str

    def __str__(self) -> str:
        return f"{self.module}.{self.qualname}"


def pickle_refs(data: bytes) -> frozenset[Ref]:
    """Every GLOBAL and STACK_GLOBAL in a pickle.

    STACK_GLOBAL takes its module and name from the stack: the two values pushed just before it (strings, or
    strings fetched again from the memo). Only those pushes are followed; any other opcode's result stands
    for a value that is no string."""
    pushed: list[Any] = []
    memo: dict[int, Any] = {}
    found: set[Ref] = set()
    for op, arg, _ in pickletools.genops(data):
        name = op.name
        if name == "GLOBAL":
            found.add(Ref(*str(arg).split(" ", 1)))
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            qualname = pushed.pop() if pushed else None
            module = pushed.pop() if pushed else None
            if not isinstance(module, str) or not isinstance(qualname, str):
                raise NotAReference(f"STACK_GLOBAL after {module!r}, {qualname!r}")
            found.add(Ref(module, qualname))
            pushed.append(None)
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name in MEMO_PUTS:
            memo[cast(int, arg)] = pushed[-1] if pushed else None
        elif name in MEMO_GETS:
            pushed.append(memo.get(cast(int, arg)))
        elif name in STRING_OPS:
            pushed.append(arg if isinstance(arg, str) else None)
        elif name not in NO_PUSH:
            pushed.append(None)
    return frozenset(found)


def blob_refs(blob: str) -> frozenset[Ref]:
    """The references in a `__provider` value (base64 of the pickle)."""
    return pickle_refs(base64.b64decode(blob))


@dataclass(frozen=True)
class Refs:
    """One dynamic resource of a state and the references its provider blobs hold."""

    name: str
    kind: str
    inputs: frozenset[Ref]
    outputs: frozenset[Ref]

    @property
    def all(self) -> frozenset[Ref]:
        return self.inputs | self.outputs


def provider_blob(value: Any) -> str:
    """A `__provider` value of an exported state: the blob, or the secret that holds it (the SDK makes it a
    secret unless the provider says otherwise), as `pulumi stack export --show-secrets` shows it."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and SECRET_SIG in value:
        if "plaintext" not in value:
            raise ValueError("the provider blob is an encrypted secret: export with --show-secrets")
        return str(json.loads(value["plaintext"]))
    raise ValueError(f"not a provider blob: {value!r}")


def state_refs(deployment: dict[str, Any]) -> dict[str, Refs]:
    """Resource name -> its references, for every resource of an exported state (`pulumi stack export
    --show-secrets`) that holds a provider blob."""
    found: dict[str, Refs] = {}
    for r in deployment.get("resources") or []:
        inputs, outputs = r.get("inputs") or {}, r.get("outputs") or {}
        if PROVIDER_KEY not in inputs and PROVIDER_KEY not in outputs:
            continue
        name = r["urn"].rsplit("::", 1)[-1]
        found[name] = Refs(
            name=name,
            kind=r["type"].rsplit(":", 1)[-1],
            inputs=blob_refs(provider_blob(inputs[PROVIDER_KEY])) if PROVIDER_KEY in inputs else frozenset(),
            outputs=blob_refs(provider_blob(outputs[PROVIDER_KEY]))
            if PROVIDER_KEY in outputs
            else frozenset(),
        )
    return found


def resolve(ref: Ref) -> Any:
    """The object a reference names, found as unpickling finds it: its module imported, then its
    attributes."""
    obj = importlib.import_module(ref.module)
    for attr in ref.qualname.split("."):
        obj = getattr(obj, attr)
    return obj

"""A slice's stack config file (`Pulumi.<stack>.yaml`) as plain data, and the checks preview runs on it.

Objects stay objects in the file (the Automation API's own settings model keeps only strings and secrets,
so the file is read and written here); secrets are set through the engine (`pulumi config set --secret`)
and kept as they are (`{secure: ...}`), with the file's `encryptionsalt`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from components.inputs import OPERATOR_KEYS, SecretText
from components.model import NAMESPACE
from components.prepare import Prepared, prepare
from vocabulary.shown import shown_path

SLICE_KEY = f"{NAMESPACE}:slice"
MAX_FILE = 4 << 20
"""Bytes of the largest stack config or slice file read (a slice of a thousand VMs is about 100 KiB)."""
SECRET_PLACEHOLDER = "(secret)"  # noqa: S105  (a stand-in, not a password)
"""What a secret stands for in the checks (they only need to know that it is set)."""


def stack_file(project: Path, stack: str) -> Path:
    return project / f"Pulumi.{stack}.yaml"


def load_yaml(path: Path) -> Any:
    """The YAML document in the file at `path`; `ValueError` naming the file (and the line) when it is no
    regular file, is larger than `MAX_FILE`, is not UTF-8 text or not YAML."""
    where = shown_path(path)
    try:
        if not path.is_file():
            raise ValueError(f"{where}: not a regular file")
        if path.stat().st_size > MAX_FILE:
            raise ValueError(f"{where}: over {MAX_FILE} bytes, not a stack config or slice file")
        text = path.read_bytes().decode("utf-8")
        return yaml.safe_load(text)
    except OSError as exc:
        raise ValueError(f"{where}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{where}: not a text file (binary content)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or type(exc).__name__
        raise ValueError(f"{where}: not valid YAML{at}: {problem}") from None
    except RecursionError:
        raise ValueError(f"{where}: YAML nested too deeply") from None


def read(path: Path) -> dict[str, Any]:
    """The file as a dict (`{}` when it does not exist)."""
    if not path.exists():
        return {}
    doc = load_yaml(path) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{shown_path(path)}: not a stack config file (a YAML object with `config:`)")
    if not isinstance(doc.get("config") or {}, dict):
        raise ValueError(f"{shown_path(path)}: its `config:` is not an object of keys and values")
    return doc


def write(path: Path, doc: Mapping[str, Any]) -> None:
    """Write the file whole (a temporary file renamed over it: a reader never sees half of it)."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(dict(doc), sort_keys=False, default_flow_style=None, width=110))
    tmp.replace(path)


def config_of(doc: Mapping[str, Any]) -> dict[str, Any]:
    return dict(doc.get("config") or {})


def raw_value(value: Any) -> str:
    """A value as the engine hands it to the program: objects and lists as JSON, the rest as text."""
    if isinstance(value, dict) and set(value) == {"secure"}:
        return SecretText(SECRET_PLACEHOLDER)
    if isinstance(value, dict | list):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def raw_config(config: Mapping[str, Any]) -> dict[str, str]:
    return {key: raw_value(value) for key, value in config.items()}


def check(
    config: Mapping[str, Any], stack: str, previous_outputs: Mapping[str, Any], project: Path | None = None
) -> Prepared:
    """What `pulumi preview` runs before any resource (`components.prepare`), on the file's config: the
    config with the VMs' launches (boot files relative to `project`), then the VLAN allocation and the plan
    against the stack's last outputs (its memory). Raises `ConfigError` listing every problem."""
    return prepare(raw_config(config), stack, previous_outputs, project)


def slice_from_yaml(path: Path) -> tuple[dict[str, Any], list[str]]:
    """The slice section in a file, and the keys of the file it left out: the file is a stack config file
    (`config: {cloudrepo:slice: ...}`), a mapping with the key `cloudrepo:slice`, or the section itself
    (`{vlanPool, vms, links, topology}`). Only the section is taken: the operator's keys (hosts, SSH, QEMU,
    ...) beside it, or put into a bare section, are left out and named. Unknown keys of the section stay
    in it, for the checks to name."""
    doc = load_yaml(path)
    where = shown_path(path)
    if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
        doc = doc["config"]
    if isinstance(doc, dict) and SLICE_KEY in doc:
        left = sorted(str(k) for k in doc if k != SLICE_KEY)
        doc = doc[SLICE_KEY]
    else:
        left = []
        if isinstance(doc, dict):
            operator = [k for k in doc if k in OPERATOR_KEYS or str(k).startswith(f"{NAMESPACE}:")]
            left = sorted(map(str, operator))
            doc = {k: v for k, v in doc.items() if k not in operator}
    if not isinstance(doc, dict) or not doc:
        raise ValueError(f"{where}: no slice in it (expected `{SLICE_KEY}:` or {{vlanPool, vms, links}})")
    return dict(doc), left

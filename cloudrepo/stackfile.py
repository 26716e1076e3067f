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

from components.allocation import allocate_vlans
from components.config import load_config
from components.inputs import SecretText
from components.model import NAMESPACE, SliceConfig
from components.outputs import Deployed
from components.plan import build_plan

SLICE_KEY = f"{NAMESPACE}:slice"
SECRET_PLACEHOLDER = "(secret)"  # noqa: S105  (a stand-in, not a password)
"""What a secret stands for in the checks (they only need to know that it is set)."""


def stack_file(project: Path, stack: str) -> Path:
    return project / f"Pulumi.{stack}.yaml"


def read(path: Path) -> dict[str, Any]:
    """The file as a dict (`{}` when it does not exist)."""
    if not path.exists():
        return {}
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a stack config file (a YAML object with `config:`)")
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


def check(config: Mapping[str, Any], stack: str, previous_outputs: Mapping[str, Any]) -> SliceConfig:
    """The checks `pulumi preview` runs before any resource: the config, then the VLAN allocation and the
    plan against the stack's last outputs (its memory). Raises `ConfigError` listing every problem."""
    cfg = load_config(raw_config(config), stack)
    deployed = Deployed.from_outputs(previous_outputs)
    build_plan(cfg, allocate_vlans(cfg.links, cfg.pool, deployed.vlans))
    return cfg


def slice_from_yaml(path: Path) -> dict[str, Any]:
    """A slice section from a file: a stack config file (`config: {cloudrepo:slice: ...}`), a mapping with
    the key `cloudrepo:slice`, or the section itself (`{vlanPool, vms, links, topology}`)."""
    doc = yaml.safe_load(path.read_text())
    if isinstance(doc, dict) and isinstance(doc.get("config"), dict):
        doc = doc["config"]
    if isinstance(doc, dict) and SLICE_KEY in doc:
        doc = doc[SLICE_KEY]
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: no slice in it (expected `{SLICE_KEY}:` or {{vlanPool, vms, links}})")
    return dict(doc)

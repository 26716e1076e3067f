"""Turn a `Pulumi.<stack>.yaml` `config:` block into the raw config the engine hands the program."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from components.inputs import SecretText


def raw_value(value: Any) -> str:
    """Objects and lists arrive as JSON text; strings as they are; numbers and booleans as their text."""
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def raw_config(config: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            out[key] = SecretText(
                "-----BEGIN OPENSSH PRIVATE KEY-----\n(test)\n-----END OPENSSH PRIVATE KEY-----\n"
            )
        else:
            out[key] = raw_value(value)
    return out


def raw_from_file(path: Path) -> dict[str, str]:
    return raw_config(yaml.safe_load(path.read_text())["config"])


ROOT = Path(__file__).resolve().parents[1]

BASE: dict[str, Any] = {
    "cloudrepo:networkNode": {"host": "10.0.10.3"},
    "cloudrepo:workers": {"worker1": {"host": "10.0.10.1"}, "worker2": {"host": "10.0.10.2", "port": 22}},
    "cloudrepo:ssh": {
        "user": "ubuntu",
        "privateKeyPath": "~/.ssh/id_ed25519",
        "knownHostsPath": "~/.ssh/known_hosts",
    },
    "cloudrepo:slice": {
        "name": "demo",
        "vlanPool": {"start": 120},
        "vms": [
            {"id": 1002, "worker": "worker1", "dataInterfaces": 2, "internet": True},
            {"id": 1003, "worker": "worker2", "dataInterfaces": 1},
        ],
        "links": [["1002.eth1", "1003.eth1"]],
    },
}
"""The spec's example config (slice-config.md)."""


def with_changes(base: dict[str, Any] | None = None, **changes: Any) -> dict[str, Any]:
    """A deep copy of `base` (default BASE) with top-level keys replaced (`slice=` is `cloudrepo:slice`)."""
    out = json.loads(json.dumps(base or BASE))
    for key, value in changes.items():
        full = f"cloudrepo:{key}"
        if value is None:
            out.pop(full, None)
        else:
            out[full] = value
    return out


def slice_with(**fields: Any) -> dict[str, Any]:
    """BASE's `cloudrepo:slice` with some fields replaced."""
    out = json.loads(json.dumps(BASE["cloudrepo:slice"]))
    out.update(fields)
    return out

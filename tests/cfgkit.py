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


def guest_project(base: Path) -> Path:
    """`base` made a project directory that holds stand-ins of the testbed guest's boot files, which the
    launches of `Pulumi.dev.yaml` name (`.lab/guest/`, relative to the project)."""
    guest = base / ".lab" / "guest"
    guest.mkdir(parents=True, exist_ok=True)
    for name in ("vmlinuz", "initrd.gz"):
        (guest / name).write_bytes(name.encode())
    return base


def without_launches(config: dict[str, Any]) -> dict[str, Any]:
    """A stack config (`config:` of a stack file) with no VM launched (and so no checks: they run in
    launched guests)."""
    section = {k: v for k, v in config["cloudrepo:slice"].items() if k != "checks"}
    section["vms"] = [{k: v for k, v in vm.items() if k != "launch"} for vm in section["vms"]]
    return {**config, "cloudrepo:slice": section}


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


GUEST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGfFAQWnbMwM0xRNDcl1aJuK4nl7LVSNUX4lKsRy/wRs you@laptop"
"""A guest's authorized key in `valid_config` (`slice.cloudInit`)."""


def valid_config() -> dict[str, Any]:
    """Every key of the stack config set (launch fields included), valid; boot files under `images/`."""
    kernel = {
        "kernel": "images/vmlinuz",
        "initrd": "images/initrd.gz",
        "append": "console=ttyS0 quiet",
        "cpus": 1,
        "memoryMb": 128,
        "accel": "tcg",
    }
    return {
        "cloudrepo:networkNode": {"host": "10.0.10.3", "port": 22, "uplink": "ens3"},
        "cloudrepo:workers": {
            "worker1": {"host": "10.0.10.1", "port": 22},
            "worker2": {"host": "node-2.lab"},
        },
        "cloudrepo:ssh": {
            "user": "ubuntu",
            "privateKeyPath": "~/.ssh/id_ed25519",
            "knownHostsPath": "known_hosts",
            "sudo": True,
            "connectTimeout": 10,
            "commandTimeout": 120.5,
        },
        "cloudrepo:sshPrivateKey": {"secure": "v1:abc"},
        "cloudrepo:bridge": "br-int",
        "cloudrepo:parkingVlan": 4094,
        "cloudrepo:dnsServers": ["8.8.8.8", "1.1.1.1"],
        "cloudrepo:qemu": {"binary": "qemu-system-x86_64", "accel": "kvm"},
        "cloudrepo:slice": {
            "name": "fuzz",
            "vlanPool": {"start": 120},
            "vms": [
                {"id": 1002, "worker": "worker1", "dataInterfaces": 3, "internet": True, "launch": kernel},
                {
                    "id": 1003,
                    "worker": "worker2",
                    "dataInterfaces": 2,
                    "launch": {"image": "images/disk.qcow2", "cloudInit": {"hostname": "web", "user": "bob"}},
                },
                {"id": 1004, "worker": "worker2", "dataInterfaces": 3},
                {"id": 1005, "worker": "worker1", "dataInterfaces": 1},
            ],
            "links": [["1002.eth1", "1003.eth1"], {"a": "1002.eth2", "b": "1004.eth1", "vlan": 125}],
            "topology": [{"preset": "bus", "vms": [1003, 1004, 1005]}],
            "cloudInit": {"sshAuthorizedKeys": [GUEST_KEY], "user": "alice", "userData": "images/user.yaml"},
        },
    }


def boot_files_project(base: Path) -> Path:
    """`base` made a project directory holding the boot files and user-data `valid_config` names (under
    `images/`)."""
    (base / "images").mkdir(exist_ok=True)
    files = (
        ("vmlinuz", b"kernel"),
        ("initrd.gz", b"initrd"),
        ("disk.qcow2", b"QFI\xfb rest"),
        ("user.yaml", b"#cloud-config\nruncmd: [[touch, /x]]\n"),
    )
    for name, data in files:
        (base / "images" / name).write_bytes(data)
    (base / "known_hosts").write_text("")
    return base

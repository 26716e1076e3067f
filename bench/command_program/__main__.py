"""Baseline (c): the seed's commands as pulumi-command `remote.Command` resources (`bench/command_plan.py`).

Config (`bench-c:`): `slices` (a list of `SliceSpec` fields: name, links, pool_start, first_vm, workers,
pairs) and
`ipForward` (the network node's value before the run, restored by the teardown). Every host is reached as
the testbed's inventory (`$CLOUDREPO_LAB_DIR/inventory.json`) gives it: 127.0.0.1, its port, user root, the
lab's private key as a secret, the host key pinned to the known_hosts entry `[127.0.0.1]:PORT`.
"""

from __future__ import annotations

import json
from typing import Any

import paramiko
import pulumi
from pulumi_command import remote

from bench.baselines import seed_objects
from bench.command_plan import command_plan
from bench.topology import from_fields
from lab.common import lab_dir


def host_key(address: str, port: int) -> str:
    """`type base64` of the host's key in the lab's known_hosts."""
    name = address if port == 22 else f"[{address}]:{port}"
    entry = paramiko.HostKeys(str(lab_dir() / "known_hosts")).lookup(name)
    if not entry:
        raise RuntimeError(f"no host key for {name} in {lab_dir() / 'known_hosts'}")
    key = entry.get("ssh-ed25519") or next(iter(entry.values()))
    return f"{key.get_name()} {key.get_base64()}"


def connections(hosts: set[str]) -> dict[str, remote.ConnectionArgs]:
    inventory: dict[str, Any] = json.loads((lab_dir() / "inventory.json").read_text())["hosts"]
    key = pulumi.Output.secret((lab_dir() / "id_ed25519").read_text())
    out = {}
    for host in sorted(hosts):
        address, port = inventory[host]["address"], int(inventory[host]["port"])
        out[host] = remote.ConnectionArgs(
            host=address, port=port, user="root", private_key=key, host_key=host_key(address, port)
        )
    return out


def main() -> None:
    config = pulumi.Config()
    specs = [from_fields(s) for s in config.require_object("slices")]
    plan = command_plan(seed_objects(specs, config.require("ipForward")))
    conns = connections({c.host for c in plan})
    made: dict[str, remote.Command] = {}
    for c in plan:
        made[c.name] = remote.Command(
            c.name,
            connection=conns[c.host],
            create=c.create,
            delete=c.delete,
            opts=pulumi.ResourceOptions(depends_on=[made[d] for d in c.depends_on]),
        )
    pulumi.export("commands", len(made))


main()

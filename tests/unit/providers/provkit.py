"""Builders of valid inputs and fake host reads for the provider unit tests (no SSH)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
from typing import Any

import pytest

from providers.hoststate import LinkState, PortState
from providers.kind import Kind
from providers.kinds import KINDS
from providers.kinds.qemu_vm import QemuVmSpec
from providers.pipeline import HostProvider
from transport.script import ScriptResult, probe
from vocabulary.specs import DhcpNamespaceSpec, NatRuleSpec, PoolClaimSpec, TapPortSpec, VlanGatewaySpec

WORKER = {"name": "worker1", "address": "127.0.0.1", "port": 2201}
NETWORK = {"name": "network", "address": "127.0.0.1", "port": 2200}
SHA = "ab" * 32
NET_ARGS = [
    "-netdev", "tap,id=net0,ifname=tap_1002_eth0,script=no,downscript=no",
    "-device", "virtio-net-pci,netdev=net0,mac=52:54:00:03:ea:00",
]  # fmt: skip


def tap_inputs(**over: Any) -> dict[str, Any]:
    base = {
        "slice": "demo",
        "host": WORKER,
        "bridge": "br-int",
        "name": "tap_1002_eth1",
        "vm": 1002,
        "iface": "eth1",
        "mac": "52:54:00:03:ea:01",
        "vlan": 120,
        "parked": False,
    }
    base.update(over)
    return base


def tap(**over: Any) -> TapPortSpec:
    return TapPortSpec.model_validate(tap_inputs(**over))


def gateway_inputs(**over: Any) -> dict[str, Any]:
    base = {
        "slice": "demo",
        "host": NETWORK,
        "vlan": 120,
        "port": "gw_vlan120",
        "address": "192.168.120.1/24",
        "shared": False,
    }
    base.update(over)
    return base


def gateway(**over: Any) -> VlanGatewaySpec:
    return VlanGatewaySpec.model_validate(gateway_inputs(**over))


def dhcp_inputs(**over: Any) -> dict[str, Any]:
    base = {
        "slice": "demo",
        "host": NETWORK,
        "vlan": 120,
        "namespace": "ns-dhcp-vlan120",
        "port": "dhcp_v120",
        "address": "192.168.120.2/24",
        "rangeStart": "192.168.120.10",
        "rangeEnd": "192.168.120.250",
        "leaseTime": "24h",
        "router": "192.168.120.1",
        "dnsServers": ["8.8.8.8"],
        "reservations": [{"mac": "52:54:00:03:ea:01", "ip": "192.168.120.11", "hostname": "vm1002"}],
        "shared": False,
    }
    base.update(over)
    return base


def dhcp(**over: Any) -> DhcpNamespaceSpec:
    return DhcpNamespaceSpec.model_validate(dhcp_inputs(**over))


def nat(**over: Any) -> NatRuleSpec:
    base = {
        "slice": "demo",
        "host": NETWORK,
        "subnet": "10.60.7.0/24",
        "gatewayPort": "gw_vlan400",
        "uplink": "ens3",
    }
    base.update(over)
    return NatRuleSpec.model_validate(base)


def pool(**over: Any) -> PoolClaimSpec:
    base = {"slice": "demo", "host": NETWORK, "start": 120, "end": 139}
    base.update(over)
    return PoolClaimSpec.model_validate(base)


def port(name: str, tag: int | None, owner: str | None, bridge: str = "br-int", **ext: str) -> PortState:
    ids = dict(ext)
    if owner is not None:
        ids["cloudrepo-slice"] = owner
    return PortState(name=name, bridge=bridge, tag=tag, external_ids=ids, vlan_mode="access")


def link(
    name: str, up: bool = True, kind: str | None = "tap", alias: str | None = None, *addrs: str
) -> LinkState:
    return LinkState(name=name, up=up, kind=kind, alias=alias, addresses=tuple(addrs))


def ovs_find_json(name: str, tag: int | None, ext: dict[str, str], protected: bool = False) -> str:
    """What `ovs-vsctl --format=json --data=json --columns=... find port name=...` prints."""
    tag_v: Any = tag if tag is not None else ["set", []]
    row = [name, tag_v, ["map", sorted([k, v] for k, v in ext.items())], protected, "access", ["set", []]]
    return json.dumps(
        {"data": [row], "headings": ["name", "tag", "external_ids", "protected", "vlan_mode", "trunks"]}
    )


def argvs(steps: list[Any]) -> list[list[str]]:
    return [list(s.argv) for s in steps]


def names(steps: list[Any]) -> list[str]:
    return [s.name for s in steps]


def sh(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run a shell body as the host scripts do (`sh -c BODY sh ARGS...`), locally."""
    return subprocess.run(["sh", "-c", body, "sh", *args], capture_output=True, text=True, timeout=30)


def qemu_vm(**over: object) -> QemuVmSpec:
    """A valid `QemuVmSpec` (direct kernel boot of VM 1002 on worker1)."""
    fields: dict[str, object] = {
        "slice": "demo",
        "host": WORKER,
        "vm": 1002,
        "binary": "qemu-system-x86_64",
        "accel": "tcg",
        "kernel": {"path": f"/var/lib/cloudrepo/images/{SHA}", "sha256": SHA},
        "append": "console=ttyS0",
        "netArgs": NET_ARGS,
    }
    fields.update(over)
    return QemuVmSpec.model_validate(fields)


READ = "read"
"""The one probe of a read made by `reading`."""


def reading(monkeypatch: pytest.MonkeyPatch, kind: Kind[Any, Any], *haves: Any) -> HostProvider:
    """The pipeline's provider of `kind`, whose reads find `haves` in turn (the last one from then on): in
    the registry the pipeline looks kinds up in, the record's read is one probe named `READ` and its
    `parse_have` gives these states. The SSH transport is the test's to fake."""
    found = list(haves)

    def parse(_spec: Any, _res: ScriptResult) -> Any:
        return found.pop(0) if len(found) > 1 else found[0]

    fake = dataclasses.replace(kind, preflight=lambda _spec: [probe(READ, "true")], parse_have=parse)
    monkeypatch.setitem(KINDS, kind.name, fake)
    return HostProvider(kind.name)

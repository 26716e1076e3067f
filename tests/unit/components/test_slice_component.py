"""`SliceComponent` under Pulumi mocks: ring, star, full mesh and the dev slice.

Checks resource counts, types, parents, dependencies and inputs, and compares every resource's inputs and the
stack outputs with golden files (`golden/<topology>.json`; regenerate with `UPDATE_GOLDEN=1`).
"""

from __future__ import annotations

import json
import os
import runpy
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml
from pulumi.runtime.mocks import MockMonitor

from components.allocation import allocate_vlans
from components.config import load_config
from components.memory import READ_STACK_OUTPUTS
from components.model import SliceConfig
from components.outputs import Deployed, stack_outputs
from components.plan import build_plan
from components.slice import COMPONENT_TYPE, IDENTITY_NAME, SliceComponent
from tests.cfgkit import ROOT, raw_config, raw_from_file, with_changes, without_launches

GOLDEN = Path(__file__).parent / "golden"
DYN = "pulumi-python:dynamic:"
UID = "0123456789abcdef0123456789abcdef"
"""The uid the mocked `SliceIdentity` makes."""


class Recorder(MockMonitor):
    """A mock monitor that also keeps each registration's parent and dependencies."""

    def __init__(self, mocks: pulumi.runtime.Mocks) -> None:
        super().__init__(mocks)
        self.registered: dict[str, dict[str, Any]] = {}

    def RegisterResource(self, request: Any) -> Any:
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = pulumi.runtime.rpc.deserialize_properties(request.object)
            self.registered[request.name] = {
                "type": request.type,
                "urn": response.urn,
                "parent": request.parent,
                "dependencies": sorted(request.dependencies),
                "inputs": {k: v for k, v in inputs.items() if k != "__provider"},
            }
        return response


class Mocks(pulumi.runtime.Mocks):
    def __init__(self, previous_outputs: dict[str, Any] | None = None) -> None:
        self.previous_outputs = previous_outputs or {}
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        if args.typ == f"{DYN}SliceIdentity":
            return UID, {"uid": UID}
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        self.calls.append((args.token, dict(args.args)))
        if args.token == READ_STACK_OUTPUTS:
            return {"name": args.args["name"], "outputs": self.previous_outputs, "secretOutputNames": []}, []
        raise AssertionError(f"unexpected invoke {args.token}")


def install(previous_outputs: dict[str, Any] | None = None) -> tuple[Recorder, Mocks]:
    mocks = Mocks(previous_outputs)
    monitor = Recorder(mocks)
    pulumi.runtime.set_mocks(
        mocks, project="cloudrepo", stack="dev", preview=True, monitor=monitor, organization="organization"
    )
    return monitor, mocks


# ---------------------------------------------------------------------------------------------------------
# topologies


def _config(vms: list[dict[str, Any]], links: list[Any], name: str, start: int) -> dict[str, Any]:
    return with_changes(
        workers={
            "worker1": {"host": "10.0.10.1"},
            "worker2": {"host": "10.0.10.2"},
            "worker3": {"host": "10.0.10.3", "port": 2222},
        },
        networkNode={"host": "10.0.10.254", "uplink": "ens3"},
        slice={"name": name, "vlanPool": {"start": start}, "vms": vms, "links": links},
    )


def ring(n: int = 5) -> dict[str, Any]:
    ids = [1100 + i for i in range(1, n + 1)]
    vms = [{"id": v, "worker": f"worker{i % 3 + 1}", "dataInterfaces": 2} for i, v in enumerate(ids)]
    links = [[f"{ids[i]}.eth2", f"{ids[(i + 1) % n]}.eth1"] for i in range(n)]
    return _config(vms, links, "ring", 120)


def star(leaves: int = 4) -> dict[str, Any]:
    hub = 1200
    vms = [{"id": hub, "worker": "worker1", "dataInterfaces": leaves, "internet": True}]
    vms += [
        {"id": hub + i, "worker": f"worker{i % 2 + 2}", "dataInterfaces": 1, "internet": i == 1}
        for i in range(1, leaves + 1)
    ]
    links: list[Any] = [[f"{hub}.eth{i}", f"{hub + i}.eth1"] for i in range(1, leaves + 1)]
    links[-1] = {"a": links[-1][0], "b": links[-1][1], "vlan": 159}  # one pinned link
    return _config(vms, links, "star", 140)


def mesh(n: int = 6) -> dict[str, Any]:
    ids = [1300 + i for i in range(n)]
    vms = [{"id": v, "worker": f"worker{i % 3 + 1}", "dataInterfaces": n - 1} for i, v in enumerate(ids)]
    links = [
        [f"{ids[p]}.eth{(q - p) % n}", f"{ids[q]}.eth{(p - q) % n}"]
        for p in range(n)
        for q in range(p + 1, n)
    ]
    return _config(vms, links, "mesh", 160)


def dev() -> dict[str, Any]:
    """The demo slice of Pulumi.dev.yaml (the testbed's endpoints), its VMs not launched (the launches
    need the testbed's guest and known_hosts: test_slice_launch covers them)."""
    config: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    return without_launches(config)


TOPOLOGIES: dict[str, Callable[[], dict[str, Any]]] = {"ring": ring, "star": star, "mesh": mesh, "dev": dev}


def load(topology: str) -> SliceConfig:
    return load_config(raw_config(TOPOLOGIES[topology]()), "dev")


# ---------------------------------------------------------------------------------------------------------
# the component


def build(config: SliceConfig, previous: dict[str, Any] | None = None) -> tuple[Recorder, dict[str, Any]]:
    monitor, _ = install(previous)
    deployed = Deployed.from_outputs(previous or {})
    plan = build_plan(config, allocate_vlans(config.links, config.pool, deployed.vlans))

    @pulumi.runtime.test
    def program() -> None:
        SliceComponent(config.slice_name, plan, deployed)

    program()
    return monitor, stack_outputs(plan)


def _golden_view(monitor: Recorder, outputs: dict[str, Any]) -> dict[str, Any]:
    comp = next(r for r in monitor.registered.values() if r["type"] == COMPONENT_TYPE)
    urn_to_name = {r["urn"]: n for n, r in monitor.registered.items()}
    resources = {
        name: {
            "type": r["type"].removeprefix(DYN),
            "parent": urn_to_name.get(r["parent"], r["parent"]),
            "dependsOn": [urn_to_name[d] for d in r["dependencies"]],
            "inputs": r["inputs"],
        }
        for name, r in sorted(monitor.registered.items())
        if r is not comp
    }
    return {"outputs": outputs, "resources": resources}


@pytest.mark.parametrize("topology", list(TOPOLOGIES))
def test_component_resources_and_golden(topology: str) -> None:
    config = load(topology)
    monitor, outputs = build(config)
    reg = monitor.registered
    name = config.slice_name

    # counts and types
    n_ifaces = sum(vm.data_interfaces + 1 for vm in config.vms)
    internet = any(vm.internet for vm in config.vms)
    assert Counter(r["type"] for r in reg.values()) == Counter(
        {
            COMPONENT_TYPE: 1,
            f"{DYN}SliceIdentity": 1,
            f"{DYN}PoolClaim": 1,
            f"{DYN}TapPort": n_ifaces,
            f"{DYN}VlanGateway": len(config.links) + internet,
            f"{DYN}DhcpNamespace": len(config.links) + internet,
            **({f"{DYN}NatRule": 1} if internet else {}),
        }
    )

    # every child is parented to the component; every resource waits for the identity (its uid is an
    # input) and, but the claim, for the pool claim
    comp_urn = reg[name]["urn"]
    pool_urn = reg[f"{name}-pool-{config.pool.start}"]["urn"]
    identity = reg[IDENTITY_NAME]
    assert identity["parent"] == comp_urn and identity["dependencies"] == []
    for rname, r in reg.items():
        if rname in (name, IDENTITY_NAME):
            continue
        assert r["parent"] == comp_urn, rname
        assert identity["urn"] in r["dependencies"] and r["inputs"]["uid"] == UID, rname
        assert r["urn"].split("::")[2] == f"{COMPONENT_TYPE}${r['type']}"
        host = r["inputs"]["host"]
        if r["type"] == f"{DYN}TapPort":
            assert host["name"] in config.workers
        else:
            assert host == {
                "name": "network",
                "address": config.network_node.address,
                "port": config.network_node.port,
            }
        if r["type"] != f"{DYN}PoolClaim":
            assert pool_urn in r["dependencies"], rname
        assert r["inputs"]["slice"] == name
        assert r["inputs"]["bridge"] == "br-int"
    if internet:
        assert reg[f"{name}-gw-vlan400"]["urn"] in reg[f"{name}-nat"]["dependencies"]

    # inputs agree with the outputs: each link's TAPs carry its VLAN; its DHCP reserves both endpoints
    for lk in outputs["links"]:
        vlan = lk["vlan"]
        dhcp = reg[f"{name}-dhcp-vlan{vlan}"]["inputs"]
        reserved = {(r["mac"], r["ip"]) for r in dhcp["reservations"]}
        taps = [reg[f"{name}-tap-{e.replace('.', '-')}"]["inputs"] for e in lk["endpoints"]]
        for endpoint, tap in zip(lk["endpoints"], taps, strict=True):
            vm, iface = endpoint.split(".")
            assert (tap["vlan"], tap["parked"]) == (vlan, False)
            # joining clears the VLAN of the slice's other TAPs (first deploy: no other worker had it)
            assert tap["join"]["members"] == [t["name"] for t in taps]
            assert tap["join"].get("hosts", []) == []
            out_iface = outputs["vms"][vm]["interfaces"][iface]
            assert (out_iface["mac"], out_iface["ip"]) in reserved
        assert (
            dhcp["router"] == lk["gateway"] == reg[f"{name}-gw-vlan{vlan}"]["inputs"]["address"].split("/")[0]
        )
    for r in reg.values():
        if r["type"] == f"{DYN}TapPort" and r["inputs"]["parked"]:
            assert r["inputs"]["vlan"] == config.parking_vlan
            assert r["inputs"].get("join") is None

    # MACs unique
    macs = [r["inputs"]["mac"] for r in reg.values() if r["type"] == f"{DYN}TapPort"]
    assert len(set(macs)) == len(macs)

    view = json.loads(json.dumps(_golden_view(monitor, outputs)))
    path = GOLDEN / f"{topology}.json"
    if os.environ.get("UPDATE_GOLDEN"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(json.dumps(view, indent=2, sort_keys=True) + "\n")
    assert view == json.loads(path.read_text())


def test_star_pinned_link_and_two_internet_vms() -> None:
    config = load("star")
    monitor, outputs = build(config)
    assert [lk["vlan"] for lk in outputs["links"]] == [140, 141, 142, 159]
    dhcp400 = monitor.registered["star-dhcp-vlan400"]["inputs"]
    assert dhcp400["shared"] is True
    assert dhcp400["address"] == "10.60.7.2/24"
    assert [(r["hostname"], r.get("ip")) for r in dhcp400["reservations"]] == [
        ("vm1200-eth0", None),  # the network node allocates VLAN 400 addresses
        ("vm1201-eth0", None),
    ]
    gw400 = monitor.registered["star-gw-vlan400"]["inputs"]
    assert (gw400["address"], gw400["shared"], gw400["port"]) == ("10.60.7.1/24", True, "gw_vlan400")
    nat = monitor.registered["star-nat"]["inputs"]
    assert (nat["subnet"], nat["gatewayPort"], nat["uplink"]) == ("10.60.7.0/24", "gw_vlan400", "ens3")


def test_mesh_uses_15_vlans() -> None:
    _, outputs = build(load("mesh"))
    assert outputs["vlanPool"] == {"start": 160, "end": 179, "used": list(range(160, 175)), "free": 5}


def test_second_run_keeps_vlans_and_hands_over_a_freed_vlan() -> None:
    """Run 2 drops ring's first link and adds a new one on a new VM.

    The new link gets the freed VLAN 120, the others keep theirs; the joining TAP clears VLAN 120 of
    everything but the new link's two ends (so the TAP leaving it is parked first), and no TAP waits for
    another (no order between TAPs, hence no cycle whatever the edit).
    """
    config1 = load("ring")
    _, out1 = build(config1)
    raw = ring()
    raw["cloudrepo:slice"]["vms"].append({"id": 1199, "worker": "worker1", "dataInterfaces": 1})
    raw["cloudrepo:slice"]["links"] = [*raw["cloudrepo:slice"]["links"][1:], ["1199.eth1", "1101.eth2"]]
    config2 = load_config(raw_config(raw), "dev")
    monitor, out2 = build(config2, json.loads(json.dumps(out1)))
    before = {tuple(lk["endpoints"]): lk["vlan"] for lk in out1["links"]}
    after = {tuple(lk["endpoints"]): lk["vlan"] for lk in out2["links"]}
    assert all(after[k] == v for k, v in before.items() if k in after)
    assert after[("1101.eth2", "1199.eth1")] == 120
    reg = monitor.registered
    assert reg["ring-tap-1102-eth1"]["inputs"]["parked"] is True
    assert reg["ring-tap-1199-eth1"]["inputs"]["join"]["members"] == ["tap_1101_eth2", "tap_1199_eth1"]
    pool = next(r for n, r in reg.items() if n.startswith("ring-pool-"))["urn"]
    taps = [r for r in reg.values() if r["type"] == f"{DYN}TapPort"]
    assert all(r["dependencies"] == sorted([pool, reg[IDENTITY_NAME]["urn"]]) for r in taps)


def test_main_program_under_mocks() -> None:
    """`__main__.py` itself: reads the raw config, its own previous outputs, builds the component, exports."""
    monitor, mocks = install()
    raw = raw_from_file(ROOT / "Pulumi.dev.yaml")
    # the launches need the testbed's guest and known_hosts: test_slice_launch covers them (and the
    # checks need launched guests)
    section = json.loads(raw["cloudrepo:slice"])
    section.pop("checks", None)
    for vm in section["vms"]:
        vm.pop("launch", None)
    raw["cloudrepo:slice"] = json.dumps(section)
    pulumi.runtime.set_all_config(raw)

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"))

    try:
        program()
    finally:
        pulumi.runtime.set_all_config({})
    assert mocks.calls == [(READ_STACK_OUTPUTS, {"name": "organization/cloudrepo/dev"})]
    assert len(monitor.registered) == 18  # component + identity + 16 children
    claim = monitor.registered["demo-pool-120"]["inputs"]
    assert (claim["stack"], claim["uid"]) == ("cloudrepo/dev", UID)  # the stack the claim records


def test_main_program_rejects_a_typo() -> None:
    install()
    raw = raw_from_file(ROOT / "Pulumi.dev.yaml")
    raw["cloudrepo:brige"] = "br-int"
    pulumi.runtime.set_all_config(raw)

    @pulumi.runtime.test
    def program() -> None:
        runpy.run_path(str(ROOT / "__main__.py"))

    try:
        with pytest.raises(
            pulumi.RunError, match=r"cloudrepo:brige: unknown config key; did you mean 'bridge'\?"
        ):
            program()
    finally:
        pulumi.runtime.set_all_config({})


@pytest.mark.parametrize(
    ("before", "after", "start"),
    [
        ([["1003.eth1", "1004.eth1"]], [["1002.eth1", "1004.eth2"]], 700),
        (
            [["1002.eth1", "1003.eth1"], ["1002.eth2", "1004.eth1"]],
            [["1002.eth2", "1003.eth1"], ["1002.eth1", "1004.eth1"]],
            120,
        ),
        (
            [["1002.eth1", "1003.eth1"], ["1002.eth2", "1004.eth1"]],
            [["1002.eth1", "1004.eth1"], ["1002.eth2", "1003.eth1"]],
            120,
        ),
    ],
)
def test_reported_edits_build_under_mocks(
    before: list[list[str]], after: list[list[str]], start: int
) -> None:
    """The edits that crashed the component (KeyError on a sibling not yet made, or a cycle) now build."""

    def config(links: list[list[str]]) -> SliceConfig:
        raw = dev()
        raw["cloudrepo:slice"]["vlanPool"] = {"start": start}
        raw["cloudrepo:slice"]["vms"] = [
            {"id": 1002, "worker": "worker1", "dataInterfaces": 2},
            {"id": 1003, "worker": "worker2", "dataInterfaces": 2},
            {"id": 1004, "worker": "worker2", "dataInterfaces": 2},
        ]
        raw["cloudrepo:slice"]["links"] = links
        return load_config(raw_config(raw), "dev")

    _, out1 = build(config(before))
    monitor, out2 = build(config(after), json.loads(json.dumps(out1)))
    assert sorted(lk["vlan"] for lk in out2["links"]) == sorted(lk["vlan"] for lk in out1["links"])
    taps = [r for r in monitor.registered.values() if r["type"] == f"{DYN}TapPort"]
    assert len(taps) == 9

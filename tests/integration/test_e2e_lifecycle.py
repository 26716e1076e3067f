"""Scenarios 1-5: a slice deployed, left alone, changed, refused and destroyed through the real engine."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from lab import slicecheck
from tests.integration.e2ekit import assert_left_shared, assert_uses_shared, launched, qemu_tcg
from tests.integration.slicekit import (
    SliceStack,
    failure,
    lab_config,
    planned_steps,
    resource_counts,
    slice_section,
)
from tests.labfixtures import assert_scan_equal, scan

pytestmark = pytest.mark.integration

POOL = 300
VMS: list[dict[str, Any]] = [
    {"id": 2001, "worker": "worker1", "dataInterfaces": 2, "internet": True},
    {"id": 2002, "worker": "worker2", "dataInterfaces": 1},
    {"id": 2003, "worker": "worker2", "dataInterfaces": 2},
    {"id": 2004, "worker": "worker1", "dataInterfaces": 1},
    {"id": 2005, "worker": "worker2", "dataInterfaces": 1},
]
LINKS: list[Any] = [
    ["2001.eth1", "2002.eth1"],
    ["2001.eth2", "2003.eth1"],
    ["2004.eth1", "2005.eth1"],
]


def _config_of(vms: list[dict[str, Any]], links: list[Any]) -> dict[str, Any]:
    return {**lab_config(), **slice_section(POOL, vms, links)}


@pytest.fixture
def timed(request: pytest.FixtureRequest) -> Iterator[None]:
    start = time.monotonic()
    yield
    print(f"\n[{request.node.name}] wall time {time.monotonic() - start:.1f}s")


def assert_slice_works(outputs: dict[str, Any], inventory: dict[str, Any]) -> slicecheck.Report:
    report = slicecheck.check_slice(outputs, inventory)
    try:
        assert report.ok, "\n" + slicecheck.format_report(report)
    finally:
        slicecheck.stop_guests(outputs["vms"])
    return report


def host_scan(host: str) -> dict[str, Any]:
    return dict(scan(host)["hosts"][host])


def bridge_ports(host: str) -> dict[str, Any]:
    return dict(host_scan(host)["ovs"]["br-int"]["ports"])


def link_vlans(outputs: dict[str, Any]) -> dict[tuple[str, ...], int]:
    return {tuple(link["endpoints"]): link["vlan"] for link in outputs["links"]}


def test_deploy_gives_reserved_leases_links_isolation_and_nat(
    timed: None, testbed: Any, slice_stack: Callable[..., SliceStack]
) -> None:
    # real QEMU guests (TCG): the checks below run inside them, their leases are their own DHCP client's
    stack = slice_stack("e2e-deploy", POOL, launched(VMS), LINKS, extra=qemu_tcg())
    stack.up()
    outputs = stack.outputs()
    assert link_vlans(outputs) == {
        ("2001.eth1", "2002.eth1"): 300,
        ("2001.eth2", "2003.eth1"): 301,
        ("2004.eth1", "2005.eth1"): 302,
    }
    report = assert_slice_works(outputs, testbed.inventory)
    # every addressed interface got exactly its reservation; links, isolation pairs and NAT were checked
    assert {(a.vm, a.iface): a.got_ip for a in report.attachments} == {
        (vm, iface): spec["ip"]
        for vm, v in outputs["vms"].items()
        for iface, spec in v["interfaces"].items()
        if spec["ip"] is not None
    }
    names = [c.name for c in report.checks]
    assert sum(n.startswith("link ") for n in names) == 3
    assert sum(n.startswith("isolation ") for n in names) == 3
    assert any(n.startswith("internet 2001") for n in names)
    # parked interfaces exist on the parking VLAN, protected; no slice port is ever an untagged trunk
    for worker in ("worker1", "worker2"):
        ports = bridge_ports(worker)
        for name, port in ports.items():
            if name not in ("br-int", "ens4"):
                assert port["tag"] is not None, f"{worker}: {name} is untagged"
    ports = bridge_ports("worker2")
    for parked in ("tap_2003_eth2", "tap_2003_eth0", "tap_2002_eth0"):
        assert (ports[parked]["tag"], ports[parked]["protected"]) == (4094, True), parked
    assert ports["tap_2003_eth1"]["tag"] == 301


def test_idempotent_preview_refresh_and_second_up(
    timed: None, testbed: Any, slice_stack: Callable[..., SliceStack]
) -> None:
    stack = slice_stack("e2e-idem", POOL, VMS, LINKS)
    stack.up()
    after_up = scan()
    counts = resource_counts(stack.preview("--expect-no-changes"))
    assert set(counts) == {"unchanged"}, counts
    assert resource_counts(stack.refresh("--expect-no-changes")) == counts
    assert resource_counts(stack.up("--expect-no-changes")) == counts
    assert_scan_equal(after_up, scan())


def test_change_keeps_vlans_and_retags_in_place(
    timed: None, testbed: Any, slice_stack: Callable[..., SliceStack]
) -> None:
    stack = slice_stack("e2e-change", POOL, VMS, LINKS)
    stack.up()
    before = link_vlans(stack.outputs())

    # add a link: only new resources, every existing VLAN unchanged
    vms = [dict(v) for v in VMS]
    vms[4]["dataInterfaces"] = 2  # 2005.eth2
    vms[2]["dataInterfaces"] = 2
    added = [*LINKS, ["2003.eth2", "2005.eth2"]]
    stack.write_config(_config_of(vms, added))
    steps = planned_steps(stack)
    assert {op for op, _, _ in steps} <= {"create", "update"}, steps
    creates = {name for op, _, name in steps if op == "create"}
    assert {"e2e-change-tap-2005-eth2", "e2e-change-gw-vlan303", "e2e-change-dhcp-vlan303"} <= creates, steps
    # the parked TAPs that join the new link are retagged in place, nothing else changes
    assert {name for op, _, name in steps if op == "update"} == {
        "e2e-change-tap-2003-eth2",
    }, steps
    stack.up()
    grown = link_vlans(stack.outputs())
    assert {k: grown[k] for k in before} == before
    assert grown[("2003.eth2", "2005.eth2")] == 303

    # remove a link: only its resources go, its VLAN returns to the pool
    removed = [LINKS[0], LINKS[2], ["2003.eth2", "2005.eth2"]]
    stack.write_config(_config_of(vms, removed))
    steps = planned_steps(stack)
    deletes = {name for op, _, name in steps if op == "delete"}
    assert deletes == {"e2e-change-gw-vlan301", "e2e-change-dhcp-vlan301"}, steps
    assert {op for op, _, _ in steps} <= {"delete", "update"}, steps
    stack.up()
    out = stack.outputs()
    assert link_vlans(out) == {
        ("2001.eth1", "2002.eth1"): 300,
        ("2004.eth1", "2005.eth1"): 302,
        ("2003.eth2", "2005.eth2"): 303,
    }
    assert 301 not in out["vlanPool"]["used"] and out["vlanPool"]["free"] == 17
    net = host_scan("network")
    assert "gw_vlan301" not in net["ovs"]["br-int"]["ports"] and "ns-dhcp-vlan301" not in net["namespaces"]

    # internet on for 2004: its eth0 TAP is retagged in place (no replace)
    vms[3]["internet"] = True
    stack.write_config(_config_of(vms, removed))
    steps = planned_steps(stack)
    assert ("update", "pulumi-python:dynamic:TapPort", "e2e-change-tap-2004-eth0") in steps, steps
    assert not any(op.startswith(("replace", "create-replacement", "delete-replaced")) for op, _, _ in steps)
    stack.up()
    assert stack.outputs()["vms"]["2004"]["interfaces"]["eth0"]["vlan"] == 400
    assert_uses_shared(testbed.inventory, "e2e-change", host_scan("network"))

    # internet off on every VM: the slice leaves VLAN 400's gateway, DHCP and NAT (gone with their last user)
    for v in vms:
        v["internet"] = False
    stack.write_config(_config_of(vms, removed))
    stack.up()
    assert_left_shared(testbed.inventory, "e2e-change", host_scan("network"))
    assert stack.outputs()["vms"]["2001"]["interfaces"]["eth0"]["vlan"] is None


def test_pool_exhausted_fails_at_preview_and_changes_nothing(
    timed: None, testbed: Any, slice_stack: Callable[..., SliceStack]
) -> None:
    baseline = scan()
    vms = [
        {"id": 2100 + i, "worker": "worker1" if i % 2 else "worker2", "dataInterfaces": 1} for i in range(42)
    ]
    links = [[f"{2100 + 2 * i}.eth1", f"{2101 + 2 * i}.eth1"] for i in range(21)]
    stack = slice_stack("e2e-exhausted", POOL, vms, links)
    out = failure(stack.cli.run("preview", "--non-interactive", check=False))
    assert "VLAN pool exhausted" in out
    assert "cloudrepo:slice.links[20] (2140.eth1 -- 2141.eth1)" in out  # the 21st link is named
    up = failure(stack.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
    assert "VLAN pool exhausted" in up, up
    assert_scan_equal(baseline, scan())


def test_destroy_returns_every_host_to_its_scan_before_up(
    timed: None, testbed: Any, slice_stack: Callable[..., SliceStack]
) -> None:
    baseline = scan()
    stack = slice_stack("e2e-destroy", POOL, VMS, LINKS)
    stack.up()
    assert scan() != baseline
    stack.destroy()
    assert_scan_equal(baseline, scan())
    assert stack.outputs() == {}

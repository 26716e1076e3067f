"""Scenario 6: a stack per slice. Two slices deployed at the same time by two `pulumi up` processes are
isolated from each other; destroying one leaves the other's internet and DHCP working; a third slice whose
VLAN pool overlaps a deployed one is refused by name and the deployed one is left as it was."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from lab.slicecheck import can_ping, cannot_ping, check_slice, guest_exec, stop_guests
from tests.integration.e2ekit import (
    assert_slice_ok,
    fresh_lease,
    objects,
    slice_markers,
    wall_time,
)
from tests.integration.slicekit import SliceStack, failure
from tests.labfixtures import Testbed, assert_scan_equal, scan


def two_vm_slice(first_vm: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """An internet VM on worker1 linked to a VM on worker2 (the link crosses the trunk)."""
    vms = [
        {"id": first_vm, "worker": "worker1", "dataInterfaces": 1, "internet": True},
        {"id": first_vm + 1, "worker": "worker2", "dataInterfaces": 1},
    ]
    return vms, [[f"{first_vm}.eth1", f"{first_vm + 1}.eth1"]]


def link_ips(outputs: dict[str, Any]) -> dict[str, str]:
    return {
        vm_id: vm["interfaces"]["eth1"]["ip"]
        for vm_id, vm in outputs["vms"].items()
        if "eth1" in vm["interfaces"]
    }


def test_stack_per_slice(slice_stack: Callable[..., SliceStack], testbed: Testbed) -> None:
    with wall_time("6 stack per slice"):
        run_stack_per_slice(slice_stack, testbed)


def run_stack_per_slice(slice_stack: Callable[..., SliceStack], testbed: Testbed) -> None:
    a = slice_stack("e2e-msa", 200, *two_vm_slice(6201))
    b = slice_stack("e2e-msb", 220, *two_vm_slice(6221))

    # both `pulumi up` at the same time
    procs = {s.cli.stack: s.cli.popen("up", "--yes", "--non-interactive", "--skip-preview") for s in (a, b)}
    results = {name: (p.communicate(timeout=600)[0], p.returncode) for name, p in procs.items()}
    for name, (out, rc) in results.items():
        assert rc == 0, f"pulumi up of {name} failed ({rc}):\n{out}"
    out_a, out_b = a.outputs(), b.outputs()
    assert [link["vlan"] for link in out_a["links"]] == [200]
    assert [link["vlan"] for link in out_b["links"]] == [220]

    try:
        # each slice works on its own ...
        assert_slice_ok(check_slice(out_a, testbed.inventory))
        assert_slice_ok(check_slice(out_b, testbed.inventory))
        # ... and no guest of one reaches a link interface of the other (neither over the trunk nor routed
        # by the network node, whose ip_forward is on for NAT)
        ips_a, ips_b = link_ips(out_a), link_ips(out_b)
        crossings = [
            f"{src} -> {dst_vm} {ip}"
            for src, others in ((s, ips_b) for s in ips_a)
            for dst_vm, ip in others.items()
            if not cannot_ping(src, ip)
        ] + [
            f"{src} -> {dst_vm} {ip}"
            for src, others in ((s, ips_a) for s in ips_b)
            for dst_vm, ip in others.items()
            if not cannot_ping(src, ip)
        ]
        assert not crossings, f"guests reached the other slice: {crossings}"
        # the same guests do reach their own link's far end (the negative result above is not an outage)
        assert can_ping("6201", ips_a["6202"]) and can_ping("6221", ips_b["6222"])

        # destroying slice A leaves B's internet and DHCP working
        stop_guests(out_a["vms"])
        markers_b = slice_markers(out_b)
        before_b = objects(markers_b)
        a.destroy()
        assert_scan_equal(before_b, objects(markers_b))
        assert not objects(slice_markers(out_a)), "slice A left objects behind"
        internet = testbed.inventory["internet"]
        page = guest_exec("6221", "curl", "-s", "-m", "5", internet["url"])
        assert page.returncode == 0 and page.stdout == internet["body"], page
        seen = guest_exec("6221", "curl", "-s", "-m", "5", internet["whoamiUrl"])
        assert seen.stdout.strip() == internet["networkNodeUplinkAddress"], seen
        assert fresh_lease("6221", "eth0") == out_b["vms"]["6221"]["interfaces"]["eth0"]["ip"]
        assert fresh_lease("6221", "eth1") == ips_b["6221"]
        assert fresh_lease("6222", "eth1") == ips_b["6222"]
        assert can_ping("6222", ips_b["6221"])

        # a third slice whose pool (210..229) overlaps B (220..239) is refused, naming B; B is untouched
        net_before = scan("network")
        c = slice_stack("e2e-msc", 210, *two_vm_slice(6241))
        text = failure(c.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
        assert "meet slice 'e2e-msb'" in text, text
        net_after = scan("network")
        assert_scan_equal(net_before, net_after, only=markers_b)
        assert_scan_equal(
            net_before,
            net_after,
            only=("gw_vlan210", "dhcp_v210", "ns-dhcp-vlan210", "192.168.210.", "e2e-msc"),
        )
        assert not any(
            tap.startswith(("tap_6241_", "tap_6242_")) for h in scan()["hosts"].values() for tap in h["taps"]
        ), "the refused slice's TAPs are on the workers"
        # and B still serves its guests
        assert fresh_lease("6222", "eth1") == ips_b["6222"]
    finally:
        stop_guests({**out_a["vms"], **out_b["vms"]})

"""Parked means dead, on the real engine: two slices, each with a VM whose eth0 is parked, one on worker1 and
one on worker2 (the parking VLAN crosses the fabric between them).

- Their guests, given addresses of one subnet on eth0, cannot reach each other; the same guests reach their
  own link's gateway over eth1 (a dead guest does not fake isolation), and reach each other over eth0 once
  the drop flows are removed by hand (what a restart of ovs-vswitchd does): the flows are what isolates.
  `pulumi refresh` then reports the drift, `pulumi up` puts the flows back, and nothing passes again.
- A slice whose `parkingVlan` lies in the pool of a deployed slice is refused at `up`, naming that slice,
  and no host changes (scans equal before and after).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.e2ekit import drift_by_name, wall_time
from tests.integration.slicekit import SliceStack, failure
from tests.labfixtures import Guest, Testbed, assert_scan_equal, scan

pytestmark = pytest.mark.integration

ALL_DROPS = "cookie=0xc1d0000000000000/0xffff000000000000"
"""Every drop flow the program makes (port drops and parking-VLAN drops)."""


def pair(first: int, parked_on: str, other: str) -> tuple[list[dict[str, Any]], list[Any]]:
    """VM `first` on `parked_on` (its eth0 parked) linked to VM `first + 1` on `other`."""
    vms = [
        {"id": first, "worker": parked_on, "dataInterfaces": 1},
        {"id": first + 1, "worker": other, "dataInterfaces": 1},
    ]
    return vms, [[f"{first}.eth1", f"{first + 1}.eth1"]]


def pings(g: Guest, address: str) -> bool:
    return g.exec("ping", "-c", "3", "-i", "0.2", "-W", "2", address, check=False).returncode == 0


def test_parked_guests_of_two_slices_on_two_workers_reach_nothing(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, guest: Callable[..., Guest]
) -> None:
    with wall_time("parked guests of two slices"):
        run_parked(slice_stack, testbed, guest)


def attach(guest: Callable[..., Guest], name: str, worker: str, vm: dict[str, Any], address: str) -> Guest:
    """A stand-in guest on the VM's parked eth0 (a static address) and on its linked eth1 (DHCP)."""
    eth0, eth1 = vm["interfaces"]["eth0"], vm["interfaces"]["eth1"]
    assert eth0["parked"] and eth0["vlan"] is None and not eth1["parked"], vm
    g = guest(name, host=worker, tap=eth0["tap"], iface="eth0", mac=eth0["mac"])
    g.add_iface(worker, eth1["tap"], "eth1", eth1["mac"])
    g.exec("ip", "addr", "add", address, "dev", "eth0")
    return g


def run_parked(slice_stack: Callable[..., SliceStack], testbed: Testbed, guest: Callable[..., Guest]) -> None:
    a = slice_stack("e2e-parka", 600, *pair(6801, "worker1", "worker2"))
    b = slice_stack("e2e-parkb", 620, *pair(6811, "worker2", "worker1"))
    a.up()
    b.up()
    vm_a, vm_b = a.outputs()["vms"]["6801"], b.outputs()["vms"]["6811"]
    ga = attach(guest, "pka", "worker1", vm_a, "10.77.0.1/24")
    gb = attach(guest, "pkb", "worker2", vm_b, "10.77.0.2/24")

    # control: both guests are alive and reach what they should (their link's DHCP and gateway)
    for g, vm in ((ga, vm_a), (gb, vm_b)):
        eth1 = vm["interfaces"]["eth1"]
        assert g.dhcp("eth1") == eth1["ip"]
        assert pings(g, eth1["gateway"]), f"{g.name} cannot reach its own gateway {eth1['gateway']}"

    # parked: nothing passes between the two workers' parked ports, in either direction
    assert not pings(ga, "10.77.0.2") and not pings(gb, "10.77.0.1")

    # without the drop flows (removed by hand on both workers) the same guests reach each other
    for worker in ("worker1", "worker2"):
        testbed.run(worker, f'ovs-ofctl del-flows br-int "{ALL_DROPS}"')
    assert pings(ga, "10.77.0.2"), "the parked guests do not reach each other even without the drop flows"

    # refresh reports the lost flows as drift of the parked TAPs; up puts them back; nothing passes again
    a.refresh()
    b.refresh()
    drift_a, drift_b = drift_by_name(a), drift_by_name(b)
    assert any("not dropped" in d for d in drift_a.get("e2e-parka-tap-6801-eth0", [])), drift_a
    assert any("not dropped" in d for d in drift_b.get("e2e-parkb-tap-6811-eth0", [])), drift_b
    a.up()
    b.up()
    assert drift_by_name(a) == {} and drift_by_name(b) == {}
    assert not pings(ga, "10.77.0.2") and not pings(gb, "10.77.0.1")
    for g, vm in ((ga, vm_a), (gb, vm_b)):
        assert pings(g, vm["interfaces"]["eth1"]["gateway"])
    a.preview("--expect-no-changes")

    # a slice whose parking VLAN is in slice A's pool is refused before any host changes, naming A
    before = scan()
    c = slice_stack("e2e-parkc", 640, *pair(6821, "worker1", "worker2"), extra={"cloudrepo:parkingVlan": 605})
    text = failure(c.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
    assert "parking VLAN 605 of slice 'e2e-parkc' is in the pool of slice 'e2e-parka'" in text, text
    assert "Traceback" not in text
    assert_scan_equal(before, scan())
    claims = testbed.run("network", "ls /var/lib/cloudrepo/pools")[1].split()
    assert not any(f.startswith("e2e-parkc@") for f in claims), claims
    a.destroy()
    b.destroy()
    flows = [f for h in scan()["hosts"].values() for f in h["ovs"]["br-int"]["flows"] if "0xc1d0" in f]
    assert flows == [], flows


def test_a_pool_that_holds_another_slices_parking_vlan_is_refused(
    slice_stack: Callable[..., SliceStack], testbed: Testbed
) -> None:
    with wall_time("pool over a parking VLAN"):
        parked = [{"id": 6831, "worker": "worker1", "dataInterfaces": 1}]  # eth0 and eth1 parked on 700
        d = slice_stack("e2e-parkd", 660, parked, [], extra={"cloudrepo:parkingVlan": 700})
        d.up()
        claim = testbed.run("network", "cat /var/lib/cloudrepo/pools/e2e-parkd@660")[1]
        assert claim.splitlines()[1:] == ["parking 700"] and claim.startswith("660 679 "), claim
        before = scan()
        e = slice_stack("e2e-parke", 690, *pair(6841, "worker1", "worker2"))  # 690..709 holds 700
        text = failure(e.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
        assert (
            "VLANs 690-709 of slice 'e2e-parke' hold VLAN 700, the parking VLAN of slice 'e2e-parkd'" in text
        )
        assert "Traceback" not in text
        assert_scan_equal(before, scan())
        d.destroy()

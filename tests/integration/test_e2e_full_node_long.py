"""A network node filled to the addressing's limit (`make test-long`): 12 slices x 20 links (240 link
VLANs whose `VLAN % 256` all differ, + VLAN 400) deployed one by one and, separately, six at once; every DHCP
namespace holds its one live dnsmasq, guests on the first and the last slice's last link get their reserved
addresses, a 13th slice is refused naming no free pool start, and destroying them all leaves the hosts as
they were. Then the generated run of `test_e2e_generated_slices.py`, larger."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.e2ekit import wall_time
from tests.integration.fullkit import at_once, isolation_problems, ring, unserved
from tests.integration.slicekit import SliceStack, failure
from tests.integration.test_e2e_generated_slices import run_generated, seed
from tests.labfixtures import Guest, assert_scan_equal, lab_cli, scan

pytestmark = pytest.mark.cloud_image  # the long tests' marker: `make test-long` runs them

SLICES = 12
LINKS = 20
FIRST_VM = 6000


def pool(k: int) -> int:
    """Slice k's pool (0-based): 100, 120, ... 320: `VLAN % 256` 100..255 then 0..83, all different."""
    return 100 + LINKS * k


def make_slices(make: Callable[..., SliceStack], count: int, tag: str) -> list[SliceStack]:
    stacks = []
    for k in range(count):
        vms, links = ring(FIRST_VM + LINKS * k, LINKS)
        stacks.append(make(f"full{tag}{k + 1}", pool(k), vms, links))
    return stacks


def check_node(stacks: list[SliceStack]) -> dict[str, Any]:
    """Every DHCP namespace served by one dnsmasq (a link VLAN each, + VLAN 400), every slice on its own
    VLANs; the scan."""
    doc = scan()
    network = doc["hosts"]["network"]
    assert unserved(network) == []
    assert len(network["dnsmasq"]) == LINKS * len(stacks) + 1
    outputs = {st.cli.stack: st.outputs() for st in stacks}
    assert isolation_problems(doc, outputs) == []
    return doc


def reserved_lease(stack: SliceStack, guest: Callable[..., Guest], name: str) -> None:
    """A guest on the slice's last link (its last VM's eth2) gets the address reserved for it."""
    out = stack.outputs()
    last = max(int(v) for v in out["vms"])
    iface = out["vms"][str(last)]["interfaces"]["eth2"]
    worker = "worker1" if (last - FIRST_VM) % 2 == 0 else "worker2"
    g = guest(name, host=worker, tap=iface["tap"], iface="eth1", mac=iface["mac"])
    try:
        assert g.dhcp("eth1", timeout=60) == iface["ip"]
    finally:
        lab_cli("vm", "stop", name, check=False)


@pytest.mark.timeout(3600)  # 12 ups and 12 destroys of 106 resources each: 10-20 minutes on 2 busy cores
def test_twelve_full_slices_one_by_one(
    slice_stack: Callable[..., SliceStack], guest: Callable[..., Guest]
) -> None:
    baseline = scan()
    with wall_time("full node: 12 x 20 links one by one"):
        stacks = make_slices(slice_stack, SLICES, "a")
        seconds = []
        for st in stacks:
            t0 = time.monotonic()
            st.up()
            seconds.append(round(time.monotonic() - t0, 1))
        print(f"\n[full node] up of slice k of {SLICES}: {seconds}")
        check_node(stacks)
        reserved_lease(stacks[0], guest, "fullfirst")
        reserved_lease(stacks[-1], guest, "fulllast")

        # a 13th slice: every pool start meets a slice's subnets; refused before any host change
        before = scan()
        vms, links = ring(FIRST_VM + LINKS * SLICES, 2)
        extra = slice_stack("fulla13", 340, vms, links)
        text = failure(extra.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
        assert "VLANs 340-359 of slice 'fulla13' meet slice" in text, text
        assert "no pool start is still free on this node" in text, text
        assert_scan_equal(before, scan())

        for st in reversed(stacks):
            st.destroy()
        assert_scan_equal(baseline, scan())


@pytest.mark.timeout(1800)
def test_six_full_slices_at_once(slice_stack: Callable[..., SliceStack]) -> None:
    baseline = scan()
    with wall_time("full node: 6 x 20 links at once"):
        stacks = make_slices(slice_stack, 6, "b")
        t0 = time.monotonic()
        results = at_once(stacks, lambda st: st.up())
        print(f"\n[full node] six ups at once: {time.monotonic() - t0:.1f} s")
        for st, r in zip(stacks, results, strict=True):
            assert not isinstance(r, Exception), f"{st.cli.stack}: {r}"
        check_node(stacks)
        results = at_once(stacks, lambda st: st.destroy())
        for st, r in zip(stacks, results, strict=True):
            assert not isinstance(r, Exception), f"{st.cli.stack}: {r}"
        assert_scan_equal(baseline, scan())


@pytest.mark.timeout(1800)
def test_generated_slices_larger(slice_stack: Callable[..., SliceStack]) -> None:
    with wall_time("generated slices (8)"):
        run_generated(slice_stack, seed(), count=8, edits=3, first_vm=7900)

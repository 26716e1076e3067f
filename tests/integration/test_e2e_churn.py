"""Scenario 10, churn: a slice of 6+ VMs on 2 workers edited again and again by a seeded generator.

Every kind of edit an operator makes (`tests.churnkit.EDITS`) at least once, each followed by one `pulumi up`
and checks: the next preview has no changes; every TAP's tag on its worker is the outputs' VLAN (the
parking VLAN when unlinked); a gateway and a DHCP namespace exist exactly for the VLANs in use; no TAP of a
removed VM is left. At the end guests get their reserved addresses and reach their link peers (and nothing
else), and `pulumi destroy` leaves the hosts as before. `CLOUDREPO_CHURN_SEED=N` reruns a sequence.
"""

from __future__ import annotations

import os
import random
import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

from components.allocation import allocate_vlans
from components.config import load_config
from components.outputs import Deployed
from lab import slicecheck
from tests import churnkit
from tests.cfgkit import raw_config
from tests.integration.slicekit import SliceStack, lab_config
from tests.labfixtures import assert_scan_equal, scan
from vocabulary import naming
from vocabulary.errors import ConfigError

pytestmark = pytest.mark.integration

NAME = "e2e-churn"
WORKERS = ("worker1", "worker2")
VM_IDS = tuple(range(3001, 3010))
POOLS = (500, 540, 580)
PARKING = 4094
INTERNET = 400
MIN_EDITS = 12
PREPARE = {"swap ends": "add link", "move end": "add link", "remove link": "add link", "unpin": "pin"}
"""What makes an edit applicable when the state does not allow it (e.g. a swap needs two links)."""


def initial_state() -> dict[str, Any]:
    vms = {i: {"worker": WORKERS[i % 2], "n": 2, "internet": i == 3001} for i in VM_IDS[:6]}
    links = [
        ("3001.eth1", "3002.eth1", None),
        ("3003.eth1", "3004.eth1", None),
        ("3005.eth1", "3006.eth2", None),
    ]
    return {"pool": POOLS[0], "vms": vms, "links": links}


def edits(rng: random.Random) -> list[str]:
    """Every kind once, in a seeded order, then a few more."""
    kinds = list(churnkit.EDITS)
    rng.shuffle(kinds)
    return kinds + [rng.choice(churnkit.EDITS) for _ in range(2)]


def config_of(state: dict[str, Any]) -> dict[str, Any]:
    return {**lab_config(), "cloudrepo:slice": churnkit.slice_section(state, NAME)}


def valid(state: dict[str, Any], outputs: dict[str, Any]) -> bool:
    """Whether `pulumi preview` would accept the state (e.g. a pin on a VLAN a deployed link holds is
    refused there, by design): the operator's next edit is a valid one."""
    try:
        config = load_config(raw_config(config_of(state)), NAME)
        allocate_vlans(config.links, config.pool, Deployed.from_outputs(outputs).vlans)
    except ConfigError:
        return False
    return True


def check_hosts(outputs: dict[str, Any], state: dict[str, Any], doc: dict[str, Any]) -> None:
    """The hosts as the outputs say, for this slice's objects."""
    vms = outputs["vms"]
    for spec in vms.values():
        ports = doc["hosts"][spec["worker"]]["ovs"]["br-int"]["ports"]
        for i in spec["interfaces"].values():
            want = i["vlan"] if i["vlan"] is not None else PARKING
            port = ports.get(i["tap"])
            assert port is not None, f"{spec['worker']}: {i['tap']} missing"
            assert port["tag"] == want, f"{spec['worker']}: {i['tap']} tag {port['tag']}, want {want}"
            assert naming.mark_slice(port["external_ids"].get(naming.OWNER_KEY, "")) == NAME
    present = set(map(int, vms))
    for worker in WORKERS:
        for tap in doc["hosts"][worker]["taps"]:
            if tap.startswith("tap_") and int(tap.split("_")[1]) in VM_IDS:
                assert int(tap.split("_")[1]) in present, f"{worker}: {tap} of a removed VM is left"
    used = {int(v) for v in outputs["vlanPool"]["used"]}
    net = doc["hosts"]["network"]
    ours = range(min(POOLS), max(POOLS) + 20)
    gateways = {int(p[len("gw_vlan") :]) for p in net["ovs"]["br-int"]["ports"] if p.startswith("gw_vlan")}
    namespaces = {int(n[len("ns-dhcp-vlan") :]) for n in net["namespaces"] if n.startswith("ns-dhcp-vlan")}
    assert {v for v in gateways if v in ours} == used, (sorted(gateways), sorted(used))
    assert {v for v in namespaces if v in ours} == used, (sorted(namespaces), sorted(used))
    internet = any(v["internet"] for v in state["vms"].values())
    assert (INTERNET in gateways and INTERNET in namespaces) or not internet


def test_churn_converges_after_every_edit(testbed: Any, slice_stack: Callable[..., SliceStack]) -> None:
    seed = int(os.environ.get("CLOUDREPO_CHURN_SEED") or random.SystemRandom().randrange(1, 10**6))
    print(f"\n[churn] CLOUDREPO_CHURN_SEED={seed}")
    rng = random.Random(seed)
    baseline = scan()
    state = initial_state()
    stack = slice_stack(NAME, state["pool"], [], [])
    times: list[float] = []

    def apply(label: str) -> None:
        stack.write_config(config_of(state))
        t0 = time.monotonic()
        stack.up()
        times.append(time.monotonic() - t0)
        outputs = stack.outputs()
        links = [(lk["endpoints"], lk["vlan"]) for lk in outputs["links"]]
        print(f"[churn] {label}: up {times[-1]:.1f}s, links {links}")
        stack.preview("--expect-no-changes")
        check_hosts(outputs, state, scan())

    def edited(kind: str) -> dict[str, Any]:
        """`state` with one valid edit of `kind` (unchanged when none was found)."""
        for _ in range(10):
            new = churnkit.edit(state, kind, rng, workers=WORKERS, vm_ids=VM_IDS, pool_starts=POOLS)
            if new != state and valid(new, stack.outputs()):
                return new
        return state

    apply("initial")
    done: list[str] = []
    for kind in edits(rng):
        for _ in range(6):  # an edit that does not apply to this state: draw again, or prepare for it first
            new = edited(kind)
            if new != state:
                break
            prepared = edited(PREPARE.get(kind, "add vm"))
            if prepared != state:
                state = prepared
                apply(f"{PREPARE.get(kind, 'add vm')} (for {kind})")
                done.append(PREPARE.get(kind, "add vm"))
        if new == state:
            continue
        state = new
        apply(kind)
        done.append(kind)
    assert len(done) >= MIN_EDITS and set(churnkit.EDITS) <= set(done), done
    # the end: at least two links, then guests prove leases, links and isolation
    while len(state["links"]) < 2:
        state = churnkit.edit(state, "add link", rng, workers=WORKERS, vm_ids=VM_IDS, pool_starts=POOLS)
    apply("final links")
    outputs = stack.outputs()
    report = slicecheck.check_slice(outputs, testbed.inventory)
    try:
        assert report.ok, "\n" + slicecheck.format_report(report)
    finally:
        slicecheck.stop_guests(outputs["vms"])
    print(f"[churn] {len(times)} ups, median {statistics.median(times):.1f}s, edits {done}")
    stack.destroy()
    assert_scan_equal(baseline, scan())

"""Generated slices started together on one node (seeded; the seed is printed, `CLOUDREPO_GEN_SEED` replays
it): random start offsets, random edits, and a rival slice whose pool meets one of theirs by subnet. After
the run exactly one of the rival pair holds its pool (the other refused, naming it and the free starts),
every other stack converged (`preview --expect-no-changes`, its links as configured, its VLANs in its pool),
every slice's ports are on its own VLANs, every DHCP namespace has its one dnsmasq, and destroying every
slice at once leaves the hosts as they were. Short here (3 slices, one edit each); larger in
`test_e2e_full_node_long.py` (`make test-long`)."""

from __future__ import annotations

import os
import random
from collections.abc import Callable

from tests.integration.e2ekit import wall_time
from tests.integration.fullkit import (
    GenSlice,
    at_once,
    converged,
    generate,
    isolation_problems,
    live,
    unserved,
)
from tests.integration.slicekit import SliceStack
from tests.labfixtures import assert_scan_equal, scan

STARTS = [520 + 20 * k for k in range(12)]
"""Pools whose subnets (`VLAN % 256`: 8..247) never meet; the rival takes one of them plus (or minus) 256."""


def seed() -> int:
    return int(os.environ.get("CLOUDREPO_GEN_SEED") or random.SystemRandom().randrange(2**32))


def run_generated(make: Callable[..., SliceStack], seed: int, count: int, edits: int, first_vm: int) -> None:
    print(f"\n[generated slices] seed {seed} (CLOUDREPO_GEN_SEED={seed} replays the slices and edits)")
    rng = random.Random(seed)
    baseline = scan()
    slices = generate(rng, count, STARTS, first_vm)
    target = slices[0]
    # the same subnets, other VLANs: 256 up, or down where up would pass 999 (the pool's names must fit)
    rival = GenSlice(
        "genrival", target.pool + (256 if target.pool + 256 <= 980 else -256), first_vm + 10 * count
    )
    rival.vms = [
        {"id": rival.first_vm, "worker": "worker1", "dataInterfaces": 2},
        {"id": rival.first_vm + 1, "worker": "worker2", "dataInterfaces": 2},
    ]
    rival.add_link(rng)
    everyone = [*slices, rival]
    for s in everyone:
        print(f"  {s.name}: pool {s.pool}, VMs {[v['id'] for v in s.vms]}, links {s.links}")
    stacks = [make(s.name, s.pool, s.vms, s.links) for s in everyone]
    offsets = [rng.uniform(0, 3) for _ in everyone]
    rngs = [random.Random(rng.random()) for _ in everyone]
    lives = at_once(
        stacks, lambda st: live(st, everyone[stacks.index(st)], rngs[stacks.index(st)], edits), offsets
    )
    for life in lives:
        assert not isinstance(life, Exception), life
    refused = [s.name for s, life in zip(everyone, lives, strict=True) if life.refused]
    assert sorted(refused) in (["genrival"], [target.name]), (
        f"exactly one of {target.name} and genrival (same subnets) must be refused, not {refused}"
    )
    loser = lives[everyone.index(rival)] if "genrival" in refused else lives[0]
    other = target.name if "genrival" in refused else "genrival"
    assert f"meet slice '{other}'" in (loser.refused or ""), loser.refused
    assert "pool starts still free on this node" in (loser.refused or ""), loser.refused
    failures = [f for life in lives for f in life.failures]
    assert not failures, "\n".join(failures)

    deployed = [(st, s) for st, s in zip(stacks, everyone, strict=True) if s.name not in refused]
    problems = [
        p
        for found in at_once([st for st, _ in deployed], lambda st: converged(st, everyone[stacks.index(st)]))
        for p in found
    ]
    assert not problems, "\n".join(problems)
    doc = scan()
    outputs = {s.name: st.outputs() for st, s in deployed}
    assert isolation_problems(doc, outputs) == []
    assert unserved(doc["hosts"]["network"]) == []

    results = at_once(
        stacks, lambda st: st.cli.run("destroy", "--yes", "--non-interactive", "--skip-preview")
    )
    for r in results:
        assert not isinstance(r, Exception), r
    assert_scan_equal(baseline, scan())


def test_generated_slices_started_together_converge_apart(slice_stack: Callable[..., SliceStack]) -> None:
    with wall_time("generated slices (3)"):
        run_generated(slice_stack, seed(), count=3, edits=1, first_vm=7800)

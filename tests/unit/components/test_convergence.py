"""Any config to any config: generated edit sequences, each transition run in many orders the graph allows.

For every transition of a random sequence of configs (links added, removed, moved, swapped; VMs added,
removed, moved; internet toggled; VLANs pinned; `dataInterfaces` changed; the pool moved, also onto a
neighbour slice's claim): the plan builds, its graph is complete and acyclic, and a simulated `pulumi up`
(`enginesim`) in random orders never puts a TAP on a VLAN its slice does not hold, never puts two links on
one VLAN, and ends with the hosts as the new plan says (or, when the claim is refused, with nothing of the
new range touched). Links that survive keep their VLAN.

Two slices (`test_two_slices_...`): both edited, their parking VLANs moved too (also into the other's
pool), their `pulumi up`s interleaved at random: no TAP of one ever carries a VLAN the other claims (a VLAN
of its pool, or its parking VLAN), every parked TAP passes nothing, and a claim that would break this is
refused before its slice touches anything.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Iterator, Sequence
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from components.allocation import allocate_vlans
from components.config import load_config
from components.outputs import Deployed, stack_outputs
from components.plan import build_plan
from components.resources import PlannedResource, resource_plan
from tests import churnkit
from tests.cfgkit import raw_config
from tests.unit.components import enginesim as sim
from vocabulary.errors import ConfigError

T = TypeVar("T")

SLICE = "churn"
PARKING = 4094
WORKERS = ("worker1", "worker2", "worker3")
NEIGHBOUR_POOL = (200, 219)
POOL_STARTS = (100, 120, 140, 200, 456)  # 200 is the neighbour's; 456 is 200 modulo 256 (its subnets)
ORDERS = int(os.environ.get("CLOUDREPO_SIM_ORDERS", "12"))

settings.register_profile("ci", max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("long", max_examples=2000, deadline=None, suppress_health_check=list(HealthCheck))
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

CHECKED = {"transitions": 0, "orders": 0, "longest": 0}


def raw(state: dict[str, Any], name: str = SLICE) -> dict[str, str]:
    return raw_config(
        {
            "cloudrepo:networkNode": {"host": "10.0.10.3"},
            "cloudrepo:workers": {w: {"host": f"10.0.10.{i + 1}"} for i, w in enumerate(WORKERS)},
            "cloudrepo:ssh": {"user": "root", "privateKeyPath": "k", "knownHostsPath": "h"},
            "cloudrepo:slice": churnkit.slice_section(state, name),
            "cloudrepo:parkingVlan": state.get("parking", PARKING),
        }
    )


class Drawn:
    """The edit generator's choices, drawn by hypothesis (so failing examples shrink)."""

    def __init__(self, data: st.DataObject) -> None:
        self.data = data

    def choice(self, seq: Sequence[T]) -> T:
        return self.data.draw(st.sampled_from(list(seq)))

    def randint(self, a: int, b: int) -> int:
        return self.data.draw(st.integers(a, b))


def edit(state: dict[str, Any], kind: str, data: st.DataObject) -> dict[str, Any]:
    return churnkit.edit(
        state, kind, Drawn(data), workers=WORKERS, vm_ids=range(1001, 1009), pool_starts=POOL_STARTS
    )


def deploy(
    state: dict[str, Any], outputs: dict[str, Any], name: str = SLICE
) -> tuple[list[PlannedResource], dict[str, Any]] | None:
    """The resources and outputs of one run from the previous outputs; None when the config is invalid."""
    try:
        config = load_config(raw(state, name), name)
        deployed = Deployed.from_outputs(outputs)
        plan = build_plan(config, allocate_vlans(config.links, config.pool, deployed.vlans))
    except ConfigError:
        return None
    resources = resource_plan(plan, deployed)  # raises GraphError if incomplete or cyclic
    return resources, json.loads(json.dumps(stack_outputs(plan)), parse_int=float)


def neighbour() -> sim.Hosts:
    """Another slice's claim and one of its TAPs on its VLAN 205, on a worker this slice uses too."""
    hosts = sim.Hosts()
    hosts.claims[("nb", NEIGHBOUR_POOL[0])] = NEIGHBOUR_POOL
    hosts.ports[("worker1", "tap_9001_eth1")] = sim.Port("nb", 205)
    return hosts


@given(st.data(), st.lists(st.sampled_from(churnkit.EDITS), min_size=1, max_size=10))
def test_any_edit_sequence_converges_safely(data: st.DataObject, kinds: list[str]) -> None:
    state: dict[str, Any] = {
        "pool": 120,
        "vms": {
            1001: {"worker": "worker1", "n": 2, "internet": False},
            1002: {"worker": "worker2", "n": 2, "internet": True},
        },
        "links": [("1001.eth1", "1002.eth1", None)],
    }
    hosts = neighbour()
    resources: list[Any] = []
    outputs: dict[str, Any] = {}
    seed = data.draw(st.integers(0, 2**32 - 1), label="order seed")
    rng = random.Random(seed)
    sequence = 0
    for kind in ["start", *kinds]:
        new_state = state if kind == "start" else edit(state, kind, data)
        built = deploy(new_state, outputs)
        if built is None:
            continue  # an invalid config fails at preview: nothing runs
        new_resources, new_outputs = built
        note(f"{kind}: {json.dumps({k: v for k, v in new_state.items()}, default=str)}")
        outcome = None
        for _ in range(ORDERS):
            trial = hosts.copy()
            outcome = sim.run(trial, resources, new_resources, rng, SLICE, PARKING)
            CHECKED["orders"] += 1
            if outcome.failed:
                # refused (the pool meets the neighbour's): the new range was never touched
                assert all("pool-" in f for f in outcome.failed), outcome.failed
                assert not any(
                    p.tag in range(new_state["pool"], new_state["pool"] + 20)
                    for p in trial.ports.values()
                    if p.slice == SLICE
                )
            else:
                assert sim.converged(trial, new_resources, SLICE) == []
        CHECKED["transitions"] += 1
        assert outcome is not None
        if outcome.failed:
            continue  # the stack keeps its previous outputs; the next edit starts from them
        # links that survive keep their VLAN (unless the pool moved or a pin took it)
        before = {tuple(lk["endpoints"]): lk["vlan"] for lk in outputs.get("links", [])}
        pinned = {v for lk in new_state["links"] if (v := lk[2]) is not None}
        for lk in new_outputs["links"]:
            key = tuple(lk["endpoints"])
            if key in before and new_state["pool"] == state["pool"] and before[key] not in pinned:
                keep = any(p for a, b, p in new_state["links"] if {a, b} == set(key))
                assert keep or lk["vlan"] == before[key], (key, before[key], lk["vlan"])
        hosts = trial
        resources, outputs, state = new_resources, new_outputs, new_state
        sequence += 1
        CHECKED["longest"] = max(CHECKED["longest"], sequence)


NB = "nb"
PARKINGS = (4094, 4000, 145, 210, 460)
"""Parking VLANs drawn for both slices: 145 is in pool 140's range, 210 in the neighbour's first pool, 460
in pool 456's."""
NB_EDITS = ("none", "move parking", "move pool", "add link", "remove vm", "move vm")


def neighbour_state(parking: int) -> dict[str, Any]:
    """The other slice: a link across two workers, parked eth0s and a parked spare data interface."""
    return {
        "pool": NEIGHBOUR_POOL[0],
        "parking": parking,
        "vms": {
            2001: {"worker": "worker1", "n": 1, "internet": False},
            2002: {"worker": "worker2", "n": 2, "internet": False},
        },
        "links": [("2001.eth1", "2002.eth1", None)],
    }


def two_slice_edit(state: dict[str, Any], kind: str, data: st.DataObject, vm_ids: range) -> dict[str, Any]:
    if kind == "move parking":
        return {**state, "parking": data.draw(st.sampled_from(PARKINGS), label="parkingVlan")}
    return churnkit.edit(state, kind, Drawn(data), workers=WORKERS, vm_ids=vm_ids, pool_starts=POOL_STARTS)


TWO = {"rounds": 0, "orders": 0, "refused": 0}


@given(
    st.data(),
    st.lists(st.sampled_from([*churnkit.EDITS, "move parking", "move parking"]), min_size=1, max_size=6),
)
def test_two_slices_never_carry_each_others_vlans_and_parked_ports_pass_nothing(
    data: st.DataObject, kinds: list[str]
) -> None:
    states: dict[str, dict[str, Any]] = {
        SLICE: {
            "pool": 120,
            "parking": data.draw(st.sampled_from(PARKINGS), label="parkingVlan"),
            "vms": {
                1001: {"worker": "worker1", "n": 2, "internet": False},
                1002: {"worker": "worker2", "n": 2, "internet": True},
            },
            "links": [("1001.eth1", "1002.eth1", None)],
        },
        NB: neighbour_state(data.draw(st.sampled_from(PARKINGS), label="neighbour's parkingVlan")),
    }
    vm_ids = {SLICE: range(1001, 1009), NB: range(2001, 2006)}
    hosts = sim.Hosts()
    resources: dict[str, list[PlannedResource]] = {SLICE: [], NB: []}
    outputs: dict[str, dict[str, Any]] = {SLICE: {}, NB: {}}
    rng = random.Random(data.draw(st.integers(0, 2**32 - 1), label="order seed"))
    for kind in ["start", *kinds]:
        updates, wanted = [], {}
        for name in (SLICE, NB):
            edit_kind = (
                kind if name == SLICE else data.draw(st.sampled_from(NB_EDITS), label="neighbour edit")
            )
            new_state = states[name]
            if kind != "start" and edit_kind != "none":
                new_state = two_slice_edit(states[name], edit_kind, data, vm_ids[name])
            built = deploy(new_state, outputs[name], name)
            if built is None:  # refused at preview: this slice runs nothing this round
                continue
            note(f"{kind} {name}: {json.dumps(new_state, default=str)}")
            updates.append(sim.Update(name, resources[name], built[0], new_state["parking"]))
            wanted[name] = (new_state, *built)
        if not updates:
            continue
        outcomes: dict[str, sim.Outcome] = {}
        for _ in range(ORDERS):
            trial = hosts.copy()
            outcomes = sim.run_all(trial, updates, rng)  # checks both slices after every atomic step
            TWO["orders"] += 1
            for name, outcome in outcomes.items():
                new_state, new_resources, _ = wanted[name]
                if outcome.failed:
                    # refused by the network node (pool or parking VLAN): nothing of the new config carries
                    # traffic on a VLAN it did not hold before
                    assert all("pool-" in f for f in outcome.failed), outcome.failed
                    assert not any(
                        p.tag in range(new_state["pool"], new_state["pool"] + 20)
                        for p in trial.ports.values()
                        if p.slice == name and new_state["pool"] != states[name]["pool"]
                    )
                else:
                    assert sim.converged(trial, new_resources, name) == []
        TWO["rounds"] += 1
        hosts = trial
        for name, outcome in outcomes.items():
            if outcome.failed:
                TWO["refused"] += 1
                continue  # the stack keeps its previous outputs
            states[name], resources[name], outputs[name] = wanted[name]


def test_a_parking_vlan_in_the_other_slices_pool_is_refused_before_anything_moves() -> None:
    """The neighbour parks on 125, inside this slice's pool 120..139: this slice's first `up` is refused at
    its claim, in every order, and no TAP of it exists; moving the pool away (140) deploys."""
    nb = deploy(neighbour_state(125), {}, NB)
    assert nb is not None
    hosts = sim.Hosts()
    assert sim.run_all(hosts, [sim.Update(NB, [], nb[0], 125)], random.Random(0))[NB].failed == []
    vms = {1001: {"worker": "worker1", "n": 1, "internet": False}}
    for pool, refused in ((120, True), (140, False)):
        mine = deploy({"pool": pool, "parking": 4094, "vms": vms, "links": []}, {})
        assert mine is not None
        for seed in range(20):
            trial = hosts.copy()
            out = sim.run_all(trial, [sim.Update(SLICE, [], mine[0], 4094)], random.Random(seed))[SLICE]
            assert bool(out.failed) == refused, out.failed
            if refused:
                assert "hold VLAN 125, the parking VLAN of slice 'nb'" in out.failed[0]
                assert not any(p.slice == SLICE for p in trial.ports.values())


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    """Prints how much the generated suite checked, once the module's tests ran (`pytest -s` shows it)."""
    yield
    print(
        f"\nconvergence: {CHECKED['transitions']} transitions, {CHECKED['orders']} simulated orders, "
        f"longest deployed sequence {CHECKED['longest']}; two slices: {TWO['rounds']} rounds, "
        f"{TWO['orders']} interleaved orders, {TWO['refused']} updates refused by the network node"
    )


def _transition(first: dict[str, Any], second: dict[str, Any], orders: int = 300) -> list[PlannedResource]:
    built1 = deploy(first, {})
    assert built1 is not None
    built2 = deploy(second, built1[1])
    assert built2 is not None
    hosts = sim.Hosts()
    assert sim.run(hosts, [], built1[0], random.Random(0), SLICE, PARKING).failed == []
    rng = random.Random(1)
    for _ in range(orders):
        trial = hosts.copy()
        assert sim.run(trial, built1[0], built2[0], rng, SLICE, PARKING).failed == []
        assert sim.converged(trial, built2[0], SLICE) == []
    return built2[0]


def test_reported_a_freed_vlan_handed_to_a_link_declared_before_the_one_leaving_it() -> None:
    """Deployed 1003.eth1--1004.eth1 on VLAN 700, then 1002.eth1--1004.eth2 (preview crashed: KeyError)."""
    vms = {
        i: {"worker": "worker1" if i == 1002 else "worker2", "n": 2, "internet": False}
        for i in (1002, 1003, 1004)
    }
    first = {"pool": 700, "vms": vms, "links": [("1003.eth1", "1004.eth1", None)]}
    second = {"pool": 700, "vms": vms, "links": [("1002.eth1", "1004.eth2", None)]}
    new = {r.name: r.spec for r in _transition(first, second)}
    assert new["tap-1002-eth1"].vlan == 700  # type: ignore[attr-defined]
    assert new["tap-1003-eth1"].parked  # type: ignore[attr-defined]


def test_reported_swapping_two_links_ends() -> None:
    """[1002.eth1--1003.eth1, 1002.eth2--1004.eth1] -> ends swapped on 1002 (KeyError, or a cycle)."""
    vms = {
        i: {"worker": "worker1" if i == 1002 else "worker2", "n": 2, "internet": False}
        for i in (1002, 1003, 1004)
    }
    first = {
        "pool": 120,
        "vms": vms,
        "links": [("1002.eth1", "1003.eth1", None), ("1002.eth2", "1004.eth1", None)],
    }
    for links in (
        [("1002.eth2", "1003.eth1", None), ("1002.eth1", "1004.eth1", None)],
        [("1002.eth1", "1004.eth1", None), ("1002.eth2", "1003.eth1", None)],  # the other order
    ):
        new = _transition(first, {**first, "links": links})
        taps = [r for r in new if r.kind == "TapPort"]
        assert all(r.depends_on == ("pool-120",) for r in taps)  # no TAP waits for another: no cycle

"""`worker: auto`: the pure placement (hypothesis properties) and its wiring through `prepare`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from components.outputs import Deployed, stack_outputs
from components.placement import AUTO, Capacity, Demand, place
from components.prepare import prepare
from components.resources import resource_plan
from tests.cfgkit import boot_files_project, raw_config, with_changes
from vocabulary.errors import ConfigError
from vocabulary.specs import WorkerClaimSpec

WORKERS = ("w0", "w1", "w2", "w3")

capacities = st.dictionaries(
    st.sampled_from(WORKERS),
    st.builds(Capacity, st.integers(1, 16), st.integers(256, 16384)),
    min_size=1,
)
demand = st.tuples(st.integers(0, 4), st.sampled_from((0, 256, 512, 1024, 2048)))
demands = st.lists(demand, max_size=24).map(
    lambda ds: [Demand(1000 + i, c, m, AUTO) for i, (c, m) in enumerate(ds)]
)


def used(result: dict[int, str], ds: list[Demand]) -> dict[str, tuple[int, int]]:
    out: dict[str, tuple[int, int]] = {}
    for d in ds:
        c, m = out.get(result[d.vm], (0, 0))
        out[result[d.vm]] = (c + d.cpus, m + d.memory_mb)
    return out


def place_or_none(ds: list[Demand], caps: dict[str, Capacity], prev: dict[int, str] | None = None):
    try:
        return place(ds, caps, WORKERS, prev)
    except ConfigError:
        return None


@settings(max_examples=200)
@given(demands, capacities)
def test_never_over_capacity_and_only_declared_workers(ds: list[Demand], caps: dict[str, Capacity]) -> None:
    result = place_or_none(ds, caps)
    if result is None:
        return
    assert set(result) == {d.vm for d in ds}
    for worker, (c, m) in used(result, ds).items():
        assert worker in caps
        assert c <= caps[worker].cpus and m <= caps[worker].memory_mb


@settings(max_examples=200)
@given(demands, capacities, st.randoms(use_true_random=False))
def test_deterministic_whatever_the_config_order(ds: list[Demand], caps: dict[str, Capacity], rnd) -> None:
    shuffled = list(ds)
    rnd.shuffle(shuffled)
    a, b = place_or_none(ds, caps), place_or_none(shuffled, caps)
    assert (a is None) == (b is None)
    if a is not None and b is not None:
        assert a == b and list(a) == [d.vm for d in ds]


@settings(max_examples=200)
@given(demands, capacities, st.data())
def test_stable_under_unrelated_edits(
    ds: list[Demand], caps: dict[str, Capacity], data: st.DataObject
) -> None:
    """Deployed VMs keep their worker when others are added or removed (as long as they fit)."""
    first = place_or_none(ds, caps)
    if first is None:
        return
    kept = data.draw(st.lists(st.sampled_from(ds), unique_by=lambda d: d.vm) if ds else st.just([]))
    added = [Demand(5000 + i, c, m, AUTO) for i, (c, m) in enumerate(data.draw(st.lists(demand, max_size=6)))]
    second = place_or_none([*kept, *added], caps, first)
    if second is None:
        return  # the added VMs fit nowhere: refused, nothing moves
    for d in kept:
        assert second[d.vm] == first[d.vm]


@settings(max_examples=200)
@given(demand, capacities)
def test_most_free_memory_that_fits(d: tuple[int, int], caps: dict[str, Capacity]) -> None:
    vm = Demand(1, d[0], d[1], AUTO)
    result = place_or_none([vm], caps)
    fitting = sorted(
        (-c.memory_mb, -c.cpus, w) for w, c in caps.items() if c.cpus >= d[0] and c.memory_mb >= d[1]
    )
    if not fitting:
        assert result is None
    else:
        assert result == {1: fitting[0][2]}


def test_tie_break_is_the_worker_name() -> None:
    caps = {"w2": Capacity(4, 1024), "w1": Capacity(4, 1024)}
    assert place([Demand(1, 1, 256, AUTO)], caps, WORKERS) == {1: "w1"}
    assert place([Demand(1, 1, 256, AUTO), Demand(2, 1, 256, AUTO)], caps, WORKERS) == {1: "w1", 2: "w2"}


def test_nothing_fits_names_the_vm_its_needs_and_every_worker() -> None:
    caps = {"w0": Capacity(2, 1024), "w1": Capacity(8, 512)}
    with pytest.raises(ConfigError) as err:
        place([Demand(1, 1, 512, "w0"), Demand(7, 2, 1024, AUTO, "cloudrepo:slice.vms[1]")], caps, WORKERS)
    (problem,) = err.value.problems
    assert problem.startswith("cloudrepo:slice.vms[1].worker: VM 7 (auto) needs 2 vCPUs and 1024 MiB")
    assert "w0: 1 vCPUs and 512 MiB free of 2 vCPUs, 1024 MiB" in problem
    assert "w1: 8 vCPUs and 512 MiB free of 8 vCPUs, 512 MiB" in problem
    assert "w2: capacity neither declared (cloudrepo:workers.w2.capacity) nor read from the host" in problem


def test_named_vms_over_a_declared_capacity_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"workers.w0.capacity: the VMs on w0 need 3 vCPUs and 600 MiB"):
        place([Demand(1, 2, 300, "w0"), Demand(2, 1, 300, "w0")], {"w0": Capacity(2, 1024)}, WORKERS)


# ---- through prepare: config keys, outputs, memory


def auto_config(**slice_fields: Any) -> dict[str, Any]:
    kernel = {"kernel": "images/vmlinuz", "initrd": "images/initrd.gz", "accel": "tcg"}
    return with_changes(
        workers={
            "worker1": {"host": "10.0.10.1", "capacity": {"cpus": 2, "memoryMb": 1024}},
            "worker2": {"host": "10.0.10.2", "capacity": {"cpus": 4, "memoryMb": 2048}},
            "worker3": {"host": "10.0.10.4"},
        },
        ssh={"user": "u", "privateKeyPath": "k", "knownHostsPath": "known_hosts"},
        slice={
            "name": "demo",
            "vlanPool": {"start": 120},
            "vms": [
                {"id": 1, "worker": "auto", "launch": {**kernel, "memoryMb": 1024, "cpus": 2}},
                {"id": 2, "launch": {**kernel, "memoryMb": 512}},
                {"id": 3, "worker": "worker3", "dataInterfaces": 1},
            ],
            "worker": "auto",
            **slice_fields,
        },
    )


Seen = tuple[dict[str, tuple[int, int]], dict[int, str], dict[str, tuple[int, int]]]


def no_host(_config: Any) -> Seen:
    """The workers' answer when none could be read: no claims, no capacity reported."""
    return {}, {}, {}


def test_prepare_places_auto_vms_and_the_outputs_remember(tmp_path: Path) -> None:
    base = boot_files_project(tmp_path)
    prepared = prepare(raw_config(auto_config()), "s1", {}, base, claims=no_host)
    workers = {vm.id: vm.worker for vm in prepared.config.vms}
    assert workers == {1: "worker2", 2: "worker1", 3: "worker3"}
    assert {v.spec.vm: v.spec.host.name for v in prepared.vms} == {1: "worker2", 2: "worker1"}
    outputs = stack_outputs(prepared.plan)
    assert outputs["vms"]["1"]["placement"] == "auto" and "placement" not in outputs["vms"]["3"]
    assert Deployed.from_outputs(outputs).workers == workers
    # another VM added first in the list, bigger than any: the deployed ones stay where they are
    cfg = auto_config()
    kernel = cfg["cloudrepo:slice"]["vms"][0]["launch"]
    cfg["cloudrepo:slice"]["vms"].insert(0, {"id": 9, "launch": {**kernel, "memoryMb": 1024, "cpus": 1}})
    again = prepare(raw_config(cfg), "s1", outputs, base, claims=no_host)
    assert {vm.id: vm.worker for vm in again.config.vms} == {**workers, 9: "worker2"}


def test_prepare_refuses_what_fits_nowhere_and_bad_keys(tmp_path: Path) -> None:
    base = boot_files_project(tmp_path)
    cfg = auto_config()
    cfg["cloudrepo:slice"]["vms"][1]["launch"]["memoryMb"] = 4096
    cfg["cloudrepo:workers"]["auto"] = {"host": "10.0.0.9"}
    cfg["cloudrepo:workers"]["worker1"]["capacity"] = {"cpus": 0, "memoryMb": "lots"}
    with pytest.raises(ConfigError) as err:
        prepare(raw_config(cfg), "s1", {}, base)
    text = "\n".join(err.value.problems)
    assert "cloudrepo:workers.auto: worker name 'auto' is reserved for worker: auto" in text
    assert (
        "cloudrepo:workers.worker1.capacity.cpus" in text
        and "cloudrepo:workers.worker1.capacity.memoryMb" in text
    )
    cfg = auto_config(worker=None)
    cfg["cloudrepo:slice"]["vms"][1]["launch"]["memoryMb"] = 4096
    cfg["cloudrepo:slice"]["vms"].append({"id": 4, "worker": "nowhere"})
    with pytest.raises(ConfigError) as err:
        prepare(raw_config(cfg), "s1", {}, base)
    text = "\n".join(err.value.problems)
    assert "cloudrepo:slice.vms[1].worker: VM 2: required" in text
    assert "cloudrepo:slice.vms[3].worker: VM 4: unknown worker 'nowhere'" in text
    cfg = auto_config()
    cfg["cloudrepo:slice"]["vms"][1]["launch"]["memoryMb"] = 4096
    prepare(raw_config(cfg), "s1", {}, base)  # the command's check: worker3's capacity is the host's to say
    with pytest.raises(ConfigError) as err:
        prepare(raw_config(cfg), "s1", {}, base, claims=no_host)
    assert err.value.problems == [
        "cloudrepo:slice.vms[1].worker: VM 2 (auto) needs 1 vCPUs and 4096 MiB; no worker has that free "
        "(worker1: 2 vCPUs and 1024 MiB free of 2 vCPUs, 1024 MiB; worker2: 4 vCPUs and 2048 MiB free of "
        "4 vCPUs, 2048 MiB; worker3: capacity neither declared (cloudrepo:workers.worker3.capacity) nor read "
        "from the host, not a candidate)"
    ]


def test_launched_vms_on_declared_workers_claim_their_share(tmp_path: Path) -> None:
    base = boot_files_project(tmp_path)
    prepared = prepare(raw_config(auto_config()), "s1", {}, base, claims=no_host)
    planned = {r.name: r for r in resource_plan(prepared.plan, prepared.deployed, "p/s1")}
    claims = {n: r.spec for n, r in planned.items() if r.kind == "WorkerClaim"}
    assert set(claims) == {"claim-1", "claim-2"}  # VM 3 has no launch
    one = claims["claim-1"]
    assert isinstance(one, WorkerClaimSpec)
    assert (one.host.name, one.cpus, one.memory_mb, one.capacity_cpus, one.capacity_memory_mb) == (
        "worker2",
        2,
        1024,
        4,
        2048,
    )
    assert planned["claim-1"].depends_on == ("pool-120",) and one.stack == "p/s1"
    assert {v.spec.vm: v.claim_name for v in prepared.vms} == {1: "claim-1", 2: "claim-2"}
    # where the reservation at `up` may leave pending claims: a `PendingClaims` per worker with a claim,
    # waited for by the pool claim (so in the state before anything of the `up` can fail)
    pending = {n: r.spec for n, r in planned.items() if r.kind == "PendingClaims"}
    assert {n: (s.host.name, getattr(s, "stack", None)) for n, s in pending.items()} == {
        f"pending-{w}": (w, "p/s1") for w in {c.host.name for c in claims.values()}
    }
    assert set(pending) <= set(planned["pool-120"].depends_on)
    assert not [r for r in resource_plan(prepared.plan, prepared.deployed, None) if r.kind == "PendingClaims"]


def test_the_workers_claims_count_other_slices_and_keep_this_ones(tmp_path: Path) -> None:
    """Other slices' claims take their share of the capacity; this slice's claims (from an `up` that wrote
    no outputs) keep their VMs where they are."""
    base = boot_files_project(tmp_path)

    def claims(_config: Any) -> Seen:
        return {"worker2": (2, 1024)}, {2: "worker2"}, {}

    prepared = prepare(raw_config(auto_config()), "s1", {}, base, claims=claims)
    assert {vm.id: vm.worker for vm in prepared.config.vms} == {1: "worker1", 2: "worker2", 3: "worker3"}

    def full(_config: Any) -> Seen:
        return {"worker1": (2, 1024), "worker2": (4, 2048)}, {}, {}

    with pytest.raises(ConfigError) as err:
        prepare(raw_config(auto_config()), "s1", {}, base, claims=full)
    assert (
        "VM 1 (auto) needs 2 vCPUs and 1024 MiB; no worker has that free (worker1: 0 vCPUs and 0 MiB free of "
        in (err.value.problems[0])
    )
    assert "free of 2 vCPUs, 1024 MiB, other slices hold 2 vCPUs and 1024 MiB" in err.value.problems[0]

    def reported(_config: Any) -> Seen:
        return {"worker3": (1, 1000)}, {}, {"worker3": (8, 16384), "worker1": (64, 65536)}

    prepared = prepare(raw_config(auto_config()), "s1", {}, base, claims=reported)
    assert {vm.id: vm.worker for vm in prepared.config.vms} == {1: "worker3", 2: "worker3", 3: "worker3"}
    assert prepared.config.capacities["worker3"] == Capacity(8, 16384)  # the host's, for its claims
    assert prepared.config.capacities["worker1"] == Capacity(2, 1024)  # declared wins
    claim = next(r.spec for r in resource_plan(prepared.plan) if r.name == "claim-1")
    assert isinstance(claim, WorkerClaimSpec) and (claim.host.name, claim.capacity_memory_mb) == (
        "worker3",
        16384,
    )


edit = st.one_of(
    st.tuples(st.just("add"), st.sampled_from((128, 256, 512))),
    st.tuples(st.just("rm"), st.integers(0, 20)),
    st.tuples(st.just("link"), st.integers(0, 20)),
    st.tuples(st.just("unlink"), st.integers(0, 20)),
)


@settings(max_examples=25, deadline=None)
@given(st.lists(edit, min_size=1, max_size=8))
def test_choices_survive_a_generated_sequence_of_edits(
    tmp_path_factory: Any, edits: list[tuple[str, int]]
) -> None:
    """Each run's outputs are the next run's memory: a VM that stays keeps its worker whatever VMs and
    links come and go around it."""
    base = boot_files_project(tmp_path_factory.mktemp("p"))
    kernel = {"kernel": "images/vmlinuz", "initrd": "images/initrd.gz", "accel": "tcg"}
    vms: dict[int, int] = {1: 256, 2: 512}
    links: list[list[str]] = []
    next_id, port = 3, 0
    outputs: dict[str, Any] = {}
    before: dict[int, str] = {}
    for op, n in [("start", 0), *edits]:
        if op == "add":
            vms[next_id], next_id = n, next_id + 1
        elif op == "rm" and len(vms) > 1:
            gone = sorted(vms)[n % len(vms)]
            del vms[gone]
            links = [lk for lk in links if not any(e.startswith(f"{gone}.") for e in lk)]
        elif op == "link" and len(vms) > 1:
            ids = sorted(vms)
            a, b = ids[n % len(ids)], ids[(n + 1) % len(ids)]
            if not any(lk[0].startswith(f"{a}.") and lk[1].startswith(f"{b}.") for lk in links):
                port += 1  # a fresh data interface on both ends
                links.append([f"{a}.eth{port}", f"{b}.eth{port}"])
        elif op == "unlink" and links:
            links.pop(n % len(links))
        cfg = auto_config(links=links)
        cfg["cloudrepo:slice"]["vms"] = [
            {"id": i, "dataInterfaces": 12, "launch": {**kernel, "memoryMb": m}}
            for i, m in sorted(vms.items())
        ]
        cfg["cloudrepo:workers"]["worker1"]["capacity"] = {"cpus": 64, "memoryMb": 8192}
        cfg["cloudrepo:workers"]["worker2"]["capacity"] = {"cpus": 64, "memoryMb": 8192}
        prepared = prepare(raw_config(cfg), "s1", outputs, base, claims=no_host)
        now = {vm.id: vm.worker for vm in prepared.config.vms}
        assert {vm: w for vm, w in now.items() if vm in before} == {
            vm: w for vm, w in before.items() if vm in now
        }
        outputs, before = stack_outputs(prepared.plan), now


def test_up_places_with_what_the_reservation_reads_as_preview_does(tmp_path: Path) -> None:
    """At `up` the choice is taken inside the reservation (`prepare(reserve=)`): from the same read it is
    preview's choice, and what it hands back to reserve is every claim of the plan (worker, VM, share)."""
    base = boot_files_project(tmp_path)
    read: Seen = {"worker2": (2, 1024)}, {}, {"worker3": (8, 16384)}
    calls: list[Any] = []

    def reserve(config: Any, choose: Any) -> Any:
        chosen, shares = choose(read)
        calls.append(shares)
        return chosen

    up = prepare(raw_config(auto_config()), "s1", {}, base, reserve=reserve)
    preview = prepare(raw_config(auto_config()), "s1", {}, base, claims=lambda _c: read)
    assert up.config == preview.config
    claims = [r.spec for r in resource_plan(up.plan) if isinstance(r.spec, WorkerClaimSpec)]
    ((shares),) = calls
    assert {w: sorted(s) for w, s in shares.items()} == {
        w: sorted((c.vm, c.cpus, c.memory_mb) for c in claims if c.host.name == w)
        for w in {c.host.name for c in claims}
    }
    # a slice without `auto` VMs reserves nothing (its claims are checked under the lock as they are made)
    named = auto_config()
    named["cloudrepo:slice"]["worker"] = "worker2"
    named["cloudrepo:slice"]["vms"][0]["worker"] = "worker1"
    calls.clear()
    prepare(raw_config(named), "s1", {}, base, reserve=reserve)
    assert calls == []

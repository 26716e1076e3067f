"""A model of one `pulumi up` from a deployed resource set to a new one, run in any order the graph allows.

What it models of the engine: resources of the new program are created, updated (in place, or replaced with
the old one deleted first) or left alone, each as soon as everything it depends on is done; a failed step
stops its dependents, the others go on; resources of the old program that the new one lacks are deleted at
the end, dependents first. What it models of the hosts: OVS ports (tag, owner) per worker, pool claims and
gateways on the network node, and each provider operation as the atomic steps it takes on them (one per
host script; a TAP joining a link VLAN parks the VLAN's strays on every worker, then tags itself).

After every atomic step it checks the isolation invariants; at the end, that the hosts match the new plan.
Several slices' updates can run at once (`run_all`): their steps interleave in any order, each claim is
decided by the real `providers.kinds.pool_claim.clash` on the claims the hosts hold at that step, and the
invariants between slices (`check_slices`) hold after every step: no TAP carries a VLAN another slice
claims (its pool or its parking VLAN), and every parked TAP is dropped.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.resources import PlannedResource
from providers.kinds import pool_claim
from vocabulary import specs

SHARED_VLANS = (400,)


class ClaimRefused(Exception):
    """The simulated PoolClaim met another slice's claim."""


@dataclass
class Port:
    slice: str
    tag: int
    dropped: bool = False
    """Its drop flows are on: it passes no traffic (a parked TAP)."""


@dataclass
class Hosts:
    """The state of the testbed's hosts, as far as isolation is concerned."""

    ports: dict[tuple[str, str], Port] = field(default_factory=dict)
    """(worker, TAP name) -> port."""
    claims: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(slice, start) -> (start, end)."""
    parking: dict[tuple[str, int], tuple[int, ...]] = field(default_factory=dict)
    """(slice, start) -> the parking VLANs that claim records."""
    gateways: dict[int, str] = field(default_factory=dict)
    """VLAN -> the slice whose gateway it is (link VLANs only)."""

    def claimed(self, slice_name: str) -> set[int]:
        return {v for (s, _), (a, b) in self.claims.items() if s == slice_name for v in range(a, b + 1)}

    def parking_of(self, slice_name: str) -> set[int]:
        return {v for (s, _), vs in self.parking.items() if s == slice_name for v in vs}

    def slices(self) -> set[str]:
        return {s for s, _ in self.claims} | {p.slice for p in self.ports.values()}

    def claim_have(self) -> pool_claim.PoolHave:
        """The claims as the network node's read gives them to `PoolClaim`."""
        return pool_claim.PoolHave(
            tuple(
                pool_claim.Claim(s, a, b, f"{s}@{start}", parking=self.parking.get((s, start), ()))
                for (s, start), (a, b) in sorted(self.claims.items())
            )
        )

    def copy(self) -> Hosts:
        return Hosts(
            ports={k: Port(p.slice, p.tag, p.dropped) for k, p in self.ports.items()},
            claims=dict(self.claims),
            parking=dict(self.parking),
            gateways=dict(self.gateways),
        )


def _diff_inputs(spec: specs.HostSpec) -> dict[str, Any]:
    inputs = spec.inputs()
    inputs.pop("join", None)  # TapPort: not diffed (see TapPortProvider.not_diffed)
    return inputs


def _identity(r: PlannedResource) -> tuple[Any, ...]:
    spec = r.spec
    return (r.kind, spec.slice, spec.host.name, getattr(spec, "name", None), getattr(spec, "start", None))


@dataclass(frozen=True)
class Op:
    resource: PlannedResource
    action: str
    """create | update | replace | delete"""
    old: PlannedResource | None = None


def _apply(hosts: Hosts, op: Op) -> Iterator[None]:
    """The atomic host steps of one provider operation (a generator: one `yield` after each)."""
    spec = op.resource.spec
    if op.action == "delete":
        if isinstance(spec, specs.TapPortSpec):
            port = hosts.ports.get((spec.host.name, spec.name))
            if port is not None and port.slice == spec.slice:
                del hosts.ports[(spec.host.name, spec.name)]
        elif isinstance(spec, specs.PoolClaimSpec):
            hosts.claims.pop((spec.slice, spec.start), None)
            hosts.parking.pop((spec.slice, spec.start), None)
        elif (
            isinstance(spec, specs.VlanGatewaySpec)
            and not spec.shared
            and hosts.gateways.get(spec.vlan) == spec.slice
        ):
            del hosts.gateways[spec.vlan]
        yield
        return
    if op.action == "replace" and op.old is not None:
        yield from _apply(hosts, Op(op.old, "delete"))
    if isinstance(spec, specs.PoolClaimSpec):
        old = op.old.spec if op.action == "update" and op.old is not None else None
        gave_up = getattr(old, "parking_vlan", None)
        keep = (gave_up,) if gave_up is not None and gave_up != spec.parking_vlan else ()
        why = pool_claim.clash(spec, hosts.claim_have(), keep=keep)  # the provider's own decision
        if why is not None:
            raise ClaimRefused(why)
        hosts.claims[(spec.slice, spec.start)] = (spec.start, spec.end)
        hosts.parking[(spec.slice, spec.start)] = pool_claim.parking_vlans(spec, keep)
        yield
    elif isinstance(spec, specs.TapPortSpec):
        key = (spec.host.name, spec.name)
        current = hosts.ports.get(key)
        if spec.join is not None and (current is None or current.tag != spec.vlan):
            for host in [h.name for h in spec.join.hosts if h.name != spec.host.name] + [spec.host.name]:
                for (worker, tap), port in hosts.ports.items():
                    if (
                        worker == host
                        and port.slice == spec.slice
                        and port.tag == spec.vlan
                        and tap not in spec.join.members
                    ):
                        port.tag, port.dropped = spec.join.parking_vlan, True
                if host != spec.host.name:
                    yield
        hosts.ports[key] = Port(spec.slice, spec.vlan, spec.parked)
        yield
    elif isinstance(spec, specs.VlanGatewaySpec):
        if not spec.shared:
            hosts.gateways[spec.vlan] = spec.slice
        yield
    else:
        yield


def plan_ops(old: Sequence[PlannedResource], new: Sequence[PlannedResource]) -> tuple[list[Op], list[Op]]:
    """(the main phase's operations in program order, the deletes) of an update from `old` to `new`."""
    before = {r.name: r for r in old}
    main: list[Op] = []
    for r in new:
        o = before.get(r.name)
        if o is None:
            main.append(Op(r, "create"))
        elif _identity(o) != _identity(r):
            main.append(Op(r, "replace", o))
        elif _diff_inputs(o.spec) != _diff_inputs(r.spec):
            main.append(Op(r, "update", o))
        else:
            main.append(Op(r, "same", o))
    names = {r.name for r in new}
    deletes = [Op(r, "delete") for r in old if r.name not in names]
    return main, deletes


@dataclass
class Outcome:
    hosts: Hosts
    failed: list[str]
    steps: int


class Violation(AssertionError):
    pass


def check(hosts: Hosts, slice_name: str, links: Mapping[int, list[frozenset[str]]], parking: int) -> None:
    """The isolation invariants, after any atomic step.

    `links`: VLAN -> the TAPs each plan (old, new) puts on it. At any moment the slice's TAPs on a VLAN are
    all ends of one link: within the old plan's link on it, or within the new plan's.
    """
    mine = hosts.claimed(slice_name)
    parked = {parking} | hosts.parking_of(slice_name)  # a parking VLAN given up, while its TAPs leave it
    on_vlan: dict[int, set[str]] = {}
    for (worker, tap), port in hosts.ports.items():
        if port.tag in SHARED_VLANS or (port.tag in parked and port.slice == slice_name):
            continue
        if port.tag == parking and port.slice != slice_name:
            continue  # another slice parked on the same VLAN: dropped (`check_slices`)
        if port.slice != slice_name:
            if port.tag in mine:
                raise Violation(
                    f"{worker}/{tap} of slice {port.slice} sits on VLAN {port.tag} of {slice_name}"
                )
            continue
        if port.tag not in mine:
            raise Violation(f"{worker}/{tap} is on VLAN {port.tag}, which slice {slice_name} does not hold")
        on_vlan.setdefault(port.tag, set()).add(tap)
    for vlan, taps in on_vlan.items():
        if not any(taps <= link for link in links.get(vlan, [])):
            raise Violation(
                f"VLAN {vlan} carries {sorted(taps)}: not the ends of one link "
                f"(the plans put {[sorted(lk) for lk in links.get(vlan, [])]} on it)"
            )
    for vlan, owner in hosts.gateways.items():
        if owner == slice_name and vlan not in mine:
            raise Violation(f"gateway of VLAN {vlan} outside the claims of {slice_name}")


def check_slices(hosts: Hosts) -> None:
    """The invariants between slices, after any atomic step: a TAP that passes traffic is never on a VLAN
    another slice claims (a VLAN of its pool, or its parking VLAN); no TAP at all is on a VLAN of another
    slice's pool; a TAP on one of its slice's parking VLANs is dropped."""
    pools = {s: hosts.claimed(s) for s in hosts.slices()}
    parking = {s: hosts.parking_of(s) for s in hosts.slices()}
    for (worker, tap), port in hosts.ports.items():
        where = f"{worker}/{tap} of slice {port.slice} on VLAN {port.tag}"
        if port.tag in parking.get(port.slice, set()) and not port.dropped:
            raise Violation(f"{where}: parked but passes traffic")
        if port.tag in SHARED_VLANS:
            continue
        for other in pools:
            if other == port.slice:
                continue
            if port.tag in pools[other]:
                raise Violation(f"{where}: a VLAN of slice {other}'s pool")
            if port.tag in parking[other] and not port.dropped:
                raise Violation(f"{where}: passes traffic on the parking VLAN of slice {other}")


def link_index(*plans: Sequence[PlannedResource]) -> dict[int, list[frozenset[str]]]:
    """VLAN -> the TAPs of the link each plan puts on it."""
    out: dict[int, list[frozenset[str]]] = {}
    for resources in plans:
        on: dict[int, set[str]] = {}
        for r in resources:
            spec = r.spec
            if isinstance(spec, specs.TapPortSpec) and not spec.parked and spec.vlan not in SHARED_VLANS:
                on.setdefault(spec.vlan, set()).add(spec.name)
        for vlan, taps in on.items():
            out.setdefault(vlan, []).append(frozenset(taps))
    return out


@dataclass(frozen=True)
class Update:
    """One slice's `pulumi up`: from its deployed resources to its new ones."""

    slice: str
    old: Sequence[PlannedResource]
    new: Sequence[PlannedResource]
    parking: int


def run(
    hosts: Hosts,
    old: Sequence[PlannedResource],
    new: Sequence[PlannedResource],
    rng: random.Random,
    slice_name: str,
    parking: int,
) -> Outcome:
    """One `pulumi up` in a random order the graph allows, checking the invariants after every step."""
    return run_all(hosts, [Update(slice_name, old, new, parking)], rng)[slice_name]


def run_all(hosts: Hosts, updates: Sequence[Update], rng: random.Random) -> dict[str, Outcome]:
    """Several slices' `pulumi up` at once, their steps interleaved at random; after every atomic step the
    invariants of each slice and those between slices are checked."""
    links = {u.slice: link_index(u.old, u.new) for u in updates}

    def checked() -> None:
        for u in updates:
            check(hosts, u.slice, links[u.slice], u.parking)
        check_slices(hosts)

    by_slice = {u.slice: u for u in updates}
    failed: dict[str, list[str]] = {u.slice: [] for u in updates}
    steps = dict.fromkeys(by_slice, 0)
    done: set[tuple[str, str]] = set()
    blocked: set[tuple[str, str]] = set()
    running: dict[tuple[str, str], Iterator[None]] = {}
    pending: dict[tuple[str, str], Op] = {}
    deleting: dict[tuple[str, str], Op] = {}
    for u in updates:
        main, deletes = plan_ops(u.old, u.new)
        pending.update({(u.slice, op.resource.name): op for op in main})
        deleting.update({(u.slice, op.resource.name): op for op in deletes})
    olds = {(u.slice, r.name): r for u in updates for r in u.old}
    while pending or running or deleting:
        for key, op in list(pending.items()):
            deps = [(key[0], d) for d in op.resource.depends_on]
            if any(d in blocked for d in deps):
                del pending[key]
                blocked.add(key)
            elif all(d in done for d in deps):
                del pending[key]
                if op.action == "same":
                    done.add(key)
                else:
                    running[key] = _apply(hosts, op)
        # a slice whose main phase is over (and that failed nothing) deletes, dependents first
        for key, op in list(deleting.items()):
            s = key[0]
            if failed[s]:
                del deleting[key]
                continue
            if any(k[0] == s for k in [*pending, *running]):
                continue
            mine = [k for k in [*deleting, *running] if k[0] == s]  # deletes not finished
            if any(key[1] in olds[m].depends_on for m in mine if m != key):
                continue
            del deleting[key]
            running[key] = _apply(hosts, op)
        if not running:
            if pending or deleting:
                continue
            break
        key = rng.choice(sorted(running))
        try:
            next(running[key])
            steps[key[0]] += 1
            checked()
        except StopIteration:
            del running[key]
            done.add(key)
        except ClaimRefused as exc:
            del running[key]
            failed[key[0]].append(f"{key[1]}: {exc}")
            blocked.add(key)
    return {s: Outcome(hosts, failed[s], steps[s]) for s in by_slice}


def converged(hosts: Hosts, new: Sequence[PlannedResource], slice_name: str) -> list[str]:
    """How the hosts differ from the new plan (empty: converged)."""
    problems: list[str] = []
    want = {
        (r.spec.host.name, r.spec.name): r.spec.vlan for r in new if isinstance(r.spec, specs.TapPortSpec)
    }
    have = {k: p.tag for k, p in hosts.ports.items() if p.slice == slice_name}
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            problems.append(f"{key[0]}/{key[1]}: want {want.get(key)}, have {have.get(key)}")
    claims = {(r.spec.start, r.spec.end) for r in new if isinstance(r.spec, specs.PoolClaimSpec)}
    held = {v for (s, _), v in hosts.claims.items() if s == slice_name}
    if held != claims:
        problems.append(f"claims {sorted(held)}, want {sorted(claims)}")
    return problems

"""A model of one `pulumi up` from a deployed resource set to a new one, run in any order the graph allows.

What it models of the engine: resources of the new program are created, updated (in place, or replaced with
the old one deleted first) or left alone, each as soon as everything it depends on is done; a failed step
stops its dependents, the others go on; resources of the old program that the new one lacks are deleted at
the end, dependents first. What it models of the hosts: OVS ports (tag, owner) per worker, pool claims and
gateways on the network node, and each provider operation as the atomic steps it takes on them (one per
host script; a TAP joining a link VLAN parks the VLAN's strays on every worker, then tags itself).

After every atomic step it checks the isolation invariants; at the end, that the hosts match the new plan.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.resources import PlannedResource
from providers import specs
from providers.pool_claim import meet

SHARED_VLANS = (400,)


class ClaimRefused(Exception):
    """The simulated PoolClaim met another slice's claim."""


@dataclass
class Port:
    slice: str
    tag: int


@dataclass
class Hosts:
    """The state of the testbed's hosts, as far as isolation is concerned."""

    ports: dict[tuple[str, str], Port] = field(default_factory=dict)
    """(worker, TAP name) -> port."""
    claims: dict[tuple[str, int], tuple[int, int]] = field(default_factory=dict)
    """(slice, start) -> (start, end)."""
    gateways: dict[int, str] = field(default_factory=dict)
    """VLAN -> the slice whose gateway it is (link VLANs only)."""

    def claimed(self, slice_name: str) -> set[int]:
        return {v for (s, _), (a, b) in self.claims.items() if s == slice_name for v in range(a, b + 1)}

    def copy(self) -> Hosts:
        return Hosts(
            {k: Port(p.slice, p.tag) for k, p in self.ports.items()}, dict(self.claims), dict(self.gateways)
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
        for (other, _), (a, b) in hosts.claims.items():
            if other != spec.slice and meet(spec.start, spec.end, a, b) is not None:
                raise ClaimRefused(f"{spec.slice} {spec.start}-{spec.end} meets {other} {a}-{b}")
        hosts.claims[(spec.slice, spec.start)] = (spec.start, spec.end)
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
                        port.tag = spec.join.parking_vlan
                if host != spec.host.name:
                    yield
        hosts.ports[key] = Port(spec.slice, spec.vlan)
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
    on_vlan: dict[int, set[str]] = {}
    for (worker, tap), port in hosts.ports.items():
        if port.tag == parking or port.tag in SHARED_VLANS:
            continue
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


def run(
    hosts: Hosts,
    old: Sequence[PlannedResource],
    new: Sequence[PlannedResource],
    rng: random.Random,
    slice_name: str,
    parking: int,
) -> Outcome:
    """One `pulumi up` in a random order the graph allows, checking the invariants after every step."""
    links = link_index(old, new)
    main, deletes = plan_ops(old, new)
    done: set[str] = set()
    failed: list[str] = []
    blocked: set[str] = set()
    running: dict[str, Iterator[None]] = {}
    pending = {op.resource.name: op for op in main}
    steps = 0
    while pending or running:
        for name, op in list(pending.items()):
            deps = op.resource.depends_on
            if any(d in blocked for d in deps):
                del pending[name]
                blocked.add(name)
            elif all(d in done for d in deps):
                del pending[name]
                if op.action == "same":
                    done.add(name)
                else:
                    running[name] = _apply(hosts, op)
        if not running:
            if pending:
                continue
            break
        name = rng.choice(sorted(running))
        try:
            next(running[name])
            steps += 1
            check(hosts, slice_name, links, parking)
        except StopIteration:
            del running[name]
            done.add(name)
        except ClaimRefused as exc:
            del running[name]
            failed.append(f"{name}: {exc}")
            blocked.add(name)
    if failed:
        return Outcome(hosts, failed, steps)
    # deletes, dependents first (in the old graph)
    order = {r.name: r for r in old}
    remaining = {op.resource.name: op for op in deletes}
    while remaining:
        ready = [n for n in remaining if not any(n in order[m].depends_on for m in remaining if m != n)]
        name = rng.choice(sorted(ready))
        for _ in _apply(hosts, remaining.pop(name)):
            steps += 1
            check(hosts, slice_name, links, parking)
    return Outcome(hosts, failed, steps)


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

"""NetemSupport: a worker's kernel checked for the netem qdisc (`sch_netem`, a module a kernel may lack)
before anything of the slice is made.

A slice whose links need a netem (`links[].netem` with a key other than `rate`) has one per worker with
such a link, and its pool claim, on which every other resource waits, waits for them: so a worker that
cannot apply the keys is refused at `up` before any host changes, naming the qdisc, the keys and the TAPs.
The probe is `link_shape`'s: `tc qdisc add dev lo root netem` in a network namespace that lives as long as
that one command. It makes nothing: create and update only read, delete does nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers import hoststate
from providers.kind import Kind
from providers.kinds import link_shape
from providers.pipeline import HostResource
from transport.script import ScriptResult, Step, sh
from vocabulary.specs import NetemSupportSpec


@dataclass(frozen=True)
class Support:
    problem: str | None
    """Why the kernel cannot apply a netem (None: it can)."""

    @property
    def gone(self) -> bool:
        return False


def resource_id(spec: NetemSupportSpec) -> str:
    return f"{spec.host.name}/netem"


def preflight(_spec: NetemSupportSpec) -> list[Step]:
    return [
        *hoststate.readiness_steps(None, "tc", *link_shape.NETEM_TOOLS),
        sh(link_shape.NETEM_PROBE, link_shape.NETEM_PROBE_BODY, kind="probe"),
    ]


def parse_have(_spec: NetemSupportSpec, res: ScriptResult) -> Support:
    return Support(link_shape.netem_problem(res))


def plan_ensure(spec: NetemSupportSpec, have: Support) -> list[Step]:
    """Nothing to make; a refusal when the kernel has no netem."""
    if have.problem is not None:
        raise link_shape.QdiscMissing(
            f"{spec.host.name}: the kernel has no netem qdisc (sch_netem), which netem "
            f"{', '.join(spec.keys)} of TAP {', '.join(spec.taps)} needs (tc says: {have.problem}); only a "
            "rate alone (tbf) works there; nothing changed"
        )
    return []


def plan_delete(_spec: NetemSupportSpec, _have: Support) -> list[Step]:
    return []


def observe(_spec: NetemSupportSpec, have: Support) -> tuple[dict[str, Any], list[str]]:
    drift = [] if have.problem is None else [f"no netem qdisc: {have.problem}"]
    return {"netem": have.problem is None}, drift


def after(_spec: NetemSupportSpec, have: Support, _res: ScriptResult) -> Support:
    return have


KIND: Kind[NetemSupportSpec, Support] = Kind(
    name="NetemSupport",
    spec_model=NetemSupportSpec,
    identity=("slice", "host"),
    needs_bridge=False,
    resource_id=resource_id,
    preflight=preflight,
    parse_have=parse_have,
    plan_ensure=plan_ensure,
    plan_delete=plan_delete,
    observe=observe,
    after=after,
    not_diffed=("keys", "taps"),
)


class NetemSupport(HostResource, kind=KIND):
    """A worker's netem qdisc checked before the slice's objects; see `NetemSupportSpec`."""

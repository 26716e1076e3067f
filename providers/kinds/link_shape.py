"""LinkShape: a token-bucket rate limit on one of the slice's TAPs on a worker
(`tc qdisc replace dev <tap> root tbf rate <r>kbit burst <b> latency <l>ms`).

The kind written the record way (`providers.kind.Kind`), as a worked example of adding one: a spec
(`vocabulary.specs.LinkShapeSpec`), one read round trip, pure plans from want/have, an observation with
drift, and the record. Only a TAP whose OVS port carries this slice's owner mark is shaped; another slice's
is refused, naming it. The delete restores the kernel's default root qdisc; a TAP that is gone leaves
nothing to do (its qdisc went with it). The kernel rounds the values to its clock ticks: the burst and the
latency read back within `BURST_SLACK` and `LATENCY_SLACK_US` of what was set count as set.

Not wired into the slice config yet (no `cloudrepo:` key makes one): that is a separate change.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, replace
from typing import Any

from providers import hoststate
from providers.kind import Kind
from providers.pipeline import HostResource
from transport.script import ScriptResult, Step, run, sh
from vocabulary.errors import CloudrepoError, OwnershipConflict
from vocabulary.specs import LinkShapeSpec

TOOLS = ("tc", "ovs-vsctl")
QDISC = "qdisc"
SHAPE = "shape"
UNSHAPE = "unshape"
BURST_SLACK = 0.01
"""Relative difference of the burst read back that still counts as the burst set (tick rounding)."""
LATENCY_SLACK_US = 1000
"""Difference of the latency read back, in microseconds, that still counts as the latency set."""

# $1 the TAP: its root qdisc, as JSON when this tc has `-j`, else as text
_SHOW = 'tc -j qdisc show dev "$1" 2>/dev/null || tc qdisc show dev "$1"'


class TapMissing(CloudrepoError):
    """The TAP to shape is not on the worker."""


@dataclass(frozen=True)
class Qdisc:
    """A root qdisc: its kind and, for `tbf`, rate (bytes/s), burst (bytes) and latency (microseconds)."""

    kind: str
    rate: int | None = None
    burst: int | None = None
    latency_us: int | None = None


@dataclass(frozen=True)
class ShapeHave:
    tap: bool
    """The TAP device exists."""
    owner: str | None
    """The owner mark of its OVS port (None: no port, or unmarked)."""
    qdisc: Qdisc | None
    """Its root qdisc (None: not read)."""

    @property
    def gone(self) -> bool:
        return not self.tap


def resource_id(spec: LinkShapeSpec) -> str:
    return f"{spec.host.name}/shape/{spec.tap}"


def wanted(spec: LinkShapeSpec) -> Qdisc:
    return Qdisc("tbf", spec.rate_kbit * 125, spec.burst_bytes, spec.latency_ms * 1000)


def in_place(spec: LinkShapeSpec, q: Qdisc | None) -> bool:
    """The root qdisc is the spec's tbf (burst and latency within the kernel's rounding)."""
    if q is None or q.kind != "tbf" or q.rate is None or q.burst is None or q.latency_us is None:
        return False
    want = wanted(spec)
    assert want.burst is not None and want.latency_us is not None
    return (
        q.rate == want.rate
        and abs(q.burst - want.burst) <= max(2, want.burst * BURST_SLACK)
        and abs(q.latency_us - want.latency_us) <= LATENCY_SLACK_US
    )


def preflight(spec: LinkShapeSpec) -> list[Step]:
    """One read round trip: tools, the TAP device, its OVS port (the owner mark), its root qdisc."""
    return [
        *hoststate.readiness_steps(None, *TOOLS),
        hoststate.link_probe("link", spec.tap),
        hoststate.port_probe("port", spec.tap),
        sh(QDISC, _SHOW, spec.tap, kind="probe"),
    ]


_RATE = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3}
_SIZE = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_TIME = {"us": 1, "ms": 1000, "s": 1000**2}
_NUMBER = re.compile(r"^([0-9.]+)([A-Za-z]*)$")


def _scaled(text: str, units: dict[str, int]) -> int | None:
    m = _NUMBER.match(text)
    if m is None or m.group(2).lower() not in units:
        return None
    return round(float(m.group(1)) * units[m.group(2).lower()])


def parse_qdisc(text: str) -> Qdisc | None:
    """The root qdisc from `tc -j qdisc show` (JSON) or `tc qdisc show` (text); None when neither."""
    text = text.strip()
    if text.startswith("["):
        try:
            rows = json.loads(text)
        except ValueError:
            return None
        root = next((r for r in rows if isinstance(r, dict) and r.get("root")), None)
        if root is None:
            return None
        opts = root.get("options") or {}
        if root.get("kind") != "tbf":
            return Qdisc(str(root.get("kind")))
        return Qdisc("tbf", opts.get("rate"), opts.get("burst"), opts.get("lat"))
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "qdisc" or "root" not in words:
            continue
        if words[1] != "tbf":
            return Qdisc(words[1])
        field = dict(zip(words, [*words[1:], ""], strict=True))
        rate = _scaled(field.get("rate", ""), _RATE)
        return Qdisc(
            "tbf",
            rate // 8 if rate is not None else None,
            _scaled(field.get("burst", ""), _SIZE),
            _scaled(field.get("lat", ""), _TIME),
        )
    return None


def parse_have(spec: LinkShapeSpec, res: ScriptResult) -> ShapeHave:
    port = hoststate.parse_port(res.out("port"), "", 1) if res.status("port") == 0 else None
    return ShapeHave(
        tap=hoststate.parse_link(res.out("link"), res.status("link")) is not None,
        owner=port.owner if port is not None else None,
        qdisc=parse_qdisc(res.out(QDISC)) if res.status(QDISC) == 0 else None,
    )


def check_tap(spec: LinkShapeSpec, have: ShapeHave) -> None:
    """Raise unless the TAP is there and this slice's (its port's owner mark)."""
    if not have.tap:
        raise TapMissing(
            f"{spec.host.name}: TAP {spec.tap} is not on the worker: nothing to shape; nothing changed"
        )
    if not spec.owns(have.owner):
        raise OwnershipConflict(spec.host.name, f"TAP {spec.tap}", spec.owner, have.owner)


def shape_argv(spec: LinkShapeSpec) -> list[str]:
    return [
        "tc", "qdisc", "replace", "dev", spec.tap, "root", "tbf", "rate", f"{spec.rate_kbit}kbit",
        "burst", str(spec.burst_bytes), "latency", f"{spec.latency_ms}ms",
    ]  # fmt: skip


def plan_ensure(spec: LinkShapeSpec, have: ShapeHave) -> list[Step]:
    """Nothing when the TAP's root qdisc is the spec's tbf; else one `tc qdisc replace`."""
    check_tap(spec, have)
    return [] if in_place(spec, have.qdisc) else [run(SHAPE, *shape_argv(spec))]


def plan_delete(spec: LinkShapeSpec, have: ShapeHave) -> list[Step]:
    """Back to the kernel's default root qdisc; nothing when the TAP is gone, not this slice's, or not
    shaped by a tbf."""
    if not have.tap or not spec.owns(have.owner) or have.qdisc is None or have.qdisc.kind != "tbf":
        return []
    return [run(UNSHAPE, "tc", "qdisc", "del", "dev", spec.tap, "root")]


def after(spec: LinkShapeSpec, have: ShapeHave, _res: ScriptResult) -> ShapeHave:
    return replace(have, qdisc=wanted(spec))


def observe(spec: LinkShapeSpec, have: ShapeHave) -> tuple[dict[str, Any], list[str]]:
    q = have.qdisc
    tbf = q is not None and q.kind == "tbf"
    observed: dict[str, Any] = {
        "qdisc": q.kind if q else None,
        "rateKbit": q.rate // 125 if tbf and q and q.rate is not None else None,
        "burstBytes": q.burst if tbf and q else None,
        "latencyUs": q.latency_us if tbf and q else None,
        "owner": have.owner,
    }
    drift: list[str] = []
    if not have.tap:
        drift.append("TAP missing")
    elif q is None or not tbf:
        drift.append(f"no rate limit (root qdisc {q.kind if q else 'unknown'})")
    elif not in_place(spec, q):
        drift.append(
            f"tbf rate {observed['rateKbit']}kbit burst {q.burst} latency {q.latency_us}us, want "
            f"{spec.rate_kbit}kbit burst {spec.burst_bytes} latency {spec.latency_ms * 1000}us"
        )
    return observed, drift


def foreign(spec: LinkShapeSpec, have: ShapeHave) -> tuple[str, str | None] | None:
    return (f"TAP {spec.tap}", have.owner) if have.tap and not spec.owns(have.owner) else None


KIND: Kind[LinkShapeSpec, ShapeHave] = Kind(
    name="LinkShape",
    spec_model=LinkShapeSpec,
    identity=("slice", "host", "tap"),
    needs_bridge=False,
    resource_id=resource_id,
    preflight=preflight,
    parse_have=parse_have,
    plan_ensure=plan_ensure,
    plan_delete=plan_delete,
    observe=observe,
    after=after,
    foreign=foreign,
)


class LinkShape(HostResource, kind=KIND):
    """A rate limit on one of the slice's TAPs; see `LinkShapeSpec` for the inputs."""

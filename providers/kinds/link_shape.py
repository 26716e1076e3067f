"""LinkShape: a link's impairment on one of the slice's TAPs on a worker, as its root qdisc: a rate alone
is a token bucket (`tc qdisc replace dev <tap> root tbf rate <r>kbit burst <b> latency <l>ms`); a delay,
jitter, loss, corruption, duplication or reordering is a `netem` (`... root netem delay 100ms ...`, with its
own `rate` when one is set too). A qdisc on a TAP shapes what the host sends into the VM: a link is shaped
both ways by one `LinkShape` on each of its two TAPs.

The kind written the record way (`providers.kind.Kind`), as a worked example of adding one: a spec
(`vocabulary.specs.LinkShapeSpec`), one read round trip, pure plans from want/have, an observation with
drift, and the record. Only a TAP whose OVS port carries this slice's owner mark is shaped; another slice's
is refused, naming it. The delete restores the kernel's default root qdisc; a TAP that is gone leaves
nothing to do (its qdisc went with it). The kernel rounds the values to its clock ticks: the burst and the
latency read back within `BURST_SLACK` and `LATENCY_SLACK_US` of what was set count as set (netem's
times likewise, its probabilities within `PERCENT_SLACK`).

A kernel without `sch_netem` (a module that may be missing) cannot apply a netem: when the spec needs one,
the read also tries `tc qdisc add dev lo root netem` in a network namespace of its own (`unshare -n`: the
namespace, and the qdisc with it, go when that one command ends; no interface of the host is touched), and
`plan_ensure` refuses before any step, naming the missing qdisc and the keys that need it.
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
from vocabulary import netem
from vocabulary.errors import CloudrepoError, OwnershipConflict
from vocabulary.specs import LinkShapeSpec

TOOLS = ("tc", "ovs-vsctl")
NETEM_TOOLS = ("unshare",)
"""What the netem probe needs besides `tc`."""
QDISC = "qdisc"
NETEM_PROBE = "netem support"
SHAPE = "shape"
UNSHAPE = "unshape"
SHAPED = ("tbf", "netem")
"""The root qdiscs this kind puts on a TAP (and removes again)."""
BURST_SLACK = 0.01
"""Relative difference of the burst read back that still counts as the burst set (tick rounding)."""
LATENCY_SLACK_US = 1000
"""Difference of the latency (or a netem time) read back, in microseconds, that still counts as set."""
PERCENT_SLACK = 0.001
"""Difference of a netem probability read back, in percent (the kernel holds it in 32 bits)."""

# $1 the TAP: its root qdisc, as JSON when this tc has `-j`, else as text
_SHOW = 'tc -j qdisc show dev "$1" 2>/dev/null || tc qdisc show dev "$1"'
# whether this kernel has netem: tried on the loopback of a namespace that lives as long as this command
NETEM_PROBE_BODY = "unshare -n tc qdisc add dev lo root netem delay 1ms 2>&1"
_NETEM_FIELDS = ("delay_us", "jitter_us", "loss", "corrupt", "duplicate", "reorder")


class TapMissing(CloudrepoError):
    """The TAP to shape is not on the worker."""


class QdiscMissing(CloudrepoError):
    """The worker's kernel cannot apply the qdisc the spec needs."""


@dataclass(frozen=True)
class Qdisc:
    """A root qdisc: its kind; for `tbf` rate (bytes/s), burst (bytes) and latency (microseconds); for
    `netem` rate, delay and jitter (microseconds) and the probabilities (percent)."""

    kind: str
    rate: int | None = None
    burst: int | None = None
    latency_us: int | None = None
    delay_us: int | None = None
    jitter_us: int | None = None
    loss: float | None = None
    corrupt: float | None = None
    duplicate: float | None = None
    reorder: float | None = None


@dataclass(frozen=True)
class ShapeHave:
    tap: bool
    """The TAP device exists."""
    owner: str | None
    """The owner mark of its OVS port (None: no port, or unmarked)."""
    qdisc: Qdisc | None
    """Its root qdisc (None: not read)."""
    netem: str | None = None
    """Why this kernel cannot apply a netem (None: it can, or the spec needs none)."""

    @property
    def gone(self) -> bool:
        return not self.tap


def resource_id(spec: LinkShapeSpec) -> str:
    return f"{spec.host.name}/shape/{spec.tap}"


def wanted(spec: LinkShapeSpec) -> Qdisc:
    rate = spec.rate_kbit * 125 if spec.rate_kbit is not None else None
    if spec.impairment.qdisc == "tbf":
        return Qdisc("tbf", rate, spec.burst_bytes, spec.latency_ms * 1000)
    return Qdisc(
        "netem",
        rate,
        delay_us=spec.delay_us,
        jitter_us=spec.jitter_us,
        loss=spec.loss_pct,
        corrupt=spec.corrupt_pct,
        duplicate=spec.duplicate_pct,
        reorder=spec.reorder_pct,
    )


def _near(have: float | None, want: float | None, slack: float) -> bool:
    if have is None or want is None:
        return have is None and want is None
    return abs(have - want) <= slack


def in_place(spec: LinkShapeSpec, q: Qdisc | None) -> bool:
    """The root qdisc is the spec's (burst and times within the kernel's rounding)."""
    want = wanted(spec)
    if q is None or q.kind != want.kind or q.rate != want.rate:
        return False
    if want.kind == "netem":
        return (
            _near(q.delay_us, want.delay_us, LATENCY_SLACK_US)
            and _near(q.jitter_us, want.jitter_us, LATENCY_SLACK_US)
            and all(
                _near(getattr(q, f), getattr(want, f), PERCENT_SLACK)
                for f in ("loss", "corrupt", "duplicate", "reorder")
            )
        )
    if q.burst is None or q.latency_us is None:
        return False
    assert want.burst is not None and want.latency_us is not None
    return abs(q.burst - want.burst) <= max(2, want.burst * BURST_SLACK) and (
        abs(q.latency_us - want.latency_us) <= LATENCY_SLACK_US
    )


def preflight(spec: LinkShapeSpec) -> list[Step]:
    """One read round trip: tools, the TAP device, its OVS port (the owner mark), its root qdisc; and
    whether the kernel has netem, when the spec needs it."""
    uses_netem = spec.impairment.qdisc == "netem"
    return [
        *hoststate.readiness_steps(None, *TOOLS, *(NETEM_TOOLS if uses_netem else ())),
        hoststate.link_probe("link", spec.tap),
        hoststate.port_probe("port", spec.tap),
        sh(QDISC, _SHOW, spec.tap, kind="probe"),
        *([sh(NETEM_PROBE, NETEM_PROBE_BODY, kind="probe")] if uses_netem else []),
    ]


_RATE = {"bit": 1, "kbit": 1000, "mbit": 1000**2, "gbit": 1000**3}
_SIZE = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}
_TIME = {"us": 1, "ms": 1000, "s": 1000**2}
_NUMBER = re.compile(r"^([0-9.]+)([A-Za-z%]*)$")


def _scaled(text: str, units: dict[str, int]) -> int | None:
    m = _NUMBER.match(text)
    if m is None or m.group(2).lower() not in units:
        return None
    try:
        return round(float(m.group(1)) * units[m.group(2).lower()])
    except ValueError:
        return None


def _percent_text(text: str) -> float | None:
    m = _NUMBER.match(text)
    if m is None or m.group(2) != "%":
        return None
    try:
        return float(m.group(1))
    except ValueError:
        return None


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _seconds_us(value: Any) -> int | None:
    n = _num(value)
    return round(n * 1_000_000) if n else None


def _fraction_pct(opts: dict[str, Any], group: str, key: str) -> float | None:
    """A netem probability from `tc -j` (a fraction of 1) as percent; None when not set."""
    part = opts.get(group)
    n = _num(part.get(key)) if isinstance(part, dict) else None
    return n * 100 if n else None


def _group(opts: dict[str, Any], key: str) -> dict[str, Any]:
    value = opts.get(key)
    return value if isinstance(value, dict) else {}


def _netem_json(opts: dict[str, Any]) -> Qdisc:
    delay = _group(opts, "delay")
    rate = _group(opts, "rate")
    rate_n = _num(rate.get("rate"))
    return Qdisc(
        "netem",
        int(rate_n) if rate_n else None,
        delay_us=_seconds_us(delay.get("delay")),
        jitter_us=_seconds_us(delay.get("jitter")),
        loss=_fraction_pct(opts, "loss-random", "loss"),
        corrupt=_fraction_pct(opts, "corrupt", "corrupt"),
        duplicate=_fraction_pct(opts, "duplicate", "duplicate"),
        reorder=_fraction_pct(opts, "reorder", "reorder"),
    )


def _netem_text(words: list[str]) -> Qdisc:
    """`qdisc netem 8001: root refcnt 2 limit 1000 delay 100ms  5ms loss 1% ... rate 10Mbit`."""
    found: dict[str, Any] = {}
    for i, word in enumerate(words[:-1]):
        nxt = words[i + 1]
        if word == "delay":
            found["delay_us"] = _scaled(nxt, _TIME)
            if i + 2 < len(words) and (jitter := _scaled(words[i + 2], _TIME)) is not None:
                found["jitter_us"] = jitter
        elif word in ("loss", "corrupt", "duplicate", "reorder") and word not in found:
            found[word] = _percent_text(nxt)
        elif word == "rate" and (bits := _scaled(nxt, _RATE)) is not None:
            found["rate"] = bits // 8
    return Qdisc("netem", **found)


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
        opts = _group(root, "options")
        if root.get("kind") == "netem":
            return _netem_json(opts)
        if root.get("kind") != "tbf":
            return Qdisc(str(root.get("kind")))
        return Qdisc("tbf", opts.get("rate"), opts.get("burst"), opts.get("lat"))
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2 or words[0] != "qdisc" or "root" not in words:
            continue
        if words[1] == "netem":
            return _netem_text(words)
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


def netem_problem(res: ScriptResult) -> str | None:
    """Why the kernel cannot apply a netem, from the probe (None: it can, or the probe did not run)."""
    if not res.ran(NETEM_PROBE) or res.status(NETEM_PROBE) == 0:
        return None
    said = " ".join(res.out(NETEM_PROBE).split())[:200]
    return said or f"exit status {res.status(NETEM_PROBE)}"


def parse_have(spec: LinkShapeSpec, res: ScriptResult) -> ShapeHave:
    port = hoststate.parse_port(res.out("port"), "", 1) if res.status("port") == 0 else None
    return ShapeHave(
        tap=hoststate.parse_link(res.out("link"), res.status("link")) is not None,
        owner=port.owner if port is not None else None,
        qdisc=parse_qdisc(res.out(QDISC)) if res.status(QDISC) == 0 else None,
        netem=netem_problem(res),
    )


def netem_keys(spec: LinkShapeSpec) -> list[str]:
    """The config keys (`links[].netem`) of the spec that only a netem qdisc carries."""
    return [k for k in netem.KEYS if k != "rate" and k in spec.impairment.shown()]


def check_tap(spec: LinkShapeSpec, have: ShapeHave) -> None:
    """Raise unless the TAP is there and this slice's (its port's owner mark), and the kernel has the
    qdisc the spec needs."""
    if not have.tap:
        raise TapMissing(
            f"{spec.host.name}: TAP {spec.tap} is not on the worker: nothing to shape; nothing changed"
        )
    if not spec.owns(have.owner):
        raise OwnershipConflict(spec.host.name, f"TAP {spec.tap}", spec.owner, have.owner)
    if have.netem is not None and spec.impairment.qdisc == "netem":
        raise QdiscMissing(
            f"{spec.host.name}: the kernel has no netem qdisc (sch_netem), which netem "
            f"{', '.join(netem_keys(spec))} of TAP {spec.tap} needs (tc says: {have.netem}); only a rate "
            "alone (tbf) works there; nothing changed"
        )


def shape_argv(spec: LinkShapeSpec) -> list[str]:
    head = ["tc", "qdisc", "replace", "dev", spec.tap, "root"]
    if spec.impairment.qdisc == "tbf":
        return [
            *head, "tbf", "rate", f"{spec.rate_kbit}kbit", "burst", str(spec.burst_bytes),
            "latency", f"{spec.latency_ms}ms",
        ]  # fmt: skip
    argv = [*head, "netem"]
    if spec.delay_us is not None:
        argv += ["delay", f"{spec.delay_us}us"]
        if spec.jitter_us is not None:
            argv.append(f"{spec.jitter_us}us")
    for key in netem.PERCENT_KEYS:
        if (value := getattr(spec, f"{key}_pct")) is not None:
            argv += [key, netem.format_percent(value)]
    if spec.rate_kbit is not None:
        argv += ["rate", f"{spec.rate_kbit}kbit"]
    return argv


def plan_ensure(spec: LinkShapeSpec, have: ShapeHave) -> list[Step]:
    """Nothing when the TAP's root qdisc is the spec's; else one `tc qdisc replace` (a tbf and a netem
    replace each other in place)."""
    check_tap(spec, have)
    return [] if in_place(spec, have.qdisc) else [run(SHAPE, *shape_argv(spec))]


def plan_delete(spec: LinkShapeSpec, have: ShapeHave) -> list[Step]:
    """Back to the kernel's default root qdisc; nothing when the TAP is gone, not this slice's, or not
    shaped by a tbf or netem."""
    if not have.tap or not spec.owns(have.owner) or have.qdisc is None or have.qdisc.kind not in SHAPED:
        return []
    return [run(UNSHAPE, "tc", "qdisc", "del", "dev", spec.tap, "root")]


def after(spec: LinkShapeSpec, have: ShapeHave, _res: ScriptResult) -> ShapeHave:
    return replace(have, qdisc=wanted(spec))


def _qdisc_text(q: Qdisc) -> str:
    if q.kind == "tbf":
        rate = f"{q.rate // 125}kbit" if q.rate is not None else "?"
        return f"tbf rate {rate} burst {q.burst} latency {q.latency_us}us"
    parts = [q.kind]
    parts += [f"{f} {getattr(q, f)}" for f in _NETEM_FIELDS if getattr(q, f) is not None]
    if q.rate is not None:
        parts.append(f"rate {q.rate // 125}kbit")
    return " ".join(parts)


def observe(spec: LinkShapeSpec, have: ShapeHave) -> tuple[dict[str, Any], list[str]]:
    q = have.qdisc
    shaped = q is not None and q.kind in SHAPED
    observed: dict[str, Any] = {
        "qdisc": q.kind if q else None,
        "rateKbit": q.rate // 125 if shaped and q and q.rate is not None else None,
        "burstBytes": q.burst if shaped and q else None,
        "latencyUs": q.latency_us if shaped and q else None,
        "delayUs": q.delay_us if shaped and q else None,
        "jitterUs": q.jitter_us if shaped and q else None,
        **{f"{k}Pct": getattr(q, k) if shaped and q else None for k in netem.PERCENT_KEYS},
        "owner": have.owner,
    }
    drift: list[str] = []
    want = wanted(spec)
    if not have.tap:
        drift.append("TAP missing")
    elif q is None or not shaped:
        drift.append(f"no {want.kind} (root qdisc {q.kind if q else 'unknown'})")
    elif not in_place(spec, q):
        drift.append(f"{_qdisc_text(q)}, want {_qdisc_text(want)}")
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

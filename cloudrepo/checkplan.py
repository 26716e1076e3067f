"""`cloudrepo check`'s plan (pure): from the slice's declared checks (`components.check_specs`) and its
stack outputs, what to run in which guest (`Probe`s) and what result means pass (`judge`).

A `blocked` check counts only when the same guest passes a control probe in the same run: it reaches the
gateway of one of its own interfaces (`.1`). A dead or cut-off guest reaches nothing; without the control
its silence would read as "blocked".
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from components.check_specs import Check, Lease

Via = Literal["console", "ssh"]
REACH_PING = ("ping", "-c", "3", "-i", "0.2", "-W", "2")
"""Three tries: the first ARP of a fresh port may be lost."""
BLOCKED_PING = ("ping", "-c", "2", "-i", "0.2", "-W", "1")
NO_REPLY = 1
"""ping's status when no reply came (2 and more: it could not run, e.g. a bad address)."""
INET = re.compile(r"\binet ([0-9.]+)/")


@dataclass(frozen=True)
class Probe:
    """One command run in the guest of `vm`."""

    vm: int
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Outcome:
    """A probe's result: its exit status and output, or (status None) why it could not run."""

    status: int | None
    output: str = ""
    error: str = ""


@dataclass(frozen=True)
class Planned:
    """One check, ready to run: its probe (None when the outputs cannot make one: `problem` says why)."""

    name: str
    vm: int
    """The guest it runs in."""
    kind: Literal["reach", "blocked", "lease"]
    what: str
    expected: str
    probe: Probe | None
    control: Probe | None = None
    control_what: str = ""
    problem: str = ""


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    check: str
    vm: int
    via: str
    what: str
    expected: str
    got: str
    ok: bool
    detail: str = ""


def via(outputs: Mapping[str, Any], vm: int) -> Via:
    """How the guest of `vm` is reached: `ssh` (`cloudrepo exec`'s path) when it has cloud-init, else its
    serial console."""
    entry = (outputs.get("vms") or {}).get(str(vm))
    return "ssh" if isinstance(entry, Mapping) and isinstance(entry.get("cloudInit"), Mapping) else "console"


def _interfaces(outputs: Mapping[str, Any], vm: int) -> Mapping[str, Any]:
    entry = (outputs.get("vms") or {}).get(str(vm))
    ifaces = entry.get("interfaces") if isinstance(entry, Mapping) else None
    return ifaces if isinstance(ifaces, Mapping) else {}


def address(outputs: Mapping[str, Any], vm: int, iface: str) -> str | None:
    """The reserved address of `vm`'s `iface` in the outputs (None when it has none yet)."""
    spec = _interfaces(outputs, vm).get(iface)
    ip = spec.get("ip") if isinstance(spec, Mapping) and not spec.get("parked") else None
    return ip if isinstance(ip, str) else None


def gateway(outputs: Mapping[str, Any], vm: int) -> tuple[str, str] | None:
    """The control target of `vm`: (interface, its gateway) of its first interface with one."""
    for iface, spec in sorted(_interfaces(outputs, vm).items(), key=lambda kv: (len(kv[0]), kv[0])):
        if isinstance(spec, Mapping) and not spec.get("parked") and isinstance(spec.get("gateway"), str):
            return iface, spec["gateway"]
    return None


def control(outputs: Mapping[str, Any], vm: int) -> tuple[Probe | None, str]:
    """The control probe of `vm` (pinging its own gateway) and what it is."""
    found = gateway(outputs, vm)
    if found is None:
        return None, "no gateway on any interface"
    iface, gw = found
    return Probe(vm, (*REACH_PING, gw)), f"gateway {gw} ({iface})"


def plan_one(check: Check, outputs: Mapping[str, Any]) -> Planned:
    name = f"checks[{check.index}]"
    if isinstance(check, Lease):
        want = address(outputs, check.vm, check.iface)
        what = f"lease {check.iface}"
        if want is None:
            return Planned(name, check.vm, "lease", what, "?", None, problem="no address in the outputs yet")
        probe = Probe(check.vm, ("ip", "-4", "-o", "addr", "show", "dev", check.iface))
        return Planned(name, check.vm, "lease", what, want, probe)
    if check.dst_vm is None:
        target, what = check.host, f"{check.label} {check.host}"
    else:
        assert check.dst_iface is not None
        target = address(outputs, check.dst_vm, check.dst_iface)
        chosen = " (chosen)" if check.chosen else ""
        what = f"{check.dst_vm}.{check.dst_iface}{chosen} {target or '?'}"
    kind = check.expect
    if target is None:
        return Planned(name, check.src, kind, what, kind, None, problem="no address in the outputs yet")
    argv = (*(REACH_PING if kind == "reach" else BLOCKED_PING), target)
    if kind == "reach":
        return Planned(name, check.src, kind, what, kind, Probe(check.src, argv))
    ctl, ctl_what = control(outputs, check.src)
    return Planned(name, check.src, kind, what, kind, Probe(check.src, argv), ctl, ctl_what)


def plan(checks: Sequence[Check], outputs: Mapping[str, Any]) -> list[Planned]:
    """Every check with its probes, in the order declared."""
    return [plan_one(c, outputs) for c in checks]


def probes(planned: Sequence[Planned]) -> dict[int, list[Probe]]:
    """The distinct probes to run, by guest (a control shared by checks runs once)."""
    out: dict[int, list[Probe]] = {}
    for p in planned:
        for probe in (p.probe, p.control):
            if probe is not None and probe not in out.setdefault(probe.vm, []):
                out[probe.vm].append(probe)
    return out


def _failed_to_run(o: Outcome) -> str:
    if o.status is None:
        return o.error or "the command could not run"
    tail = " ".join(o.output.split())[-160:]
    return f"status {o.status}: {tail or '(no output)'}"


def _ping(o: Outcome) -> str:
    if o.status == 0:
        return "reached"
    if o.status == NO_REPLY:
        return "no reply"
    return "error"


def judge(p: Planned, results: Mapping[Probe, Outcome], path: str) -> Row:
    """The row of one check from the outcomes of its probes."""

    def row(got: str, ok: bool, detail: str = "") -> Row:
        return Row(p.name, p.vm, path, p.what, p.expected, got, ok, detail)

    if p.probe is None:
        return row("-", False, p.problem)
    o = results.get(p.probe, Outcome(None, error="not run"))
    if p.kind == "lease":
        if o.status != 0:
            return row("-", False, _failed_to_run(o))
        held = INET.findall(o.output)
        return row(", ".join(held) or "none", p.expected in held, "" if p.expected in held else "not held")
    got = _ping(o)
    if p.kind == "reach":
        detail = "" if got == "reached" else (_failed_to_run(o) if got == "error" else "")
        return row(got, got == "reached", detail)
    c = results.get(p.control, Outcome(None, error="not run")) if p.control else None
    if c is None or c.status != 0:
        why = p.control_what if c is None else f"ping {p.control_what}: {_ping(c)}"
        if c is not None and _ping(c) == "error":
            why += f" ({_failed_to_run(c)})"
        return row(got, False, f"control failed, so no reply proves nothing: {why}")
    if got == "error":
        return row(got, False, _failed_to_run(o))
    ok = got == "no reply"
    return row(got, ok, f"control: {p.control_what} reached" if ok else "")


def judge_all(
    planned: Sequence[Planned], results: Mapping[Probe, Outcome], outputs: Mapping[str, Any]
) -> list[Row]:
    return [judge(p, results, via(outputs, p.vm)) for p in planned]

"""`python -m bench.profile --links 20`: where each second of a bench slice's `pulumi up` and `destroy` goes.

Deploys one bench slice (`bench/topology.py`, `bench/engine.py`'s `SliceStack`) with the real CLI and, per
run, puts together:
- the engine's gRPC log (`PULUMI_DEBUG_GRPC=<file>`: every call with its timestamps): language host calls,
  the program's `RegisterResource`s, the provider's `Configure`/`Check`/`Create`/`Delete` spans;
- the SSH layer's round-trip records (`CLOUDREPO_SSH_TIMING`, `providers/ssh_stats.py`): call, runner in
  hand, the script's start and end on the host (`date +%s%N`: same clock here), end;
- /proc, sampled every 100 ms: the start of the language host, the program and the provider processes, and
  CPU time per process group (engine, language host, program, provider, sshd + forwarders, host commands,
  OVS) and of the whole machine (/proc/stat).

It reports the run's wall time cut into consecutive parts (they add up to the wall time), what happens
while provider calls run (a priority split of that window: a host command running > an SSH round trip in
flight > waiting for a runner > a provider call open, e.g. queued or in Python > none open), how many calls
and round trips run at once, and CPU use.

Knobs, compared alternately on the same load (`--variants`, each `key=value,...`, repeated `--repeat`
times in turn): `parallel` (`pulumi --parallel`), `runners` ($CLOUDREPO_SSH_MAX_RUNNERS: runners per host),
`workers` (the provider's gRPC worker threads, through `bench/dynamic_workers.py`), `skipcp`
($PULUMI_SKIP_CHECKPOINTS: the engine writes the state once at the end instead of after every step),
`instrument` (0: no gRPC log and no round-trip records, to see their cost).  `default` = the engine's and
the SDK's defaults.

    python -m bench.profile --links 20
    python -m bench.profile --links 20 --repeat 3 --variants default parallel=16 runners=8 workers=8

Holds `testbed_lock("profile")`; brings the testbed up if it is down (and down again at the end); the
stack is destroyed and removed at the end.  JSON: `bench/results/profile-<time>.json` (git-ignored).

About 990 lines, a measuring tool rather than part of the product: its phases, the readers of the
records and the report are one experiment, kept together so a reader sees what each figure means;
nothing imports it but its own tests.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.engine import PHASE_ARGS, SliceStack, _summary
from bench.topology import ROOT, SliceSpec
from lab import owners
from lab.common import lab_dir, settings
from lab.exclusive import testbed_lock
from lab.pulumi_cli import PulumiFailed
from transport.ssh_pool import RUNNERS_ENV
from transport.ssh_stats import STATS_ENV, TIMING_ENV

RESULTS = Path(__file__).resolve().parent / "results"
SDK_WORKERS = 4  # pulumi/dynamic/__main__.py: futures.ThreadPoolExecutor(max_workers=4)
WORKERS_ENV = "CLOUDREPO_PROVIDER_WORKERS"  # bench/dynamic_workers.py
TICKS = os.sysconf("SC_CLK_TCK")
PROVIDER_CALLS = ("Check", "Create", "Read", "Update", "Delete", "Diff")
GROUPS = ("engine", "langhost", "program", "provider", "sshd", "hostcmds", "ovs")


def log(msg: str) -> None:
    print(f"[profile {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---- the gRPC log ---------------------------------------------------------------------------------------


def _epoch(stamp: str) -> float:
    """`2026-11-29T23:41:08.459527662Z` -> seconds of the epoch (ns kept; datetime stops at µs)."""
    base, _, frac = stamp.rstrip("Z").partition(".")
    whole = datetime.fromisoformat(base).replace(tzinfo=UTC).timestamp()
    return whole + (float("0." + frac) if frac else 0.0)


@dataclass
class Call:
    method: str  # the last part: Create, RegisterResource, ...
    service: str  # ResourceProvider, ResourceMonitor, LanguageRuntime
    start: float | None  # None: not logged (the monitor's own calls have no start time)
    end: float


def read_grpc_log(path: Path) -> list[Call]:
    """Completed calls, in completion order.  The engine logs the monitor's (server) calls with a zero start
    time and a bogus duration: their start is left None."""
    calls: list[Call] = []
    if not path.exists():
        return calls
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError:
            continue
        if ev.get("progress") != "response_completed":
            continue
        service, _, method = ev["method"].strip("/").rpartition("/")
        end = _epoch(ev["timestamp"])
        dur = ev.get("duration")
        start = end - dur / 1e9 if isinstance(dur, int) and 0 <= dur < 3600 * 1e9 else None
        calls.append(Call(method, service.split(".")[-1], start, end))
    return calls


def read_request_starts(path: Path, method: str) -> list[float]:
    """Start times of one method's requests (`LanguageRuntime/Run`; the client side's: the monitor's own
    calls are logged with no start time)."""
    out: list[float] = []
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        if method not in line or "request_started" not in line:
            continue
        ev = json.loads(line)
        if ev["method"].endswith(method) and ev.get("progress") == "request_started":
            t = _epoch(ev["timestamp"])
            if t > 1e9:
                out.append(t)
    return out


# ---- the SSH round trips ------------------------------------------------------------------------------


@dataclass
class RoundTrip:
    host: str
    start: float
    runner: float
    end: float
    h0: float | None
    h1: float | None
    locked: bool
    steps: int
    thread: int
    read: bool = False


def read_round_trips(directory: Path) -> list[RoundTrip]:
    out = []
    for path in sorted(directory.glob("timing-*.jsonl")):
        for line in path.read_text().splitlines():
            r = json.loads(line)
            span = r.get("host_span")
            h0, h1 = (span[0] / 1e9, span[1] / 1e9) if span else (None, None)
            out.append(
                RoundTrip(
                    r["host"],
                    r["start"],
                    r["runner"],
                    r["end"],
                    h0,
                    h1,
                    r["locked"],
                    r["steps"],
                    r["thread"],
                    bool(r.get("read")),
                )
            )
    return sorted(out, key=lambda rt: rt.start)


# ---- /proc: process starts and CPU per group ----------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int, float, float] | None:
    """(comm, ppid, starttime ticks, own cpu s, reaped children's cpu s) of a process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    comm = text[text.find("(") + 1 : text.rfind(")")]
    f = text.rsplit(")", 1)[1].split()
    return comm, int(f[1]), int(f[19]), (int(f[11]) + int(f[12])) / TICKS, (int(f[13]) + int(f[14])) / TICKS


def _machine_jiffies() -> tuple[int, int]:
    """(busy, all) jiffies of every CPU since boot, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    busy = f[0] + f[1] + f[2] + f[5] + f[6] + f[7]  # user nice system irq softirq steal
    return busy, busy + f[3] + f[4]


def _netns_ids(prefix: str) -> set[str]:
    out = set()
    try:
        for name in os.listdir("/run/netns"):
            if name.startswith(prefix):
                out.add(f"net:[{os.stat(f'/run/netns/{name}').st_ino}]")
    except OSError:
        pass
    return out


@dataclass
class Proc:
    group: str
    start_ticks: int
    ppid: int
    comm: str
    own: float  # utime + stime, s
    kids: float  # cutime + cstime: the children it reaped, s
    base_own: float = 0.0  # when first seen (0 for a process started during the run)
    base_kids: float = 0.0
    prev_kids: float = 0.0

    @property
    def total(self) -> float:
        return self.own + self.kids

    @property
    def used(self) -> float:
        return self.own - self.base_own + self.kids - self.base_kids


ENGINE_TREE = ("engine", "langhost", "program", "provider")


class CpuSampler:
    """Samples /proc every `interval` s in a thread: CPU per process group, machine CPU, process starts.

    A process counts its own time and what its reaped children used (so the short-lived host commands show
    up in their runner's group); what a tracked process collects from a tracked child that ended is taken
    off its group (the child counted it), also when they end in the same sample (then only as far as the
    survivor's collected time grew).  Groups: the `pulumi` process (`engine`) and, under it, the language
    host, the program and the dynamic provider (and its shim); on the testbed's hosts sshd/sudo/nc and the
    root namespace's socat forwarders (`sshd`), OVS, and everything else there (`hostcmds`: the runners,
    the scripts and their commands, dnsmasq).  Other processes (other testbeds, other work) are not
    tracked: the machine's CPU minus the groups'.
    """

    def __init__(self, root_pid: int, interval: float = 0.1) -> None:
        self.root = root_pid
        self.interval = interval
        lab = settings()
        self.netns = _netns_ids(lab.prefix)
        self.ports = {f"TCP-LISTEN:{lab.base_port + i}," for i in range(8)}
        self.procs: dict[int, Proc] = {}
        self.ignored: set[int] = set()
        self.adjust: dict[str, float] = defaultdict(float)
        self.ended: dict[str, float] = defaultdict(float)
        self.starts: dict[str, float] = {}  # group -> epoch start of its first process (langhost, ...)
        self.timeline: list[tuple[float, float, dict[str, float]]] = []  # (t, machine busy s, group cpu)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._m0 = _machine_jiffies()
        self._self0 = resource.getrusage(resource.RUSAGE_SELF)
        self.machine_busy = 0.0
        self.machine_all = 0.0
        self.sampler_cpu = 0.0
        self._first = True

    def __enter__(self) -> CpuSampler:
        self._tick()  # the processes that exist before the run: their CPU so far is the base
        self._first = False
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._tick()
        m1 = _machine_jiffies()
        self.machine_busy = (m1[0] - self._m0[0]) / TICKS
        self.machine_all = (m1[1] - self._m0[1]) / TICKS
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        self.sampler_cpu = r1.ru_utime + r1.ru_stime - self._self0.ru_utime - self._self0.ru_stime

    def _classify(self, pid: int, comm: str, ppid: int) -> str | None:
        if pid == self.root:
            return "engine"
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            return None
        parent = self.procs.get(ppid)
        if parent is not None and parent.group in ENGINE_TREE:
            if "pulumi-language-python-exec" in cmd:
                return "program"
            if "pulumi.dynamic" in cmd or "dynamic_workers" in cmd or "pulumi-resource-pulumi-python" in cmd:
                return "provider"
            if "pulumi-language-python" in cmd:
                return "langhost"
            return parent.group
        if comm == "socat" and any(p in cmd for p in self.ports):
            return "sshd"
        if parent is not None and parent.group == "sshd" and comm in ("socat", "ip", "nc"):
            return "sshd"
        try:
            ns = os.readlink(f"/proc/{pid}/ns/net")
        except OSError:
            return None
        if ns not in self.netns:
            return None
        if comm in ("ovs-vswitchd", "ovsdb-server"):
            return "ovs"
        if comm.startswith("sshd") or comm in ("sudo", "nc"):
            return "sshd"
        return "hostcmds"

    def _tick(self) -> None:
        now = time.time()
        boot_now = time.clock_gettime(time.CLOCK_BOOTTIME)
        seen: set[int] = set()
        for pid in sorted(int(n) for n in os.listdir("/proc") if n.isdigit()):
            if pid in self.ignored:
                continue
            st = _stat(pid)
            if st is None:
                continue
            comm, ppid, start_ticks, own, kids = st
            known = self.procs.get(pid)
            if known is not None and known.start_ticks != start_ticks:
                self._vanished({pid: self.procs.pop(pid)}, seen)  # the pid was reused
                known = None
            started = now - (boot_now - start_ticks / TICKS)
            if known is None:
                group = self._classify(pid, comm, ppid)
                if group is None:
                    self.ignored.add(pid)
                    continue
                known = self.procs[pid] = Proc(group, start_ticks, ppid, comm, own, kids)
                if self._first:
                    known.base_own, known.base_kids = own, kids
                elif group not in self.starts or started < self.starts[group]:
                    self.starts[group] = started
            elif known.comm != comm:
                # it exec'd since it was classified (a fork is its parent's copy until then)
                known.group = self._classify(pid, comm, ppid) or known.group
                known.comm = comm
                if not self._first and known.group not in self.starts:
                    self.starts[known.group] = started
            known.prev_kids, known.own, known.kids, known.ppid = known.kids, own, kids, ppid
            seen.add(pid)
        gone = {pid: self.procs.pop(pid) for pid in [p for p in self.procs if p not in seen]}
        if gone:
            self._vanished(gone, seen)
        for p in self.procs.values():
            p.prev_kids = p.kids
        self.timeline.append((now, _machine_jiffies()[0] / TICKS, self.group_cpu()))

    def _vanished(self, gone: dict[int, Proc], alive: set[int]) -> None:
        """Processes that ended (were reaped) since the last sample: keep what they used in their group;
        take it off the group of the tracked survivor that collected it."""
        direct: dict[int, float] = defaultdict(float)
        indirect: dict[int, float] = defaultdict(float)
        for p in gone.values():
            self.ended[p.group] += p.used
            parent, hops = p.ppid, 0
            while parent in gone and hops < 20:  # ended in the same sample: up to the first survivor
                parent, hops = gone[parent].ppid, hops + 1
            if parent in alive and parent in self.procs:
                (indirect if hops else direct)[parent] += p.total
        for pid in set(direct) | set(indirect):
            a = self.procs[pid]
            grown = max(0.0, a.kids - a.prev_kids)
            take = min(direct[pid], grown)
            take += min(indirect[pid], grown - take)
            self.adjust[a.group] -= take

    def group_cpu(self) -> dict[str, float]:
        out = {g: self.ended[g] + self.adjust[g] for g in GROUPS}
        for p in self.procs.values():
            out[p.group] += p.used
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._tick()


# ---- interval arithmetic -------------------------------------------------------------------------------


def union_length(spans: Iterable[tuple[float, float]]) -> float:
    total, cur_a, cur_b = 0.0, None, None
    for a, b in sorted(spans):
        if cur_b is None or a > cur_b:
            if cur_b is not None and cur_a is not None:
                total += cur_b - cur_a
            cur_a, cur_b = a, b
        else:
            cur_b = max(cur_b, b)
    if cur_a is not None and cur_b is not None:
        total += cur_b - cur_a
    return total


def occupancy(spans: list[tuple[float, float]], lo: float, hi: float) -> dict[int, float]:
    """Seconds of [lo, hi] during which exactly k of `spans` were open, per k."""
    events = sorted(
        [(max(a, lo), 1) for a, b in spans if b > lo and a < hi]
        + [(min(b, hi), -1) for a, b in spans if b > lo and a < hi]
    )
    out: dict[int, float] = defaultdict(float)
    k, prev = 0, lo
    for t, d in events:
        out[k] += t - prev
        k += d
        prev = t
    out[k] += hi - prev
    return {k: v for k, v in sorted(out.items()) if v > 0}


def priority_split(
    layers: list[tuple[str, list[tuple[float, float]]]], lo: float, hi: float
) -> dict[str, float]:
    """Cut [lo, hi] by the first layer with an open span at each instant ("none" when no layer has one)."""
    events: list[tuple[float, int, int]] = []
    for i, (_, spans) in enumerate(layers):
        for a, b in spans:
            a, b = max(a, lo), min(b, hi)
            if b > a:
                events += [(a, i, 1), (b, i, -1)]
    events.sort()
    counts = [0] * len(layers)
    out = {name: 0.0 for name, _ in layers} | {"none": 0.0}
    prev = lo
    for t, i, d in events:
        top = next((j for j, c in enumerate(counts) if c > 0), None)
        out[layers[top][0] if top is not None else "none"] += t - prev
        counts[i] += d
        prev = t
    top = next((j for j, c in enumerate(counts) if c > 0), None)
    out[layers[top][0] if top is not None else "none"] += hi - prev
    return out


def queued_seconds(spans: list[tuple[float, float]], workers: int) -> float:
    """Call-seconds spent beyond `workers` open calls (queued in the provider's executor)."""
    occ = occupancy(spans, min((a for a, _ in spans), default=0.0), max((b for _, b in spans), default=0.0))
    return sum((k - workers) * s for k, s in occ.items() if k > workers)


# ---- one run -------------------------------------------------------------------------------------------


@dataclass
class Variant:
    name: str
    parallel: int | None = None
    runners: int | None = None
    workers: int | None = None
    instrument: bool = True
    skip_checkpoints: bool = False
    env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def parse(cls, text: str, instrument: bool) -> Variant:
        v = cls(text, instrument=instrument)
        if text == "default":
            return v
        for part in text.split(","):
            key, _, value = part.partition("=")
            if key == "parallel":
                v.parallel = int(value)
            elif key == "runners":
                v.runners = int(value)
            elif key == "workers":
                v.workers = int(value)
            elif key == "instrument":
                v.instrument = value not in ("0", "no", "off", "false")
            elif key == "skipcp":
                v.skip_checkpoints = value not in ("0", "no", "off", "false")
            elif key.startswith("PULUMI_"):
                v.env[key] = value
            else:
                knobs = "parallel, runners, workers, skipcp, instrument, PULUMI_<NAME>"
                raise SystemExit(f"unknown knob {key!r} in variant {text!r} ({knobs})")
        return v


@dataclass
class Run:
    variant: str
    phase: str
    rep: int
    wall: float
    spawned: float
    exited: float
    load_before: tuple[float, float, float]
    load_after: tuple[float, float, float]
    summary: str
    report: dict[str, Any] = field(default_factory=dict)


def provider_plugin_dir(workdir: Path) -> Path:
    """A `pulumi-resource-pulumi-python` shim that starts `bench/dynamic_workers.py` (the `workers` knob)."""
    d = workdir / "plugin-workers"
    d.mkdir(exist_ok=True)
    shim = d / "pulumi-resource-pulumi-python"
    python = ROOT / ".venv" / "bin" / "python"
    shim.write_text(f'#!/bin/sh\nexec "{python}" -u "{ROOT / "bench" / "dynamic_workers.py"}" "$@"\n')
    shim.chmod(0o755)
    return d


def set_plugin_override(st: SliceStack, plugin_dir: Path | None) -> None:
    path = st.project / "Pulumi.yaml"
    text = path.read_text().split("plugins:", 1)[0]
    if plugin_dir is not None:
        text += f"plugins:\n  providers:\n    - name: pulumi-python\n      path: {plugin_dir}\n"
    path.write_text(text)


def run_phase(st: SliceStack, phase: str, v: Variant, rep: int, logdir: Path, workdir: Path) -> Run:
    rundir = logdir / f"{v.name.replace('=', '').replace(',', '_')}-{phase}-{rep}"
    shutil.rmtree(rundir, ignore_errors=True)
    rundir.mkdir(parents=True)
    env: dict[str, str] = {STATS_ENV: ""}
    if v.instrument:
        env["PULUMI_DEBUG_GRPC"] = str(rundir / "grpc.jsonl")
        env[TIMING_ENV] = str(rundir / "timing-{pid}.jsonl")
    if v.runners is not None:
        env[RUNNERS_ENV] = str(v.runners)
    if v.workers is not None:
        env[WORKERS_ENV] = str(v.workers)
    if v.skip_checkpoints:
        env["PULUMI_SKIP_CHECKPOINTS"] = "true"  # the engine saves the state once, at the end (experimental)
    env.update(v.env)
    set_plugin_override(st, provider_plugin_dir(workdir) if v.workers is not None else None)
    args = list(PHASE_ARGS[phase])
    if v.parallel is not None:
        args += ["--parallel", str(v.parallel)]
    load_before = os.getloadavg()
    spawned = time.time()
    proc = st.cli.popen(*args, env=env)
    with CpuSampler(proc.pid) as cpu:
        out, _ = proc.communicate(timeout=900)
    exited = time.time()
    (rundir / "engine.log").write_text(out)
    if proc.returncode != 0:
        raise PulumiFailed(f"pulumi {' '.join(args)}: exit {proc.returncode}\n{out}")
    summary = _summary(out)
    run = Run(v.name, phase, rep, exited - spawned, spawned, exited, load_before, os.getloadavg(), summary)
    workers = v.workers or SDK_WORKERS
    run.report = analyse(run, rundir if v.instrument else None, cpu, workers)
    (rundir / "report.json").write_text(json.dumps(run.report, indent=1) + "\n")
    return run


# ---- the analysis of one run ---------------------------------------------------------------------------


def _segments(bounds: list[tuple[str, float | None]], t_end: float) -> list[tuple[str, float]]:
    """Consecutive parts between the known boundaries (a boundary out of order counts 0)."""
    out: list[tuple[str, float]] = []
    known = [(name, t) for name, t in bounds if t is not None]
    prev_t = known[0][1]
    for i, (name, _) in enumerate(known[:-1]):
        nxt = max(prev_t, known[i + 1][1])
        out.append((name, nxt - prev_t))
        prev_t = nxt
    out.append((known[-1][0], max(0.0, t_end - prev_t)))
    return out


def analyse(run: Run, rundir: Path | None, cpu: CpuSampler, workers: int) -> dict[str, Any]:
    rep: dict[str, Any] = {
        "wall": round(run.wall, 3),
        "load_before": [round(x, 2) for x in run.load_before],
        "load_after": [round(x, 2) for x in run.load_after],
        "summary": run.summary,
    }
    t0, t_end = run.spawned, run.exited
    rel = lambda t: None if t is None else round(t - t0, 3)  # noqa: E731
    # CPU
    groups = cpu.group_cpu()
    rep["cpu"] = {
        "machine_busy_s": round(cpu.machine_busy, 2),
        "machine_capacity_s": round(cpu.machine_all, 2),
        "machine_busy_pct": round(100 * cpu.machine_busy / cpu.machine_all, 1) if cpu.machine_all else None,
        "groups_s": {g: round(v, 2) for g, v in groups.items()},
        "profiler_s": round(cpu.sampler_cpu, 2),
        "other_s": round(cpu.machine_busy - sum(groups.values()) - cpu.sampler_cpu, 2),
        "saturated_s": round(_saturated(cpu.timeline, 0.9), 2),
        "provider_peak_core_pct": round(100 * _peak_rate(cpu.timeline, "provider", 0.5), 0),
        "engine_peak_core_pct": round(100 * _peak_rate(cpu.timeline, "engine", 0.5), 0),
    }
    rep["cpu_timeline"] = _buckets(cpu.timeline, t0, 0.5)
    rep["process_starts"] = {g: rel(t) for g, t in sorted(cpu.starts.items(), key=lambda x: x[1])}
    if rundir is None:
        return rep
    path = rundir / "grpc.jsonl"
    calls = read_grpc_log(path)
    rts = read_round_trips(rundir)
    by = defaultdict(list)
    for c in calls:
        by[c.method if c.service != "LanguageRuntime" else "Lang" + c.method].append(c)
    prov = [c for c in calls if c.service == "ResourceProvider" and c.method in PROVIDER_CALLS and c.start]
    work = [c for c in prov if c.method in ("Create", "Delete", "Update", "Read")]
    first = lambda xs: min(xs) if xs else None  # noqa: E731
    last = lambda xs: max(xs) if xs else None  # noqa: E731
    run_starts = read_request_starts(path, "LanguageRuntime/Run")
    configure = [c.end for c in calls if c.service == "ResourceProvider" and c.method == "Configure"]
    reg_ends = [c.end for c in by["RegisterResource"]]
    lang_first = first([c.start for c in calls if c.service == "LanguageRuntime" and c.start])
    # each part is named by the boundary it starts at
    bounds: list[tuple[str, float | None]] = [("engine start (CLI to the language host's first call)", t0)]
    if run_starts:
        bounds += [
            ("engine prepares (to the program's Run request)", lang_first),
            ("language host starts the program (Run to the python process)", first(run_starts)),
            (
                "program: imports, config, stack outputs (to the first RegisterResource done)",
                cpu.starts.get("program"),
            ),
            ("program builds the slice (to the provider process start)", first(reg_ends)),
        ]
    else:
        bounds += [("engine prepares (to the provider process start)", lang_first)]
    bounds += [
        ("provider process start (to Configure done)", cpu.starts.get("provider")),
        ("first Check(s) (to the first change call)", first(configure)),
        ("provider change calls (first start to last end)", first([c.start for c in work if c.start])),
        (
            "after the last change call (outputs, checkpoint, summary, plugins stop, exit)",
            last([c.end for c in work]),
        ),
    ]
    rep["segments"] = [(name, round(s, 3)) for name, s in _segments(bounds, t_end)]
    # while provider calls run
    lo, hi = first([c.start for c in work if c.start]), last([c.end for c in work])
    call_spans = [(c.start, c.end) for c in prov if c.start]
    work_spans = [(c.start, c.end) for c in work if c.start]
    rt_spans = [(r.start, r.end) for r in rts]
    host_spans = [(r.h0, r.h1) for r in rts if r.h0 and r.h1]
    if lo is not None and hi is not None:
        split = priority_split(
            [
                ("a host command runs", host_spans),
                ("an SSH round trip in flight (send, dispatch, return)", [(r.runner, r.end) for r in rts]),
                ("waiting for a runner", [(r.start, r.runner) for r in rts]),
                ("a provider call open (queued, gRPC, Python)", call_spans),
            ],
            lo,
            hi,
        )
        rep["during_calls"] = {"window_s": round(hi - lo, 3)} | {k: round(v, 3) for k, v in split.items()}
    # sums and averages
    sums: dict[str, Any] = {}
    for m in PROVIDER_CALLS:
        cs = [c for c in prov if c.method == m]
        if cs:
            d = [c.end - c.start for c in cs if c.start]
            sums[m] = {
                "n": len(cs),
                "sum_s": round(sum(d), 2),
                "mean_ms": round(1000 * statistics.mean(d), 1),
            }
    rep["calls"] = sums
    q = queued_seconds(call_spans, workers)
    rt_total = sum(r.end - r.start for r in rts)
    rep["in_calls"] = {
        "calls_sum_s": round(sum(b - a for a, b in call_spans), 2),
        "queued_beyond_workers_s": round(q, 2),
        "round_trips_sum_s": round(rt_total, 2),
        "rest_python_grpc_s": round(sum(b - a for a, b in call_spans) - q - rt_total, 2),
    }
    if rts:
        rep["round_trips"] = _round_trip_stats(rts)
    # concurrency
    if lo is not None and hi is not None:
        occ_calls = occupancy(call_spans, lo, hi)
        rep["concurrency"] = {
            "workers": workers,
            "provider_calls_max": max(occ_calls),
            "provider_calls_s_by_open": {str(k): round(v, 2) for k, v in occ_calls.items()},
            "change_calls_max": max(occupancy(work_spans, lo, hi)),
            "time_beyond_workers_s": round(sum(v for k, v in occ_calls.items() if k > workers), 2),
            "round_trips_max": max(occupancy(rt_spans, lo, hi)) if rts else 0,
            "round_trips_s_by_open": {str(k): round(v, 2) for k, v in occupancy(rt_spans, lo, hi).items()},
            "host_scripts_max": max(occupancy(host_spans, lo, hi)) if host_spans else 0,
            "host_scripts_mean": round(sum(b - a for a, b in host_spans) / (hi - lo), 2) if host_spans else 0,
            "per_host_round_trips_max": {
                h: max(occupancy([(r.start, r.end) for r in rts if r.host == h], lo, hi))
                for h in sorted({r.host for r in rts})
            },
        }
    rep["events"] = {
        "language_host_first_call": rel(lang_first),
        "program_run_request": rel(first(run_starts)),
        "first_register_resource_done": rel(first(reg_ends)),
        "provider_configure_done": rel(first(configure)),
        "first_check": rel(first([c.start for c in prov if c.method == "Check" and c.start])),
        "first_change_call": rel(lo),
        "last_change_call_done": rel(hi),
        "language_run_done": rel(last([c.end for c in by["LangRun"]])),
    }
    return rep


def _round_trip_stats(rts: list[RoundTrip]) -> dict[str, Any]:
    def ms(xs: list[float]) -> dict[str, float]:
        if not xs:
            return {}
        xs = sorted(xs)
        return {
            "sum_s": round(sum(xs), 2),
            "mean_ms": round(1000 * statistics.mean(xs), 1),
            "p50_ms": round(1000 * xs[len(xs) // 2], 1),
            "p90_ms": round(1000 * xs[int(len(xs) * 0.9)], 1),
        }

    stamped = [r for r in rts if r.h0 and r.h1]
    base: dict[str, float] = {}
    for h in {r.host for r in stamped}:
        d = [r.h0 - r.runner for r in stamped if r.host == h and not r.locked and r.h0]
        base[h] = statistics.median(d) if d else 0.0
    lock_wait = [max(0.0, (r.h0 or 0) - r.runner - base[r.host]) for r in stamped if r.locked]
    return {
        "n": len(rts),
        "locked": sum(r.locked for r in rts),
        "reads": sum(r.read for r in rts),
        "per_host": {h: sum(r.host == h for r in rts) for h in sorted({r.host for r in rts})},
        "steps_mean": round(statistics.mean(r.steps for r in rts), 1),
        "total": ms([r.end - r.start for r in rts]),
        "runner_wait": ms([r.runner - r.start for r in rts]),
        "dispatch_to_host_start": ms([(r.h0 or 0) - r.runner for r in stamped]),
        "host_script": ms([(r.h1 or 0) - (r.h0 or 0) for r in stamped]),
        "host_script_reads": ms([(r.h1 or 0) - (r.h0 or 0) for r in stamped if r.read]),
        "host_script_changes": ms([(r.h1 or 0) - (r.h0 or 0) for r in stamped if not r.read]),
        "host_end_to_result": ms([r.end - (r.h1 or 0) for r in stamped]),
        "lock_wait_estimate": ms(lock_wait),
    }


def _saturated(timeline: list[tuple[float, float, dict[str, float]]], frac: float) -> float:
    """Seconds during which the machine's CPUs were at least `frac` busy (between samples)."""
    cores = os.cpu_count() or 1
    out = 0.0
    for (ta, ba, _), (tb, bb, _) in itertools.pairwise(timeline):
        if tb > ta and (bb - ba) / (tb - ta) >= frac * cores:
            out += tb - ta
    return out


def _buckets(
    timeline: list[tuple[float, float, dict[str, float]]], t0: float, width: float
) -> list[dict[str, float]]:
    """CPU in cores per `width`-second bucket: the machine's and each group's (t: the bucket's start)."""
    out: list[dict[str, float]] = []
    if not timeline:
        return out
    i = 0
    while i < len(timeline) - 1:
        j = i
        while j < len(timeline) - 1 and timeline[j][0] - timeline[i][0] < width:
            j += 1
        (ta, ma, ga), (tb, mb, gb) = timeline[i], timeline[j]
        dt = tb - ta
        if dt <= 0:
            break
        row = {"t": round(ta - t0, 2), "machine": round((mb - ma) / dt, 2)}
        row |= {g: round((gb[g] - ga[g]) / dt, 2) for g in GROUPS}
        out.append(row)
        i = j
    return out


def _peak_rate(timeline: list[tuple[float, float, dict[str, float]]], group: str, window: float) -> float:
    """The group's highest CPU rate (cores) over `window` seconds."""
    best = 0.0
    j = 0
    for i in range(len(timeline)):
        while j < len(timeline) and timeline[j][0] - timeline[i][0] < window:
            j += 1
        if j >= len(timeline):
            break
        dt = timeline[j][0] - timeline[i][0]
        best = max(best, (timeline[j][2][group] - timeline[i][2][group]) / dt)
    return best


# ---- printing ------------------------------------------------------------------------------------------


def print_report(run: Run) -> None:
    r = run.report
    la = r["load_before"]
    print(
        f"\n== {run.phase} [{run.variant}] rep {run.rep}: {r['wall']:.2f} s wall, "
        f"load {la[0]:.2f} {la[1]:.2f} {la[2]:.2f} ({r['summary']})"
    )
    if "segments" in r:
        print("  consecutive parts (sum = wall):")
        for name, s in r["segments"]:
            print(f"    {s:6.2f}  {name}")
        print(f"    {sum(s for _, s in r['segments']):6.2f}  = sum")
    if "during_calls" in r:
        d = r["during_calls"]
        print(f"  while change calls run ({d['window_s']:.2f} s), by what is busy (first that applies):")
        for k, v in d.items():
            if k != "window_s":
                print(f"    {v:6.2f}  {k}")
    if "in_calls" in r:
        c = r["in_calls"]
        print(
            f"  inside provider calls (summed over calls): {c['calls_sum_s']:.2f} s = queued beyond "
            f"workers {c['queued_beyond_workers_s']:.2f} + SSH round trips {c['round_trips_sum_s']:.2f} "
            f"+ Python/gRPC {c['rest_python_grpc_s']:.2f}"
        )
        print(f"  calls: {json.dumps(r['calls'])}")
    if "round_trips" in r:
        t = r["round_trips"]
        print(f"  round trips: {t['n']} ({t['locked']} locked, {t['per_host']}, {t['steps_mean']} steps avg)")
        for k in (
            "total",
            "runner_wait",
            "dispatch_to_host_start",
            "host_script",
            "host_script_reads",
            "host_script_changes",
            "host_end_to_result",
            "lock_wait_estimate",
        ):
            if t.get(k):
                print(f"    {k:24s} {json.dumps(t[k])}")
    if "concurrency" in r:
        print(f"  concurrency: {json.dumps(r['concurrency'])}")
    print(f"  cpu: {json.dumps(r['cpu'])}")
    print(f"  process starts (s after spawn): {json.dumps(r['process_starts'])}")
    if "events" in r:
        print(f"  events (s after spawn): {json.dumps(r['events'])}")


def compare_table(runs: list[Run], variants: list[Variant]) -> str:
    lines = [
        "| variant | phase | n | mean s | min..max s | load (1 min) | provider calls max | queued s | "
        "machine busy % | our CPU s | others' CPU s | provider CPU s |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for v in variants:
        for phase in ("up", "destroy"):
            rs = [r for r in runs if r.variant == v.name and r.phase == phase]
            if not rs:
                continue
            walls = [r.wall for r in rs]
            conc = [r.report.get("concurrency", {}).get("provider_calls_max") for r in rs]
            queued = [r.report.get("in_calls", {}).get("queued_beyond_workers_s") for r in rs]
            busy = [r.report["cpu"]["machine_busy_pct"] for r in rs]
            pcpu = [r.report["cpu"]["groups_s"]["provider"] for r in rs]
            ours = [sum(r.report["cpu"]["groups_s"].values()) for r in rs]
            others = [r.report["cpu"]["other_s"] for r in rs]
            lines.append(
                f"| {v.name} | {phase} | {len(rs)} | {statistics.mean(walls):.2f} "
                f"| {min(walls):.2f}..{max(walls):.2f} "
                f"| {statistics.mean(r.load_before[0] for r in rs):.2f} | {_fmt(conc)} | {_fmt(queued)} "
                f"| {_fmt(busy)} | {_fmt(ours)} | {_fmt(others)} | {_fmt(pcpu)} |"
            )
    return "\n".join(lines)


def _fmt(xs: list[Any]) -> str:
    xs = [x for x in xs if x is not None]
    if not xs:
        return "-"
    if all(isinstance(x, int) for x in xs):
        return "/".join(str(x) for x in xs)
    return f"{statistics.mean(xs):.1f}"


# ---- main ----------------------------------------------------------------------------------------------


def lab(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lab", *args], cwd=ROOT, capture_output=True, text=True, check=check
    )


def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        prog="python -m bench.profile",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    ap.add_argument("--links", type=int, default=20, help="links of the bench slice (2..20)")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each variant, in turn")
    ap.add_argument(
        "--variants", nargs="*", default=["default"], help="e.g. default parallel=16 runners=8 workers=8"
    )
    ap.add_argument(
        "--no-instrument", action="store_true", help="no gRPC log / round-trip records (wall + CPU only)"
    )
    ap.add_argument(
        "--no-destroy-report", action="store_true", help="destroy between ups, but do not report it"
    )
    ap.add_argument("--quiet", action="store_true", help="no per-run breakdown, only the comparison")
    ap.add_argument("--out", type=Path, default=None, help="JSON (default bench/results/profile-<time>.json)")
    ap.add_argument(
        "--keep", type=Path, default=None, help="keep every run's logs and report in this directory"
    )
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    variants = [Variant.parse(t, not args.no_instrument) for t in args.variants]
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    started_lab = False
    if lab("status", check=False).returncode != 0:
        log("testbed not up: python -m lab up")
        lab("up")
        started_lab = True
    workdir = Path(tempfile.mkdtemp(prefix="cloudrepo-profile-"))
    logdir = args.keep or workdir / "runs"
    runs: list[Run] = []
    ok = False
    try:
        with testbed_lock("profile"):
            scan0 = json.loads(lab("scan").stdout)
            inventory = json.loads((lab_dir() / "inventory.json").read_text())
            found = owners.slices(scan0, inventory)
            if found:
                # a slice left there would be adopted, not created: the `up` measured would be another one
                log(f"the testbed holds slices {sorted(found)}: destroy them first")
                return 2
            spec = SliceSpec(name=f"prof{args.links}", links=args.links, pool_start=100, first_vm=2000)
            st = SliceStack(spec, workdir, workdir / "backend")
            st.init()
            try:
                for rep in range(1, args.repeat + 1):
                    for v in variants:
                        for phase in ("up", "destroy"):
                            run = run_phase(st, phase, v, rep, logdir, workdir)
                            log(f"{v.name} {phase} #{rep}: {run.wall:.2f} s (load {run.load_before[0]:.2f})")
                            runs.append(run)
                            if not args.quiet and not (phase == "destroy" and args.no_destroy_report):
                                print_report(run)
                ok = True
            except PulumiFailed as exc:
                log(f"FAILED: {exc}")
            finally:
                set_plugin_override(st, None)
                st.cleanup()
                if json.loads(lab("scan").stdout) != scan0:
                    log("the hosts differ from the scan before the runs")
                    ok = False
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
        if started_lab:
            lab("down", check=False)
    if len(variants) > 1 or args.repeat > 1:
        print()
        print(compare_table(runs, variants))
    RESULTS.mkdir(exist_ok=True)
    out = args.out or RESULTS / f"profile-{stamp}.json"
    out.write_text(
        json.dumps(
            {
                "started": stamp,
                "links": args.links,
                "cores": os.cpu_count(),
                "variants": [v.__dict__ for v in variants],
                "runs": [
                    {
                        "variant": r.variant,
                        "phase": r.phase,
                        "rep": r.rep,
                        "wall": round(r.wall, 3),
                        "report": r.report,
                    }
                    for r in runs
                ],
            },
            indent=1,
        )
        + "\n"
    )
    print(f"\nJSON: {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

"""Drive the real `pulumi` CLI on a benchmark slice and measure each phase.

Per phase: wall time, the SSH counters every process of the phase wrote (`CLOUDREPO_SSH_STATS`, one file per
process, summed), the connections the hosts' sshd accepted and the peak of concurrent sessions
(`bench/sshd_watch.py`), and the peak resident memory of the dynamic provider process (`python -m
pulumi.dynamic`), sampled from /proc (VmHWM) and, where the provider used SSH, also its own `ru_maxrss`.

About 320 lines: one timed run of the engine and every sampler that watches it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.sshd_watch import SshdWatch
from bench.topology import SliceSpec
from lab.pulumi_cli import PulumiCLI, PulumiFailed, make_project
from transport.ssh_stats import STATS_ENV

PHASE_ARGS: dict[str, tuple[str, ...]] = {
    "up": ("up", "--yes", "--non-interactive", "--skip-preview"),
    "preview": ("preview", "--non-interactive"),
    "up-noop": ("up", "--yes", "--non-interactive", "--skip-preview"),
    "refresh": ("refresh", "--yes", "--non-interactive", "--skip-preview"),
    "destroy": ("destroy", "--yes", "--non-interactive", "--skip-preview"),
}


@dataclass
class Phase:
    """One measured CLI run."""

    name: str
    seconds: float
    connections_opened: int = 0
    commands_run: int = 0
    command_seconds: float = 0.0
    stats_files: int = 0
    provider_peak_rss_kb: int | None = None
    provider_cpu_seconds: float | None = None
    summary: str = ""
    host_connections: int | None = None
    host_peak_sessions: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "ssh_connections_opened": self.connections_opened,
            "ssh_commands_run": self.commands_run,
            "ssh_command_seconds": round(self.command_seconds, 3),
            "stats_files": self.stats_files,
            "provider_peak_rss_mb": round(self.provider_peak_rss_kb / 1024, 1)
            if self.provider_peak_rss_kb
            else None,
            "provider_cpu_seconds": round(self.provider_cpu_seconds, 2)
            if self.provider_cpu_seconds is not None
            else None,
            "summary": self.summary,
            "host_ssh_connections": self.host_connections,
            "host_peak_sessions": self.host_peak_sessions,
        }


def _proc_ppid(pid: int) -> int | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(text.rsplit(")", 1)[1].split()[1])


def _descends_from(pid: int, root: int) -> bool:
    for _ in range(20):
        if pid == root:
            return True
        parent = _proc_ppid(pid)
        if parent is None or parent <= 1:
            return False
        pid = parent
    return False


_TICKS = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


def _vm_hwm_kb(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


DYNAMIC_PROVIDER = b"pulumi.dynamic"


class ProviderSampler:
    """Polls /proc for provider processes (an argv word containing `needle`) under one pulumi process; keeps
    the peak VmHWM and their CPU time."""

    def __init__(self, root_pid: int, needle: bytes = DYNAMIC_PROVIDER, interval: float = 0.05) -> None:
        self.root_pid = root_pid
        self.needle = needle
        self.interval = interval
        self.peak_kb: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._known: set[int] = set()
        self._others: set[int] = set()  # not under the pulumi process: never looked at again
        self._cpu: dict[int, float] = {}

    @property
    def cpu_seconds(self) -> float | None:
        """utime + stime of the provider processes, as last seen (they are sampled until they exit)."""
        return sum(self._cpu.values()) if self._cpu else None

    def __enter__(self) -> ProviderSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _scan(self) -> None:
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            if pid in self._known or pid in self._others:
                continue
            if not _descends_from(pid, self.root_pid):
                self._others.add(pid)
                continue
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(self.needle in word for word in cmd):
                self._known.add(pid)
        for pid in list(self._known):
            kb = _vm_hwm_kb(pid)
            cpu = _cpu_seconds(pid)
            if cpu is not None:
                self._cpu[pid] = cpu
            if kb is None:
                self._known.discard(pid)
            elif self.peak_kb is None or kb > self.peak_kb:
                self.peak_kb = kb

    def _run(self) -> None:
        while not self._stop.is_set():
            self._scan()
            self._stop.wait(self.interval)


@dataclass
class Measured:
    """One CLI run to its end, with the provider and sshd figures taken while it ran."""

    argv: list[str]
    out: str
    returncode: int
    seconds: float
    provider: ProviderSampler
    sshd: SshdWatch
    timeout: float | None = None
    """Set when the run was stopped at this timeout."""

    def failure(self, what: str) -> PulumiFailed | None:
        """The error to raise when the run failed (None: it did not)."""
        if self.returncode == 0:
            return None
        why = f"stopped after {self.timeout:.0f} s" if self.timeout else f"exit {self.returncode}"
        return PulumiFailed(f"pulumi {' '.join(self.argv)} on {what}: {why}\n{self.out}")

    def phase(self, name: str) -> Phase:
        return Phase(
            name,
            self.seconds,
            provider_peak_rss_kb=self.provider.peak_kb,
            provider_cpu_seconds=self.provider.cpu_seconds,
            summary=_summary(self.out),
            host_connections=self.sshd.total,
            host_peak_sessions=self.sshd.peak,
        )


PHASE_TIMEOUT = 900.0


def _finish(proc: subprocess.Popen[str], timeout: float) -> tuple[str, bool]:
    """The output of `proc` once it exits, and whether it ran past `timeout`: then SIGTERM (the engine
    stops cleanly and writes its checkpoint), SIGKILL a minute later."""
    try:
        return proc.communicate(timeout=timeout)[0], False
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            return proc.communicate(timeout=60)[0], True
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.communicate()[0], True


def run_measured(
    cli: PulumiCLI,
    args: list[str],
    needle: bytes,
    env: dict[str, str] | None = None,
    timeout: float = PHASE_TIMEOUT,
) -> Measured:
    """`pulumi ARGS`, timed, its provider processes (`needle`) and the hosts' sshd watched."""
    with SshdWatch() as sshd:
        started = time.monotonic()
        proc = cli.popen(*args, env=env)
        with ProviderSampler(proc.pid, needle) as sampler:
            out, timed_out = _finish(proc, timeout)
        seconds = time.monotonic() - started
    return Measured(args, out, proc.returncode, seconds, sampler, sshd, timeout if timed_out else None)


def _summary(stdout: str) -> str:
    """The engine's resource count line(s), e.g. `+ 104 created`."""
    lines = stdout.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Resources:")
    except StopIteration:
        return ""
    out = []
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        out.append(line.strip())
    return "; ".join(out)


@dataclass
class SliceStack:
    """One slice = one stack of the program in a throwaway project directory (code symlinked)."""

    spec: SliceSpec
    workdir: Path
    backend: Path
    parallel: int | None = None
    log: list[str] = field(default_factory=list)

    @property
    def project(self) -> Path:
        return self.workdir / f"project-{self.spec.name}"

    @property
    def cli(self) -> PulumiCLI:
        # counters only where a phase asks for them (an empty $CLOUDREPO_SSH_STATS writes none)
        return PulumiCLI(self.project, self.spec.name, self.backend, extra_env={STATS_ENV: ""})

    def run(self, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return self.cli.run(*args, check=check, timeout=timeout)

    def init(self) -> None:
        """Project directory linked to this repository's program, a new stack, its config written."""
        make_project(self.project)
        self.cli.init()
        doc = {"config": self.spec.stack_config()}
        (self.project / f"Pulumi.{self.spec.name}.yaml").write_text(json.dumps(doc, indent=2) + "\n")

    def phase(self, name: str, stats_root: Path) -> Phase:
        """Run one phase (`up`, `preview`, `up-noop`, `refresh`, `destroy`) and measure it."""
        stats_dir = stats_root / f"{self.spec.name}-{name}"
        shutil.rmtree(stats_dir, ignore_errors=True)
        stats_dir.mkdir(parents=True)
        args = list(PHASE_ARGS[name])
        if self.parallel is not None:
            args += ["--parallel", str(self.parallel)]
        run = run_measured(
            self.cli, args, DYNAMIC_PROVIDER, env={STATS_ENV: str(stats_dir / "stats-{pid}.json")}
        )
        self.log.append(f"$ pulumi {' '.join(args)}\n{run.out}")
        if failed := run.failure(self.spec.name):
            raise failed
        result = run.phase(name)
        for path in sorted(stats_dir.glob("stats-*.json")):
            st = json.loads(path.read_text())
            result.stats_files += 1
            result.connections_opened += int(st.get("connections_opened", 0))
            result.commands_run += int(st.get("commands_run", 0))
            result.command_seconds += float(st.get("command_seconds", 0.0))
            rss = st.get("ru_maxrss_kb")
            if isinstance(rss, int) and (result.provider_peak_rss_kb or 0) < rss:
                result.provider_peak_rss_kb = rss
        return result

    def outputs(self) -> dict[str, Any]:
        return self.cli.outputs()

    def cleanup(self) -> None:
        """Best effort: destroy whatever is left (after a failure) and remove the stack."""
        self.cli.destroy_all()
        self.cli.remove()

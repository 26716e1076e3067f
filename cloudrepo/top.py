"""`cloudrepo top NAME`: each launched VM's CPU % and resident memory, from its QEMU process on its worker.

The QEMU process is found by the VM's pid file (`/var/lib/cloudrepo/vms/<vm>/qemu.pid`) and accepted only
when its argv holds that pid file's path (as `QemuVm` does), never by name. One constant sh program per
worker and refresh (`SAMPLE`) reads `/proc/<pid>/stat` and `/proc/<pid>/status` twice, `INTERVAL` seconds
apart, with the clock ticks per second: the CPU % is the ticks used between the two reads (100 % = one
host CPU). Parsing, the table and the JSON are pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from vocabulary import naming

INTERVAL = "1"
"""Seconds between the two reads of one sample."""
SAMPLE_SECONDS = 30.0
"""How long `top` waits for a worker's sample before it gives up."""

SAMPLE = (
    'root=$1; wait=$2; shift 2; echo "hz $(getconf CLK_TCK)"; '
    'read_all() { tag=$1; shift; for vm in "$@"; do p=$root/$vm/qemu.pid; '
    'pid=$(cat "$p" 2>/dev/null) || { echo "$tag $vm none"; continue; }; '
    'case "$pid" in *[!0-9]*|"") echo "$tag $vm none"; continue;; esac; '
    'if tr "\\0" "\\n" <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF "$p"; then '
    'echo "$tag $vm $pid $(cut -d" " -f14,15 "/proc/$pid/stat") '
    '$(awk \'/^VmRSS:/ {print $2}\' "/proc/$pid/status")"; '
    'else echo "$tag $vm none"; fi; done; }; '
    'read_all a "$@"; t0=$(cut -d" " -f1 /proc/uptime); sleep "$wait"; '
    't1=$(cut -d" " -f1 /proc/uptime); read_all b "$@"; echo "uptime $t0 $t1"'
)
"""$1 the VMs' directory, $2 the seconds between reads, then the VM ids: `hz N`, per VM and read
`a|b VM PID UTIME STIME RSS_KB` (or `a|b VM none`: no QEMU of ours), then `uptime T0 T1`."""


def sample_argv(vms: Sequence[int]) -> list[str]:
    return ["sh", "-c", SAMPLE, "sh", naming.VMS_DIR, INTERVAL, *map(str, vms)]


@dataclass(frozen=True)
class VmUsage:
    vm: int
    worker: str
    pid: int | None
    cpu_pct: float | None
    rss_mb: float | None

    @property
    def running(self) -> bool:
        return self.pid is not None


def parse_sample(worker: str, text: str) -> list[VmUsage]:
    """The `SAMPLE` output of one worker: one `VmUsage` per VM read."""
    hz, span = 100.0, 0.0
    reads: dict[str, dict[int, tuple[int, int, int] | None]] = {"a": {}, "b": {}}
    pids: dict[int, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] == "hz" and parts[1].isdigit():
            hz = float(parts[1]) or 100.0
        elif len(parts) == 3 and parts[0] == "uptime":
            try:
                span = float(parts[2]) - float(parts[1])
            except ValueError:
                span = 0.0
        elif len(parts) >= 3 and parts[0] in reads and parts[1].isdigit():
            vm = int(parts[1])
            nums = parts[2:]
            if len(nums) == 4 and all(n.isdigit() for n in nums):
                pids[vm] = int(nums[0])
                reads[parts[0]][vm] = (int(nums[1]) + int(nums[2]), int(nums[3]), int(nums[0]))
            else:
                reads[parts[0]].setdefault(vm, None)
    out = []
    for vm in sorted(set(reads["a"]) | set(reads["b"])):
        first, last = reads["a"].get(vm), reads["b"].get(vm)
        if last is None:
            out.append(VmUsage(vm, worker, None, None, None))
            continue
        cpu = None
        if first is not None and first[2] == last[2] and span > 0:
            cpu = round(100.0 * (last[0] - first[0]) / hz / span, 1)
        out.append(VmUsage(vm, worker, last[2], cpu, round(last[1] / 1024, 1)))
    return out


def as_json(rows: Sequence[VmUsage]) -> list[dict[str, Any]]:
    return [
        {
            "vm": r.vm,
            "worker": r.worker,
            "running": r.running,
            "pid": r.pid,
            "cpuPct": r.cpu_pct,
            "rssMb": r.rss_mb,
        }
        for r in rows
    ]


def table(slice_name: str, rows: Sequence[VmUsage], when: str) -> str:
    lines = [
        f"cloudrepo top {slice_name}  {when}",
        "",
        f"{'vm':>6}  {'worker':<12} {'pid':>8} {'CPU %':>7} {'RSS MiB':>9}",
    ]
    for r in sorted(rows, key=lambda r: (-(r.cpu_pct or 0.0), r.vm)):
        if not r.running:
            lines.append(f"{r.vm:>6}  {r.worker:<12} {'-':>8} {'-':>7} {'-':>9}  not running")
            continue
        cpu = "-" if r.cpu_pct is None else f"{r.cpu_pct:.1f}"
        lines.append(f"{r.vm:>6}  {r.worker:<12} {r.pid:>8} {cpu:>7} {r.rss_mb:>9.1f}")
    return "\n".join(lines)


def launched(outputs: dict[str, Any]) -> dict[str, list[int]]:
    """Worker -> the launched VMs of the slice's outputs (those with a `console`)."""
    out: dict[str, list[int]] = {}
    vms = outputs.get("vms")
    for key, vm in sorted(vms.items()) if isinstance(vms, dict) else []:
        if isinstance(vm, dict) and vm.get("console") and isinstance(vm.get("worker"), str) and key.isdigit():
            out.setdefault(vm["worker"], []).append(int(key))
    return out

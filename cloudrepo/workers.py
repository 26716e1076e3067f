"""`cloudrepo workers`: each worker's CPUs, memory, disk of /var/lib/cloudrepo, load, and the claims the
slices placed there (`providers.kinds.worker_claim`), from one SSH round trip per host.

The remote side is one constant sh program (`REPORT`); its output is parsed here (pure), as are the table
and the JSON. Which hosts: the workers of the given slices' stack files (default: every `Pulumi.*.yaml`
of the checkout), each host once (by address and port), logged into with the first such slice's SSH
settings (`cloudrepo.hostaccess`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from typing import Any

from vocabulary import naming

REPORT = (
    'echo "cpus $(nproc)"; '
    "awk '/^MemTotal:|^MemAvailable:/ {print \"mem\", $1, $2}' /proc/meminfo; "
    'echo "load $(cat /proc/loadavg)"; '
    'd=$1; [ -d "$d" ] || d=/; '
    'echo "disk $(df -Pk "$d" | tail -n 1)"; '
    'cd "$2" 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] || continue; '
    'case "$f" in .*) continue;; esac; echo "claim $f $(head -n 1 "$f")"; done'
)
"""$1 the state root, $2 the claims directory: `cpus N`, `mem MemTotal: KB`, `mem MemAvailable: KB`,
`load 1 5 15 r/t last`, `disk FS BLOCKS USED AVAIL USE% MOUNT` (1 KiB blocks), `claim <slice>@<vm> cpus MiB
uid stack`."""


def report_argv() -> list[str]:
    return ["sh", "-c", REPORT, "sh", naming.STATE_ROOT, naming.CLAIMS_DIR]


@dataclass(frozen=True)
class SliceShare:
    slice: str
    vms: tuple[int, ...]
    cpus: int
    memory_mb: int
    stack: str | None = None


@dataclass(frozen=True)
class WorkerReport:
    name: str
    cpus: int | None = None
    memory_mb: int | None = None
    available_mb: int | None = None
    disk_total_mb: int | None = None
    disk_free_mb: int | None = None
    load: tuple[float, float, float] | None = None
    slices: tuple[SliceShare, ...] = ()
    capacity: Mapping[str, int] | None = None
    """The declared capacity (`{cpus, memoryMb}`), when a stack file declares one."""
    error: str | None = None
    """Why the host could not be read."""

    @property
    def claimed(self) -> tuple[int, int]:
        return sum(s.cpus for s in self.slices), sum(s.memory_mb for s in self.slices)


def parse_report(name: str, text: str, capacity: Mapping[str, int] | None = None) -> WorkerReport:
    """The `REPORT` output of worker `name`; lines it does not know are skipped."""
    fields: dict[str, Any] = {}
    claims: dict[str, dict[str, Any]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "cpus" and parts[1].isdigit():
            fields["cpus"] = int(parts[1])
        elif len(parts) >= 3 and parts[0] == "mem" and parts[2].isdigit():
            key = {"MemTotal:": "memory_mb", "MemAvailable:": "available_mb"}.get(parts[1])
            if key:
                fields[key] = int(parts[2]) // 1024
        elif len(parts) >= 4 and parts[0] == "load":
            with suppress(ValueError):
                fields["load"] = (float(parts[1]), float(parts[2]), float(parts[3]))
        elif len(parts) >= 5 and parts[0] == "disk" and parts[2].isdigit() and parts[4].isdigit():
            fields["disk_total_mb"], fields["disk_free_mb"] = int(parts[2]) // 1024, int(parts[4]) // 1024
        elif len(parts) >= 4 and parts[0] == "claim" and parts[2].isdigit() and parts[3].isdigit():
            owner, _, vm = parts[1].rpartition("@")
            if not owner or not vm.isdigit():
                continue
            entry = claims.setdefault(owner, {"vms": [], "cpus": 0, "mem": 0, "stack": None})
            entry["vms"].append(int(vm))
            entry["cpus"] += int(parts[2])
            entry["mem"] += int(parts[3])
            if len(parts) > 5 and parts[5] != "-":
                entry["stack"] = parts[5]
    shares = tuple(
        SliceShare(s, tuple(sorted(e["vms"])), e["cpus"], e["mem"], e["stack"])
        for s, e in sorted(claims.items())
    )
    return WorkerReport(name=name, slices=shares, capacity=capacity, **fields)


def as_json(reports: Sequence[WorkerReport]) -> list[dict[str, Any]]:
    out = []
    for r in reports:
        entry: dict[str, Any] = {"worker": r.name}
        if r.error is not None:
            entry["error"] = r.error
            out.append(entry)
            continue
        entry.update(
            cpus=r.cpus,
            memoryMb=r.memory_mb,
            availableMb=r.available_mb,
            disk={"path": naming.STATE_ROOT, "totalMb": r.disk_total_mb, "freeMb": r.disk_free_mb},
            load=list(r.load) if r.load else None,
            capacity=dict(r.capacity) if r.capacity else None,
            claimed={"cpus": r.claimed[0], "memoryMb": r.claimed[1]},
            slices=[
                {
                    "slice": s.slice,
                    "stack": s.stack,
                    "vms": list(s.vms),
                    "cpus": s.cpus,
                    "memoryMb": s.memory_mb,
                }
                for s in r.slices
            ],
        )
        out.append(entry)
    return out


def table(reports: Sequence[WorkerReport]) -> str:
    """One line per worker, then one indented line per slice placed there."""
    rows = [("worker", "cpus", "memory MiB (avail)", "disk MiB free", "load", "capacity", "claimed")]
    extra: dict[str, list[str]] = {}
    for r in reports:
        if r.error is not None:
            rows.append((r.name, "-", "-", "-", "-", "-", f"unreachable: {r.error}"))
            continue
        cap = f"{r.capacity['cpus']}/{r.capacity['memoryMb']}" if r.capacity else "-"
        rows.append(
            (
                r.name,
                str(r.cpus),
                f"{r.memory_mb} ({r.available_mb})",
                f"{r.disk_free_mb}/{r.disk_total_mb}",
                " ".join(f"{x:.2f}" for x in r.load) if r.load else "-",
                cap,
                f"{r.claimed[0]}/{r.claimed[1]}",
            )
        )
        extra[r.name] = [
            f"  {s.slice}: VMs {', '.join(map(str, s.vms))}: {s.cpus} vCPUs, {s.memory_mb} MiB"
            for s in r.slices
        ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = []
    for row in rows:
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        lines += extra.get(row[0], [])
    return "\n".join(lines)


@dataclass
class Host:
    """One worker host to read: its name, which slice's settings log in, its declared capacity."""

    name: str
    slice: str
    capacity: Mapping[str, int] | None = None
    also: list[str] = field(default_factory=list)
    """Other names the stack files give the same host."""


def hosts(configs: Mapping[str, Mapping[str, Any]]) -> list[Host]:
    """Each worker host once (by address and port), from stack name -> its `cloudrepo:workers` value."""
    seen: dict[tuple[str, int], Host] = {}
    for stack, workers in sorted(configs.items()):
        for name, entry in sorted(workers.items()) if isinstance(workers, Mapping) else []:
            if not isinstance(entry, Mapping) or not isinstance(entry.get("host"), str):
                continue
            key = (
                str(entry["host"]),
                int(entry.get("port", 22)) if str(entry.get("port", 22)).isdigit() else 22,
            )
            cap = entry.get("capacity")
            declared = dict(cap) if isinstance(cap, Mapping) else None
            if key not in seen:
                seen[key] = Host(name, stack, declared)
            elif name != seen[key].name and name not in seen[key].also:
                seen[key].also.append(name)
    return sorted(seen.values(), key=lambda h: h.name)

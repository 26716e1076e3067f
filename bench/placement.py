"""Placement time: 200 `auto` VMs over 10 workers (`python -m bench.placement [--vms N --workers M]`).

Measures `components.placement.place` alone (every VM new; then every VM kept from the last run's memory)
and `components.prepare.prepare` end to end on a stack config of the same slice (launched VMs: the config,
the boot files, the placement, the VLANs and the plan), each the median of `--repeat` runs. No host, no
engine: the placement is pure. Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.outputs import Deployed, stack_outputs
from components.placement import AUTO, Capacity, Demand, place
from components.prepare import prepare

SIZES = ((1, 256), (2, 512), (1, 1024), (4, 2048))
"""(vCPUs, MiB) of the VMs, in turn."""


def median_ms(fn: Callable[[], Any], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return round(statistics.median(times), 3)


def workers(n: int) -> dict[str, Capacity]:
    """Workers of different sizes; 200 VMs ask about 90 % of the 10 workers' vCPUs and memory."""
    return {f"worker{i + 1}": Capacity(40 + 4 * (i % 3), 18432 + 2048 * (i % 4)) for i in range(n)}


def demands(n: int) -> list[Demand]:
    return [Demand(1000 + i, *SIZES[i % len(SIZES)], AUTO) for i in range(n)]


def stack_config(vms: int, caps: dict[str, Capacity], base: Path) -> dict[str, str]:
    (base / "images").mkdir()
    (base / "images" / "vmlinuz").write_bytes(b"kernel")
    (base / "known_hosts").write_text("")
    launch = {"kernel": "images/vmlinuz", "accel": "tcg"}
    config = {
        "cloudrepo:networkNode": {"host": "10.0.10.3"},
        "cloudrepo:workers": {
            w: {"host": f"10.0.1.{i + 1}", "capacity": {"cpus": c.cpus, "memoryMb": c.memory_mb}}
            for i, (w, c) in enumerate(caps.items())
        },
        "cloudrepo:ssh": {"user": "u", "privateKeyPath": "k", "knownHostsPath": "known_hosts"},
        "cloudrepo:slice": {
            "vlanPool": {"start": 120},
            "worker": AUTO,
            "vms": [
                {"id": d.vm, "launch": {**launch, "cpus": d.cpus, "memoryMb": d.memory_mb}}
                for d in demands(vms)
            ],
        },
    }
    return {k: json.dumps(v) for k, v in config.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.placement")
    p.add_argument("--vms", type=int, default=200)
    p.add_argument("--workers", type=int, default=10)
    p.add_argument("--repeat", type=int, default=20)
    args = p.parse_args(argv)
    caps, ds = workers(args.workers), demands(args.vms)
    names = list(caps)
    first = place(ds, caps, names)
    with tempfile.TemporaryDirectory() as tmp:
        raw = stack_config(args.vms, caps, Path(tmp))
        prepared = prepare(raw, "bench", {}, Path(tmp))
        outputs = stack_outputs(prepared.plan)
        result = {
            "vms": args.vms,
            "workers": args.workers,
            "demand": {"cpus": sum(d.cpus for d in ds), "memoryMb": sum(d.memory_mb for d in ds)},
            "capacity": {
                "cpus": sum(c.cpus for c in caps.values()),
                "memoryMb": sum(c.memory_mb for c in caps.values()),
            },
            "place_new_ms": median_ms(lambda: place(ds, caps, names), args.repeat),
            "place_kept_ms": median_ms(lambda: place(ds, caps, names, first), args.repeat),
            "prepare_new_ms": median_ms(lambda: prepare(raw, "bench", {}, Path(tmp)), args.repeat),
            "prepare_kept_ms": median_ms(lambda: prepare(raw, "bench", outputs, Path(tmp)), args.repeat),
            "repeat": args.repeat,
        }
        assert Deployed.from_outputs(outputs).workers == first
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How long a VM disk's snapshot takes to save and restore, by method, on this machine's disk (what the
worker's `cloudrepo snapshot` programs do, without SSH or the engine): `python -m bench.snapshot_disks`.

Each run makes a base image and a qcow2 overlay on it (as a launched VM's `disk.qcow2`) with N MiB written
into the overlay (`qemu-io`), then times, median of 3:
- `copy`: `cp --reflink=auto --sparse=always` of the overlay out (save) and back (restore): the method
  `cloudrepo snapshot` uses (a reflink, so near zero, on btrfs/XFS; a full copy of the written clusters
  elsewhere);
- `convert`: `qemu-img convert -O qcow2 -B base` out, and `cp` back (a rewritten copy on the same base);
- `internal`: `qemu-img snapshot -c` / `-a` (a qcow2 internal snapshot in the overlay itself: needs the
  image closed, or QMP `snapshot-save` jobs on a running VM, and the overlay grows with each).
Prints a Markdown table.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

SIZES_MIB = (16, 128, 512)


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True)


def timed(fn: Callable[[], None], runs: int = 3) -> float:
    took = []
    for _ in range(runs):
        t0 = time.monotonic()
        fn()
        took.append(time.monotonic() - t0)
    return statistics.median(took)


def bench(root: Path, mib: int) -> dict[str, tuple[float, float]]:
    base, disk, out = root / "base.qcow2", root / "disk.qcow2", root / "snap.qcow2"
    sh("qemu-img", "create", "-q", "-f", "qcow2", str(base), "2G")
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(disk))
    sh("qemu-io", "-f", "qcow2", "-c", f"write -P 0x5a 0 {mib}M", str(disk))
    copy = ("cp", "--reflink=auto", "--sparse=always")
    results = {
        "copy": (
            timed(lambda: sh(*copy, str(disk), str(out))),
            timed(lambda: sh(*copy, str(out), str(disk))),
        ),
        "convert": (
            timed(
                lambda: sh(
                    "qemu-img", "convert", "-O", "qcow2", "-B", str(base), "-F", "qcow2", str(disk), str(out)
                )
            ),
            timed(lambda: sh(*copy, str(out), str(disk))),
        ),
    }
    n = iter(range(100))
    results["internal"] = (
        timed(lambda: sh("qemu-img", "snapshot", "-c", f"s{next(n)}", str(disk))),
        timed(lambda: sh("qemu-img", "snapshot", "-a", "s0", str(disk))),
    )
    return results


def main() -> int:
    rows = ["| written | method | save (s) | restore (s) |", "|---|---|---|---|"]
    for mib in SIZES_MIB:
        with tempfile.TemporaryDirectory(prefix="snapbench-", dir="/var/tmp") as tmp:
            for method, (save, restore) in bench(Path(tmp), mib).items():
                rows.append(f"| {mib} MiB | {method} | {save:.3f} | {restore:.3f} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())

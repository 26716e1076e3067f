"""Boot-to-lease: a ring of 4 launched VMs, each a real QEMU guest (TCG) of the testbed.

Measures the time from `pulumi up`'s start until every guest holds every lease it has a reservation for
(read inside the guests through their serial consoles), and `pulumi destroy` until no QEMU process of the
slice is left.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.engine import SliceStack
from bench.topology import SliceSpec
from lab import image, slicecheck
from lab.common import host_paths

VMS = 4
POOL = 220  # clear of the other scenarios' pools, and of their subnets (VLAN % 256)
FIRST_VM = 4101


@dataclass(frozen=True)
class LaunchedRing(SliceSpec):
    """The benchmark ring with every VM launched on the testbed's guest."""

    kernel: str = ""
    initrd: str = ""

    def vms(self) -> list[dict[str, Any]]:
        boot = {
            "kernel": self.kernel,
            "initrd": self.initrd,
            "append": "console=ttyS0 quiet",
            "memoryMb": 128,
        }
        return [{**vm, "launch": boot} for vm in super().vms()]

    def stack_config(self) -> dict[str, Any]:
        qemu = {
            "accel": "tcg",
            "imageDirs": sorted({str(Path(self.kernel).parent), str(Path(self.initrd).parent)}),
        }
        return {**super().stack_config(), "cloudrepo:qemu": qemu}


def _qemu_pids(spec: SliceSpec) -> list[int]:
    pids = []
    for i, vm in enumerate(spec.vm_ids):
        pidfile = host_paths(spec.workers[i % len(spec.workers)]).state / "vms" / str(vm) / "qemu.pid"
        if pidfile.exists():
            pids.append(int(pidfile.read_text()))
    return pids


def _alive(pid: int) -> bool:
    try:
        return bool(Path(f"/proc/{pid}/cmdline").read_bytes())
    except OSError:
        return False


def boot_to_lease(
    workdir: Path, backend: Path, stats_root: Path, parallel: int | None = None
) -> dict[str, Any]:
    guest = image.guest()
    spec = LaunchedRing("bench-vms", VMS, POOL, FIRST_VM, kernel=guest["kernel"], initrd=guest["initrd"])
    st = SliceStack(spec, workdir, backend, parallel=parallel)
    st.init()
    try:
        t0 = time.monotonic()
        up = st.phase("up", stats_root)
        outputs = st.outputs()
        slicecheck.use_launched(outputs)
        wanted = {
            (vm, iface): spec_["ip"]
            for vm, v in outputs["vms"].items()
            for iface, spec_ in v["interfaces"].items()
            if spec_["ip"] is not None
        }
        after_up = time.monotonic() - t0
        got = slicecheck.launched_leases(wanted)
        missing = sorted(f"{vm}.{iface}" for (vm, iface), (ip, _) in got.items() if ip != wanted[(vm, iface)])
        per_vm: dict[str, float] = {}
        for (vm, _), (_, seconds) in got.items():
            per_vm[vm] = max(per_vm.get(vm, 0.0), round(after_up + seconds, 1))
        pids = _qemu_pids(spec)
        t1 = time.monotonic()
        destroy = st.phase("destroy", stats_root)
        while any(_alive(p) for p in pids) and time.monotonic() - t1 < 60:
            time.sleep(0.1)
        gone = time.monotonic() - t1
        return {
            "vms": VMS,
            "leases": len(wanted),
            "missing": missing,
            "up_seconds": round(up.seconds, 1),
            "up_to_all_leases_seconds": max(per_vm.values()) if per_vm else None,
            "up_to_leases_per_vm": per_vm,
            "destroy_seconds": round(destroy.seconds, 1),
            "destroy_to_no_qemu_seconds": round(gone, 1),
            "qemu_left": [p for p in pids if _alive(p)],
        }
    finally:
        st.cleanup()

"""`cloudrepo workers`: the remote report body run here by a local `sh` (against this machine's /proc and a
claims directory written as `WorkerClaim` writes it), parsed, and printed as a table and JSON."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from cloudrepo import workers
from providers.kinds.worker_claim import claim_text
from vocabulary.specs import Endpoint, WorkerClaimSpec


def meminfo_mb(key: str) -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) // 1024
    raise AssertionError(key)


def claim(slice_name: str, vm: int, cpus: int, mem: int) -> str:
    spec = WorkerClaimSpec(
        slice=slice_name, host=Endpoint(name="w", address="127.0.0.1", port=22), uid="a" * 32, vm=vm,
        cpus=cpus, memory_mb=mem, capacity_cpus=8, capacity_memory_mb=8192, stack=f"p/{slice_name}",
    )  # fmt: skip
    return claim_text(spec)


def test_the_report_read_from_this_machine(tmp_path: Path) -> None:
    state, claims = tmp_path / "state", tmp_path / "state" / "claims"
    claims.mkdir(parents=True)
    for name, vm, cpus, mem in (("a", 1, 1, 128), ("a", 2, 2, 256), ("b", 7, 1, 512)):
        (claims / f"{name}@{vm}").write_text(claim(name, vm, cpus, mem))
    (claims / ".tmp").write_text("junk\n")
    argv = workers.report_argv()
    argv[4:6] = [str(state), str(claims)]
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    r = workers.parse_report("w", out, {"cpus": 8, "memoryMb": 8192})
    assert r.cpus == os.cpu_count()
    assert r.memory_mb == meminfo_mb("MemTotal")
    assert r.available_mb is not None and abs(r.available_mb - meminfo_mb("MemAvailable")) < 512
    disk = shutil.disk_usage(state)
    assert r.disk_total_mb is not None and abs(r.disk_total_mb - disk.total // 2**20) <= 1
    assert r.load is not None and all(x >= 0 for x in r.load)
    assert r.slices == (
        workers.SliceShare("a", (1, 2), 3, 384, "p/a"),
        workers.SliceShare("b", (7,), 1, 512, "p/b"),
    )
    doc = workers.as_json([r])
    assert doc[0]["claimed"] == {"cpus": 4, "memoryMb": 896} and doc[0]["capacity"] == {
        "cpus": 8,
        "memoryMb": 8192,
    }
    text = workers.table([r, workers.WorkerReport("w2", error="no route")])
    assert "  a: VMs 1, 2: 3 vCPUs, 384 MiB" in text and "unreachable: no route" in text


def test_each_host_once_with_the_first_stack_that_names_it() -> None:
    hosts = workers.hosts(
        {
            "s2": {"worker1": {"host": "10.0.0.1"}, "w9": {"host": "10.0.0.9", "port": 2222}},
            "s1": {"worker1": {"host": "10.0.0.1", "port": 22, "capacity": {"cpus": 2, "memoryMb": 512}}},
            "s3": {"bad": "text", "other": {"host": "10.0.0.1"}},
        }
    )
    assert [(h.name, h.slice, h.capacity, h.also) for h in hosts] == [
        ("w9", "s2", None, []),
        ("worker1", "s1", {"cpus": 2, "memoryMb": 512}, ["other"]),
    ]

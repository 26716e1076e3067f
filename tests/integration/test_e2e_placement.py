"""`worker: auto` on the real engine: three workers of different declared sizes, two slices of launched
`auto` VMs whose demand is 100 % of the total capacity deployed by two `pulumi up` started together. Both
succeed the first time: each program places under the workers' locks and reserves its choice as pending
claims before any resource runs, so the second sees the first's share; the workers' claims never exceed
a capacity and every pending claim is taken over by its `WorkerClaim`. A VM that fits nowhere fails
preview with the numbers (also in a slice that declares no capacity: the hosts' own, less the claims);
removing a VM keeps every other VM where it was and frees its share; an `up` that fails after its
reservation leaves a pending claim that its `destroy` removes. Then `cloudrepo workers` and
`cloudrepo top` against the hosts' own /proc, `top` driven in tmux.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.common import host_paths
from tests.integration.clikit import Checkout
from tests.integration.e2ekit import guest_launch, qemu_tcg, wall_time
from tests.integration.slicekit import SliceStack, failure, lab_config
from tests.integration.test_e2e_console import FAULT_STACKS, Tmux
from tests.labfixtures import LabSession, Testbed

CAPACITY = {"worker1": (4, 512), "worker2": (3, 384), "worker3": (2, 256)}
"""vCPUs, MiB: nine 1-vCPU, 128 MiB VMs fill all three exactly."""
VM_MB = 128
A_VMS = [8101, 8102, 8103, 8104, 8105]
B_VMS = [8121, 8122, 8123, 8124]


@pytest.fixture(scope="session")
def three_workers(lab_session: LabSession) -> Testbed:
    return lab_session.ensure_up(3)


def extra() -> dict[str, Any]:
    workers = lab_config()["cloudrepo:workers"]
    assert set(CAPACITY) <= set(workers), workers
    declared = {w: {**workers[w], "capacity": {"cpus": c, "memoryMb": m}} for w, (c, m) in CAPACITY.items()}
    return {"cloudrepo:workers": declared, **qemu_tcg()}


def auto_vms(ids: list[int]) -> list[dict[str, Any]]:
    boot = guest_launch(VM_MB)
    return [{"id": i, "worker": "auto", "launch": boot} for i in ids]


def claims() -> dict[str, dict[str, tuple[int, int]]]:
    """Worker -> claim file -> (vCPUs, MiB), read from the workers' own state directories."""
    out: dict[str, dict[str, tuple[int, int]]] = {}
    for worker in CAPACITY:
        d = host_paths(worker).state / "claims"
        files = sorted(d.iterdir()) if d.is_dir() else []
        out[worker] = {}
        for f in files:
            cpus, mem, *_ = f.read_text().split()
            out[worker][f.name] = (int(cpus), int(mem))
    return out


def pending() -> list[str]:
    """The pending claims (reserved at `up`, not yet taken over) on the workers."""
    return sorted(
        f"{worker}:{f.name}"
        for worker in CAPACITY
        for d in (host_paths(worker).state / "claims",)
        if d.is_dir()
        for f in d.iterdir()
        if f.read_text().split()[2:3] == ["pending"]
    )


def assert_within_capacity(found: dict[str, dict[str, tuple[int, int]]]) -> None:
    for worker, held in found.items():
        cpus, mem = sum(c for c, _ in held.values()), sum(m for _, m in held.values())
        assert cpus <= CAPACITY[worker][0] and mem <= CAPACITY[worker][1], f"{worker} overbooked: {held}"


def running(worker: str, vm: int) -> bool:
    pid_file = host_paths(worker).state / "vms" / str(vm) / "qemu.pid"
    if not pid_file.exists():
        return False
    cmdline = Path(f"/proc/{pid_file.read_text().strip()}/cmdline")
    return cmdline.exists() and f"vms/{vm}/qemu.pid".encode() in cmdline.read_bytes()


def preview_choice(stack: SliceStack) -> dict[int, str]:
    """VM -> the worker `pulumi preview` shows its claim on."""
    doc = json.loads(stack.cli.run("preview", "--json", "--non-interactive").stdout)
    out = {}
    for step in doc["steps"]:
        name = step["urn"].rpartition("::")[2]
        if "-claim-" in name and step.get("newState"):
            out[int(name.rpartition("-claim-")[2])] = step["newState"]["inputs"]["host"]["name"]
    return out


def placed(stack: SliceStack) -> dict[int, str]:
    return {int(k): v["worker"] for k, v in stack.outputs()["vms"].items()}


def test_auto_placement_two_slices_at_once(
    three_workers: Testbed, slice_stack: Callable[..., SliceStack], slice_backend: Path, tmp_path: Path
) -> None:
    with wall_time("placement: two slices of auto VMs at once"):
        a, b = run_placement(slice_stack, three_workers)
    check_workers_command(three_workers, a, b, slice_backend)
    op = Checkout(a.cli.project_dir, {"PULUMI_BACKEND_URL": f"file://{slice_backend}"})
    check_top(op, placed(a))
    tmux = Tmux(tmp_path, op.env())
    try:
        drive_top(op, tmux, placed(a))
    finally:
        tmux.kill()


def status_of(pid: int) -> dict[str, str]:
    return dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())


def check_top(op: Checkout, where: dict[int, str]) -> None:
    """`cloudrepo top --once --json`: each VM's QEMU by its pid file, its RSS as the host's /proc says."""
    doc = json.loads(op.ok("top", "e2e-pla", "--once", "--json"))
    assert {d["vm"]: d["worker"] for d in doc} == where
    for d in doc:
        pid_file = host_paths(d["worker"]).state / "vms" / str(d["vm"]) / "qemu.pid"
        assert d["running"] and d["pid"] == int(pid_file.read_text().strip()), d
        rss = int(status_of(d["pid"])["VmRSS"].split()[0]) / 1024
        assert abs(d["rssMb"] - rss) < 8, (d, rss)
        assert d["rssMb"] <= VM_MB + 256 and 0 <= d["cpuPct"] <= 100 * (os.cpu_count() or 1), d


def drive_top(op: Checkout, tmux: Tmux, where: dict[int, str]) -> None:
    """`cloudrepo top` in a terminal: every VM on the screen, the screen refreshed in place, Ctrl-C ends
    it with status 0."""
    command = [*op.script, "--project", str(op.project), "top", "e2e-pla", "--interval", "1"]
    argv = [*FAULT_STACKS, *command]
    tmux("new-session", "-d", "-s", "top", "-x", "120", "-y", "30", "-c", str(op.project), shlex.join(argv))
    first = tmux.wait_for("top", "cloudrepo top e2e-pla", timeout=60)
    for vm, worker in where.items():
        tmux.wait_for("top", f"{vm}  {worker}", timeout=30)
    stamp = next(line for line in first.splitlines() if line.startswith("cloudrepo top"))
    deadline = time.monotonic() + 30
    visible = lambda: tmux("capture-pane", "-p", "-t", "top")  # noqa: E731  (the screen, not its history)
    while stamp in visible() and time.monotonic() < deadline:
        time.sleep(0.5)
    screen = visible()
    assert stamp not in screen and screen.count("cloudrepo top e2e-pla") == 1, screen  # redrawn in place
    tmux("send-keys", "-t", "top", "C-c")
    assert tmux.ended("top", 10, "Ctrl-C") == 0


def check_workers_command(testbed: Testbed, a: SliceStack, b: SliceStack, backend: Path) -> None:
    """`cloudrepo workers --json` from A's checkout: every worker of its stack file, checked against the
    host's own /proc (and its state directory's file system); the claims of both slices (B's stack file is
    in another checkout: the workers hold the truth)."""
    op = Checkout(a.cli.project_dir, {"PULUMI_BACKEND_URL": f"file://{backend}"})
    doc = json.loads(op.ok("workers", "--json"))
    table = op.ok("workers")
    found = claims()
    assert [w["worker"] for w in doc] == sorted(CAPACITY)
    for w in doc:
        name = w["worker"]
        assert w["cpus"] == int(testbed.run(name, "nproc")[1])
        meminfo = dict(line.split(":", 1) for line in testbed.run(name, "cat /proc/meminfo")[1].splitlines())
        assert w["memoryMb"] == int(meminfo["MemTotal"].split()[0]) // 1024
        disk = shutil.disk_usage(host_paths(name).state)
        assert abs(w["disk"]["totalMb"] - disk.total // 2**20) <= 1, (w["disk"], disk)
        load = [float(x) for x in testbed.run(name, "cat /proc/loadavg")[1].split()[:3]]
        assert abs(w["load"][2] - load[2]) < 1.0, (w["load"], load)
        assert w["capacity"] == {"cpus": CAPACITY[name][0], "memoryMb": CAPACITY[name][1]}
        shares = {s["slice"]: s for s in w["slices"]}
        for slice_name in ("e2e-pla", "e2e-plb"):
            vms = sorted(int(f.split("@")[1]) for f in found[name] if f.startswith(f"{slice_name}@"))
            if vms:
                assert shares[slice_name]["vms"] == vms and shares[slice_name]["memoryMb"] == VM_MB * len(vms)
        assert w["claimed"]["memoryMb"] == sum(m for _, m in found[name].values())
        assert name in table
    assert sum(len(w["slices"]) for w in doc) >= 2, doc


def check_failed_up_and_destroy(slice_stack: Callable[..., SliceStack], freed: str) -> None:
    """An `up` that fails after its reservation (its pool meets A's: refused at the pool claim, before any
    `WorkerClaim`) leaves its pending claim in the share A freed, and it counts there; the slice's `destroy`
    removes it (its `PendingClaims` is in the state: the pool claim waited for it)."""
    d = slice_stack("e2e-pld", 300, auto_vms([8161]), [], extra=extra())
    text = failure(d.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
    assert "meet slice 'e2e-pla'" in text, text
    assert pending() == [f"{freed}:e2e-pld@8161"]
    assert_within_capacity(claims())
    d.destroy()
    assert not pending()


def run_placement(slice_stack: Callable[..., SliceStack], testbed: Testbed) -> tuple[SliceStack, SliceStack]:
    a = slice_stack("e2e-pla", 300, auto_vms(A_VMS), [], extra=extra())
    b = slice_stack("e2e-plb", 320, auto_vms(B_VMS), [], extra=extra())
    total_mb = sum(m for _, m in CAPACITY.values())
    assert VM_MB * (len(A_VMS) + len(B_VMS)) >= 0.9 * total_mb

    # preview shows each slice's expected choice (alone, each would take the largest workers first)
    expect_a, expect_b = preview_choice(a), preview_choice(b)
    assert set(expect_a) == set(A_VMS) and set(expect_a.values()) <= set(CAPACITY)
    assert set(expect_b) == set(B_VMS) and set(expect_b.values()) <= set(CAPACITY)

    # both `pulumi up` at the same time: each program places under the workers' locks, so both succeed
    procs = [(s, s.cli.popen("up", "--yes", "--non-interactive", "--skip-preview")) for s in (a, b)]
    for stack, proc in procs:
        out = proc.communicate(timeout=900)[0]
        assert proc.returncode == 0, f"{stack.cli.stack}: the first `up` failed:\n{out}"
    found = claims()
    assert_within_capacity(found)
    assert not pending(), "every pending claim is taken over by its WorkerClaim"
    assert sum(len(h) for h in found.values()) == len(A_VMS) + len(B_VMS)
    assert sum(m for h in found.values() for _, m in h.values()) == total_mb  # 100 % of the capacity
    where_a, where_b = placed(a), placed(b)
    # the slice that reserved first found the workers as its preview did: its preview's choice
    assert where_a == expect_a or where_b == expect_b, (where_a, expect_a, where_b, expect_b)
    for slice_name, where in (("e2e-pla", where_a), ("e2e-plb", where_b)):
        for vm, worker in where.items():
            assert f"{slice_name}@{vm}" in found[worker], (vm, worker, found)
            assert running(worker, vm), f"VM {vm} is not running on {worker}"
    assert all(v["placement"] == "auto" for v in a.outputs()["vms"].values())

    # a VM that fits nowhere fails preview with the numbers, before any change
    config = json.loads(b.config_file.read_text())["config"]
    config["cloudrepo:slice"]["vms"] = auto_vms([*B_VMS, 8125])
    b.write_config(config)
    text = failure(b.cli.run("preview", "--non-interactive", check=False))
    assert "VM 8125 (auto) needs 1 vCPUs and 128 MiB; no worker has that free" in text, text
    for worker, (cpus, mem) in CAPACITY.items():
        assert f"{worker}: 0 vCPUs and 0 MiB free of {cpus} vCPUs, {mem} MiB" in text, text
    assert claims() == found

    # a slice whose stack file declares no capacity: the workers' capacities are what their hosts report
    # (read by the program at preview), less what A and B claim there
    c = slice_stack("e2e-plc", 340, auto_vms([8141]), [], extra=qemu_tcg())
    text = failure(c.cli.run("preview", "--non-interactive", check=False))
    nproc = int(testbed.run("worker1", "nproc")[1])
    total = int(Path("/proc/meminfo").read_text().split("MemTotal:")[1].split()[0]) // 1024
    assert "VM 8141 (auto) needs 1 vCPUs and 128 MiB; no worker has that free" in text, text
    for worker in CAPACITY:
        held = found[worker]
        cpus, mem = sum(x for x, _ in held.values()), sum(y for _, y in held.values())
        free = f"{nproc - cpus} vCPUs and {total - mem} MiB free of {nproc} vCPUs, {total} MiB"
        assert f"{worker}: {free}, other slices hold {cpus} vCPUs and {mem} MiB" in text, text
    assert claims() == found

    # A loses a VM: every other VM stays where it was; the freed share takes B's new VM
    config_a = json.loads(a.config_file.read_text())["config"]
    config_a["cloudrepo:slice"]["vms"] = auto_vms(A_VMS[1:])
    a.write_config(config_a)
    a.up()
    assert placed(a) == {vm: w for vm, w in where_a.items() if vm != A_VMS[0]}
    check_failed_up_and_destroy(slice_stack, where_a[A_VMS[0]])
    b.up()
    assert placed(b) == {**where_b, 8125: where_a[A_VMS[0]]}
    assert_within_capacity(claims())
    return a, b

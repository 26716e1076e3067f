"""Scenario 10: launched VMs. Real QEMU guests (TCG) on the slice's TAPs take their reserved leases, ping
across their link and reach the internet through NAT; a QEMU killed by hand is a change (`preview
--expect-no-changes` fails, `refresh` reports it as drift), `up` starts it again with the same MACs and the
guest has its leases again; `destroy` leaves no QEMU process, overlay or console socket."""

from __future__ import annotations

import hashlib
import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab import image, slicecheck
from lab.common import host_paths, lab_dir
from lab.procs import alive
from tests.integration.e2ekit import assert_slice_ok, drift_by_name, guest_launch, qemu_tcg, wall_time
from tests.integration.slicekit import PULUMI_CHANGES, SliceStack, failure
from tests.labfixtures import Testbed

SLICE = "e2e-vms"
POOL = 340


def vms(disk: Path) -> list[dict[str, Any]]:
    boot = guest_launch()
    return [
        {"id": 7401, "worker": "worker1", "dataInterfaces": 1, "internet": True, "launch": boot},
        {"id": 7402, "worker": "worker2", "dataInterfaces": 1, "launch": boot},
        # a disk-image VM: nothing bootable on it, but QEMU runs on its own overlay
        {
            "id": 7403,
            "worker": "worker1",
            "dataInterfaces": 0,
            "launch": {"image": str(disk), "memoryMb": 64},
        },
    ]


def qemu_pid(testbed: Testbed, worker: str, vm: int) -> int:
    return int(testbed.run(worker, f"cat /var/lib/cloudrepo/vms/{vm}/qemu.pid")[1])


def cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")[:-1]
    except OSError:
        return []


def lease_times(outputs: dict[str, Any], since: float) -> dict[str, float]:
    """Seconds from `since` until each launched guest held all its reserved leases."""
    slicecheck.use_launched(outputs)
    wanted = {
        (vm, iface): i["ip"]
        for vm, spec in outputs["vms"].items()
        if spec.get("console") and vm != "7403"
        for iface, i in spec["interfaces"].items()
        if i["ip"] is not None
    }
    offset = time.monotonic() - since
    got = slicecheck.launched_leases(wanted)
    assert {k: ip for k, (ip, _) in got.items()} == wanted
    out: dict[str, float] = {}
    for (vm, _), (_, seconds) in got.items():
        out[vm] = max(out.get(vm, 0.0), round(offset + seconds, 1))
    return out


def test_launched_vms_lease_survive_a_kill_and_leave_nothing(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path
) -> None:
    with wall_time("10 launched VMs"):
        run_vms(slice_stack, testbed, tmp_path)


def run_vms(slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path) -> None:
    guest = image.guest()
    disk = tmp_path / "disks" / "base.qcow2"
    disk.parent.mkdir()
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    qemu = qemu_tcg()["cloudrepo:qemu"]
    extra = {"cloudrepo:qemu": {**qemu, "imageDirs": [*qemu["imageDirs"], str(disk.parent)]}}
    stack = slice_stack(SLICE, POOL, vms(disk), [["7401.eth1", "7402.eth1"]], extra=extra)
    times: dict[str, Any] = {}

    t0 = time.monotonic()
    stack.up()
    times["up_seconds"] = round(time.monotonic() - t0, 1)
    outputs = stack.outputs()
    assert outputs["vms"]["7401"]["running"] is True
    assert outputs["vms"]["7401"]["console"] == "/var/lib/cloudrepo/vms/7401/console.sock"
    times["boot_to_lease_from_up_start"] = lease_times(outputs, t0)
    report = slicecheck.check_slice(outputs, testbed.inventory)
    assert_slice_ok(report)

    # QEMU got exactly the VM's qemuNetArgs, on the slice's TAPs and MACs
    pids = {
        vm: qemu_pid(testbed, w, vm) for vm, w in ((7401, "worker1"), (7402, "worker2"), (7403, "worker1"))
    }
    argv = cmdline(pids[7402])
    net = outputs["vms"]["7402"]["qemuNetArgs"]
    assert argv[argv.index(net[0]) :][: len(net)] == net
    assert (host_paths("worker1").state / "vms/7403/disk.qcow2").exists()
    # each boot file on each worker that boots from it, under its sha256; nothing left in incoming/
    for worker, files in (
        ("worker1", (guest["kernel"], guest["initrd"], str(disk))),
        ("worker2", guest.values()),
    ):
        store = host_paths(worker).state / "images"
        for f in files:
            assert (store / hashlib.sha256(Path(f).read_bytes()).hexdigest()).is_file(), (worker, f)
        assert not any((store / "incoming").iterdir())

    again = stack.cli.run("preview", "--non-interactive", "--expect-no-changes", check=False)
    assert again.returncode == 0, again.stdout + again.stderr

    # a VM killed by hand is drift; up starts it again with the same MACs and the guest leases again
    testbed.run("worker2", f"kill -KILL {pids[7402]}")
    deadline = time.monotonic() + 30
    while alive(pids[7402]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pids[7402]), "QEMU survived SIGKILL for 30 s"
    drifted = stack.cli.run("preview", "--non-interactive", "--expect-no-changes", check=False)
    assert f"{SLICE}-vm-7402" in failure(drifted, PULUMI_CHANGES), drifted.stdout
    stack.refresh()
    assert drift_by_name(stack) == {f"{SLICE}-vm-7402": ["QEMU not running"]}
    t1 = time.monotonic()
    stack.up()
    new_pid = qemu_pid(testbed, "worker2", 7402)
    assert new_pid != pids[7402] and cmdline(new_pid) == argv
    assert qemu_pid(testbed, "worker1", 7401) == pids[7401], "the other VMs were left alone"
    times["boot_to_lease_after_restart"] = lease_times({"vms": {"7402": outputs["vms"]["7402"]}}, t1)
    assert slicecheck.can_ping("7402", outputs["vms"]["7401"]["interfaces"]["eth1"]["ip"])
    assert drift_by_name(stack) == {}

    # destroy: no QEMU process, overlay or socket; the base image was never written
    t2 = time.monotonic()
    stack.destroy()
    times["destroy_seconds"] = round(time.monotonic() - t2, 1)
    for pid in (*pids.values(), new_pid):
        assert not cmdline(pid), f"QEMU {pid} still runs: {cmdline(pid)}"
    for w in ("worker1", "worker2"):
        left = host_paths(w).state / "vms"
        assert not left.exists() or not any(left.iterdir()), sorted(left.rglob("*"))
    for stored in (host_paths("worker1").state / "images").iterdir():
        if stored.is_file():
            assert hashlib.sha256(stored.read_bytes()).hexdigest() == stored.name, f"{stored} was written"
    times_file = lab_dir() / "figures" / "e2e-vm-times.json"
    times_file.parent.mkdir(parents=True, exist_ok=True)
    times_file.write_text(json.dumps(times, indent=2) + "\n")
    print("VM times:", times)

"""`cloudrepo snapshot` on the testbed through the real engine: a slice with a disk-backed VM (the tiny
guest booted by its kernel with a qcow2 image as `/dev/vda`, written and read raw from inside the guest
through its serial console) and a VM booted from a kernel and initrd only (config only).

A marker written on the disk before `save` is back after `restore --force`, the marker written after it is
gone, the config is the saved one (the link added since is gone, from the outputs too) and `preview
--expect-no-changes` passes; the VM keeps running through `save` (paused for the copy, resumed); `restore`
without `--force` on running VMs is refused naming them and changes nothing; `delete` then `list` shows it
gone; unknown snapshots and slices and hostile names are clear refusals; `cloudrepo destroy` leaves no
snapshot file of the slice on the worker."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab import console as lab_console
from lab import image
from lab.common import host_paths, lab_dir
from lab.procs import alive
from lab.vms import console_of
from tests.integration.clikit import Checkout
from tests.integration.e2ekit import wall_time
from tests.integration.slicekit import SliceStack

pytestmark = pytest.mark.integration

SLICE = "e2e-snap"
POOL = 460
DISK, PLAIN = 7801, 7802


def write_marker(sock: Path, text: str) -> None:
    res = lab_console.run(
        sock, ["sh", "-c", f"printf '{text}' | dd of=/dev/vda bs=512 count=1 conv=sync && sync"], timeout=60
    )
    assert res.returncode == 0, res.stdout


def read_marker(sock: Path) -> str:
    res = lab_console.run(
        sock, ["sh", "-c", "echo 3 >/proc/sys/vm/drop_caches; head -c 8 /dev/vda"], timeout=60
    )
    assert res.returncode == 0, res.stdout
    return res.stdout.strip()


def qemu_pid(vm: int) -> int:
    return int((host_paths("worker1").state / f"vms/{vm}/qemu.pid").read_text().strip())


def snapshot_files() -> list[Path]:
    root = host_paths("worker1").state / "snapshots"
    return sorted(p for p in root.glob(f"{SLICE}+*/**/*") if p.is_file()) if root.exists() else []


def test_snapshot_save_restore_delete_and_destroy(
    slice_stack: Callable[..., SliceStack], slice_backend: Path, testbed: Any, tmp_path: Path
) -> None:
    guest = image.guest()
    files = tmp_path / "images"
    files.mkdir()
    disk = files / "data.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "16M"], check=True)
    boot = {
        "kernel": guest["kernel"],
        "initrd": guest["initrd"],
        "append": "console=ttyS0 quiet",
        "memoryMb": 128,
    }
    vms = [
        {"id": DISK, "worker": "worker1", "dataInterfaces": 2, "launch": {**boot, "image": str(disk)}},
        {"id": PLAIN, "worker": "worker1", "dataInterfaces": 2, "launch": boot},
    ]
    qemu = {"cloudrepo:qemu": {"accel": "tcg", "imageDirs": [str(lab_dir() / "guest"), str(files)]}}
    stack = slice_stack(SLICE, POOL, vms, [[f"{DISK}.eth1", f"{PLAIN}.eth1"]], secret_key=True, extra=qemu)
    stack.up()
    sock = console_of(stack.outputs()["vms"], str(DISK))
    lab_console.wait_ready(sock, timeout=180)
    op = Checkout(stack.cli.project_dir, {"PULUMI_BACKEND_URL": f"file://{slice_backend}"})

    write_marker(sock, "MARK-ONE")
    pid = qemu_pid(DISK)
    with wall_time("snapshot save (one VM disk, one config-only VM)"):
        said = op.ok("snapshot", "save", SLICE, "before")
    assert f"vm {PLAIN} has no disk (config only)" in said, said
    assert alive(pid) and qemu_pid(DISK) == pid, "save restarted the VM"
    assert read_marker(sock) == "MARK-ONE", "the VM did not resume after its disk was copied"
    (copy,) = [p for p in snapshot_files() if p.name == f"vm{DISK}.qcow2"]
    st = os.stat(copy)
    assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0 and copy.parent.name == "before"
    assert "before" in op.ok("snapshot", "list", SLICE)
    saved = op.stack_file(SLICE).read_bytes()

    # after the snapshot: another marker and another link, deployed
    write_marker(sock, "MARK-TWO")
    op.ok("link", "add", SLICE, f"{DISK}.eth2", f"{PLAIN}.eth2")
    op.ok("deploy", SLICE)
    assert len(stack.outputs()["links"]) == 2
    edited = op.stack_file(SLICE).read_bytes()

    refused = op.run("snapshot", "restore", SLICE, "before", timeout=300)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr, refused.stderr
    assert f"{DISK} (worker1) are running" in refused.stderr and "--force" in refused.stderr, refused.stderr
    assert op.stack_file(SLICE).read_bytes() == edited and qemu_pid(DISK) == pid
    assert read_marker(sock) == "MARK-TWO"

    with wall_time("snapshot restore --force (one VM disk) and its up"):
        op.ok("snapshot", "restore", SLICE, "before", "--force")
    assert op.stack_file(SLICE).read_bytes() == saved
    links = stack.outputs()["links"]
    assert [sorted(link["endpoints"]) for link in links] == [[f"{DISK}.eth1", f"{PLAIN}.eth1"]], links
    assert qemu_pid(DISK) != pid
    lab_console.wait_ready(sock, timeout=180)
    assert read_marker(sock) == "MARK-ONE"
    stack.preview("--expect-no-changes")

    for args, code, reason in (
        (
            ("snapshot", "restore", SLICE, "nope", "--force"),
            1,
            "has no snapshot 'nope' (its snapshots: before)",
        ),
        (("snapshot", "list", "no-such-slice"), 1, "no slice 'no-such-slice'"),
        (("snapshot", "save", SLICE, "before"), 1, "already has a snapshot 'before'"),
        (("snapshot", "save", SLICE, "../x"), 2, "is not a snapshot name"),
    ):
        result = op.run(*args, timeout=300)
        assert result.returncode == code and reason in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr

    op.ok("snapshot", "delete", SLICE, "before")
    assert op.ok("snapshot", "list", SLICE).strip() == "(no snapshots)"
    assert snapshot_files() == []

    op.ok("snapshot", "save", SLICE, "kept")
    assert snapshot_files()
    op.ok("destroy", SLICE, "--yes")
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert snapshot_files() == [], "destroy left snapshot files of the slice"
    assert op.ok("snapshot", "list", SLICE).strip() == "(no snapshots)"

"""`cloudrepo snapshot`: names (hostile strings), the manifest, and the worker programs run here with `sh`
against directories of a temporary root: a stopped VM's overlay copied; a running one paused and resumed
through a QMP socket (a stand-in server that records the commands) around the copy; a running VM without
a monitor refused; another slice's VM refused with nothing made; restore stopping the VM by its pid file
and putting the copy in place; delete removing only this slice's snapshot and tolerating one gone."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from cloudrepo import snapshot as sn
from tests.fuzzkit import fuzz_settings, hostile_text
from vocabulary import naming

MARK = "lab42+" + "ab" * 16
OTHER = "lab42+" + "cd" * 16


@given(st.one_of(hostile_text(), st.text(min_size=1, max_size=80)))
@fuzz_settings(ci=300, long=5000)
def test_a_snapshot_name_is_a_plain_path_component_or_refused(text: str) -> None:
    try:
        got = sn.snap_name(text)
    except argparse.ArgumentTypeError as exc:
        assert "is not a snapshot name" in str(exc)
        assert "\n" not in str(exc) and len(str(exc)) < 400
        return
    assert got == text and sn.SNAP_NAME.fullmatch(text)
    assert "/" not in text and text not in (".", "..") and not text.startswith(("-", "."))
    assert text.isascii() and text.isprintable() and len(text) <= 64


@given(st.one_of(hostile_text(), st.sampled_from(["..", ".", "a/b", "-x", "", "x" * 65])))
@fuzz_settings(ci=200, long=3000)
def test_the_worker_programs_take_only_safe_names(text: str) -> None:
    assume(not sn.SNAP_NAME.fullmatch(text))
    for build in (
        lambda: sn.save_argv(MARK, text, [1]),
        lambda: sn.restore_argv(MARK, text, [1], 10),
        lambda: sn.delete_argv(MARK, [text]),
        lambda: sn.save_argv(text + "+" + "ab" * 16, "s1", [1]),
        lambda: sn.running_argv("a/b+" + "ab" * 16, [1]),
    ):
        with pytest.raises(ValueError):
            build()


def test_the_manifest_reads_back_and_garbage_is_refused() -> None:
    m = sn.Manifest(
        "before-lab",
        "lab42",
        MARK,
        "2026-01-01T00:00:00Z",
        (sn.VmSnap(1002, "worker1", True, 4096, {"image": "a" * 64}), sn.VmSnap(1003, "worker2", False)),
    )
    back = sn.load_manifest(m.dump())
    assert back == m and back.size == 4096 and back.workers() == {"worker1": [1002]}
    assert "1003 (config)" in sn.table([back]) and "4.0 KiB" in sn.table([back])
    for bad in ("", "[]", "{}", json.dumps({**json.loads(m.dump()), "name": "../x"})):
        with pytest.raises(ValueError):
            sn.load_manifest(bad)
    assert sn.table([]) == "(no snapshots)"


def test_launched_vms_and_the_uid_come_from_outputs_and_state() -> None:
    outputs = {
        "vms": {
            "1002": {"worker": "worker1", "console": "/x"},
            "1003": {"worker": "worker2"},
            "x": {"worker": "w", "console": "/y"},
        }
    }
    assert sn.launched(outputs) == [(1002, "worker1")]
    uid = "ab" * 16
    res = [{"urn": "urn:pulumi:s::p::t::other", "outputs": {"uid": uid}}]
    assert sn.identity_uid(res, "slice-identity") is None
    res.append({"urn": "urn:pulumi:s::p::a$b::slice-identity", "outputs": {"uid": uid}})
    assert sn.identity_uid(res, "slice-identity") == uid


class Root:
    """A worker's state root under a temporary directory."""

    def __init__(self, base: Path) -> None:
        self.vms = base / "vms"
        self.snaps = base / "snapshots"
        self.vms.mkdir()

    def vm(self, vm: int, mark: str = MARK, disk: bytes | None = b"disk-1") -> Path:
        d = self.vms / str(vm)
        d.mkdir()
        (d / "owner").write_text(mark + "\n")
        if disk is not None:
            (d / "disk.qcow2").write_bytes(disk)
            (d / "disk.base").write_text("/var/lib/cloudrepo/images/" + "a" * 64 + "\n")
        return d

    def run(self, argv: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        here = {naming.VMS_DIR: str(self.vms), naming.SNAPSHOTS_DIR: str(self.snaps)}
        return subprocess.run(
            [here.get(a, a) for a in argv],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, **(env or {})},
        )


@pytest.fixture
def root(tmp_path: Path) -> Root:
    return Root(tmp_path)


@pytest.fixture
def fake_qemu(tmp_path: Path) -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes that stand for QEMU: their argv carries the VM's pid file, as ours does."""
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for p in procs:
        p.kill()
        p.wait()


def start(procs: list[subprocess.Popen[bytes]], vmdir: Path) -> subprocess.Popen[bytes]:
    pf = vmdir / "qemu.pid"
    p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)", str(pf)])
    procs.append(p)
    pf.write_text(f"{p.pid}\n")
    return p


def qmp_server(path: Path, seen: list[str]) -> threading.Thread:
    """A QMP stand-in: a greeting, then `{"return": {}}` to every command; records the commands."""
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(str(path))
    srv.listen(4)
    srv.settimeout(30)

    def serve() -> None:
        with srv:
            for _ in range(2):
                try:
                    conn, _ = srv.accept()
                except TimeoutError:
                    return
                with conn, conn.makefile("rwb") as f:
                    f.write(b'{"QMP": {"version": {}, "capabilities": []}}\n')
                    f.flush()
                    for line in f:
                        seen.append(json.loads(line)["execute"])
                        f.write(b'{"return": {}}\n')
                        f.flush()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


def test_save_copies_a_stopped_vms_overlay_and_skips_a_diskless_one(root: Root) -> None:
    root.vm(1002, disk=b"\x00" * 4096 + b"marker-1")
    root.vm(1003, disk=None)
    res = root.run(sn.save_argv(MARK, "s1", [1002, 1003]))
    assert res.returncode == 0, res.stderr
    assert sn.parse_lines(res.stdout, "vm") == {1002: "size=4104", 1003: "size=none"}
    d = root.snaps / MARK / "s1"
    assert (d / "vm1002.qcow2").read_bytes().endswith(b"marker-1")
    assert (d / "vm1002.qcow2").stat().st_mode & 0o777 == 0o600
    assert d.stat().st_mode & 0o777 == 0o700 and (d / "owner").read_text().strip() == MARK
    assert root.run(sn.save_argv(MARK, "s1", [1002])).returncode != 0, "a second save under the name"


def test_save_pauses_a_running_vm_through_its_monitor(root: Root, fake_qemu: list, tmp_path: Path) -> None:
    d = root.vm(1002)
    start(fake_qemu, d)
    seen: list[str] = []
    t = qmp_server(d / "qmp.sock", seen)
    res = root.run(sn.save_argv(MARK, "s1", [1002]))
    t.join(10)
    assert res.returncode == 0, res.stderr
    assert seen == ["qmp_capabilities", "stop", "qmp_capabilities", "cont"]
    assert (root.snaps / MARK / "s1" / "vm1002.qcow2").read_bytes() == b"disk-1"


def test_a_failed_copy_resumes_the_vm_and_leaves_nothing(root: Root, fake_qemu: list, tmp_path: Path) -> None:
    d = root.vm(1002)
    start(fake_qemu, d)
    broken = tmp_path / "bin"
    broken.mkdir()
    (broken / "cp").write_text("#!/bin/sh\necho 'cp: No space left on device' >&2\nexit 1\n")
    (broken / "cp").chmod(0o755)
    seen: list[str] = []
    t = qmp_server(d / "qmp.sock", seen)
    res = root.run(sn.save_argv(MARK, "s1", [1002]), {"PATH": f"{broken}:{os.environ['PATH']}"})
    t.join(10)
    assert res.returncode != 0 and "No space left" in res.stderr
    assert seen == ["qmp_capabilities", "stop", "qmp_capabilities", "cont"], (seen, res.stderr)
    assert not (root.snaps / MARK / "s1").exists() and not (root.snaps / MARK / "s1.part").exists()


def test_save_refuses_a_running_vm_without_a_monitor_and_leaves_nothing(root: Root, fake_qemu: list) -> None:
    start(fake_qemu, root.vm(1002))
    res = root.run(sn.save_argv(MARK, "s1", [1002]))
    assert res.returncode == sn.NO_MONITOR and "vm 1002" in res.stderr
    assert not any((root.snaps / MARK).iterdir())


def test_another_slices_vm_is_refused_and_untouched(root: Root, fake_qemu: list) -> None:
    d = root.vm(1002, mark=OTHER)
    p = start(fake_qemu, d)
    for argv in (sn.save_argv(MARK, "s1", [1002]), sn.running_argv(MARK, [1002])):
        res = root.run(argv)
        assert res.returncode == sn.NOT_OURS and OTHER in res.stderr
    root.snaps.joinpath(MARK, "s1").mkdir(parents=True)
    root.snaps.joinpath(MARK, "s1", "owner").write_text(MARK)
    root.snaps.joinpath(MARK, "s1", "vm1002.qcow2").write_bytes(b"old")
    res = root.run(sn.restore_argv(MARK, "s1", [1002], 1))
    assert res.returncode == sn.NOT_OURS
    assert p.poll() is None and (d / "disk.qcow2").read_bytes() == b"disk-1"


def test_restore_stops_the_vm_and_puts_the_copy_in_place(root: Root, fake_qemu: list) -> None:
    d = root.vm(1002, disk=b"before")
    assert root.run(sn.save_argv(MARK, "s1", [1002])).returncode == 0
    (d / "disk.qcow2").write_bytes(b"after")
    p = start(fake_qemu, d)
    res = root.run(sn.running_argv(MARK, [1002]))
    assert sn.parse_lines(res.stdout, "running") == {1002: ""}
    res = root.run(sn.restore_argv(MARK, "s1", [1002], 2))
    assert res.returncode == 0, res.stderr
    assert p.wait(5) is not None
    assert (d / "disk.qcow2").read_bytes() == b"before" and (d / "disk.qcow2").stat().st_mode & 0o777 == 0o600
    assert sn.parse_lines(root.run(sn.running_argv(MARK, [1002])).stdout, "running") == {}
    missing = root.run(sn.restore_argv(MARK, "s2", [1002], 2))
    assert missing.returncode == sn.MISSING


def test_restore_remakes_a_vm_directory_gone_since(root: Root) -> None:
    d = root.vm(1002, disk=b"before")
    assert root.run(sn.save_argv(MARK, "s1", [1002])).returncode == 0
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    assert root.run(sn.restore_argv(MARK, "s1", [1002], 2)).returncode == 0
    assert (d / "disk.qcow2").read_bytes() == b"before" and (d / "owner").read_text().strip() == MARK
    assert (d / "disk.base").read_text().startswith("/var/lib/cloudrepo/images/")


def test_delete_removes_this_slices_snapshot_only_and_tolerates_gone(root: Root) -> None:
    root.vm(1002)
    assert root.run(sn.save_argv(MARK, "s1", [1002])).returncode == 0
    assert root.run(sn.save_argv(MARK, "s2", [1002])).returncode == 0
    other = root.snaps / OTHER / "s1"
    other.mkdir(parents=True)
    (other / "owner").write_text(OTHER)
    assert root.run(sn.delete_argv(MARK, ["s1"])).returncode == 0
    assert not (root.snaps / MARK / "s1").exists() and (root.snaps / MARK / "s2").exists()
    assert root.run(sn.delete_argv(MARK, ["s1"])).returncode == 0, "gone is fine"
    assert root.run(sn.delete_argv(MARK, ["s2"])).returncode == 0
    assert not (root.snaps / MARK).exists() and other.exists()

"""`up` is idempotent (same scan twice) and `down` leaves nothing of the testbed behind, even after a
crash halfway through `up` and with processes started inside the hosts over SSH."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab.common import host_paths, lab_dir, settings
from tests.labfixtures import (
    DEFAULT_WORKERS,
    ROOT,
    LabSession,
    Testbed,
    assert_scan_equal,
    lab_cli,
    scan,
)

pytestmark = pytest.mark.integration


def root_snapshot() -> dict[str, Any]:
    """What the root namespace shows: namespaces, links, mounts, processes (pid -> command line)."""
    try:
        namespaces = sorted(os.listdir("/run/netns"))
    except FileNotFoundError:
        namespaces = []
    links = sorted(e["ifname"] for e in json.loads(subprocess.check_output(["ip", "-j", "link"], text=True)))
    mounts = sorted(Path("/proc/self/mounts").read_text().splitlines())
    return {"netns": namespaces, "links": links, "mounts": mounts, "procs": live_processes()}


def live_processes() -> dict[int, str]:
    procs = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            cmd = Path(f"/proc/{name}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if stat.rsplit(")", 1)[1].split()[0] != "Z":
            procs[int(name)] = cmd.strip()
    return procs


@dataclass
class Marks:
    """How to recognise this testbed's processes after `down` deleted its namespaces and directories:
    the inodes of its network namespaces and of its hosts' /run/netns directories, taken while up."""

    nets: set[int]
    views: set[tuple[int, int]]


def marks() -> Marks:
    nets = set()
    for name in ours(os.listdir("/run/netns") if os.path.isdir("/run/netns") else []):
        with contextlib.suppress(OSError):
            nets.add(os.stat(f"/run/netns/{name}").st_ino)
    views = set()
    for d in (lab_dir() / "hosts").glob("*/netns"):
        st = d.stat()
        views.add((st.st_dev, st.st_ino))
    return Marks(nets, views)


def leftover_processes(before: dict[int, str], mark: Marks) -> list[str]:
    """Processes that were not there before and belong to this testbed: they name its directory or
    namespaces, live in one of its network namespaces, or see one of its hosts' /run/netns. Processes
    of another testbed (other prefix) running beside this one are not counted."""
    found = []
    for pid, cmd in live_processes().items():
        if pid in before or pid == os.getpid():
            continue
        try:
            net: int | None = os.stat(f"/proc/{pid}/ns/net").st_ino
        except OSError:
            net = None
        try:
            view = os.stat(f"/proc/{pid}/root/run/netns")
            view_key: tuple[int, int] | None = (view.st_dev, view.st_ino)
        except OSError:
            view_key = None
        if view_key in mark.views and not netns_view(pid).startswith(f"{lab_dir()}/hosts/"):
            view_key = None  # the inode of a directory `down` deleted, reused by another testbed's host
        if (
            str(lab_dir()) in cmd
            or f" {settings().prefix}" in cmd
            or f" {settings().vm_prefix}" in cmd
            or net in mark.nets
            or view_key in mark.views
        ):
            found.append(f"{pid}: {cmd}")
    return found


def netns_view(pid: int) -> str:
    """The directory mounted on the process's /run/netns (mountinfo's root field; "" when none)."""
    try:
        lines = Path(f"/proc/{pid}/mountinfo").read_text().splitlines()
    except OSError:
        return ""
    return next((line.split()[3] for line in lines if line.split()[4] == "/run/netns"), "")


def ours(names: list[str]) -> list[str]:
    return [n for n in names if settings().owns_ns(n)]


def our_mounts(lines: list[str]) -> list[str]:
    return [
        line
        for line in lines
        if not line.split()[1].startswith("/run/netns/") or ours([line.split()[1][len("/run/netns/") :]])
    ]


def assert_nothing_left(before: dict[str, Any], mark: Marks | None = None) -> None:
    after = root_snapshot()
    assert ours(after["netns"]) == ours(before["netns"])
    assert after["links"] == before["links"]
    assert our_mounts(after["mounts"]) == our_mounts(before["mounts"])
    leftovers = leftover_processes(before["procs"], mark or Marks(set(), set()))
    assert not leftovers, "processes left behind:\n" + "\n".join(leftovers)


@pytest.fixture
def pristine(lab_session: LabSession) -> Iterator[dict[str, Any]]:
    """The testbed down (brought back afterwards when it was up); yields the root's snapshot. The session
    holds the testbed's lock meanwhile: the testbed is the test suite's own, no one else uses it."""
    if lab_session.skip:
        pytest.skip(lab_session.skip)
    lab_session.hold()
    was_up = lab_session.is_up()
    if was_up:
        lab_cli("down")
    before = root_snapshot()
    try:
        yield before
    finally:
        if was_up:
            lab_cli("up", "--workers", str(DEFAULT_WORKERS))
        else:
            lab_cli("down", check=False)


def test_up_twice_same_scan_and_down_leaves_nothing(pristine: dict[str, Any]) -> None:
    lab_cli("up")
    assert lab_cli("status", check=False).returncode == 0
    inventory = json.loads((lab_dir() / "inventory.json").read_text())
    first = scan()
    lab_cli("up")
    assert_scan_equal(first, scan())
    assert json.loads((lab_dir() / "inventory.json").read_text()) == inventory

    # Things a test would leave running inside the hosts: a process in a namespace created over SSH on
    # the network node, and a guest (socat in the worker, a namespace in the root).
    tb = Testbed(inventory)
    tb.run("network", "sudo ip netns add ns-lifecycle")
    tb.run("network", "sudo ip netns exec ns-lifecycle setsid sleep 1000 </dev/null >/dev/null 2>&1 &")
    tb.run(
        "worker1",
        "sudo ip tuntap add mode tap name tap_9_eth1 && sudo ip link set tap_9_eth1 up && "
        "sudo ovs-vsctl add-port br-int tap_9_eth1 tag=130",
    )
    lab_cli("vm", "start", "lifecycle", "--host", "worker1", "--tap", "tap_9_eth1")
    assert "ns-lifecycle" in scan("network")["hosts"]["network"]["namespaces"]

    mark = marks()
    lab_cli("down")
    assert lab_cli("status", check=False).returncode == 1
    assert_nothing_left(pristine, mark)
    lab_cli("down")  # a second down is a no-op
    assert_nothing_left(pristine, mark)
    # Keys persist, so known_hosts stays valid across down/up.
    assert (lab_dir() / "id_ed25519").exists() and (lab_dir() / "known_hosts").exists()


@pytest.mark.parametrize("delay", [0.15, 0.45])
def test_down_after_up_killed_halfway(pristine: dict[str, Any], delay: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "lab", "up"],
        cwd=ROOT,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    mark = marks()
    lab_cli("down")
    assert_nothing_left(pristine, mark)


def test_up_repairs_a_dead_sshd_and_the_host_keeps_its_namespaces(pristine: dict[str, Any]) -> None:
    lab_cli("up")
    tb = Testbed(json.loads((lab_dir() / "inventory.json").read_text()))
    tb.run("worker1", "sudo ip netns add ns-repair")
    first = scan()
    pid = int(host_paths("worker1").sshd_pid.read_text())
    os.kill(pid, signal.SIGKILL)
    assert lab_cli("status", check=False).returncode == 1
    lab_cli("up")
    assert lab_cli("status", check=False).returncode == 0
    assert_scan_equal(first, scan())
    tb.run("worker1", "sudo ip netns exec ns-repair true && sudo ip netns del ns-repair")
    mark = marks()
    lab_cli("down")
    assert_nothing_left(pristine, mark)


@pytest.mark.parametrize("kill_init", [False, True])
def test_down_ends_processes_of_a_host_whose_sshd_died(pristine: dict[str, Any], kill_init: bool) -> None:
    """A dnsmasq-like process started over SSH in a namespace of the network node outlives the host's
    sshd (and its anchor process); `down` still finds it (by the host's mounts and namespaces)."""
    lab_cli("up")
    tb = Testbed(json.loads((lab_dir() / "inventory.json").read_text()))
    tb.run("network", "sudo ip netns add ns-orphan")
    tb.run("network", "sudo ip netns exec ns-orphan setsid sleep 1001 </dev/null >/dev/null 2>&1 &")
    for _ in range(50):
        if any(cmd == "sleep 1001" for cmd in live_processes().values()):
            break
        time.sleep(0.1)
    else:
        pytest.fail("the process started over SSH did not appear")
    host = lab_dir() / "hosts" / "network"
    os.kill(int((host / "sshd.pid").read_text()), signal.SIGKILL)
    if kill_init:
        os.kill(int((host / "init.pid").read_text()), signal.SIGKILL)
    (lab_dir() / "inventory.json").unlink()  # as if `up`'s state were lost too
    mark = marks()
    lab_cli("down")
    assert not any(cmd == "sleep 1001" for cmd in live_processes().values())
    assert_nothing_left(pristine, mark)

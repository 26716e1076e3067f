"""Helpers of the end-to-end scenarios 6-9: wall times, a slice's objects in a scan, the stack's state,
guests' fresh leases, host keys and the testbed's sshd."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from queue import Empty, Queue
from typing import Any

import paramiko

from lab import guest as lab_guest
from lab import image
from lab.common import host_paths, lab_dir
from lab.procs import alive, pidfile_process
from lab.slicecheck import Report, format_report, guest_name
from tests.integration.slicekit import SliceStack
from tests.labfixtures import lab_cli, scan, scan_parts
from vocabulary import naming


def times_file() -> Path:
    """Where the scenarios' wall times go: the testbed's directory (CLOUDREPO_E2E_TIMES moves it)."""
    return Path(os.environ.get("CLOUDREPO_E2E_TIMES", lab_dir() / "figures" / "e2e-times.json"))


def qemu_tcg() -> dict[str, Any]:
    """Stack config for launched VMs on the testbed (nested KVM hangs here), booting its guest from the
    testbed's directory (the tests' stacks live in projects of their own)."""
    return {"cloudrepo:qemu": {"accel": "tcg", "imageDirs": [str(lab_dir() / "guest")]}}


def guest_launch(memory_mb: int = 128) -> dict[str, Any]:
    """A VM's `launch` that boots the testbed's tiny guest (`python -m lab image`)."""
    guest = image.guest()
    return {
        "kernel": guest["kernel"],
        "initrd": guest["initrd"],
        "append": "console=ttyS0 quiet",
        "memoryMb": memory_mb,
    }


def launched(vms: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The VMs, each launched on the testbed's guest."""
    boot = guest_launch()
    return [{**vm, "launch": boot} for vm in vms]


@contextmanager
def wall_time(scenario: str) -> Iterator[None]:
    """Print (and record in $CLOUDREPO_E2E_TIMES, default the testbed's `figures/e2e-times.json`) how long a
    scenario took, passed or not."""
    t0 = time.monotonic()
    outcome = "failed"
    try:
        yield
        outcome = "passed"
    finally:
        seconds = round(time.monotonic() - t0, 1)
        print(f"\n[wall time] {scenario}: {seconds}s ({outcome})")
        try:
            times = json.loads(times_file().read_text())
        except (OSError, ValueError):
            times = {}
        times[scenario] = {"seconds": seconds, "outcome": outcome}
        path = times_file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(times, indent=2, sort_keys=True) + "\n")


def assert_slice_ok(report: Report) -> None:
    text = format_report(report)
    print(text)
    assert report.ok, text


# ---- a slice's objects on the hosts ----------------------------------------------------------------------


def slice_markers(outputs: dict[str, Any]) -> tuple[str, ...]:
    """Names that identify a deployed slice's objects in a scan: TAPs, gateway/DHCP ports and namespaces
    of its link VLANs, and their subnets."""
    names: set[str] = set()
    for link in outputs["links"]:
        vlan = int(link["vlan"])
        names |= {f"gw_vlan{vlan}", f"dhcp_v{vlan}", f"ns-dhcp-vlan{vlan}", f"192.168.{vlan % 256}."}
    for vm in outputs["vms"].values():
        for spec in vm["interfaces"].values():
            names.add(spec["tap"])
    return tuple(sorted(names))


def objects(markers: tuple[str, ...], host: str | None = None) -> Any:
    """What the testbed's scan holds of these objects now (every host, or one)."""
    return scan_parts(scan(host), markers)


def host_ports(doc: dict[str, Any], host: str) -> dict[str, Any]:
    return dict(doc["hosts"][host]["ovs"]["br-int"]["ports"])


def duplicates(doc: dict[str, Any]) -> list[str]:
    """Objects present more than once in a whole scan: a dnsmasq per VLAN, an iptables rule line, an
    address on an interface (OVS port and namespace names are unique by construction, checked by count)."""
    found: list[str] = []
    for host, h in doc["hosts"].items():
        for table, lines in h["iptables"].items():
            rules = [line for line in lines if line.startswith("-A")]
            found += [f"{host} iptables {table}: {r}" for r in set(rules) if rules.count(r) > 1]
        per_ns: dict[str, int] = {}
        for proc in h["dnsmasq"]:
            key = json.dumps(proc.get("namespace", proc), sort_keys=True)
            per_ns[key] = per_ns.get(key, 0) + 1
        found += [f"{host} dnsmasq x{n} in {k}" for k, n in per_ns.items() if n > 1]
        for dev, addrs in h["addresses"].items():
            found += [f"{host} {dev} address {a} x{addrs.count(a)}" for a in set(addrs) if addrs.count(a) > 1]
    return sorted(found)


# ---- the shared VLAN 400 objects, seen from one slice -------------------------------------------------

SHARED_OBJECTS = {"gateway": "gw_vlan400", "dhcp": "ns-dhcp-vlan400", "nat": "nat-10.60.7.0-24-ens3"}
"""The objects every internet slice on the network node shares, by their users-registry name."""


def shared_users(inventory: dict[str, Any], obj: str) -> list[str]:
    """The slices registered as users of a shared object (its registry in the network node's state, one
    entry per owner mark `<slice>+<uid>`)."""
    users = Path(inventory["hosts"]["network"]["stateDir"]) / "shared" / obj / "users"
    return sorted(naming.mark_slice(p.name) for p in users.iterdir()) if users.is_dir() else []


def shared_present(net: dict[str, Any]) -> dict[str, bool]:
    """Which shared objects exist in the network node's scan."""
    return {
        "gateway": "gw_vlan400" in net["ovs"]["br-int"]["ports"],
        "dhcp": "ns-dhcp-vlan400" in net["namespaces"],
        "nat": any(f"cloudrepo:{SHARED_OBJECTS['nat']}" in rule for rule in net["iptables"]["nat"]),
    }


def assert_left_shared(inventory: dict[str, Any], slice_name: str, net: dict[str, Any]) -> None:
    """SLICE uses no shared object any more; each one is gone unless another slice still uses it."""
    present = shared_present(net)
    for kind, obj in SHARED_OBJECTS.items():
        users = shared_users(inventory, obj)
        assert slice_name not in users, f"{slice_name} is still a user of {obj}: {users}"
        assert present[kind] == bool(users), f"{obj}: present={present[kind]}, users {users}"


def assert_uses_shared(inventory: dict[str, Any], slice_name: str, net: dict[str, Any]) -> None:
    """SLICE is a user of every shared object, and each one exists."""
    present = shared_present(net)
    for kind, obj in SHARED_OBJECTS.items():
        assert slice_name in shared_users(inventory, obj), f"{slice_name} is not a user of {obj}"
        assert present[kind], f"{obj} is missing while {slice_name} uses it"


# ---- the stack's state ----------------------------------------------------------------------------------


def state(stack: SliceStack) -> dict[str, Any]:
    return dict(json.loads(stack.cli.export_state()))


def resources(stack: SliceStack, type_suffix: str = "") -> list[dict[str, Any]]:
    """The custom resources of the stack's state (the dynamic ones: TapPort, VlanGateway, ...)."""
    deployment = state(stack)["deployment"]
    return [
        r
        for r in deployment.get("resources") or []
        if r.get("custom")
        and r["type"].startswith("pulumi-python:dynamic")
        and r["urn"].endswith(type_suffix)
    ]


def drift_by_name(stack: SliceStack) -> dict[str, list[str]]:
    """Resource name -> its `drift` output, for every resource whose drift is not empty."""
    out: dict[str, list[str]] = {}
    for r in resources(stack):
        drift = (r.get("outputs") or {}).get("drift") or []
        if drift:
            out[r["urn"].rsplit("::", 1)[1]] = list(drift)
    return out


# ---- guests ---------------------------------------------------------------------------------------------


def fresh_lease(vm: str, iface: str) -> str:
    """Forget the guest's lease and address on IFACE, then ask DHCP again: only a live server answers."""
    name = guest_name(vm)
    (lab_guest.guest_dir(name) / f"{iface}.leases").unlink(missing_ok=True)
    subprocess.run(
        ["ip", "-n", lab_guest.guest_ns(name), "addr", "flush", "dev", iface], check=True, capture_output=True
    )
    assert lab_guest.address_of(name, iface) is None
    return lab_guest.dhcp(name, iface)


# ---- host keys and sshd ---------------------------------------------------------------------------------


def known_hosts_with_wrong_key(dst: Path, port: int) -> Path:
    """A copy of the testbed's known_hosts where the host on PORT has another (made up) key."""
    real = paramiko.HostKeys(str(lab_dir() / "known_hosts"))
    pattern = f"[127.0.0.1]:{port}"
    assert real.lookup(pattern), f"{pattern} is not in {lab_dir() / 'known_hosts'}"
    wrong = paramiko.HostKeys()
    for hostname, keys in real.items():
        for keytype, key in keys.items():
            if hostname != pattern:
                wrong.add(hostname, keytype, key)
    fake = paramiko.Ed25519Key.from_private_key_file(str(lab_dir() / "id_ed25519"))  # any other ed25519 key
    wrong.add(pattern, fake.get_name(), fake)
    wrong.save(str(dst))
    return dst


def sshd_pidfile(host: str) -> Path:
    return host_paths(host).sshd_pid


def stop_sshd(host: str) -> int:
    """Stop HOST's sshd by the pid in its pid file (the host's other processes keep running)."""
    pid = pidfile_process(sshd_pidfile(host), "sshd")
    assert pid is not None, f"{host}: no live sshd in {sshd_pidfile(host)}"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(pid), f"{host}: sshd {pid} still alive"
    return pid


def restart_testbed() -> None:
    """`python -m lab up` is idempotent: it starts what is down (a stopped sshd) and leaves the rest."""
    lab_cli("up", "--workers", "2", timeout=300)
    status = lab_cli("status", check=False)
    assert status.returncode == 0, status.stdout + status.stderr


# ---- the engine, killed -------------------------------------------------------------------------------


def start_engine(stack: SliceStack, *args: str) -> subprocess.Popen[str]:
    """`pulumi ARGS` in a process group of its own, so the whole group can be killed as a crash would."""
    return stack.cli.popen(*args, new_session=True)


def kill_when(proc: subprocess.Popen[str], pattern: str, timeout: float = 300) -> list[str]:
    """Read the engine's output until a line matches `pattern`, then SIGKILL its process group.

    Returns the lines read. A watchdog bounds the wait: when no matching line came within `timeout` seconds
    (the engine went silent, or talks without reaching the point), the group is killed and the call fails
    with what was read; it also fails if the engine ended before the line came."""
    assert proc.stdout is not None
    regex = re.compile(pattern)
    lines: list[str] = []
    queue: Queue[str | None] = Queue()
    reader = threading.Thread(target=_read_lines, args=(proc.stdout, queue), daemon=True)
    reader.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                line = queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except Empty:
                tail = "\n".join(lines[-20:])
                raise AssertionError(
                    f"watchdog: no line matching {pattern!r} within {timeout:g}s; last output:\n{tail}"
                ) from None
            if line is None:
                break
            lines.append(line.rstrip("\n"))
            if regex.search(line):
                assert proc.poll() is None, "the engine ended before it could be killed"
                return lines
    finally:
        if proc.poll() is None:
            # the engine's plugins (language host, program, providers) run in sessions of their own: a
            # crash leaves them waiting for an engine that is gone, so they are ended by pid after it
            plugins = stop_tree(proc.pid)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
            for pid in plugins:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            # a SIGKILL is delivered when its process next runs: the group is gone only once each has
            wait_group_gone(proc.pid)
    raise AssertionError(f"the engine ended without a line matching {pattern!r}:\n" + "\n".join(lines))


def stop_tree(pid: int) -> list[int]:
    """SIGSTOP every descendant of `pid` until no new one appears (a stopped process starts no other), so
    that none is missed by the kill that follows; returns them."""
    stopped: list[int] = []
    while fresh := [p for p in descendants(pid) if p not in stopped]:
        for p in fresh:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGSTOP)
        stopped += fresh
    return stopped


def descendants(pid: int) -> list[int]:
    """Every process started, directly or not, by `pid` (whatever its session or group)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        p = todo.pop()
        found.append(p)
        todo += children.get(p, [])
    return found


def _read_lines(stream: Any, queue: Queue[str | None]) -> None:
    for line in stream:
        queue.put(line)
    queue.put(None)


def wait_group_gone(pgid: int, timeout: float = 30) -> None:
    """Poll until no live process is left in process group PGID (at most `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)


def group_alive(pgid: int) -> list[int]:
    """Processes still in process group PGID (none should survive a SIGKILL of the group)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                found.append(int(entry.name))
    return found

"""QemuVm: the command line, the plans from each observed state, and its sh programs run locally."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers import qemu_vm as qv
from providers.errors import HostUnreachable, OwnershipConflict
from providers.script import ScriptResult, StepResult

SHA = "ab" * 32
NET = [
    "-netdev",
    "tap,id=net0,ifname=tap_1002_eth0,script=no,downscript=no",
    "-device",
    "virtio-net-pci,netdev=net0,mac=52:54:00:03:ea:00",
]


def spec(**changes: object) -> qv.QemuVmSpec:
    fields: dict[str, object] = {
        "slice": "demo",
        "host": {"name": "worker1", "address": "127.0.0.1", "port": 2201},
        "vm": 1002,
        "binary": "qemu-system-x86_64",
        "accel": "tcg",
        "kernel": {"path": f"/var/lib/cloudrepo/images/{SHA}", "sha256": SHA},
        "append": "console=ttyS0",
        "netArgs": NET,
    }
    fields.update(changes)
    return qv.QemuVmSpec.model_validate(fields)


def have_from(text: str) -> qv.VmHave:
    return qv.parse_have(ScriptResult([StepResult("vm state", 0, text)]))


def running(s: qv.QemuVmSpec, argv: list[str] | None = None, owner: str = "demo") -> qv.VmHave:
    cmd = "\x1f".join(argv or qv.qemu_argv(s)) + "\x1f"
    return have_from(f"present\nowner={owner}\nbase=\npid=4242\ncmdline={cmd}\n")


def test_argv_is_the_launch_and_exactly_the_net_args() -> None:
    argv = qv.qemu_argv(spec())
    assert argv[:6] == ["qemu-system-x86_64", "-name", "vm1002", "-accel", "tcg", "-m"]
    assert "socket,id=console,path=/var/lib/cloudrepo/vms/1002/console.sock,server=on,wait=off" in argv
    assert argv[argv.index("-kernel") + 1] == f"/var/lib/cloudrepo/images/{SHA}"
    assert argv[argv.index("-append") + 1] == "console=ttyS0"
    i = argv.index("-netdev")
    assert argv[i : i + 4] == NET
    assert argv[-3:] == ["-pidfile", "/var/lib/cloudrepo/vms/1002/qemu.pid", "-daemonize"]
    disk = qv.qemu_argv(
        spec(
            kernel=None,
            append=None,
            image={"path": f"/var/lib/cloudrepo/images/{SHA}", "sha256": SHA},
            imageFormat="qcow2",
        )
    )
    assert "file=/var/lib/cloudrepo/vms/1002/disk.qcow2,if=virtio,format=qcow2" in disk
    assert "-kernel" not in disk


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="accel"):
        spec(accel="xen")
    with pytest.raises(ValueError, match="path"):
        spec(kernel={"path": "/etc/passwd", "sha256": SHA})
    with pytest.raises(ValueError, match="binary"):
        spec(binary="qemu; rm -rf /")
    with pytest.raises(ValueError, match="printable"):
        spec(append="console=ttyS0\x85")


def test_parse_have() -> None:
    assert have_from("absent\n").gone
    h = have_from("present\nowner=demo\nbase=/b\npid=12\ncmdline=a\x1fb c\x1f\n")
    assert (h.present, h.owner, h.pid, h.cmdline, h.base) == (True, "demo", 12, ("a", "b c"), "/b")
    dead = have_from("present\nowner=demo\nbase=\npid=12\n")
    assert dead.cmdline is None and not dead.gone


def test_plans() -> None:
    s = spec()
    assert qv.plan_ensure(s, running(s)) == []
    names = [st.name for st in qv.plan_ensure(s, have_from("absent\n"))]
    assert names == ["vm dir", "mark vm", "stop vm", "check kernel", "clear console", "start qemu"]
    other = running(s, [*qv.qemu_argv(spec(memoryMb=512))])
    assert "start qemu" in [st.name for st in qv.plan_ensure(s, other)]
    with pytest.raises(OwnershipConflict, match="'other'"):
        qv.plan_ensure(s, running(s, owner="other"))
    assert [st.name for st in qv.plan_delete(s, running(s))] == ["stop vm", "remove vm dir"]
    assert qv.plan_delete(s, running(s, owner="other")) == []
    assert qv.plan_delete(s, have_from("absent\n")) == []


def test_observe_reports_a_dead_vm_as_drift() -> None:
    s = spec()
    observed, drift = qv.observe(s, running(s))
    assert observed["running"] and drift == []
    observed, drift = qv.observe(s, have_from("present\nowner=demo\nbase=\npid=4242\n"))
    assert not observed["running"] and drift == ["QEMU not running"]
    _, drift = qv.observe(s, running(s, [*qv.qemu_argv(spec(cpus=2))]))
    assert drift == ["QEMU runs with other arguments"]


def sh(body: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["sh", "-c", body, "sh", *args], capture_output=True, text=True, timeout=30)


def test_stop_ends_only_the_process_that_carries_our_pid_file(tmp_path: Path) -> None:
    pidfile = tmp_path / "qemu.pid"
    ours = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-pidfile", str(pidfile)])
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "-pidfile", "/x"])
    try:
        pidfile.write_text(f"{stranger.pid}\n")
        assert sh(qv._STOP, str(pidfile), "2").returncode == 0
        assert stranger.poll() is None, "a process without our pid file in its argv was killed"
        pidfile.write_text(f"{ours.pid}\n")
        assert sh(qv._STOP, str(pidfile), "2").returncode == 0
        assert ours.wait(timeout=5) is not None
        state = sh(qv._PROBE, str(tmp_path))
        assert qv.parse_have(ScriptResult([StepResult("vm state", 0, state.stdout)])).cmdline is None
    finally:
        for p in (ours, stranger):
            p.kill()
            p.wait()


def test_verify_names_a_missing_or_changed_file(tmp_path: Path) -> None:
    f = tmp_path / "img"
    assert "missing" in sh(qv._VERIFY, str(f), SHA).stderr
    f.write_bytes(b"x")
    bad = sh(qv._VERIFY, str(f), SHA)
    assert bad.returncode == 1 and f"want {SHA}" in bad.stderr


@settings(max_examples=200, deadline=None)
@given(
    cpus=st.integers(1, 64),
    memory=st.integers(32, 1 << 20),
    append=st.none()
    | st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=200).filter(str.isprintable),
    ifaces=st.integers(1, 8),
)
def test_argv_round_trips_through_the_probe(cpus: int, memory: int, append: str | None, ifaces: int) -> None:
    """Whatever the launch, the argv read back from /proc (as the probe prints it) is recognised as ours
    and as exactly the wanted one, and it carries the VM's net args in order."""
    net: list[str] = []
    for i in range(ifaces):
        net += ["-netdev", f"tap,id=net{i},ifname=tap_1002_eth{i},script=no,downscript=no"]
        net += ["-device", f"virtio-net-pci,netdev=net{i},mac=52:54:00:03:ea:{i:02x}"]
    s = spec(cpus=cpus, memoryMb=memory, append=append, netArgs=net)
    argv = qv.qemu_argv(s)
    assert argv == qv.qemu_argv(s)
    h = running(s)
    assert h.cmdline == tuple(argv) and h.ours(qv.pid_file(s)) and qv.running_as_wanted(s, h)
    assert qv.plan_ensure(s, h) == [] and qv.observe(s, h)[1] == []
    i = argv.index("-netdev")
    assert argv[i : i + len(net)] == net


def test_diff_sees_a_vm_that_died(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no input changed, a dead VM is still a change (preview shows it, up restarts it); an
    unreachable worker leaves the diff alone."""
    provider = qv.QemuVmProvider()
    s = spec()
    props = s.inputs()
    monkeypatch.setattr(provider, "_have", running)
    assert not provider.diff("id", props, props).changes
    monkeypatch.setattr(provider, "_have", lambda _s: have_from("present\nowner=demo\nbase=\npid=4242\n"))
    assert provider.diff("id", props, props).changes

    def unreachable(_s: qv.QemuVmSpec) -> qv.VmHave:
        raise HostUnreachable("worker1", "cannot connect")

    monkeypatch.setattr(provider, "_have", unreachable)
    assert not provider.diff("id", props, props).changes
    changed = spec(memoryMb=512).inputs()
    assert provider.diff("id", props, changed).changes  # an input change needs no probe

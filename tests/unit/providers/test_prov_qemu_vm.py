"""QemuVm: the command line, the plans from each observed state, and its sh programs run locally."""

from __future__ import annotations

import shlex
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.kinds import qemu_binary
from providers.kinds import qemu_vm as qv
from providers.pipeline import HostProvider
from tests.unit.providers.provkit import NET_ARGS as NET
from tests.unit.providers.provkit import SHA, sh
from tests.unit.providers.provkit import qemu_vm as spec
from transport import script, ssh
from transport.script import ScriptResult, StepResult
from vocabulary.errors import HostUnreachable, OwnershipConflict

BIN = "/usr/bin/qemu-system-x86_64"
"""Where `binary` resolves on the worker in these tests."""


def have_from(text: str, binary: str = f"path={BIN}\n") -> qv.VmHave:
    return qv.parse_have(
        ScriptResult([StepResult("qemu binary", 0, binary), StepResult("vm state", 0, text)])
    )


def running(s: qv.QemuVmSpec, argv: list[str] | None = None, owner: str = "demo") -> qv.VmHave:
    cmd = "\x1f".join(argv or qv.qemu_argv(s, BIN)) + "\x1f"
    return have_from(f"present\nowner={owner}\nbase=\npid=4242\ncmdline={cmd}\n")


def test_argv_is_the_launch_and_exactly_the_net_args() -> None:
    argv = qv.qemu_argv(spec(), BIN)
    assert argv[:6] == [BIN, "-name", "vm1002", "-accel", "tcg", "-m"]
    chardev = "socket,id=console,path=/var/lib/cloudrepo/vms/1002/console.sock,server=on,wait=off"
    assert f"{chardev},logfile=/var/lib/cloudrepo/vms/1002/console.log" in argv
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
        ),
        BIN,
    )
    assert "file=/var/lib/cloudrepo/vms/1002/disk.qcow2,if=virtio,format=qcow2" in disk
    assert "-kernel" not in disk


def test_bad_inputs_are_refused() -> None:
    with pytest.raises(ValueError, match="accel"):
        spec(accel="xen")
    with pytest.raises(ValueError, match="path"):
        spec(kernel={"path": "/etc/passwd", "sha256": SHA})
    for binary in ("qemu; rm -rf /", "-x", "./qemu", "bin/qemu", ".qemu", "q emu", ""):
        with pytest.raises(ValueError, match="binary"):
            spec(binary=binary)
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
    assert names == [
        "vm dir",
        "mark vm",
        "stop vm",
        "check kernel",
        "clear console",
        "rotate console log",
        "start qemu",
        "console mode",
    ]
    other = running(s, [*qv.qemu_argv(spec(memoryMb=512), BIN)])
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
    _, drift = qv.observe(s, running(s, [*qv.qemu_argv(spec(cpus=2), BIN)]))
    assert drift == ["QEMU runs with other arguments"]


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
        assert have_from(state.stdout).cmdline is None
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
    argv = qv.qemu_argv(s, BIN)
    assert argv == qv.qemu_argv(s, BIN)
    h = running(s)
    assert h.cmdline == tuple(argv) and h.ours(qv.pid_file(s)) and qv.running_as_wanted(s, h)
    assert qv.plan_ensure(s, h) == [] and qv.observe(s, h)[1] == []
    i = argv.index("-netdev")
    assert argv[i : i + len(net)] == net


def test_a_vm_started_by_the_bare_binary_word_is_kept_while_the_word_resolves() -> None:
    """A VM an earlier version started by the `qemu.binary` word (not its path) is ours and as wanted: an
    upgrade restarts no VM. Any other argv[0], or a word that no longer resolves to a file, is not."""
    s = spec()
    argv = qv.qemu_argv(s, BIN)
    old = running(s, [s.binary, *argv[1:]])
    assert qv.running_as_wanted(s, old) and qv.plan_ensure(s, old) == [] and qv.observe(s, old)[1] == []
    assert not qv.running_as_wanted(s, running(s, ["/tmp/qemu-system-x86_64", *argv[1:]]))
    cmd = "\x1f".join([s.binary, *argv[1:]]) + "\x1f"
    gone = have_from(f"present\nowner=demo\nbase=\npid=4242\ncmdline={cmd}\n", "found=\n")
    assert not qv.running_as_wanted(s, gone)


def test_a_vm_started_before_console_logs_is_kept() -> None:
    """A VM whose chardev has no `logfile` (started by a version before console logs) is as wanted: an
    upgrade restarts no VM for its log. A chardev with another log file is not."""
    s = spec()
    argv = qv.qemu_argv(s, BIN)
    i = argv.index("-chardev") + 1
    old = [*argv[:i], argv[i].partition(",logfile=")[0], *argv[i + 1 :]]
    assert old != argv
    for cmd in (old, [s.binary, *old[1:]]):
        have = running(s, cmd)
        assert qv.running_as_wanted(s, have) and qv.plan_ensure(s, have) == []
    other = [*argv[:i], argv[i].replace("console.log", "other.log"), *argv[i + 1 :]]
    assert not qv.running_as_wanted(s, running(s, other))


def test_a_vm_started_before_the_monitor_is_kept() -> None:
    """A VM whose argv has no `-qmp` (started by a version before snapshots), with or without its console
    log, is as wanted: an upgrade restarts no VM for its monitor. A monitor on another path is not."""
    s = spec()
    argv = qv.qemu_argv(s, BIN)
    i = argv.index("-qmp")
    assert argv[i + 1] == f"unix:{qv.monitor_path(s.vm)},server=on,wait=off"
    old = [*argv[:i], *argv[i + 2 :]]
    c = old.index("-chardev") + 1
    older = [*old[:c], old[c].partition(",logfile=")[0], *old[c + 1 :]]
    for cmd in (old, older, [s.binary, *old[1:]]):
        have = running(s, cmd)
        assert qv.running_as_wanted(s, have) and qv.plan_ensure(s, have) == []
    other = [*argv[: i + 1], "unix:/tmp/other.sock,server=on,wait=off", *argv[i + 2 :]]
    assert not qv.running_as_wanted(s, running(s, other))


def test_the_console_log_of_the_boot_before_is_kept_once(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    assert sh(qv._ROTATE_LOG, str(log)).returncode == 0 and not log.exists()
    for boot in ("first", "second", "third"):
        log.write_text(boot)
        assert sh(qv._ROTATE_LOG, str(log)).returncode == 0
        assert not log.exists() and (tmp_path / "console.log.1").read_text() == boot
    assert sorted(p.name for p in tmp_path.iterdir()) == ["console.log.1"]


def test_diff_sees_a_vm_that_died(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no input changed, a dead VM is still a change (preview shows it, up restarts it); an
    unreachable worker leaves the diff alone."""
    s = spec()
    props = s.inputs()
    reads: list[str] = []

    def host(state: str | None) -> Callable[..., ScriptResult]:
        def run_script(_host: object, steps: list[script.Step], **_: object) -> ScriptResult:
            reads.append(steps[-1].name)
            if state is None:
                raise HostUnreachable("worker1", "cannot connect")
            return ScriptResult(
                [StepResult("qemu binary", 0, f"path={BIN}\n"), StepResult("vm state", 0, state)]
            )

        return run_script

    provider = HostProvider(qv.KIND.name)
    cmd = "\x1f".join(qv.qemu_argv(s, BIN)) + "\x1f"
    monkeypatch.setattr(ssh, "run_script", host(f"present\nowner=demo\nbase=\npid=4242\ncmdline={cmd}\n"))
    assert not provider.diff("id", props, props).changes
    monkeypatch.setattr(ssh, "run_script", host("present\nowner=demo\nbase=\npid=4242\n"))
    assert provider.diff("id", props, props).changes
    assert reads == ["vm state", "vm state"]  # one read round trip per diff
    monkeypatch.setattr(ssh, "run_script", host(None))
    assert not provider.diff("id", props, props).changes
    changed = spec(memoryMb=512).inputs()
    assert provider.diff("id", props, changed).changes  # an input change needs no probe


@pytest.mark.parametrize(
    ("probe", "said"),
    [
        ("found=eval\n", "command -v finds 'eval': a shell built-in, function or alias, not a file"),
        ("found=alias q='ls'\n", "command -v finds \"alias q='ls'\""),
        ("found=\n", "command -v finds nothing"),
        ("found=/etc\n", "it is '/etc', not an executable regular file"),
    ],
)
def test_a_binary_that_is_no_file_is_refused_before_any_step(probe: str, said: str) -> None:
    s = spec(binary="eval")
    live = "\x1f".join(qv.qemu_argv(s, BIN)) + "\x1f"
    for state in ("absent\n", f"present\nowner=demo\nbase=\npid=4242\ncmdline={live}\n"):
        have = have_from(state, probe)
        with pytest.raises(qemu_binary.BinaryRefused) as err:
            qv.plan_ensure(s, have)
        assert str(err.value).startswith("worker1: cloudrepo:qemu.binary 'eval' is not an executable file")
        assert said in str(err.value) and "nothing was started" in str(err.value)
        assert not qv.running_as_wanted(s, have)
    # a VM whose binary went away can still be removed
    assert [st.name for st in qv.plan_delete(s, have_from("present\nowner=demo\n", probe))] == [
        "stop vm",
        "remove vm dir",
    ]


def test_the_binary_probe_finds_only_executable_files(tmp_path: Path) -> None:
    """The probe's sh program, run here: built-ins, functions, directories, non-executables and nothing
    are no path; a command name and an absolute path to an executable file are."""
    script = tmp_path / "q"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)

    def resolve(word: str) -> tuple[str | None, str]:
        out = sh(qemu_binary._BINARY, word).stdout
        return qemu_binary.parse(ScriptResult([StepResult("qemu binary", 0, out)]))

    assert resolve("eval") == (None, "eval")
    assert resolve("cd") == (None, "cd")
    assert resolve("no-such-qemu") == (None, "")
    assert resolve("/etc") == (None, "/etc")
    assert resolve(str(script)) == (None, str(script))
    script.chmod(0o755)
    assert resolve(str(script)) == (str(script), str(script))
    path, _ = resolve("sh")
    assert path is not None and path.startswith("/") and Path(path).is_file()


@settings(max_examples=60, deadline=None)
@given(word=st.text(min_size=1, max_size=40).filter(lambda w: "\0" not in w))
def test_any_binary_word_resolves_to_a_file_or_nothing(word: str) -> None:
    """Whatever word `binary` is (shell syntax, options, built-ins, newlines), the probe never runs it
    and answers an executable regular file or no path."""
    out = sh(qemu_binary._BINARY, word).stdout
    path, _ = qemu_binary.parse(ScriptResult([StepResult("qemu binary", 0, out)]))
    assert path is None or (Path(path).is_file() and path.startswith("/"))


@settings(max_examples=80, deadline=None)
@given(
    append=st.text(st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=200).filter(str.isprintable)
    | st.sampled_from(
        [
            "console=ttyS0; id > /tmp/pwned #",
            "$(id) `id` ${HOME} $((1+1))",
            "'\"' \\ \\' ; & | < > * ? [ ] ~ # ! { }",
            "a\\",
            "-daemonize -pidfile /tmp/x",
        ]
    )
)
def test_append_reaches_qemu_as_one_argument(tmp_path_factory: pytest.TempPathFactory, append: str) -> None:
    """The start step of the plan, rendered by the script layer and run by a real `sh`, hands the
    binary exactly the planned argv: `append` is one argument, however hostile."""
    d = tmp_path_factory.mktemp("argv")
    dump = d / "argv"
    binary = d / "qemu"
    binary.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done >{shlex.quote(str(dump))}\n')
    binary.chmod(0o755)
    s = spec(append=append)
    have = have_from("absent\n", f"path={binary}\n")
    start = next(st for st in qv.plan_ensure(s, have) if st.name == "start qemu")
    argv = qv.qemu_argv(s, str(binary))
    assert list(start.argv) == argv and argv[argv.index("-append") + 1] == append
    text = script.render([start])
    res = subprocess.run(["sh", "-c", text], capture_output=True, text=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert dump.read_bytes().decode().split("\0")[:-1] == argv[1:]


@settings(max_examples=60, deadline=None)
# any text a config can carry: no NUL (no argv holds one), no lone surrogate (not UTF-8; refused at preview)
@given(
    args=st.lists(
        st.text(st.characters(exclude_characters="\0", exclude_categories=["Cs"]), max_size=40),
        min_size=1,
        max_size=4,
    )
)
def test_any_argument_survives_the_script_layer(
    tmp_path_factory: pytest.TempPathFactory, args: list[str]
) -> None:
    """Below the config's checks: whatever text an argument holds (line breaks and control characters
    too), the rendered script hands it to the program as exactly one argument."""
    d = tmp_path_factory.mktemp("args")
    dump = d / "argv"
    binary = d / "prog"
    binary.write_text(f'#!/bin/sh\nfor a in "$@"; do printf "%s\\0" "$a"; done >{shlex.quote(str(dump))}\n')
    binary.chmod(0o755)
    text = script.render([script.run("start qemu", str(binary), *args)])
    res = subprocess.run(["sh", "-c", text], capture_output=True, timeout=30)
    assert res.returncode == 0, res.stderr
    assert dump.read_bytes().split(b"\0")[:-1] == [a.encode() for a in args]

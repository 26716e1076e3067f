"""`cloudrepo console`: the escape, the worker's commands (argv and their sh programs run locally with a
stand-in QEMU on a unix socket), the lock shared with `lab.console`, the log's cleaning, the refusals and
the terminal's mode on every way out."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import termios
import threading
import time
import unicodedata
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudrepo import cli, console, hostaccess, stackfile
from cloudrepo.engine import SliceError
from lab import console as lab_console
from lab.common import LabError
from tests.unit.cloudrepo.fakeslices import FakeSlices
from tests.unit.providers.fakesshd import FakeSshd, new_key, pem, write_known_hosts
from transport.script import command_line
from vocabulary import naming

ESC = bytes([console.ESCAPE])
OUTPUTS = {
    "vms": {
        "1002": {"worker": "worker1", "console": naming.console_path(1002), "running": True},
        "1003": {"worker": "worker2", "console": None},
    }
}

GUEST = """
import socket, sys
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(sys.argv[1])
srv.listen(1)
while True:
    conn, _ = srv.accept()
    with conn:
        while data := conn.recv(1024):
            with open(sys.argv[1] + ".got", "ab") as got:
                got.write(data)
            conn.sendall(b"guest got " + data)
"""
"""A stand-in QEMU: its console socket answers what it is sent (and keeps it in `<socket>.got`);
`-pidfile PATH` in its argv, as QEMU's."""


@given(st.binary(max_size=200), st.binary(max_size=200))
def test_the_escape_anywhere_in_a_chunk_detaches_and_only_what_came_before_goes(
    before: bytes, after: bytes
) -> None:
    before = before.replace(ESC, b"")
    forward, detach = console.split_escape(before + ESC + after)
    assert detach and forward == before


@given(st.binary(max_size=400))
def test_a_chunk_without_the_escape_passes_unchanged(chunk: bytes) -> None:
    chunk = chunk.replace(ESC, b"")
    assert console.split_escape(chunk) == (chunk, False)


@given(st.lists(st.binary(max_size=50), max_size=20))
def test_a_stream_of_chunks_stops_exactly_at_the_first_escape(chunks: list[bytes]) -> None:
    sent, detached = b"", False
    for chunk in chunks:
        forward, detached = console.split_escape(chunk)
        sent += forward
        if detached:
            break
    stream = b"".join(chunks)
    assert detached == (ESC in stream)
    assert sent == stream.split(ESC, 1)[0]


@given(st.text(max_size=300), st.booleans(), st.integers(min_value=1, max_value=99999))
def test_the_worker_commands_are_argv_words_whatever_the_holder(holder: str, sudo: bool, vm: int) -> None:
    holder = holder.replace("\0", "")
    argv = console.attach_argv(vm, holder)
    words = shlex.split(command_line(argv, sudo))
    assert words == (["sudo", "-n", *argv] if sudo else argv)
    assert argv[:2] == ["sh", "-c"] and argv[3:] == [
        "sh",
        f"{naming.vm_dir(vm)}/qemu.pid",
        naming.console_path(vm),
        naming.console_lock_path(vm),
        holder,
        console.ATTACHED.decode().strip(),
    ]
    log = console.log_argv(vm, 7)
    assert log[3:] == ["sh", naming.console_log_path(vm), "7"]


@pytest.mark.parametrize("lines", [0, -1, console.MAX_LINES + 1])
def test_a_line_count_out_of_range_is_refused(lines: int) -> None:
    with pytest.raises(ValueError, match="--lines"):
        console.log_argv(1002, lines)


def test_the_paths_beside_the_socket_are_named_once() -> None:
    assert naming.console_lock_path(1002) == "/var/lib/cloudrepo/vms/1002/console.sock.lock"
    assert naming.console_log_path(1002) == "/var/lib/cloudrepo/vms/1002/console.log"
    assert naming.console_lock_of("/x/console.sock") == "/x/console.sock.lock"


@given(st.binary(max_size=500))
def test_log_text_carries_no_control_character_but_newline_and_tab(data: bytes) -> None:
    text = console.printable(data)
    assert all(c in "\n\t" or unicodedata.category(c) != "Cc" for c in text)


@given(st.text(alphabet=st.characters(exclude_categories=["Cc", "Cs"]), max_size=200))
def test_printable_text_is_kept_as_it_is(text: str) -> None:
    assert console.printable(text.encode()) == text


def test_log_text_shows_escapes_and_drops_carriage_returns() -> None:
    assert console.printable(b"\x1b[2Jcr-42-ok\r\nnext\x07\x7f\xc2\x85") == "^[[2Jcr-42-ok\nnext^G^?\\u0085"


def test_the_target_is_a_launched_vm_of_a_deployed_slice() -> None:
    assert console.target("s1", 1002, OUTPUTS) == console.Target("s1", 1002, "worker1")
    for outputs, vm, said in (
        ({}, 1002, "slice 's1' is not deployed"),
        (OUTPUTS, 1009, "slice 's1' has no VM 1009 (its VMs: 1002, 1003)"),
        (OUTPUTS, 1003, "VM 1003 of slice 's1' is not launched"),
        ({"vms": {"1002": {"console": "/c"}}}, 1002, "its outputs name no worker"),
    ):
        with pytest.raises(SliceError, match=re.escape(said)):
            console.target("s1", vm, outputs)


def test_each_refusal_says_why() -> None:
    t = console.Target("s1", 1002, "worker1")
    holder = "cloudrepo console of ana@desk (pid 7) since 2026-01-02 03:04:05 UTC"
    assert console.refusal(t, console.IN_USE, holder + "\n") == f"console of vm 1002 is in use by {holder}"
    assert "is not running on worker1" in console.refusal(t, console.NOT_RUNNING, "")
    assert "no console log on worker1" in console.refusal(t, console.NO_LOG, "")
    assert "socat is not installed" in console.refusal(t, console.NOT_FOUND, "socat: not found")
    assert "\x1b" not in console.refusal(t, 9, "\x1b[2Jboom")


# ---- the worker's sh programs, run here against a stand-in QEMU


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[dict[str, str]]:
    """A VM directory with a live stand-in QEMU (pid file, console socket); its paths as the scripts'
    arguments."""
    d = tmp_path / "vm"
    d.mkdir()
    paths = {"pf": str(d / "qemu.pid"), "sock": str(d / "console.sock"), "lock": str(d / "console.sock.lock")}
    guest = subprocess.Popen([sys.executable, "-c", GUEST, paths["sock"], "-pidfile", paths["pf"]])
    Path(paths["pf"]).write_text(f"{guest.pid}\n")
    deadline = time.monotonic() + 10
    while not Path(paths["sock"]).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield paths
    guest.kill()
    guest.wait()


def attach_script(paths: dict[str, str], holder: str) -> subprocess.Popen[bytes]:
    marker = console.ATTACHED.decode().strip()
    args = [paths["pf"], paths["sock"], paths["lock"], holder, marker]
    return subprocess.Popen(
        ["sh", "-c", console._ATTACH, "sh", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_attach_takes_the_lock_bridges_the_socket_and_refuses_a_second_client(vm: dict[str, str]) -> None:
    first = attach_script(vm, "first holder since then")
    assert first.stdin is not None and first.stdout is not None
    assert first.stdout.readline() == console.ATTACHED
    first.stdin.write(b"ping\n")
    first.stdin.flush()
    assert first.stdout.read(len(b"guest got ping\n")) == b"guest got ping\n"
    assert Path(vm["lock"]).read_text() == "first holder since then\n"
    assert os.stat(vm["lock"]).st_mode & 0o777 == 0o600

    second = attach_script(vm, "second")
    out, err = second.communicate(timeout=10)
    assert second.returncode == console.IN_USE and out == b""
    assert err.decode() == "first holder since then\n"
    with pytest.raises(LabError, match="is in use by first holder since then"):
        lab_console.run(Path(vm["sock"]), ["true"], timeout=0.5)

    first.stdin.close()  # end of input: socat ends, the lock is free and its holder note gone
    assert first.wait(timeout=10) == 0
    assert Path(vm["lock"]).read_text() == ""
    third = attach_script(vm, "third")
    assert third.stdout is not None and third.stdout.readline() == console.ATTACHED
    third.communicate(timeout=10)


def test_lab_console_holds_the_same_lock(vm: dict[str, str]) -> None:
    """While `lab.console` holds the console (its own note in the lock), `cloudrepo console` is refused
    naming it."""
    with lab_console._locked(Path(vm["sock"]), timeout=1):
        note = Path(vm["lock"]).read_text()
        assert note.startswith(f"lab.console (pid {os.getpid()}) since ") and note.endswith(" UTC\n")
        refused = attach_script(vm, "cli")
        _, err = refused.communicate(timeout=10)
        assert refused.returncode == console.IN_USE and err.decode() == note
    assert Path(vm["lock"]).read_text() == ""


def test_attach_refuses_a_vm_that_is_not_running(vm: dict[str, str], tmp_path: Path) -> None:
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        for pid_text in ("", "x1\n", f"{stranger.pid}\n", "999999999\n"):
            Path(vm["pf"]).write_text(pid_text)
            proc = attach_script(vm, "cli")
            out, _ = proc.communicate(timeout=10)
            assert proc.returncode == console.NOT_RUNNING and out == b"", pid_text
    finally:
        stranger.kill()
        stranger.wait()
    assert not Path(vm["lock"]).exists(), "a refused attach made the lock"


def test_the_log_script_prints_the_last_lines_or_says_there_is_none(tmp_path: Path) -> None:
    log = tmp_path / "console.log"
    run = ["sh", "-c", console._LOG, "sh", str(log)]
    assert subprocess.run([*run, "5"], capture_output=True, check=False).returncode == console.NO_LOG
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    done = subprocess.run([*run, "3"], capture_output=True, text=True, check=True)
    assert done.stdout == "line 97\nline 98\nline 99\n"


# ---- the terminal


@pytest.mark.parametrize("how", ["exception", "SIGTERM", "SIGHUP"])
def test_the_terminal_mode_is_restored_on_every_way_out(how: str) -> None:
    master, slave = pty.openpty()
    try:
        before = termios.tcgetattr(slave)
        handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
        with pytest.raises((RuntimeError, console._Ended)), console.raw_terminal(slave):
            assert termios.tcgetattr(slave)[3] & termios.ICANON == 0, "not raw"
            if how == "exception":
                raise RuntimeError("boom")
            os.kill(os.getpid(), getattr(signal, how))
            time.sleep(5)
        assert termios.tcgetattr(slave) == before
        assert {s: signal.getsignal(s) for s in handlers} == handlers
    finally:
        os.close(master)
        os.close(slave)


# ---- the worker's login from the stack config


class Secrets:
    def __init__(self, project: Path, values: dict[str, str]) -> None:
        self.project = project
        self.values = values

    def secret(self, name: str, key: str) -> str | None:
        return self.values.get(key)


def stack(tmp_path: Path, config: dict[str, Any]) -> Path:
    tmp_path.joinpath("Pulumi.yaml").write_text("name: cloudrepo\nruntime: python\n")
    stackfile.write(stackfile.stack_file(tmp_path, "s1"), {"config": config})
    return tmp_path


def test_the_worker_login_comes_from_the_stack_config(tmp_path: Path) -> None:
    key, host_key = new_key(), new_key()
    write_known_hosts(tmp_path / "known_hosts", 2222, host_key, "10.0.0.5")
    ssh = {"user": "ops", "knownHostsPath": "known_hosts", "sudo": True}
    config = {
        "cloudrepo:workers": {"worker1": {"host": "10.0.0.5", "port": 2222}},
        "cloudrepo:ssh": ssh,
        "cloudrepo:sshPrivateKey": {"secure": "v1:cipher"},
    }
    project = stack(tmp_path, config)
    ep, login = hostaccess.worker_login(
        Secrets(project, {"cloudrepo:sshPrivateKey": pem(key)}), "s1", "worker1"
    )
    assert (ep.name, ep.address, ep.port) == ("worker1", "10.0.0.5", 2222)
    assert login.user == "ops" and login.sudo and login.known_hosts == tmp_path / "known_hosts"
    assert login.pkey == key
    with pytest.raises(SliceError, match="has no worker 'worker9'"):
        hostaccess.worker_login(Secrets(project, {}), "s1", "worker9")
    with pytest.raises(SliceError, match="no SSH key configured"):
        hostaccess.worker_login(Secrets(project, {}), "s1", "worker1")
    with pytest.raises(SliceError, match=r"Pulumi\.s2\.yaml is not in this checkout"):
        hostaccess.worker_login(Secrets(project, {}), "s2", "worker1")
    config["cloudrepo:workers"] = {"worker1": {"host": "10.0.0.5", "port": "ssh"}}
    stack(tmp_path, json.loads(json.dumps(config)))
    with pytest.raises(SliceError, match=r"cloudrepo:workers\.worker1\.port"):
        hostaccess.worker_login(Secrets(project, {}), "s1", "worker1")


def test_a_worker_with_an_unknown_host_key_is_refused(tmp_path: Path) -> None:
    """The login verifies the worker's host key against knownHostsPath only: a server whose key is not
    the one there is refused before any command."""
    fake = FakeSshd(new_key(), new_key()).start()
    try:
        write_known_hosts(tmp_path / "known_hosts", fake.port, new_key())
        config = {
            "cloudrepo:workers": {"worker1": {"host": "127.0.0.1", "port": fake.port}},
            "cloudrepo:ssh": {"user": "tester", "knownHostsPath": "known_hosts"},
            "cloudrepo:sshPrivateKey": {"secure": "v1:cipher"},
        }
        secrets = Secrets(stack(tmp_path, config), {"cloudrepo:sshPrivateKey": pem(fake.client_key)})
        ep, login = hostaccess.worker_login(secrets, "s1", "worker1")
        with pytest.raises(SliceError, match="CHANGED"):
            hostaccess.connect(ep, login)
        assert fake.commands == []
    finally:
        fake.stop()


def test_lines_without_log_and_a_bad_line_count_are_bad_usage(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli, "apply_environment", lambda: None)
    assert cli.main(["console", "s1", "1002", "--lines", "5"]) == cli.USAGE
    assert "--lines goes with --log" in capsys.readouterr().err
    for bad in ("0", "-3", "x", str(console.MAX_LINES + 1)):
        with pytest.raises(SystemExit) as exc:
            cli.main(["console", "s1", "1002", "--log", "--lines", bad])
        assert exc.value.code == cli.USAGE
        assert "is not a line count" in capsys.readouterr().err


# ---- the whole command, in-process: an SSH server running the worker's side here, a pty as the terminal


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """Slice `s1` deployed (VM 1002 launched on worker1), worker1 an in-process SSH server whose commands
    run here, the VM a stand-in QEMU under `naming.VMS_DIR` (moved into the test's directory)."""
    monkeypatch.setattr(naming, "VMS_DIR", str(tmp_path / "vms"))
    d = Path(naming.vm_dir(1002))
    d.mkdir(parents=True)
    pf, sock = d / "qemu.pid", Path(naming.console_path(1002))
    guest = subprocess.Popen([sys.executable, "-c", GUEST, str(sock), "-pidfile", str(pf)])
    pf.write_text(f"{guest.pid}\n")
    fake = FakeSshd(new_key(), new_key()).start()
    write_known_hosts(tmp_path / "known_hosts", fake.port, fake.host_key)
    (tmp_path / "id").write_text(pem(fake.client_key))
    ssh = {"user": "tester", "knownHostsPath": "known_hosts", "privateKeyPath": "id"}
    workers = {"worker1": {"host": "127.0.0.1", "port": fake.port}}
    project = stack(tmp_path, {"cloudrepo:workers": workers, "cloudrepo:ssh": ssh})
    FakeSlices.backend = {"s1": OUTPUTS}
    monkeypatch.setattr(cli, "Slices", FakeSlices)
    monkeypatch.setattr(cli, "apply_environment", lambda: None)
    master, slave = pty.openpty()
    deadline = time.monotonic() + 10
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    yield {"project": project, "master": master, "slave": slave, "guest": guest, "dir": d}
    guest.kill()
    guest.wait()
    fake.stop()
    os.close(master)
    os.close(slave)


def read_until(fd: int, want: bytes, timeout: float = 10) -> bytes:
    got = b""
    deadline = time.monotonic() + timeout
    while want not in got and time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.2)
        if ready:
            got += os.read(fd, 4096)
    assert want in got, got
    return got


def terminal(monkeypatch: pytest.MonkeyPatch, worker: dict[str, Any]) -> None:
    """The pty's slave as the command's stdin and stdout (after capsys took them)."""
    monkeypatch.setattr(sys, "stdin", os.fdopen(os.dup(worker["slave"]), "r"))
    monkeypatch.setattr(sys, "stdout", os.fdopen(os.dup(worker["slave"]), "w"))


def when_raw(slave: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while termios.tcgetattr(slave)[3] & termios.ICANON and time.monotonic() < deadline:
        time.sleep(0.05)


def test_the_command_attaches_refuses_a_second_client_and_detaches_on_the_escape(
    worker: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal(monkeypatch, worker)
    master, slave = worker["master"], worker["slave"]
    before = termios.tcgetattr(slave)
    second: list[int] = []

    def person() -> None:
        when_raw(slave)
        os.write(master, b"hello \x03 there")
        read_until(master, b"guest got hello \x03 there")
        second.append(cli.main(["--project", str(worker["project"]), "console", "s1", "1002"]))
        os.write(master, b"last words\x1dnever sent")

    typing = threading.Thread(target=person)
    typing.start()
    code = cli.main(["--project", str(worker["project"]), "console", "s1", "1002"])
    typing.join(30)
    err = capsys.readouterr().err
    assert code == 0 and second == [1], err
    assert "Connected to vm 1002 on worker1. Escape: Ctrl-]" in err
    assert "console of vm 1002 is in use by cloudrepo console of " in err and " UTC" in err
    assert "Detached from vm 1002 (escape Ctrl-]); it keeps running." in err
    assert termios.tcgetattr(slave) == before, "the terminal's mode was not restored"
    assert (worker["dir"] / "console.sock.lock").read_text() == "", "the lock was not let go"
    assert worker["guest"].poll() is None
    got, deadline = worker["dir"] / "console.sock.got", time.monotonic() + 10
    while got.read_bytes() != b"hello \x03 therelast words" and time.monotonic() < deadline:
        time.sleep(0.05)  # the guest's side may read the last bytes just after the command ended
    assert got.read_bytes() == b"hello \x03 therelast words"  # up to the escape, nothing after it


def test_the_end_of_the_vm_ends_the_command_with_status_1(
    worker: dict[str, Any], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    terminal(monkeypatch, worker)

    def stop_guest() -> None:
        when_raw(worker["slave"])
        worker["guest"].kill()

    threading.Thread(target=stop_guest).start()
    assert cli.main(["--project", str(worker["project"]), "console", "s1", "1002"]) == 1
    assert "The console of vm 1002 closed on worker1 (the VM stopped?)" in capsys.readouterr().err
    worker["guest"].wait()
    assert cli.main(["--project", str(worker["project"]), "console", "s1", "1002"]) == 1
    assert "VM 1002 of slice 's1' is not running on worker1" in capsys.readouterr().err


def test_log_prints_the_last_lines_cleaned(
    worker: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--project", str(worker["project"]), "console", "s1", "1002", "--log"]
    assert cli.main([*args, "--lines", "2"]) == 1
    assert "has no console log on worker1" in capsys.readouterr().err
    (worker["dir"] / "console.log").write_bytes(b"boot\r\n\x1b[31mred\x1b[0m\r\n# cr-42-ok\r\n")
    assert cli.main([*args, "--lines", "2"]) == 0
    assert capsys.readouterr().out == "^[[31mred^[[0m\n# cr-42-ok\n"

"""An in-process SSH server (paramiko) for unit tests: runs exec requests with the local sh, counts things.

stdin, stdout and stderr are streamed both ways, as sshd does, so a long-lived remote process (the runner)
works through it."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import paramiko


def new_key() -> paramiko.ECDSAKey:
    return paramiko.ECDSAKey.generate(bits=256)


def pem(key: paramiko.PKey) -> str:
    buf = io.StringIO()
    key.write_private_key(buf)
    return buf.getvalue()


def write_known_hosts(path: Path, port: int, key: paramiko.PKey, host: str = "127.0.0.1") -> None:
    hk = paramiko.HostKeys()
    hk.add(f"[{host}]:{port}" if port != 22 else host, key.get_name(), key)
    hk.save(str(path))


class _Server(paramiko.ServerInterface):
    def __init__(self, owner: FakeSshd) -> None:
        self.owner = owner

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = key == self.owner.client_key and username == "tester"
        return paramiko.common.AUTH_SUCCESSFUL if ok else paramiko.common.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.common.OPEN_SUCCEEDED
        return paramiko.common.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        with self.owner.lock:
            self.owner.commands.append(command.decode())
        threading.Thread(target=_run, args=(self.owner, channel, command.decode()), daemon=True).start()
        return True


def _feed(channel: paramiko.Channel, stdin: IO[bytes]) -> None:
    """The channel's data to the process's stdin as it arrives (a long-lived reader sees each frame)."""
    try:
        while True:
            chunk = channel.recv(65536)
            if not chunk:
                break
            stdin.write(chunk)
            stdin.flush()
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            stdin.close()


def _pump(src: IO[bytes], send: Callable[[bytes], None]) -> None:
    try:
        while True:
            chunk = src.read1(65536)  # type: ignore[attr-defined]
            if not chunk:
                break
            send(chunk)
    except OSError:  # the client went away (e.g. it timed out)
        pass


def _run(owner: FakeSshd, channel: paramiko.Channel, command: str) -> None:
    proc = subprocess.Popen(
        ["sh", "-c", command],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # a process group per request, as sshd gives each session
        env={**os.environ, "TMPDIR": owner.tmpdir},  # what a killed runner leaves goes with the server
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    with owner.lock:
        owner.procs.append(proc)
    threading.Thread(target=_feed, args=(channel, proc.stdin), daemon=True).start()
    err_pump = threading.Thread(target=_pump, args=(proc.stderr, channel.sendall_stderr), daemon=True)
    err_pump.start()
    try:
        _pump(proc.stdout, channel.sendall)  # streamed as sshd does
        err_pump.join(60)
        status = proc.wait(60)
        if status >= 0:  # killed by a signal: sshd sends exit-signal, paramiko's client then reports -1
            channel.send_exit_status(status)
    except OSError:
        pass
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        channel.close()


@dataclass
class FakeSshd:
    host_key: paramiko.PKey
    client_key: paramiko.PKey
    port: int = 0
    connections: int = 0
    commands: list[str] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    """The local processes of the exec requests (a test may kill one)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    tmpdir: str = field(default_factory=lambda: tempfile.mkdtemp(prefix="fakesshd-"))
    _sock: socket.socket | None = None
    _transports: list[paramiko.Transport] = field(default_factory=list)

    def start(self) -> FakeSshd:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        self.port = sock.getsockname()[1]
        self._sock = sock
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with self.lock:
                self.connections += 1
            t = paramiko.Transport(conn)
            t.add_server_key(self.host_key)
            self._transports.append(t)
            try:
                t.start_server(server=_Server(self))
            except (paramiko.SSHException, EOFError, OSError):
                t.close()

    def stop(self) -> None:
        if self._sock is not None:
            self._sock.close()
        for t in self._transports:
            t.close()
        for p in self.procs:
            self.kill(p)
        shutil.rmtree(self.tmpdir, ignore_errors=True)

    def kill(self, proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL a request's whole process group (the remote runner and whatever it runs)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

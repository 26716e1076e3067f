"""An in-process SSH server (paramiko) for unit tests: runs exec requests with the local sh, counts things."""

from __future__ import annotations

import io
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

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
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        if kind == "session":
            return paramiko.OPEN_SUCCEEDED
        return paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        with self.owner.lock:
            self.owner.commands.append(command.decode())
        args = (channel, command.decode(), self.owner.exit_status_first)
        threading.Thread(target=_run, args=args, daemon=True).start()
        return True


def _run(channel: paramiko.Channel, command: str, exit_status_first: bool = False) -> None:
    stdin = bytearray()
    while True:
        chunk = channel.recv(65536)
        if not chunk:
            break
        stdin += chunk
    proc = subprocess.Popen(
        ["sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    proc.stdin.write(bytes(stdin))
    proc.stdin.close()
    try:
        if exit_status_first:  # as OpenSSH's sshd may do: the status, then the rest of the output
            out, err = proc.stdout.read(), proc.stderr.read()
            channel.send_exit_status(proc.wait(60))
            time.sleep(0.1)
            channel.sendall(out)
            channel.sendall_stderr(err)
            return
        while True:  # stream stdout as sshd does
            chunk = proc.stdout.read1(65536)
            if not chunk:
                break
            channel.sendall(chunk)
        channel.sendall_stderr(proc.stderr.read())
        channel.send_exit_status(proc.wait(60))
    except OSError:  # the client went away (e.g. it timed out)
        proc.kill()
        proc.wait()
    finally:
        channel.close()


@dataclass
class FakeSshd:
    host_key: paramiko.PKey
    client_key: paramiko.PKey
    port: int = 0
    connections: int = 0
    exit_status_first: bool = False
    """Send each command's exit status before its output (sshd can, when the child exits first)."""
    commands: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
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

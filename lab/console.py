"""Run a command in a QEMU guest through its serial console (a unix socket), with its output and status.

The guest keeps a shell on ttyS0 (`lab.image`). One client at a time per console: the lock beside the
socket that `cloudrepo console` takes too (`naming.console_lock_of`). The command line is framed by
markers that the shell prints (`vocabulary.serialframe`).
"""

from __future__ import annotations

import fcntl
import os
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from lab.common import LabError
from vocabulary import serialframe
from vocabulary.naming import console_holder, console_lock_of


@dataclass(frozen=True)
class Result:
    returncode: int
    stdout: str
    """stdout and stderr together (one serial line), with the terminal's CR removed."""


@contextmanager
def _locked(sock_path: Path, timeout: float) -> Iterator[None]:
    """Hold the console's lock: the one protocol of every console client (`cloudrepo console` takes the
    same `flock` on the worker), the holder noted in it. Waits up to `timeout` for another holder, then
    raises LabError naming it ("in use by ... since ...")."""
    lock = Path(console_lock_of(str(sock_path)))
    deadline = time.monotonic() + timeout
    with os.fdopen(os.open(lock, os.O_RDWR | os.O_CREAT, 0o600), "r+") as fh:
        while True:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    fh.seek(0)
                    holder = fh.read(4096).strip() or "another client"
                    raise LabError(f"console {sock_path} is in use by {holder}") from None
                time.sleep(0.2)
        fh.seek(0)
        fh.truncate()
        fh.write(console_holder(f"lab.console (pid {os.getpid()})", datetime.now(UTC)) + "\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fh.flush()
            fcntl.flock(fh, fcntl.LOCK_UN)


def _connect(sock_path: Path, timeout: float) -> socket.socket:
    """Connect through the socket's directory opened as a descriptor (`/proc/self/fd/N/<name>`): unix
    socket paths are limited to 108 bytes and the testbed's host directories can be deep. The process's
    working directory is never changed (threads connect at once: `lab.slicecheck` runs guests in
    parallel)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        directory = os.open(sock_path.parent, os.O_PATH | os.O_DIRECTORY)
        try:
            sock.connect(f"/proc/self/fd/{directory}/{sock_path.name}")
        finally:
            os.close(directory)
    except OSError as exc:
        sock.close()
        raise LabError(f"cannot connect to the console {sock_path}: {exc}") from None
    return sock


def run(sock_path: Path, argv: list[str], timeout: float = 30) -> Result:
    """Run `argv` in the guest behind the console socket; raises LabError when no answer within timeout."""
    if not argv:
        raise LabError("no command given")
    nonce = secrets.token_hex(8)
    deadline = time.monotonic() + timeout
    with _locked(sock_path, timeout):
        sock = _connect(sock_path, timeout)
        try:
            # a Ctrl-C and an empty line: whatever an earlier, abandoned command left, a fresh prompt
            sock.sendall(serialframe.INTERRUPT)
            time.sleep(0.2)
            sock.sendall(serialframe.line(argv, nonce).encode())
            buf = ""
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise LabError(f"no answer from the guest on {sock_path} within {timeout}s: {argv}")
                sock.settimeout(left)
                try:
                    chunk = sock.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    raise LabError(f"the console {sock_path} closed")
                buf += chunk.decode(errors="replace").replace("\r", "")
                done = serialframe.answer(buf, nonce)
                if done is not None:
                    return Result(*done)
        finally:
            sock.close()


def wait_ready(sock_path: Path, timeout: float = 60) -> None:
    """Wait until the guest's shell answers on its console."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            left = min(5.0, max(1.0, deadline - time.monotonic()))
            if run(sock_path, ["true"], timeout=left).returncode == 0:
                return
        except LabError as exc:
            last = str(exc)
        time.sleep(0.5)
    raise LabError(f"the guest's shell did not answer on {sock_path} within {timeout}s ({last})")

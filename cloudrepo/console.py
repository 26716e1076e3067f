"""`cloudrepo console NAME VM`: a launched VM's serial console, over SSH to its worker.

The socket stays root-only on the worker: the command logs in with the stack's own SSH settings
(`hostaccess`), runs `socat` between the session's stdin/stdout and the socket (as root by `sudo -n` when
`ssh.sudo`), and copies bytes between that session and the local terminal, raw, until the escape byte
(Ctrl-], as in telnet and virsh) is typed. The terminal's mode is restored on every way out.

One client at a time: QEMU's socket chardev serves one connection. Every client (this command,
`lab.console` under the slice checks, a future browser console) takes the console's lock
(`naming.console_lock_path`, `flock`) before it connects and writes `naming.console_holder` into it; a
second client is refused at once with "console of vm N is in use by <who> since <when>".

`--log` prints the last lines of the VM's console log (`naming.console_log_path`) without attaching.
"""

from __future__ import annotations

import getpass
import os
import select
import signal
import socket
import sys
import termios
import time
import tty
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import paramiko

from cloudrepo.engine import SliceError
from transport.script import command_line
from vocabulary import naming
from vocabulary.shown import shown, terminal_safe

ESCAPE = 0x1D
ESCAPE_NAME = "Ctrl-]"
ATTACHED = b"cloudrepo-console-attached\n"
"""The attach script's first line of output: the lock is held and socat is about to connect."""
NOT_RUNNING, IN_USE, NO_LOG, NOT_FOUND = 3, 4, 5, 127
"""The remote scripts' own exit statuses (127: the shell found no such command)."""
DEFAULT_LINES = 50
MAX_LINES = 100_000
MAX_LOG_BYTES = 16 << 20
"""Bytes of log output read at most (`--lines` of very long lines)."""
DETACH_WAIT = 5.0
"""Seconds the worker gets to end its side (and release the lock) after a detach."""

_ATTACH = r"""umask 077
pf=$1; sock=$2; lock=$3; holder=$4; marker=$5
pid=$(cat "$pf" 2>/dev/null)
case $pid in ''|*[!0-9]*) exit 3 ;; esac
tr '\000' '\n' <"/proc/$pid/cmdline" 2>/dev/null | grep -qxF -- "$pf" || exit 3
[ -S "$sock" ] || exit 3
command -v socat >/dev/null 2>&1 || { echo "socat: not found" >&2; exit 127; }
exec 9>>"$lock" || exit 1
flock -n 9 || { cat "$lock" >&2; exit 4; }
printf '%s\n' "$holder" >"$lock"
printf '%s\n' "$marker"
socat STDIO "UNIX-CONNECT:$sock"
rc=$?
: >"$lock"
exit "$rc"
"""

_LOG = r"""log=$1; n=$2
[ -f "$log" ] || exit 5
tail -n "$n" -- "$log"
"""


@dataclass(frozen=True)
class Target:
    """A launched VM of a deployed slice, as its outputs say."""

    slice: str
    vm: int
    worker: str


def target(name: str, vm: int, outputs: Mapping[str, Any]) -> Target:
    """The VM `vm` of slice `name` from its stack outputs; `SliceError` when the slice is not deployed,
    has no such VM, or the VM is not launched."""
    vms = outputs.get("vms")
    if not isinstance(vms, Mapping) or not vms:
        raise SliceError(f"slice {name!r} is not deployed: no VMs in its outputs (cloudrepo deploy {name})")
    spec = vms.get(str(vm))
    if not isinstance(spec, Mapping):
        known = ", ".join(sorted(map(str, vms), key=lambda k: (len(k), k))[:20])
        raise SliceError(f"slice {name!r} has no VM {vm} (its VMs: {known})")
    if not spec.get("console"):
        raise SliceError(
            f"VM {vm} of slice {name!r} is not launched: it has no `launch` in the slice, so no QEMU and "
            "no console"
        )
    worker = spec.get("worker")
    if not isinstance(worker, str) or not worker:
        raise SliceError(f"VM {vm} of slice {name!r}: its outputs name no worker, got {shown(worker)}")
    return Target(name, vm, worker)


def split_escape(chunk: bytes, escape: int = ESCAPE) -> tuple[bytes, bool]:
    """What of a chunk typed at the terminal goes to the guest, and whether it detaches: everything before
    the first escape byte, and True when there is one (the rest of the chunk is dropped)."""
    at = chunk.find(bytes([escape]))
    return (chunk, False) if at < 0 else (chunk[:at], True)


def who(tool: str = "cloudrepo console") -> str:
    """Who holds a console `tool` attached: the local user, host and process."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    return f"{tool} of {user}@{socket.gethostname()} (pid {os.getpid()})"


def attach_argv(vm: int, holder: str) -> list[str]:
    """The worker's side of an attach: check the VM runs, take its console lock (refused when held:
    exit `IN_USE`, the holder on stderr), note `holder` in it, print `ATTACHED`, then socat."""
    args = [naming.vm_dir(vm) + "/qemu.pid", naming.console_path(vm), naming.console_lock_path(vm)]
    return ["sh", "-c", _ATTACH, "sh", *args, holder, ATTACHED.decode().strip()]


def log_argv(vm: int, lines: int) -> list[str]:
    """The worker's side of `--log`: the last `lines` lines of the VM's console log (exit `NO_LOG`
    when there is none)."""
    if not 1 <= lines <= MAX_LINES:
        raise ValueError(f"--lines must be 1..{MAX_LINES}, got {lines}")
    return ["sh", "-c", _LOG, "sh", naming.console_log_path(vm), str(lines)]


def printable(data: bytes) -> str:
    """Console output fit for a terminal: UTF-8 (invalid bytes replaced), then `terminal_safe`."""
    return terminal_safe(data.decode("utf-8", errors="replace"))


def refusal(t: Target, status: int, stderr: str) -> str:
    """The message for a worker script that ended before attaching (or printing the log)."""
    said = printable(stderr.encode()).strip()
    if status == NOT_RUNNING:
        return (
            f"VM {t.vm} of slice {t.slice!r} is not running on {t.worker} (`cloudrepo deploy {t.slice}` "
            "starts it again)"
        )
    if status == IN_USE:
        return f"console of vm {t.vm} is in use by {said or 'another client'}"
    if status == NO_LOG:
        return (
            f"VM {t.vm} of slice {t.slice!r} has no console log on {t.worker} (it has not started since "
            "console logs were kept: the next restart makes one)"
        )
    if status == NOT_FOUND:
        return f"{t.worker}: socat is not installed (the console needs it): {said}"
    return f"{t.worker}: the console command failed with status {status}: {said or '(no message)'}"


def open_script(client: paramiko.SSHClient, argv: list[str], sudo: bool) -> paramiko.Channel:
    transport = client.get_transport()
    if transport is None:
        raise SliceError("the SSH connection closed")
    chan = transport.open_session()
    chan.exec_command(command_line(argv, sudo))
    return chan


def drain(chan: paramiko.Channel, limit: int = MAX_LOG_BYTES) -> tuple[bytes, bytes, int]:
    """Everything the command prints (stdout up to `limit` bytes), and its exit status."""
    out, err = bytearray(), bytearray()
    while True:
        if chan.recv_ready():
            out += chan.recv(65536)
        elif chan.recv_stderr_ready():
            err += chan.recv_stderr(65536)
        elif chan.exit_status_ready() and not chan.recv_ready() and not chan.recv_stderr_ready():
            break
        else:
            select.select([chan], [], [], 0.2)
        if len(out) > limit:
            break
    return bytes(out[:limit]), bytes(err), chan.recv_exit_status()


def show_log(client: paramiko.SSHClient, t: Target, lines: int, sudo: bool) -> str:
    """The last `lines` lines of the VM's console log, fit for a terminal."""
    out, err, status = drain(open_script(client, log_argv(t.vm, lines), sudo))
    if status != 0:
        raise SliceError(refusal(t, status, err.decode(errors="replace")))
    return printable(out)


class _Ended(Exception):
    """A signal ended the session (the terminal is restored on the way out)."""


@contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal at `fd` in raw mode (when it is one) for the block; its mode restored on every way
    out, SIGTERM and SIGHUP included."""

    def ended(signum: int, _frame: Any) -> None:
        raise _Ended(signal.Signals(signum).name)

    old_handlers = {s: signal.signal(s, ended) for s in (signal.SIGTERM, signal.SIGHUP)}
    mode = termios.tcgetattr(fd) if os.isatty(fd) else None
    try:
        if mode is not None:
            tty.setraw(fd)
        yield
    finally:
        if mode is not None:
            termios.tcsetattr(fd, termios.TCSADRAIN, mode)
        for s, h in old_handlers.items():
            signal.signal(s, h)


def wait_attached(chan: paramiko.Channel, timeout: float) -> bytes | None:
    """Read up to the `ATTACHED` line; what came after it, or None when the script ended before."""
    buf = b""
    deadline = time.monotonic() + timeout
    while ATTACHED not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise SliceError(f"the worker did not answer within {timeout:g}s")
        if chan.recv_ready():
            chunk = chan.recv(4096)
            if not chunk:
                return None
            buf += chunk
        elif chan.exit_status_ready():
            return None
        else:
            select.select([chan], [], [], min(left, 0.2))
    return buf.split(ATTACHED, 1)[1]


def attach(client: paramiko.SSHClient, t: Target, sudo: bool, timeout: float, say: Any) -> int:
    """Attach the local terminal to the VM's console until the escape byte (0), the end of input (0) or
    the end of the worker's side (1). `say` prints a status line (on stderr)."""
    since = datetime.now(UTC)
    chan = open_script(client, attach_argv(t.vm, naming.console_holder(who(), since)), sudo)
    first = wait_attached(chan, timeout)
    if first is None:
        _, err, status = drain(chan)
        raise SliceError(refusal(t, status, err.decode(errors="replace")))
    say(f"Connected to vm {t.vm} on {t.worker}. Escape: {ESCAPE_NAME}")
    fd_in, fd_out = sys.stdin.fileno(), sys.stdout.fileno()
    sys.stdout.flush()
    how = "closed"
    with raw_terminal(fd_in):
        try:
            if first:
                os.write(fd_out, first)
            how = _pump(chan, fd_in, fd_out)
        except _Ended as exc:
            how = str(exc)
        finally:
            hang_up(chan)
    if how == "closed":
        say(f"\nThe console of vm {t.vm} closed on {t.worker} (the VM stopped?).")
        return 1
    say(f"\nDetached from vm {t.vm} ({how}); it keeps running.")
    return 0


def _pump(chan: paramiko.Channel, fd_in: int, fd_out: int) -> str:
    """Copy bytes both ways until the escape ("escape"), the end of input ("end of input") or the end
    of the worker's side ("closed")."""
    while True:
        watched: list[Any] = [fd_in, chan]
        readable, _, _ = select.select(watched, [], [], 1.0)
        while chan.recv_stderr_ready():
            os.write(sys.stderr.fileno(), chan.recv_stderr(65536))
        if chan.recv_ready() or chan.eof_received or chan.closed:
            data = chan.recv(65536) if not chan.closed else b""
            if not data:
                return "closed"
            os.write(fd_out, data)
        if fd_in in readable:
            typed = os.read(fd_in, 4096)
            if not typed:
                return "end of input"
            forward, detach = split_escape(typed)
            if forward:
                chan.sendall(forward)
            if detach:
                return f"escape {ESCAPE_NAME}"


def hang_up(chan: paramiko.Channel) -> None:
    """End the worker's side: EOF to socat, then wait (bounded) for the script to release the lock."""
    try:
        if not chan.closed:
            chan.shutdown_write()
        deadline = time.monotonic() + DETACH_WAIT
        while not chan.exit_status_ready() and time.monotonic() < deadline:
            while chan.recv_ready():
                chan.recv(65536)
            time.sleep(0.05)
    except (OSError, EOFError, paramiko.SSHException):
        pass
    finally:
        chan.close()

"""One long-lived remote shell per pooled SSH channel: scripts go to it framed on stdin, one after another.

Why: every SSH session runs the user's login shell (`bash -c CMD`), which sources the rc files (140 ms on
hosts with `pyenv init` in root's `.bashrc`).  A runner pays that once; each round trip then costs one
`sh` of our own script.

Protocol (the runner's program is the constant `PROGRAM`; everything variable arrives as data):
- on start the runner prints `READY` on stdout and on stderr (anything before it is rc-file noise);
- request: a header line `<length> <lock wait> <nonce>\\n`, then exactly `length` bytes of script.  The
  runner reads the header with the shell's `read` (byte by byte on a pipe) and the body with `dd` (full
  blocks, then single bytes: never more than `length`), checks the size, and runs `sh FILE </dev/null`
  (under `flock -E 75 -w <lock wait> LOCK` when the wait is not 0: 75 means the wait timed out; LOCK is
  the runner's `$1`, `naming.LOCK_FILE`; the script gets the time it asked for the lock, in ns of the
  host's clock, as `$CLOUDREPO_LOCK_ASKED`) with stdout and stderr going straight to the channel, so a
  timed-out call still has the partial stdout (the step markers);
- response: the script's stdout then `@@<nonce>:rc:<status>\\n`; its stderr then `@@<nonce>:end\\n`.  The
  nonce is random per request and never given to the script, so no output can forge the end of a frame.
"""

from __future__ import annotations

import secrets
import shlex
import time

import paramiko

from vocabulary import naming

READY = b"@@cloudrepo-runner:ready\n"

PROGRAM = r"""set -u
umask 077
lock=$1
d=$(mktemp -d) || exit 1
trap 'rm -rf "$d"' EXIT
trap 'exit 129' HUP
trap 'exit 141' PIPE
trap 'exit 143' TERM
printf '%s\n' '@@cloudrepo-runner:ready'
printf '%s\n' '@@cloudrepo-runner:ready' >&2
while IFS=' ' read -r len lk n; do
  case $len in ''|*[!0-9]*) exit 2 ;; esac
  case $lk in ''|*[!0-9]*) exit 2 ;; esac
  case $n in ''|*[!0-9a-f]*) exit 2 ;; esac
  { dd bs=512 count=$((len / 512)) iflag=fullblock 2>/dev/null
    dd bs=1 count=$((len % 512)) 2>/dev/null; } >"$d/s" || exit 3
  [ $(wc -c <"$d/s") -eq "$len" ] || exit 3
  if [ "$lk" -gt 0 ]; then
    w=$(date +%s%N)
    mkdir -p "$(dirname "$lock")" && CLOUDREPO_LOCK_ASKED=$w flock -E 75 -w "$lk" "$lock" sh "$d/s" </dev/null
  else
    sh "$d/s" </dev/null
  fi
  s=$?
  printf '@@%s:rc:%s\n' "$n" "$s"
  printf '@@%s:end\n' "$n" >&2
done
"""

_POLL = 0.002


def command(sudo: bool, lock_file: str = naming.LOCK_FILE) -> str:
    """The one remote command of a runner (the login shell parses it; the program and the lock file's path
    are quoted words)."""
    cmd = shlex.join(["sh", "-c", PROGRAM, "sh", lock_file])
    return f"sudo -n {cmd}" if sudo else cmd


class Stale(Exception):
    """The runner (or its channel) was gone before our script began: nothing ran, safe to retry."""


class StartFailed(Exception):
    """The runner's command ended before it was ready (e.g. `sudo -n` refused); the transport is fine."""

    def __init__(self, status: int, stderr: str) -> None:
        super().__init__(f"exited {status}: {stderr.strip() or '(no stderr)'}")
        self.status = status
        self.stderr = stderr


class Lost(Exception):
    """The runner ended while our script ran (its effect is unknown)."""


class Timeout(Exception):
    """The call took longer than its limit; `stdout` is what arrived (for the step markers)."""

    def __init__(self, stdout: bytes) -> None:
        super().__init__("timed out")
        self.stdout = stdout


def _ended(chan: paramiko.Channel) -> bool:
    return bool(chan.closed or chan.eof_received or chan.exit_status_ready())


def _status(chan: paramiko.Channel) -> int:
    return chan.recv_exit_status() if chan.exit_status_ready() else -1


class Runner:
    """A started runner on one channel; used by one call at a time (the pool in `ssh` sees to that)."""

    def __init__(self, client: paramiko.SSHClient, chan: paramiko.Channel) -> None:
        self.client = client
        self.chan = chan

    @classmethod
    def start(cls, client: paramiko.SSHClient, cmd: str, timeout: float) -> Runner:
        """Open a channel, run `cmd`, wait for READY on both streams.  Raises Stale, StartFailed, Timeout."""
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise Stale("transport closed")
        try:
            chan = transport.open_session(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise Stale(str(exc)) from exc
        try:
            chan.settimeout(timeout)
            chan.exec_command(cmd)
            out, err = bytearray(), bytearray()
            deadline = time.monotonic() + timeout
            while READY not in out or READY not in err:
                got = False
                if chan.recv_ready():
                    out += chan.recv(65536)
                    got = True
                if chan.recv_stderr_ready():
                    err += chan.recv_stderr(65536)
                    got = True
                if got:
                    continue
                if _ended(chan) and not chan.recv_ready() and not chan.recv_stderr_ready():
                    if not transport.is_active():
                        raise Stale("the connection closed while the runner started")
                    if not chan.exit_status_ready():
                        time.sleep(0.05)  # the status may trail the EOF
                    raise StartFailed(_status(chan), err.decode(errors="replace"))
                if time.monotonic() > deadline:
                    raise Timeout(b"")
                time.sleep(_POLL)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            chan.close()
            raise Stale(str(exc)) from exc
        except BaseException:
            chan.close()
            raise
        return cls(client, chan)

    def alive(self) -> bool:
        t = self.client.get_transport()
        return t is not None and t.is_active() and not _ended(self.chan)

    def close(self) -> None:
        self.chan.close()

    def call(self, script: bytes, lock_wait: int, timeout: float) -> tuple[int, bytes, bytes]:
        """Run one script; returns (status, stdout, stderr).  Raises Stale, Lost, Timeout."""
        chan = self.chan
        if not self.alive():
            raise Stale("the runner had ended")
        nonce = secrets.token_hex(16)
        frame = f"{len(script)} {int(lock_wait)} {nonce}\n".encode() + script
        try:
            chan.sendall(frame)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            # not all of the frame went out: the runner cannot have run it (it checks the size)
            raise Stale(str(exc)) from exc
        out_end = f"@@{nonce}:rc:".encode()
        err_end = f"@@{nonce}:end\n".encode()
        out, err = bytearray(), bytearray()
        status: int | None = None
        out_body = err_body = b""
        err_done = False
        deadline = time.monotonic() + timeout
        try:
            while status is None or not err_done:
                got = False
                if chan.recv_ready():
                    before = len(out)
                    out += chan.recv(65536)
                    got = True
                    if status is None:
                        i = out.find(out_end, max(0, before - len(out_end) - 24))
                        j = out.find(b"\n", i) if i >= 0 else -1
                        if j >= 0:
                            status = int(out[i + len(out_end) : j])
                            out_body = bytes(out[:i])
                if chan.recv_stderr_ready():
                    before = len(err)
                    err += chan.recv_stderr(65536)
                    got = True
                    if not err_done:
                        k = err.find(err_end, max(0, before - len(err_end)))
                        if k >= 0:
                            err_done = True
                            err_body = bytes(err[:k])
                if got:
                    continue
                if _ended(chan) and not chan.recv_ready() and not chan.recv_stderr_ready():
                    t = self.client.get_transport()
                    if not out and not err and t is not None and t.is_active():
                        # the runner ended and no byte came back: our script never printed its first
                        # marker (the script would hold the channel's stdout open while it runs)
                        raise Stale(f"the runner ended (status {_status(chan)}) before the script began")
                    raise Lost(f"the runner ended (status {_status(chan)}) while the script ran")
                if time.monotonic() > deadline:
                    raise Timeout(bytes(out))
                time.sleep(_POLL)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise Lost(str(exc)) from exc
        assert status is not None
        return status, out_body, err_body

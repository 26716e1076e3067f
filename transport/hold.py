"""Hold the hosts' locks (`naming.LOCK_FILE`) across several round trips, on several hosts at once.

A locked script (`ssh.run_script(locked=True)`) holds a host's lock for one round trip. A decision that must
read several hosts and write on them with nothing changing in between (the placement of `worker: auto` at
`up`) holds every lock for its whole length instead: one SSH connection of its own per host runs the
constant `PROGRAM`, which takes the lock (`flock -w`, noting the holder beside it as a locked script does)
and then waits on its stdin. Closing the channel (or losing the connection, or the program ending) ends the
wait, and the lock goes with the process. Meanwhile the caller runs ordinary unlocked scripts on the hosts.

Hosts are taken in one fixed order for every caller, by address and port (not by the name a stack gives
them), each once: two holders never wait on each other in a cycle; a lock still taken after the wait is a
`LockTimeout` naming its last holder, and every lock already held is released.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager

import paramiko

from transport import ssh, ssh_pool
from transport.ssh_settings import Settings
from vocabulary.errors import HostUnreachable, LockTimeout, SshError
from vocabulary.naming import LOCK_TIMEOUT_STATUS
from vocabulary.specs import Endpoint

HELD = b"@@cloudrepo-lock:held\n"

# $1 lock file, $2 holder file, $3 holder, $4 wait (s): prints HELD once it holds the lock, then holds it
# until its stdin ends
PROGRAM = r"""lock=$1; note=$2; who=$3; w=$4
mkdir -p "$(dirname "$lock")" || exit 1
hold='printf "%s\n" "$2" >"$1" && printf "%s\n" "@@cloudrepo-lock:held" && exec cat >/dev/null'
exec flock -E 75 -w "$w" "$lock" sh -c "$hold" sh "$note" "$who"
"""


def command(s: Settings, holder: str, wait: int) -> str:
    """The one remote command (the login shell parses it: the program and its arguments are quoted words)."""
    cmd = shlex.join(["sh", "-c", PROGRAM, "sh", s.lock_file, ssh.holder_file(s), holder, str(wait)])
    return f"sudo -n {cmd}" if s.sudo else cmd


def order(endpoints: Sequence[Endpoint]) -> list[Endpoint]:
    """Each host once, in the one order every holder takes them (address, then port)."""
    seen: dict[tuple[str, int], Endpoint] = {}
    for ep in endpoints:
        seen.setdefault((ep.address, ep.port), ep)
    return [seen[k] for k in sorted(seen)]


@contextmanager
def _one(ep: Endpoint, s: Settings, holder: str, wait: int) -> Iterator[None]:
    client = ssh_pool.connect(ep, s)
    try:
        transport = client.get_transport()
        if transport is None or not transport.is_active():
            raise HostUnreachable(ep.name, f"the connection to {ep.address}:{ep.port} closed")
        chan = transport.open_session(timeout=s.connect_timeout)
        chan.exec_command(command(s, holder, wait))
        _wait_held(ep, s, chan, wait)
        yield
        chan.shutdown_write()  # the program's stdin ends: it exits and the lock goes with it
        deadline = time.monotonic() + s.command_timeout
        while not chan.exit_status_ready() and time.monotonic() < deadline:
            time.sleep(0.01)
    except (paramiko.SSHException, EOFError, OSError) as exc:
        raise HostUnreachable(ep.name, f"lost the connection to {ep.address}:{ep.port}: {exc}") from None
    finally:
        client.close()


def _wait_held(ep: Endpoint, s: Settings, chan: paramiko.Channel, wait: int) -> None:
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + wait + s.command_timeout
    while HELD not in out:
        if chan.recv_ready():
            out += chan.recv(4096)
            continue
        if chan.recv_stderr_ready():
            err += chan.recv_stderr(4096)
            continue
        if chan.exit_status_ready() and not chan.recv_ready():
            status = chan.recv_exit_status()
            if status == LOCK_TIMEOUT_STATUS:
                raise LockTimeout(ep.name, s.lock_file, wait, ssh.lock_holder(ep, s))
            detail = err.decode(errors="replace").strip() or "(no stderr)"
            raise SshError(ep.name, f"could not take the lock {s.lock_file} (status {status}): {detail}")
        if time.monotonic() > deadline:
            raise LockTimeout(ep.name, s.lock_file, wait, ssh.lock_holder(ep, s))
        time.sleep(0.005)


@contextmanager
def held(endpoints: Sequence[Endpoint], holder: str, wait: int = ssh.LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Hold the lock of every host of `endpoints` (taken in `order`, released in reverse) while the block
    runs; `holder` (the slice) is noted beside each lock. Raises `LockTimeout` (or `HostUnreachable`) with
    nothing held."""
    s = ssh.settings()
    with ExitStack() as stack:
        for ep in order(endpoints):
            stack.enter_context(_one(ep, s, holder, wait))
        yield

"""Packets of one interface on a host, streamed as pcap over SSH (`tcpdump -U -w -` on the host).

The remote command is a constant: the interface, the packet count and the filter reach it on its stdin, one
line each, and tcpdump gets each as one argument (`"$tap"`, `-- "$filter"`): no shell on either side
parses them. A watcher then waits on the program's stdin: when the client closes it (the capture is
stopped, or the connection is lost), it ends tcpdump (by the pid the program started, SIGTERM: tcpdump
writes what it holds and exits); the program waits for tcpdump and exits with its status, so no tcpdump
outlives the capture, and a capture that ends by itself (`--count`) ends the session.
"""

from __future__ import annotations

import shlex
import time
from collections.abc import Callable
from typing import BinaryIO

import paramiko

from transport import ssh_pool
from transport.interrupt import first_interrupt
from transport.ssh_settings import Settings
from vocabulary.specs import Endpoint

# $tap, $count (0: no limit) and $filter (empty: every packet) come on stdin, one line each. A watcher
# reads the rest of stdin: its end (the client stopped, or the connection is gone) ends tcpdump; tcpdump
# ending by itself (its count reached, or refused) ends the watcher, so the program exits either way.
PROGRAM = """
IFS= read -r tap && IFS= read -r count && IFS= read -r filter || exit 2
set -- -U --immediate-mode -w - -i "$tap"
[ "$count" = 0 ] || set -- "$@" -c "$count"
[ -z "$filter" ] || set -- "$@" -- "$filter"
exec 3<&0
tcpdump "$@" </dev/null 3<&- &
pid=$!
exec >/dev/null
(cat <&3 >/dev/null 2>&1; kill -TERM "$pid" 2>/dev/null) 2>/dev/null &
watcher=$!
exec 3<&-
wait "$pid"
status=$?
kill -TERM "$watcher" 2>/dev/null
exit "$status"
"""
DRAIN_SECONDS = 10.0
"""How long a stopped capture waits for tcpdump's last packets and its exit."""


def command(sudo: bool) -> str:
    """The one remote command (the login shell parses it: a constant, quoted)."""
    cmd = shlex.join(["sh", "-c", PROGRAM, "sh"])
    return f"sudo -n {cmd}" if sudo else cmd


def stream(
    ep: Endpoint,
    settings: Settings,
    tap: str,
    count: int,
    bpf: str,
    out: BinaryIO,
    err: Callable[[str], None],
) -> tuple[int, bool]:
    """Write the packets of `tap` on `ep` to `out` as pcap until tcpdump ends (`count` packets, 0: no
    limit) or Ctrl-C stops it; tcpdump's messages go to `err`. Returns tcpdump's exit
    status (-1: none came) and whether it was stopped by Ctrl-C."""
    client = ssh_pool.connect(ep, settings)
    stopped = False
    try:
        transport = client.get_transport()
        assert transport is not None
        chan = transport.open_session()
        chan.settimeout(0.2)
        chan.exec_command(command(settings.sudo))
        chan.sendall(f"{tap}\n{count}\n{bpf}\n".encode())
        deadline: float | None = None
        with first_interrupt() as stop:
            try:
                while True:
                    if _pump(chan, out, err) or (chan.exit_status_ready() and not chan.recv_ready()):
                        break
                    if stop.is_set() and not stopped:
                        stopped = True
                        chan.shutdown_write()  # the remote program ends tcpdump
                        deadline = time.monotonic() + DRAIN_SECONDS
                    if deadline is not None and time.monotonic() > deadline:
                        break
            except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
                stopped = True
        if not stopped:
            chan.shutdown_write()
        end = time.monotonic() + DRAIN_SECONDS
        while not chan.exit_status_ready() and time.monotonic() < end:
            _pump(chan, out, err)
        while chan.recv_stderr_ready():
            err(chan.recv_stderr(65536).decode(errors="replace"))
        status = chan.recv_exit_status() if chan.exit_status_ready() else -1
        return status, stopped
    finally:
        client.close()


def _pump(chan: paramiko.Channel, out: BinaryIO, err: Callable[[str], None]) -> bool:
    """Move what arrived; True once the packet stream has ended."""
    while chan.recv_stderr_ready():
        err(chan.recv_stderr(65536).decode(errors="replace"))
    try:
        data = chan.recv(65536)
    except TimeoutError:  # nothing within the channel's timeout
        return False
    if not data:
        return True
    out.write(data)
    out.flush()
    return False

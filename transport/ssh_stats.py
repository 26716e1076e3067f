"""Counters of the SSH layer in this process (connections, round trips, runners), for tests and benchmarks.

With $CLOUDREPO_SSH_STATS set (`{pid}` in it is replaced), each thread that ran a command writes them there
as JSON, and so does the process at exit when it used SSH at all.

With $CLOUDREPO_SSH_TIMING set (a file, `{pid}` replaced; `bench/profile.py`), every round trip also appends
one JSON line of its times there (`record_round_trip`), and scripts carry the host's start and end stamps.
Unset (the default), nothing of this runs.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
from pathlib import Path
from typing import Any

STATS_ENV = "CLOUDREPO_SSH_STATS"
TIMING_ENV = "CLOUDREPO_SSH_TIMING"


class Stats:
    """The counters, under one lock (the provider serves calls on several threads)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections_opened = 0
        self.connect_attempts = 0
        self.commands_run = 0
        self.sessions_opened = 0
        self.command_seconds = 0.0
        self.lock_waits = 0
        self.lock_wait_seconds = 0.0

    def add(self, **counts: float) -> None:
        with self.lock:
            for name, n in counts.items():
                setattr(self, name, getattr(self, name) + n)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "pid": os.getpid(),
                "connections_opened": self.connections_opened,
                "connect_attempts": self.connect_attempts,
                "commands_run": self.commands_run,
                "sessions_opened": self.sessions_opened,
                "command_seconds": round(self.command_seconds, 4),
                "lock_waits": self.lock_waits,
                "lock_wait_seconds": round(self.lock_wait_seconds, 4),
            }

    def reset(self) -> None:
        with self.lock:
            self.connections_opened = self.connect_attempts = self.commands_run = self.sessions_opened = 0
            self.command_seconds = 0.0
            self.lock_waits = 0
            self.lock_wait_seconds = 0.0


STATS = Stats()


def stats() -> dict[str, Any]:
    """Counters of this process: SSH connections opened, remote commands (scripts, i.e. round trips) run,
    sessions (remote runners) started."""
    return STATS.snapshot()


def reset_stats() -> None:
    STATS.reset()


_dump_lock = threading.Lock()


def dump_stats() -> None:
    """Write the counters as JSON to $CLOUDREPO_SSH_STATS, atomically.

    One writer at a time (a shared temporary file would be renamed away under another thread), and a
    counter file that cannot be written never fails the operation.
    """
    target = os.environ.get(STATS_ENV)
    if not target:
        return
    path = Path(target.replace("{pid}", str(os.getpid())))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _dump_lock:
        try:
            tmp.write_text(json.dumps(stats()) + "\n")
            tmp.replace(path)
        except OSError:
            pass


def _dump_at_exit() -> None:
    st = stats()
    if st["connections_opened"] or st["commands_run"] or st["connect_attempts"] or st["sessions_opened"]:
        dump_stats()  # processes that never used SSH (e.g. the program itself) leave no file


atexit.register(_dump_at_exit)


def timing_enabled() -> bool:
    """Whether round trips are timed ($CLOUDREPO_SSH_TIMING set)."""
    return bool(os.environ.get(TIMING_ENV))


_timing_lock = threading.Lock()


def record_round_trip(**fields: Any) -> None:
    """Append one round trip's record (a JSON line) to $CLOUDREPO_SSH_TIMING; never fails the operation.

    Fields (`ssh.run_script`): `host`, `start` (the call), `runner` (a runner in hand), `end` (the result
    read): seconds of the epoch; `host_span`: [start, end] of the script on the host's clock (ns) or null;
    `locked`, `steps` (count), `read` (no `run` step: a read), `status`, `attempt`, `bytes_out`,
    `bytes_in`, `lock_wait` (seconds a locked script waited for the host's lock)."""
    target = os.environ.get(TIMING_ENV)
    if not target:
        return
    line = json.dumps({"pid": os.getpid(), "thread": threading.get_ident(), **fields}) + "\n"
    path = target.replace("{pid}", str(os.getpid()))
    with _timing_lock:
        try:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(line)
        except OSError:
            pass

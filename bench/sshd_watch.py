"""SSH connections counted on the testbed hosts' side, whatever client made them.

Every host's sshd logs to `.lab*/hosts/<host>/sshd.log` (`sshd -E`, LogLevel INFO): a connection that logs
in writes `Accepted publickey for root from 127.0.0.1 port N`. A phase's connections = those lines written
during it, on all hosts. Its peak concurrent sessions: every 50 ms, the children of each host's sshd
listener (one per open connection, from accept to close) summed over the hosts; the highest sum. A phase
starts once the previous one's sessions are gone (a client that exits leaves sshd a moment to end them).
"""

from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lab.common import host_paths, lab_dir
from lab.sshd import sshd_pid

ACCEPTED = re.compile(r"^Accepted \S+ for \S+ from \S+ port \d+", re.MULTILINE)


def accepted(text: str) -> int:
    """Connections that logged in, in a piece of sshd's log."""
    return len(ACCEPTED.findall(text))


def _children(pid: int) -> int:
    try:
        return len(Path(f"/proc/{pid}/task/{pid}/children").read_text().split())
    except OSError:
        return 0


@dataclass(frozen=True)
class HostLog:
    path: Path
    listener: int | None


def testbed_hosts() -> list[str]:
    return sorted(json.loads((lab_dir() / "inventory.json").read_text())["hosts"])


class SshdWatch:
    """Context manager: connections accepted and peak concurrent sessions on every testbed host."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.hosts = {h: HostLog(host_paths(h).sshd_log, sshd_pid(host_paths(h))) for h in testbed_hosts()}
        self.connections: dict[str, int] = {}
        self.peak = 0
        self._offsets: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sessions(self) -> int:
        """Open sessions on all hosts now."""
        return sum(_children(log.listener) for log in self.hosts.values() if log.listener)

    def settle(self, timeout: float = 15.0) -> int:
        """Wait until no session is open (at most `timeout` s); the sessions still open."""
        deadline = time.monotonic() + timeout
        while (now := self.sessions()) and time.monotonic() < deadline:
            time.sleep(self.interval)
        return now

    def __enter__(self) -> SshdWatch:
        self.settle()
        self._offsets = {h: _size(log.path) for h, log in self.hosts.items()}
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        for h, log in self.hosts.items():
            self.connections[h] = accepted(_read_from(log.path, self._offsets[h]))

    @property
    def total(self) -> int:
        return sum(self.connections.values())

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.sessions())
            self._stop.wait(self.interval)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode(errors="replace")
    except OSError:
        return ""

"""The hosts' lock waits of one engine run, told in the engine's output once they pass a second.

A provider process serves one `pulumi up` (or `destroy`, `refresh`), so its total is that run's. Each
resource call adds what its own locked scripts waited (`transport.ssh.waited`, measured on the host: from
asking `flock` for the lock to the script's first step); the call that carries the total past a whole second
(1 s, 2 s, ...) reports it, with its own share, so a run that waited longer says so a few times, and a run
that never waited a second says nothing.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator

from transport import ssh

REPORT_EVERY = 1.0
"""Seconds of waiting between two reports (the first at this total)."""


class LockWaits:
    """The run's total lock wait and the last whole multiple of `REPORT_EVERY` reported."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0.0
        self._reported = 0

    def add(self, host: str, what: str, seconds: float) -> str | None:
        """Add one call's wait (`what`: its resource); the report to give when the total passed the next
        step, else None."""
        if seconds <= 0:
            return None
        with self._lock:
            self.total += seconds
            step = int(self.total / REPORT_EVERY)
            if step <= self._reported:
                return None
            self._reported = step
            total = self.total
        return (
            f"hosts' lock: this run has waited {total:.1f} s in all for it so far "
            f"({seconds:.1f} s of it on {host} for {what})"
        )


WAITS = LockWaits()


@contextlib.contextmanager
def reporting(host: str, what: str) -> Iterator[None]:
    """Around one resource call (`what` on `host`): add what its locked scripts waited to the run's total
    and log the report when it passes the next second (the engine shows the provider's warnings)."""
    ssh.waited.take()
    try:
        yield
    finally:
        told = WAITS.add(host, what, ssh.waited.take())
        if told is not None:
            logging.getLogger("cloudrepo").warning("%s", told)

"""Ctrl-C as a flag: loops that talk SSH end between two calls rather than inside one."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager

_TICK = 0.1


class Stop:
    """Set by the first Ctrl-C. The signal handler only assigns a bool: it takes no lock, so it cannot
    deadlock with the code it interrupts (a `threading.Event` would take its own lock in the handler)."""

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def is_set(self) -> bool:
        return self._set

    def wait(self, seconds: float) -> bool:
        """Sleep up to `seconds`, less once set; whether it is set."""
        end = time.monotonic() + seconds
        while not self._set and time.monotonic() < end:
            time.sleep(min(_TICK, max(0.0, end - time.monotonic())))
        return self._set


@contextmanager
def first_interrupt() -> Iterator[Stop]:
    """A flag set by the first Ctrl-C in the block; a second Ctrl-C raises KeyboardInterrupt as usual.

    A KeyboardInterrupt raised in the middle of paramiko can leave one of its locks held and the process
    hung at exit; with the flag the loop sees the stop at its next turn."""
    stop = Stop()

    def first(_signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)

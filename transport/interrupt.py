"""Ctrl-C as a flag: loops that talk SSH end between two calls rather than inside one."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

_TICK = 0.1
K = TypeVar("K")
T = TypeVar("T")


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


class Late(Exception):
    """A call given to `gather` had not returned within its time."""


def gather(calls: dict[K, Callable[[], T]], stop: Stop, timeout: float) -> dict[K, T] | None:
    """Every call run at once, each in a daemon thread: their results by key, or None once `stop` is set
    (the calls are then left behind, so Ctrl-C never waits on an SSH call). A call's exception is raised
    here; `Late` names the keys still running after `timeout` seconds.

    The threads are daemons: a call stuck in a socket read cannot hold the process at exit."""
    results: dict[K, T] = {}
    errors: list[BaseException] = []

    def run(key: K, call: Callable[[], T]) -> None:
        try:
            results[key] = call()
        except BaseException as exc:  # handed to the waiting thread
            errors.append(exc)

    threads = {k: threading.Thread(target=run, args=(k, call), daemon=True) for k, call in calls.items()}
    for t in threads.values():
        t.start()
    end = time.monotonic() + timeout
    while any(t.is_alive() for t in threads.values()):
        if errors:
            raise errors[0]
        if stop.wait(_TICK):
            return None
        if time.monotonic() > end:
            raise Late(", ".join(str(k) for k, t in threads.items() if t.is_alive()))
    if errors:
        raise errors[0]
    return results

"""Ctrl-C as a flag: loops that talk SSH end between two calls rather than inside one."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def first_interrupt() -> Iterator[threading.Event]:
    """An event set by the first Ctrl-C in the block; a second Ctrl-C raises KeyboardInterrupt as usual.

    A KeyboardInterrupt raised in the middle of paramiko can leave one of its locks held and the process
    hung at exit; with the flag the loop sees the stop at its next turn."""
    stop = threading.Event()

    def first(_signum: int, _frame: object) -> None:
        stop.set()
        signal.signal(signal.SIGINT, signal.default_int_handler)

    previous = signal.signal(signal.SIGINT, first)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)

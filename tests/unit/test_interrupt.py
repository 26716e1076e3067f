"""`transport.interrupt.gather`: calls at once, abandoned on Ctrl-C, late ones named, failures raised."""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable

import pytest

from transport.interrupt import Late, Stop, first_interrupt, gather


def blocked(until: threading.Event) -> int:
    until.wait(60)
    return 0


def test_the_calls_run_at_once_and_their_results_come_by_key() -> None:
    barrier = threading.Barrier(3, timeout=10)  # passes only when all three calls are running together
    names = ("worker1", "worker2", "worker3")

    def call(name: str) -> Callable[[], str]:
        return lambda: (barrier.wait(), name)[1]

    assert gather({n: call(n) for n in names}, Stop(), timeout=30) == {n: n for n in names}


def test_a_first_ctrl_c_returns_none_without_waiting_for_a_stuck_call() -> None:
    release = threading.Event()
    started = threading.Event()

    def stuck() -> int:
        started.set()
        return blocked(release)

    try:
        with first_interrupt() as stop:
            threading.Timer(0.3, lambda: os.kill(os.getpid(), signal.SIGINT)).start()
            assert gather({"worker1": stuck}, stop, timeout=60) is None
        assert started.is_set() and not release.is_set()  # the call was left behind, still blocked
    finally:
        release.set()


def test_a_late_call_is_named_and_the_finished_ones_are_not() -> None:
    release = threading.Event()
    try:
        with pytest.raises(Late) as late:
            gather({"fast": lambda: 1, "slow": lambda: blocked(release)}, Stop(), timeout=0.5)
        assert str(late.value) == "slow"
    finally:
        release.set()


def test_a_failing_call_raises_its_own_error() -> None:
    def fails() -> int:
        raise ValueError("worker2: the sample failed (1)")

    with pytest.raises(ValueError, match="worker2: the sample failed"):
        gather({"worker1": lambda: 1, "worker2": fails}, Stop(), timeout=30)

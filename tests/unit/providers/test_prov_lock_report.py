"""The run's lock waits told in the engine's output: once the total passes each whole second, never before."""

from __future__ import annotations

import logging
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers import lock_report
from providers.lock_report import REPORT_EVERY, LockWaits
from transport import ssh


@given(st.lists(st.floats(0, 3, allow_nan=False), max_size=40))
def test_a_report_each_time_the_total_passes_a_whole_second(waits: list[float]) -> None:
    report = LockWaits()
    told = [report.add("network", f"r{i}", w) for i, w in enumerate(waits)]
    total = 0.0
    for w, msg in zip(waits, told, strict=True):
        before, total = total, total + w
        passed = w > 0 and int(total / REPORT_EVERY) > int(before / REPORT_EVERY)
        assert (msg is not None) == passed
        if msg is not None:
            assert f"this run has waited {total:.1f} s in all" in msg
            assert f"({w:.1f} s of it on network for " in msg
    assert any(told) == (total >= REPORT_EVERY)  # a run that waited a second in all said so


def test_no_report_below_a_second_and_one_at_it() -> None:
    report = LockWaits()
    assert report.add("network", "a", 0.6) is None
    assert report.add("network", "b", 0.0) is None
    told = report.add("worker1", "worker1/tap/tap_1_eth0", 0.5)
    assert told == (
        "hosts' lock: this run has waited 1.1 s in all for it so far "
        "(0.5 s of it on worker1 for worker1/tap/tap_1_eth0)"
    )


def test_threads_adding_at_once_report_each_second_once() -> None:
    report = LockWaits()
    told: list[str] = []
    guard = threading.Lock()

    def add() -> None:
        for i in range(100):
            msg = report.add("network", f"r{i}", 0.05)
            if msg is not None:
                with guard:
                    told.append(msg)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(told) == int(report.total / REPORT_EVERY)
    assert 19 <= len(told) <= 20  # 400 x 0.05 s, summed in floating point


def test_a_call_that_carries_the_total_past_a_second_logs_it(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(lock_report, "WAITS", LockWaits())
    ssh.waited.take()
    ssh.waited.add(5.0)  # before the call: not its own
    with caplog.at_level(logging.WARNING, logger="cloudrepo"), lock_report.reporting("network", "network/x"):
        ssh.waited.add(0.7)
    assert caplog.messages == []
    with caplog.at_level(logging.WARNING, logger="cloudrepo"), lock_report.reporting("network", "network/y"):
        ssh.waited.add(0.4)
    assert caplog.messages == [
        "hosts' lock: this run has waited 1.1 s in all for it so far (0.4 s of it on network for network/y)"
    ]
    assert ssh.waited.take() == 0.0

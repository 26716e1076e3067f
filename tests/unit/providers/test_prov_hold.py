"""Holding the hosts' locks across round trips (`transport.hold`), against the in-process SSH server: the
lock is held while the block runs and released after it, a second holder times out naming the first, a
host given twice is held once."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.unit.providers.test_prov_ssh import configured, server  # noqa: F401  (fixtures)
from transport import hold, ssh
from transport.script import probe
from vocabulary.errors import LockTimeout
from vocabulary.specs import Endpoint


def lock_taken(ep: Endpoint) -> bool:
    """Whether the host's lock is held by someone else (an unlocked script tries it without waiting)."""
    res = ssh.run_script(ep, [probe("held", "flock", "-n", ssh.settings().lock_file, "true")])
    return res.status("held") == 1


def test_the_lock_is_held_while_the_block_runs_and_released_after(configured: Endpoint) -> None:  # noqa: F811
    alias = configured.model_copy(update={"name": "alias"})  # the same host under another name: held once
    with hold.held([configured, alias], "s1"):
        assert lock_taken(configured)
        assert Path(ssh.holder_file(ssh.settings())).read_text() == "s1\n"
    deadline = time.monotonic() + 5
    while lock_taken(configured) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not lock_taken(configured)


def test_a_second_holder_waits_then_times_out_naming_the_first(configured: Endpoint) -> None:  # noqa: F811
    with hold.held([configured], "s1"):
        started = time.monotonic()
        with pytest.raises(LockTimeout) as err, hold.held([configured], "s2", wait=1):
            pass
        assert 1 <= time.monotonic() - started < 30
        assert "last taken by slice 's1'" in str(err.value)


def test_a_waiting_holder_takes_the_lock_once_the_first_releases(configured: Endpoint) -> None:  # noqa: F811
    order: list[str] = []
    first_in = threading.Event()

    def second() -> None:
        first_in.wait()
        with hold.held([configured], "s2", wait=20):
            order.append("s2")

    t = threading.Thread(target=second)
    t.start()
    with hold.held([configured], "s1"):
        first_in.set()
        time.sleep(0.5)
        order.append("s1")
    t.join(timeout=30)
    assert order == ["s1", "s2"]

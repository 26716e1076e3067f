"""The e2e watchdog (`kill_when`) fires on an engine that goes silent, instead of waiting for pytest's."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.integration.e2ekit import group_alive, kill_when


def _engine(script: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["sh", "-c", script],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def test_a_silent_hang_is_killed_when_the_watchdog_fires() -> None:
    proc = _engine("echo starting; sleep 60 & sleep 60; wait")
    t0 = time.monotonic()
    with pytest.raises(AssertionError, match=r"watchdog: no line matching 'creating' within 1s") as err:
        kill_when(proc, "creating", timeout=1)
    assert time.monotonic() - t0 < 10
    assert "starting" in str(err.value)
    assert proc.returncode is not None and group_alive(proc.pid) == []


def test_the_matching_line_kills_the_group_and_returns_what_was_read() -> None:
    proc = _engine("echo one; echo 'creating tap'; sleep 60")
    assert kill_when(proc, "creating", timeout=30) == ["one", "creating tap"]
    assert proc.returncode == -9 and group_alive(proc.pid) == []


def test_an_engine_that_ends_first_fails_with_its_output() -> None:
    proc = _engine("echo done")
    with pytest.raises(AssertionError, match="ended without a line matching"):
        kill_when(proc, "creating", timeout=30)


def running(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_kill_reaches_plugins_in_sessions_of_their_own_even_while_they_fork() -> None:
    # the "engine" starts a "plugin" in a session of its own that keeps starting children
    marker = f"plugin-{uuid.uuid4().hex}"
    plugin = f"setsid sh -c ': {marker}; while :; do sh -c \": {marker}; sleep 30\" & sleep 0.01; done' &"
    proc = _engine(f"{plugin} sleep 0.5; echo created; wait")
    kill_when(proc, "created", timeout=10)
    deadline = time.monotonic() + 5
    while (left := running(marker)) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in left:  # what a failed kill left, ended here by pid
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert left == []

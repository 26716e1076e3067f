"""One user of the testbed at a time: test sessions and benchmarks hold this lock while they use it."""

from __future__ import annotations

import fcntl
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

from lab.common import lab_dir


@contextmanager
def testbed_lock(who: str) -> Iterator[None]:
    """Hold the testbed exclusively (waits for the current holder, saying who it waits for)."""
    path = lab_dir() / "session.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "another session"
            print(f"waiting for the testbed: held by {holder}", file=sys.stderr)
            start = time.monotonic()
            fcntl.flock(fh, fcntl.LOCK_EX)
            print(f"got the testbed after {time.monotonic() - start:.0f}s", file=sys.stderr)
        fh.seek(0)
        fh.truncate()
        fh.write(f"{who} (pid {os.getpid()})\n")
        fh.flush()
        try:
            yield
        finally:
            fh.seek(0)
            fh.truncate()
            fcntl.flock(fh, fcntl.LOCK_UN)

"""A full network node, through the real engine on the testbed: the hosts' lock wait told in the engine's
output, the refusal of a pool that meets other slices naming the starts still free.

The twelve full slices (one by one, six at once, the 13th refused, guests on the first and last slice's
last link) and the larger generated run are long: `test_e2e_full_node_long.py` (`make test-long`).
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from lab.common import NETWORK_HOST, host_paths
from tests.integration.e2ekit import start_engine
from tests.integration.slicekit import SliceStack, failure
from tests.labfixtures import held_host_lock

REPORT = re.compile(r"hosts' lock: this run has waited (\d+\.\d) s in all for it so far")
HOLD_SECONDS = 2.0


def lock_waiters(lock: Path) -> int:
    """Processes blocked on `lock` right now (`/proc/locks` lists a waiter as `N: -> FLOCK ...`)."""
    st = os.stat(lock)
    inode = f":{st.st_ino}"
    waiting = 0
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if "->" in fields and len(fields) > 6 and fields[6].endswith(inode):
            waiting += 1
    return waiting


def test_an_up_held_at_the_hosts_lock_reports_its_wait(slice_stack: Callable[..., SliceStack]) -> None:
    vms = [
        {"id": 7601, "worker": "worker1", "dataInterfaces": 1},
        {"id": 7602, "worker": "worker2", "dataInterfaces": 1},
    ]
    stack = slice_stack("e2e-lockwait", 760, vms, [["7601.eth1", "7602.eth1"]])
    lock = host_paths(NETWORK_HOST).state / "lock"
    out: list[str] = []
    with held_host_lock(NETWORK_HOST):
        proc = start_engine(stack, "up", "--yes", "--non-interactive", "--skip-preview")
        reader = threading.Thread(target=lambda: out.extend(proc.stdout or []), daemon=True)
        reader.start()
        deadline = time.monotonic() + 300
        while lock_waiters(lock) == 0:  # the pool claim waits at the barrier
            assert proc.poll() is None, "the engine ended before it reached the lock:\n" + "".join(out)
            assert time.monotonic() < deadline, "no script waited for the network node's lock"
            time.sleep(0.1)
        time.sleep(HOLD_SECONDS)
    assert proc.wait(timeout=600) == 0, "".join(out)
    reader.join(timeout=30)
    text = "".join(out)
    print(text)
    told = [float(m.group(1)) for m in REPORT.finditer(text)]
    assert told, f"no lock wait reported:\n{text}"
    assert told[0] >= 1.0 and max(told) >= HOLD_SECONDS - 0.1, told
    # a no-op up takes no lock and says nothing of it
    again = stack.up()
    assert REPORT.search(again) is None, again


def test_a_pool_that_meets_another_slice_names_the_free_starts(
    slice_stack: Callable[..., SliceStack],
) -> None:
    vms = [
        {"id": 7701, "worker": "worker1", "dataInterfaces": 1},
        {"id": 7702, "worker": "worker2", "dataInterfaces": 1},
    ]
    first = slice_stack("e2e-poolfree1", 780, vms, [["7701.eth1", "7702.eth1"]])
    first.up()
    other = [
        {"id": 7711, "worker": "worker1", "dataInterfaces": 1},
        {"id": 7712, "worker": "worker2", "dataInterfaces": 1},
    ]
    second = slice_stack("e2e-poolfree2", 790, other, [["7711.eth1", "7712.eth1"]])
    result = second.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False)
    text = failure(result)
    assert "VLANs 790-809 of slice 'e2e-poolfree2' meet slice 'e2e-poolfree1'" in text, text
    free = re.search(r"pool starts still free on this node: ([^;]+);", text)
    assert free is not None, text
    print(free.group(0))
    # 760 (760..779) is the last start below the first slice's claim in its cycle of 256, 800 the first above
    assert re.search(r"\b\d+-760\b", free.group(1)) and re.search(r"\b800-\d+", free.group(1)), free.group(1)
    # a start it names is taken as it is
    start = int(re.split(r"[-, ]", free.group(1))[0])
    config = json.loads(second.config_file.read_text())["config"]
    config["cloudrepo:slice"]["vlanPool"]["start"] = start
    second.write_config(config)
    second.up()
    assert second.outputs()["vlanPool"]["start"] == start

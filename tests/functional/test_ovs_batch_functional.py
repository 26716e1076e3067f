"""The host's group commit of OVS changes on the testbed's real Open vSwitch: TAPs created at once by the
TapPort provider while a commit is in progress reach OVSDB in ONE transaction (seen by an OVSDB monitor), a
change that fails in that group gets its own error while the others are committed, and the host ends as it
began."""

from __future__ import annotations

import fcntl
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from lab.common import host_paths
from providers import ovs_batch
from tests.functional import kit
from tests.functional.kit import outs
from tests.labfixtures import Testbed, assert_scan_equal, scan
from transport import ssh, ssh_pool
from vocabulary.errors import StepFailed
from vocabulary.specs import Endpoint, TapPortSpec

pytestmark = pytest.mark.integration

SLICE = "fbatch"
VMS = range(9361, 9361 + ssh_pool.MAX_RUNNERS - 1)
"""As many scripts at once as one process runs on a host, the bad change's among them."""


def spec(testbed: Testbed, vm: int) -> dict[str, Any]:
    host = Endpoint(name="worker1", address="127.0.0.1", port=testbed.port("worker1"))
    s = TapPortSpec(
        slice=SLICE, host=host, name=f"tap_{vm}_eth1", vm=vm, iface="eth1",
        mac=f"52:54:00:36:{vm % 100:02x}:01", vlan=3361,
    )  # fmt: skip
    return s.inputs()


def port_updates(monitor: subprocess.Popen[str], names: set[str]) -> list[set[str]]:
    """The monitor's updates (one per OVSDB transaction) that insert ports, as the names each inserts, until
    every one of `names` was seen."""
    seen: list[set[str]] = []
    assert monitor.stdout is not None
    while not names <= set().union(*seen):
        line = monitor.stdout.readline()
        assert line, f"the monitor ended; saw {seen}"
        inserted = {str(row["name"]) for row in _rows(json.loads(line))} & names
        if inserted:
            seen.append(inserted)
    return seen


def _rows(update: Any) -> list[dict[str, Any]]:
    """The new rows of an `ovsdb-client monitor --format=json` line."""
    if not isinstance(update, dict) or "data" not in update:
        return []
    headings = update["headings"]
    return [dict(zip(headings, row, strict=True)) for row in update["data"] if "insert" in row]


def test_taps_made_at_once_are_committed_together_and_a_failure_stays_its_own(lab: Testbed) -> None:
    baseline = scan("worker1")
    p = kit.provider(lab, "TapPort")
    paths = host_paths("worker1")
    spool = paths.state / "ovs-batch"
    spool.mkdir(mode=0o700, exist_ok=True)
    monitor = subprocess.Popen(
        ["ovsdb-client", "monitor", "--format=json", f"unix:{paths.ovs / 'db.sock'}", "Open_vSwitch", "Port",
         "name"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    specs = [spec(lab, vm) for vm in VMS]
    endpoint = Endpoint(name="worker1", address="127.0.0.1", port=lab.port("worker1"))
    bad = ovs_batch.step("attach port", ["--may-exist", "add-port", "br-nope", "tap_9360_eth1"], wait=False)
    try:
        with open(spool / "lock", "a") as lock, ThreadPoolExecutor(len(specs) + 1) as pool:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a commit in progress
            made = [pool.submit(p.create, s) for s in specs]
            failed = pool.submit(ssh.run_script, endpoint, [bad])
            deadline = time.monotonic() + 60
            while len(list(spool.glob("*.req"))) < len(specs) + 1:
                assert time.monotonic() < deadline, sorted(spool.iterdir())
                time.sleep(0.02)
            fcntl.flock(lock, fcntl.LOCK_UN)
            results = [f.result(timeout=120) for f in made]
            with pytest.raises(StepFailed) as refused:
                failed.result(timeout=120)
        print(f"\n[batch] refused alone: {refused.value}")
        assert "no bridge named br-nope" in str(refused.value), refused.value
        for r in results:
            assert "attach port" in outs(r)["observed"]["changed"] and outs(r)["drift"] == [], outs(r)
        # all of them were queued when the lock came free, so one script took them together: the joint
        # transaction failed on the bad change, and each good one was then committed alone
        updates = port_updates(monitor, {f"tap_{vm}_eth1" for vm in VMS})
        assert sorted(map(sorted, updates)) == [[f"tap_{vm}_eth1"] for vm in VMS], updates
        ports = scan("worker1")["hosts"]["worker1"]["ovs"]["br-int"]["ports"]
        assert {f"tap_{vm}_eth1" for vm in VMS} <= set(ports), sorted(ports)
        assert all(ports[f"tap_{vm}_eth1"]["tag"] == 3361 for vm in VMS)
        for s in specs:
            p.delete(f"worker1/tap/{s['name']}", s)

        # the same without the bad change: one transaction carries every port
        with open(spool / "lock", "a") as lock, ThreadPoolExecutor(len(specs)) as pool:
            fcntl.flock(lock, fcntl.LOCK_EX)
            made = [pool.submit(p.create, s) for s in specs]
            deadline = time.monotonic() + 60
            while len(list(spool.glob("*.req"))) < len(specs):
                assert time.monotonic() < deadline, sorted(spool.iterdir())
                time.sleep(0.02)
            fcntl.flock(lock, fcntl.LOCK_UN)
            for f in made:
                f.result(timeout=120)
        together = port_updates(monitor, {f"tap_{vm}_eth1" for vm in VMS})
        print(f"[batch] ports per OVSDB transaction: {[len(u) for u in together]}")
        assert together == [{f"tap_{vm}_eth1" for vm in VMS}], together
    finally:
        monitor.terminate()
        monitor.wait(timeout=30)
        for s in specs:
            p.delete(f"worker1/tap/{s['name']}", s)
    assert sorted(x.name for x in spool.iterdir()) == ["lock"]
    assert_scan_equal(baseline, scan("worker1"))

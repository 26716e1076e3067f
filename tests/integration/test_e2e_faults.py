"""Scenario 8: faults. A worker whose sshd is stopped fails `pulumi up` naming the worker, and the next `up`
converges once it is back; the engine killed with SIGKILL in the middle of an `up` leaves pending
operations that are cleared, and the next `up` converges with no duplicate object; `pulumi destroy` with a
host down fails clearly, and completes when run again with the host back: the hosts are as before the
slice."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from lab.procs import all_pids, cmdline
from lab.slicecheck import check_slice, stop_guests
from tests.integration.e2ekit import (
    SHARED_OBJECTS,
    assert_slice_ok,
    duplicates,
    group_alive,
    kill_when,
    restart_testbed,
    start_engine,
    state,
    stop_sshd,
    wall_time,
)
from tests.integration.slicekit import SliceStack, failure, lab_config, slice_section
from tests.labfixtures import Testbed, assert_scan_equal, scan

SLICE = "e2e-faults"
POOL = 320
BASE_VMS = [
    {"id": 8321, "worker": "worker1", "dataInterfaces": 2, "internet": True},
    {"id": 8322, "worker": "worker2", "dataInterfaces": 2},
]
BASE_LINKS: list[Any] = [["8321.eth1", "8322.eth1"]]
# a change that touches worker2: the parked eth2 TAPs join a new link
MORE_LINKS: list[Any] = [*BASE_LINKS, ["8321.eth2", "8322.eth2"]]
# a change with many creates in flight at once: two new VMs and their link
MORE_VMS = [
    *BASE_VMS,
    {"id": 8323, "worker": "worker1", "dataInterfaces": 1, "internet": True},
    {"id": 8324, "worker": "worker2", "dataInterfaces": 1},
]
ALL_LINKS: list[Any] = [*MORE_LINKS, ["8323.eth1", "8324.eth1"]]
UP = ("up", "--yes", "--non-interactive", "--skip-preview")


def set_slice(stack: SliceStack, vms: list[dict[str, Any]], links: list[Any]) -> None:
    stack.write_config({**lab_config(), **slice_section(POOL, vms, links)})


def failed_run(stack: SliceStack, *args: str) -> str:
    text = failure(stack.cli.run(*args, check=False))
    print("\n".join(dict.fromkeys(line.strip() for line in text.splitlines() if "error" in line.lower())))
    return text


def assert_converged(stack: SliceStack) -> None:
    again = stack.cli.run("preview", "--non-interactive", "--expect-no-changes", check=False)
    assert again.returncode == 0, again.stdout + again.stderr


def ports_per_name(doc: dict[str, Any]) -> dict[str, int]:
    """How many OVS ports of each name on each host (a name in two bridges would count twice)."""
    counts: dict[str, int] = {}
    for host, h in doc["hosts"].items():
        for bridge in h["ovs"].values():
            for name in bridge["ports"]:
                counts[f"{host}/{name}"] = counts.get(f"{host}/{name}", 0) + 1
    return counts


def eventually(find: Callable[[], list[int]], seconds: float = 30.0) -> list[int]:
    """`find()` once empty, or its last answer after `seconds` (killed processes take a moment to go)."""
    deadline = time.monotonic() + seconds
    while (found := find()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return found


def test_faults(slice_stack: Callable[..., SliceStack], testbed: Testbed) -> None:
    with wall_time("8 faults"):
        try:
            run_faults(slice_stack, testbed)
        finally:
            restart_testbed()  # never leave a host without its sshd


def run_faults(slice_stack: Callable[..., SliceStack], testbed: Testbed) -> None:
    baseline = scan()
    stack = slice_stack(SLICE, POOL, BASE_VMS, BASE_LINKS)
    stack.up()

    # 1. a worker's sshd is down: the change fails naming it; with sshd back the next up converges
    set_slice(stack, BASE_VMS, MORE_LINKS)
    stop_sshd("worker2")
    text = failed_run(stack, *UP)
    assert f"worker2: cannot connect to 127.0.0.1:{testbed.port('worker2')}" in text, text
    restart_testbed()
    stack.up()
    assert_converged(stack)
    assert [link["vlan"] for link in stack.outputs()["links"]] == [320, 321]

    # 2. the engine is killed (SIGKILL, its whole process group) once the first new resource is created
    set_slice(stack, MORE_VMS, ALL_LINKS)
    proc = start_engine(stack, *UP)
    lines = kill_when(proc, r"pulumi-python:dynamic:\S+ \S+ created")
    print("\n".join(lines[-8:]))
    assert not group_alive(proc.pid), "processes of the killed engine survived"
    project = str(stack.cli.project_dir)
    orphans = eventually(lambda: [p for p in all_pids() if any(project in a for a in cmdline(p))])
    assert not orphans, f"plugins of the killed engine survived: {orphans}"
    if stack.cli.recover_checkpoint():  # the kill landed while the engine wrote its checkpoint
        print("checkpoint left unreadable by the kill: repaired")
    pending = stack.cli.pending_operations()
    print("pending operations:", json.dumps([(p["type"], p["resource"]["urn"]) for p in pending]))
    assert pending, "the kill left no pending operation (the update was over?)"
    # the killed engine left its lock on the file backend: the next run says so, `pulumi cancel` removes it
    text = failed_run(stack, *UP)
    assert "the stack is currently locked" in text, text
    stack.cli.run("cancel", "--yes")
    # the creates in flight may or may not have reached the hosts: clear them from the state (the next up
    # makes them again, and adopts what this slice had already made)
    stack.refresh("--clear-pending-creates")
    assert stack.cli.pending_operations() == []
    stack.up()
    assert_converged(stack)
    outputs = stack.outputs()
    assert [link["vlan"] for link in outputs["links"]] == [320, 321, 322]
    now = scan()
    assert not duplicates(now), duplicates(now)
    assert all(n == 1 for n in ports_per_name(now).values()), ports_per_name(now)
    net = now["hosts"]["network"]
    for vlan in (320, 321, 322, 400):
        assert [d["namespace"] for d in net["dnsmasq"]].count(f"ns-dhcp-vlan{vlan}") == 1, net["dnsmasq"]
    nat_mark = f"cloudrepo:{SHARED_OBJECTS['nat']}"
    masq = [r for r in net["iptables"]["nat"] if "MASQUERADE" in r and nat_mark in r]
    assert len(masq) == 1, masq
    urns = [r["urn"] for r in state(stack)["deployment"]["resources"]]
    assert len(urns) == len(set(urns)), urns
    try:
        assert_slice_ok(check_slice(outputs, testbed.inventory))
    finally:
        stop_guests(outputs["vms"])

    # 3. destroy with a host down fails clearly; again with the host back, it completes: back to baseline
    stop_sshd("worker1")
    text = failed_run(stack, "destroy", "--yes", "--non-interactive", "--skip-preview")
    assert f"worker1: cannot connect to 127.0.0.1:{testbed.port('worker1')}" in text, text
    restart_testbed()
    stack.destroy()
    assert [r for r in state(stack)["deployment"].get("resources") or [] if r.get("custom")] == []
    assert_scan_equal(baseline, scan())

"""`cloudrepo check` on the testbed: a slice deployed by the real engine with three launched tiny guests
(TCG), its declared `slice.checks` run inside the guests through their serial consoles (over SSH to the
workers, the console lock taken). All holding: exit 0 and the table; a check that cannot hold: exit 1,
its row FAIL; a guest whose QEMU is stopped by pid: its `blocked` check FAILs through the control, never
PASSes; a link cut by hand fails the checks across it until `up`; `--json` parsed each time."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from lab import slicecheck
from lab.common import INTERNET_WEB_ADDRESS, host_paths
from lab.procs import alive
from tests.integration.clikit import Checkout
from tests.integration.e2ekit import launched, qemu_tcg, wall_time
from tests.integration.slicekit import SliceStack

pytestmark = pytest.mark.integration

SLICE = "e2e-check"
POOL = 540
A, B, C = 8601, 8602, 8603
VMS = launched(
    [
        {"id": A, "worker": "worker1", "dataInterfaces": 2, "internet": True},
        {"id": B, "worker": "worker2", "dataInterfaces": 1},
        {"id": C, "worker": "worker2", "dataInterfaces": 1},
    ]
)
LINKS = [[f"{A}.eth1", f"{B}.eth1"], [f"{A}.eth2", f"{C}.eth1"]]
HOLDING: list[dict[str, Any]] = [
    {"from": A, "to": B},
    {"from": B, "to": A, "expect": "reach"},
    {"from": B, "to": C, "expect": "blocked"},
    {"from": A, "to": "internet", "host": INTERNET_WEB_ADDRESS},
    {"vm": C, "lease": "eth1"},
]
BOOT_WAIT = "240"
"""Seconds `check --wait` gives TCG guests that are still booting (a busy host is slow)."""


def set_checks(stack: SliceStack, checks: list[dict[str, Any]]) -> None:
    """Declare `checks` in the stack's config file (they change no resource: no deploy needed)."""
    doc = yaml.safe_load(stack.config_file.read_text())  # the engine rewrote it as YAML
    doc["config"]["cloudrepo:slice"]["checks"] = checks
    stack.config_file.write_text(json.dumps(doc, indent=2) + "\n")


def checked(op: Checkout, *flags: str) -> tuple[int, dict[str, Any]]:
    done = op.run("check", SLICE, "--json", *flags, timeout=900)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def results(report: dict[str, Any]) -> dict[str, str]:
    return {r["check"]: r["result"] for r in report["checks"]}


def test_check_holds_fails_and_sees_a_dead_guest(
    slice_stack: Callable[..., SliceStack], slice_backend: Path, testbed: Any
) -> None:
    with wall_time("check: declared checks through the consoles, a failing one, a dead guest"):
        stack = slice_stack(SLICE, POOL, VMS, LINKS, secret_key=True, extra=qemu_tcg())
        set_checks(stack, HOLDING)
        stack.up()
        op = Checkout(stack.cli.project_dir, {"PULUMI_BACKEND_URL": f"file://{slice_backend}"})

        status, report = checked(op, "--wait", BOOT_WAIT)
        assert status == 0 and report["ok"], json.dumps(report, indent=2)
        assert results(report) == {f"checks[{i}]": "PASS" for i in range(len(HOLDING))}
        by_name = {r["check"]: r for r in report["checks"]}
        assert {r["via"] for r in report["checks"]} == {"console"}
        assert by_name["checks[2]"]["got"] == "no reply"
        assert by_name["checks[2]"]["detail"].startswith("control: gateway "), by_name["checks[2]"]
        outputs = stack.outputs()
        assert by_name["checks[4]"]["got"] == outputs["vms"][str(C)]["interfaces"]["eth1"]["ip"]

        # the testbed's own slice check runs the same plan and runner (its pings and the declared checks)
        lab_report = slicecheck.check_slice(outputs, testbed.inventory, SLICE, stack.cli.project_dir)
        slicecheck.stop_guests(outputs["vms"])
        assert lab_report.ok, slicecheck.format_report(lab_report)
        assert [r.ok for r in lab_report.declared] == [True] * len(HOLDING)
        assert {r.via for r in lab_report.declared} == {"console"}
        assert sum(c.name.startswith("isolation ") for c in lab_report.checks) == 1
        assert "the slice's declared checks" in slicecheck.format_report(lab_report)

        table = op.ok("check", SLICE)
        assert f"{len(HOLDING)}/{len(HOLDING)} checks hold" in table, table
        assert "FAIL" not in table and table.count("PASS") == len(HOLDING), table

        # checks that cannot hold: VMs on different links reach each other; a linked pair is blocked
        set_checks(stack, [*HOLDING, {"from": B, "to": C}, {"from": A, "to": B, "expect": "blocked"}])
        done = op.run("check", SLICE, timeout=900)
        assert done.returncode == 1, (done.stdout, done.stderr)
        rows = {line.split()[0]: line for line in done.stdout.splitlines() if line.startswith("checks[")}
        assert rows["checks[5]"].split()[-3:] == ["no", "reply", "FAIL"], done.stdout
        assert rows["checks[6]"].split()[-2:] == ["reached", "FAIL"], done.stdout
        assert all("PASS" in rows[f"checks[{i}]"].split() for i in range(len(HOLDING))), done.stdout
        assert "FAILED: checks[5], checks[6]" in done.stdout
        status, report = checked(op)
        assert status == 1 and not report["ok"]
        assert [k for k, v in results(report).items() if v == "FAIL"] == ["checks[5]", "checks[6]"]

        # the link A--B cut by hand on B's worker (its TAP moved off the link's VLAN): the checks across it
        # fail, named; `up --refresh` puts the TAP back and they hold again
        set_checks(stack, HOLDING)
        tap = outputs["vms"][str(B)]["interfaces"]["eth1"]["tap"]
        testbed.run("worker2", f"ovs-vsctl set port {tap} tag=4094")
        done = op.run("check", SLICE, timeout=900)
        assert done.returncode == 1, (done.stdout, done.stderr)
        assert "FAILED: checks[0], checks[1], checks[2]" in done.stdout, done.stdout  # [2]: its control
        stack.up("--refresh")
        status, report = checked(op, "--wait", "60")
        assert status == 0 and report["ok"], json.dumps(report, indent=2)

        # B's guest dies: silence from it proves nothing, so its `blocked` check fails through the control
        pid = int((host_paths("worker2").state / f"vms/{B}/qemu.pid").read_text().strip())
        os.kill(pid, 9)
        deadline = time.monotonic() + 10
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(pid)
        status, report = checked(op)
        assert status == 1 and not report["ok"]
        by_name = {r["check"]: r for r in report["checks"]}
        assert by_name["checks[2]"]["result"] == "FAIL", by_name["checks[2]"]
        assert by_name["checks[2]"]["detail"].startswith("control failed"), by_name["checks[2]"]
        assert f"VM {B} of slice '{SLICE}' is not running" in by_name["checks[2]"]["detail"]
        assert by_name["checks[1]"]["result"] == "FAIL"  # from the dead guest
        assert (by_name["checks[0]"]["result"], by_name["checks[0]"]["got"]) == ("FAIL", "no reply")  # to it
        assert [by_name[f"checks[{i}]"]["result"] for i in (3, 4)] == ["PASS"] * 2  # the others still hold

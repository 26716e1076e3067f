"""`cloudrepo check`'s plan and verdicts (pure): what runs in which guest, a control shared by a guest's
`blocked` checks, and what counts: `blocked` only with a passing control in the same run, a probe that
could not run never a pass; the runner retries failing checks within `--wait`; the table and the JSON."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cloudrepo import checkrun, tables
from cloudrepo.checkplan import (
    BLOCKED_PING,
    REACH_PING,
    Outcome,
    Probe,
    judge,
    plan,
    probes,
    via,
)
from components.check_specs import Lease, Reach

OUTPUTS: dict[str, Any] = {
    "vms": {
        "1002": {
            "interfaces": {
                "eth0": {"ip": "100.64.0.5", "gateway": "100.64.0.1", "parked": False},
                "eth1": {"ip": "10.0.1.2", "gateway": "10.0.1.1", "parked": False},
            },
            "cloudInit": {"user": "debian"},
        },
        "1003": {
            "interfaces": {
                "eth0": {"ip": None, "gateway": None, "parked": True},
                "eth1": {"ip": "10.0.1.3", "gateway": "10.0.1.1", "parked": False},
            },
            "console": "/run/x",
        },
        "1004": {"interfaces": {"eth1": {"ip": "10.0.2.4", "gateway": "10.0.2.1", "parked": False}}},
    }
}
CHECKS = (
    Reach(0, 1003, "reach", dst_vm=1002, dst_iface="eth1", chosen=True),
    Reach(1, 1003, "blocked", dst_vm=1004, dst_iface="eth1"),
    Reach(2, 1003, "blocked", host="192.0.2.1"),
    Reach(3, 1002, "reach", host="198.51.100.7"),
    Lease(4, 1003, "eth1"),
)
CONTROL = Probe(1003, (*REACH_PING, "10.0.1.1"))


def test_the_plan_runs_each_probe_in_its_guest_and_a_control_once() -> None:
    planned = plan(CHECKS, OUTPUTS)
    assert [p.probe for p in planned] == [
        Probe(1003, (*REACH_PING, "10.0.1.2")),
        Probe(1003, (*BLOCKED_PING, "10.0.2.4")),
        Probe(1003, (*BLOCKED_PING, "192.0.2.1")),
        Probe(1002, (*REACH_PING, "198.51.100.7")),
        Probe(1003, ("ip", "-4", "-o", "addr", "show", "dev", "eth1")),
    ]
    assert planned[1].control == planned[2].control == CONTROL
    assert planned[0].what == "1002.eth1 (chosen) 10.0.1.2" and planned[4].expected == "10.0.1.3"
    by_vm = probes(planned)
    assert by_vm[1003].count(CONTROL) == 1 and len(by_vm[1003]) == 5 and len(by_vm[1002]) == 1
    assert (via(OUTPUTS, 1002), via(OUTPUTS, 1003)) == ("ssh", "console")


def test_an_address_the_outputs_do_not_have_yet_fails_saying_so() -> None:
    (p,) = plan([Reach(0, 1003, "reach", dst_vm=1009, dst_iface="eth1")], OUTPUTS)
    row = judge(p, {}, "console")
    assert not row.ok and row.detail == "no address in the outputs yet" and p.probe is None


def verdict(check: Any, probe: Outcome | None, control: Outcome | None = None) -> Any:
    (p,) = plan([check], OUTPUTS)
    results = {}
    if probe is not None and p.probe is not None:
        results[p.probe] = probe
    if control is not None and p.control is not None:
        results[p.control] = control
    return judge(p, results, "console")


UP, SILENT = Outcome(0, "3 packets received"), Outcome(1, "0 packets received")
DEAD = Outcome(None, error="VM 1003 of slice 'x' is not running on worker2")


def test_blocked_counts_only_with_a_passing_control() -> None:
    blocked = CHECKS[1]
    ok = verdict(blocked, SILENT, UP)
    assert ok.ok and ok.got == "no reply" and ok.detail == "control: gateway 10.0.1.1 (eth1) reached"
    cut_off = verdict(blocked, SILENT, SILENT)
    assert not cut_off.ok and cut_off.detail.startswith("control failed, so no reply proves nothing")
    dead = verdict(blocked, DEAD, DEAD)
    assert not dead.ok and "is not running on worker2" in dead.detail and "control failed" in dead.detail
    reached = verdict(blocked, UP, UP)
    assert not reached.ok and reached.got == "reached"
    broken = verdict(blocked, Outcome(2, "ping: bad address"), UP)
    assert not broken.ok and broken.got == "error" and "ping: bad address" in broken.detail


def test_reach_and_lease() -> None:
    assert verdict(CHECKS[0], UP).ok
    assert not verdict(CHECKS[0], SILENT).ok
    assert not verdict(CHECKS[0], None).ok  # never run: never a pass
    held = verdict(CHECKS[4], Outcome(0, "2: eth1    inet 10.0.1.3/24 brd 10.0.1.255 scope global eth1\n"))
    assert held.ok and held.got == "10.0.1.3"
    other = verdict(CHECKS[4], Outcome(0, "2: eth1    inet 10.0.1.99/24 scope global eth1\n"))
    assert not other.ok and other.got == "10.0.1.99" and other.detail == "not held"
    assert verdict(CHECKS[4], Outcome(0, "")).got == "none"


@given(
    st.one_of(st.none(), st.integers(-1, 300)), st.text(max_size=50), st.one_of(st.none(), st.integers(-1, 3))
)
def test_no_outcome_but_silence_with_a_live_control_passes_a_blocked_check(
    status: int | None, output: str, control: int | None
) -> None:
    row = verdict(CHECKS[1], Outcome(status, output), None if control is None else Outcome(control))
    assert row.ok == (status == 1 and control == 0)


def test_the_runner_retries_failing_checks_within_wait(monkeypatch: Any) -> None:
    monkeypatch.setattr(checkrun, "RETRY_PAUSE", 0.01)
    calls: list[Probe] = []

    def shell(probe: Probe, timeout: float) -> Outcome:
        calls.append(probe)
        return UP if calls.count(probe) >= 3 else SILENT  # the guest answers on the third try

    planned = plan(CHECKS[:1], OUTPUTS)
    assert not checkrun.run(planned, shell, lambda vm: "console", wait=0)[0].ok
    calls.clear()
    (row,) = checkrun.run(planned, shell, lambda vm: "console", wait=5)
    assert row.ok and len(calls) == 3


def test_table_and_json() -> None:
    planned = plan(CHECKS[:2], OUTPUTS)
    assert planned[0].probe is not None
    rows = [judge(planned[0], {planned[0].probe: UP}, "console"), judge(planned[1], {}, "console")]
    text = tables.check_table(rows)
    head, first, second, _, verdict_line = text.splitlines()
    assert head.split() == ["check", "from", "via", "to/what", "expected", "got", "result", "detail"]
    assert first.split()[:3] == ["checks[0]", "1003", "console"] and " PASS" in first
    assert " FAIL " in second and verdict_line == "1/2 checks hold; FAILED: checks[1]"
    doc = json.loads(json.dumps(tables.check_json("demo", rows)))
    assert doc["ok"] is False and [c["result"] for c in doc["checks"]] == ["PASS", "FAIL"]
    assert doc["checks"][1]["detail"].startswith("control failed")

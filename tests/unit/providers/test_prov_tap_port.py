"""TapPort: the exact commands of every operation, from a fake host read (want / have / commands)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from providers import ipv6
from providers.kinds import tap_port as tp
from providers.pipeline import HostProvider
from tests.unit.providers.provkit import READ, WORKER, argvs, link, names, ovs_find_json, port, reading, tap
from transport import ssh
from transport.script import ScriptResult, StepResult
from vocabulary.errors import OwnershipConflict

MARKS = {
    "cloudrepo-slice": "demo",
    "cloudrepo-vm": "1002",
    "cloudrepo-iface": "eth1",
    "attached-mac": "52:54:00:03:ea:01",
    "cloudrepo-kind": "tap",
}
OVS = [
    "ovs-vsctl", "--may-exist", "add-port", "br-int", "tap_1002_eth1", "tag=120",
    "--", "set", "port", "tap_1002_eth1", "tag=120", "vlan_mode=access", "trunks=[]",
    'external_ids:cloudrepo-slice="demo"', 'external_ids:cloudrepo-vm="1002"',
    'external_ids:cloudrepo-iface="eth1"', 'external_ids:attached-mac="52:54:00:03:ea:01"',
    'external_ids:cloudrepo-kind="tap"', "protected=false",
]  # fmt: skip

IN_PLACE = tp.TapHave(
    link=link("tap_1002_eth1", True, "tap", "cloudrepo:demo"), port=port("tap_1002_eth1", 120, None, **MARKS)
)


def test_fresh_create_is_one_script_with_one_ovsdb_transaction() -> None:
    # marked and up in one netlink request; the new port does not wait for ovs-vswitchd
    steps = tp.plan_ensure(tap(), tp.TapHave(None, None))
    # IPv6 off before it comes up: never a link-local address
    assert argvs(steps) == [
        ["ip", "tuntap", "add", "mode", "tap", "name", "tap_1002_eth1"],
        list(ipv6.off_step("tap_1002_eth1").argv),
        ["ip", "link", "set", "dev", "tap_1002_eth1", "alias", "cloudrepo:demo", "promisc", "on", "up"],
        [OVS[0], "--no-wait", *OVS[1:]],
    ]
    assert names(steps) == ["create tap", ipv6.STEP, tp.MARK_UP, "attach port"]


STATES = {
    "new": tp.TapHave(None, None),
    "device only": tp.TapHave(link("tap_1002_eth1", False, "tap", "cloudrepo:demo"), None),
    "port without device": tp.TapHave(None, port("tap_1002_eth1", 120, None, **MARKS)),
    "other tag": tp.TapHave(IN_PLACE.link, port("tap_1002_eth1", 130, None, **MARKS)),
    "untagged": tp.TapHave(IN_PLACE.link, port("tap_1002_eth1", None, None, **MARKS)),
    "other bridge": tp.TapHave(IN_PLACE.link, port("tap_1002_eth1", 120, None, bridge="br-old", **MARKS)),
    "in place": IN_PLACE,
}


@pytest.mark.parametrize("parked", [False, True])
@pytest.mark.parametrize("state", sorted(STATES))
def test_an_attach_skips_the_wait_only_when_nothing_after_it_needs_ovs_vswitchd(
    state: str, parked: bool
) -> None:
    """`--no-wait` only for a port that did not exist: no drop is added or removed after it (they need the
    OpenFlow port, or must follow the retag), and no port of that name is left in ovs-vswitchd."""
    have = STATES[state]
    spec = tap(vlan=4094, parked=True) if parked else tap()
    steps = tp.plan_ensure(spec, have)
    attach = [s for s in steps if s.name == "attach port"]
    for step in attach:
        later = [s.name for s in steps[steps.index(step) + 1 :]]
        waits = "--no-wait" not in step.argv
        # a port ovs-vswitchd may still hold: one found, unless its removal (which waits) came first
        held = have.port is not None and "detach stale port" not in names(steps)
        needs = bool({tp.DROP, tp.UNDROP, tp.DROP_VLAN, tp.GC} & set(later)) or held
        assert waits or not needs, (state, parked, later)
        assert waits == (held or parked), (state, parked)
    if parked:  # a parked TAP comes up only after its drop: never in the marking request
        assert tp.MARK_UP not in names(steps)


def test_already_in_place_yields_no_commands() -> None:
    assert tp.plan_ensure(tap(), IN_PLACE) == []


def test_existing_port_with_another_tag_is_retagged_by_set_not_only_may_exist() -> None:
    have = tp.TapHave(IN_PLACE.link, port("tap_1002_eth1", 130, None, **MARKS))
    steps = tp.plan_ensure(tap(), have)
    assert argvs(steps)[0] == OVS
    assert "tag=120" in steps[0].argv[steps[0].argv.index("set") :]
    assert [s.name for s in steps[1:]] == [tp.UNDROP]  # a move: a park since the read is undone


def test_untagged_port_is_never_left_a_trunk() -> None:
    have = tp.TapHave(IN_PLACE.link, port("tap_1002_eth1", None, None, **MARKS))
    steps = tp.plan_ensure(tap(), have)
    assert argvs(steps)[0] == OVS and names(steps) == ["attach port", tp.UNDROP]


def test_parking_sets_protected_in_the_same_transaction() -> None:
    steps = tp.plan_ensure(tap(vlan=4094, parked=True), IN_PLACE)
    (argv,) = [s.argv for s in steps if s.name == "attach port"]
    assert "tag=4094" in argv and argv[-1] == "protected=true"


PARKED = tp.TapHave(
    IN_PLACE.link,
    replace(port("tap_1002_eth1", 4094, None, **MARKS), protected=True),
    ofport=7,
    drops=(7,),
    vlan_drop=True,
)


def test_a_tap_is_dropped_before_it_is_parked_and_undropped_after_it_joins_a_link() -> None:
    parked = tap(vlan=4094, parked=True)
    # from a link: its drop first (its OpenFlow port stays), then the retag, then the VLAN's drop; the
    # VLAN drops no parked TAP needs any more go
    assert names(tp.plan_ensure(parked, IN_PLACE)) == [tp.DROP, "attach port", tp.DROP_VLAN, tp.GC]
    # a new TAP: the port first (its OpenFlow port is known only then), and it comes up last
    assert names(tp.plan_ensure(parked, tp.TapHave(None, None))) == [
        "create tap", ipv6.STEP, "mark tap", "attach port", tp.DROP, tp.DROP_VLAN, "tap up",
    ]  # fmt: skip
    # to a link: retagged first, then its drop goes
    assert names(tp.plan_ensure(tap(), PARKED)) == ["attach port", tp.UNDROP]
    assert tp.plan_ensure(parked, PARKED) == []
    drop = tp.drop_step(parked)
    assert list(drop.argv[-2:]) == ["br-int", "tap_1002_eth1"] and drop.kind == "run"
    assert list(tp.drop_vlan_step(parked).argv[-2:]) == ["br-int", "4094"]


@pytest.mark.parametrize(
    ("flows", "drift"),
    [
        ({"drops": ()}, ["parked but not dropped: no drop flow on its OpenFlow port 7"]),
        ({"drops": (3, 7)}, ["drop flows on other OpenFlow ports [3]"]),
        ({"vlan_drop": False}, ["the bridge does not drop frames tagged with the parking VLAN 4094"]),
    ],
)
def test_a_lost_drop_flow_is_drift_and_the_update_puts_it_back(
    flows: dict[str, Any], drift: list[str]
) -> None:
    parked = tap(vlan=4094, parked=True)
    have = replace(PARKED, **flows)
    observed, found = tp.observe(parked, have)
    assert found == drift and observed["dropped"] is False
    assert names(tp.plan_ensure(parked, have)) == [tp.DROP, tp.DROP_VLAN]  # no retag: the port is in place
    assert tp.observe(parked, tp.after(parked, have)) == ({**observed, "dropped": True}, [])
    # a TAP on a link that still carries a drop flow
    assert tp.observe(tap(), tp.TapHave(IN_PLACE.link, IN_PLACE.port, ofport=7, drops=(7,)))[1] == [
        "drop flows on a TAP on a link (OpenFlow ports [7])"
    ]
    assert names(tp.plan_ensure(tap(), tp.TapHave(IN_PLACE.link, IN_PLACE.port, drops=(7,)))) == [tp.UNDROP]


def test_the_flows_probe_parses() -> None:
    assert tp.parse_flows("ofport 7\ndrop 7\ndrop 3\nvlan\n") == (7, (3, 7), True)
    assert tp.parse_flows("ofport \n") == (None, (), False)  # no such interface
    assert tp.parse_flows("ofport -1\n") == (None, (), False)  # OVS could not open it
    probe = tp.flows_probe(tap(vlan=4094, parked=True))
    assert probe.kind == "probe" and list(probe.argv[-3:]) == ["br-int", "tap_1002_eth1", "4094"]
    assert list(tp.flows_probe(tap()).argv[-3:]) == ["br-int", "tap_1002_eth1", ""]


def test_down_tap_is_brought_up_only() -> None:
    have = tp.TapHave(link("tap_1002_eth1", False, "tap", "cloudrepo:demo"), IN_PLACE.port)
    assert names(tp.plan_ensure(tap(), have)) == ["tap up"]


def test_interrupted_create_of_this_slice_is_resumed() -> None:
    # `ip tuntap add` ran and was marked, the OVS step did not: a retry must not re-add the TAP
    have = tp.TapHave(link("tap_1002_eth1", False, "tap", "cloudrepo:demo"), None)
    assert names(tp.plan_ensure(tap(), have)) == ["tap up", "attach port"]
    down = tp.TapHave(link("tap_1002_eth1", False, "tap", "cloudrepo:demo"), None)
    assert names(tp.plan_ensure(tap(uid="0" * 32), down)) == [tp.MARK_UP, "attach port"]


def test_tap_deleted_under_its_port_is_made_again_with_a_fresh_port() -> None:
    # the bridge still holds the deleted device: the port is removed before the TAP is made again, then
    # added afresh (found on the testbed: a TAP re-made under the old port carried no traffic)
    have = tp.TapHave(None, IN_PLACE.port)
    assert argvs(tp.plan_ensure(tap(), have)) == [
        ["ovs-vsctl", "--if-exists", "del-port", "tap_1002_eth1"],
        ["ip", "tuntap", "add", "mode", "tap", "name", "tap_1002_eth1"],
        list(ipv6.off_step("tap_1002_eth1").argv),
        ["ip", "link", "set", "dev", "tap_1002_eth1", "alias", "cloudrepo:demo", "promisc", "on", "up"],
        [OVS[0], "--no-wait", *OVS[1:]],  # the stale port's removal waited
    ]


def test_port_on_another_bridge_moves_in_one_transaction() -> None:
    have = tp.TapHave(IN_PLACE.link, port("tap_1002_eth1", 120, None, bridge="br-old", **MARKS))
    (step,) = tp.plan_ensure(tap(), have)
    assert list(step.argv[:7]) == [
        "ovs-vsctl",
        "--if-exists",
        "del-port",
        "br-old",
        "tap_1002_eth1",
        "--",
        "--may-exist",
    ]


def test_another_slices_port_is_refused_naming_both_slices() -> None:
    have = tp.TapHave(
        IN_PLACE.link, port("tap_1002_eth1", 120, None, **{**MARKS, "cloudrepo-slice": "other"})
    )
    with pytest.raises(OwnershipConflict) as err:
        tp.plan_ensure(tap(), have)
    assert str(err.value) == (
        "worker1: TAP tap_1002_eth1 is wanted by slice 'demo' but belongs to slice 'other'; nothing changed"
    )


def test_unmarked_port_is_refused() -> None:
    have = tp.TapHave(link("tap_1002_eth1"), port("tap_1002_eth1", 120, None))
    with pytest.raises(OwnershipConflict, match="belongs to no slice \\(unmarked\\)"):
        tp.plan_ensure(tap(), have)


def test_unmarked_bare_tap_is_refused() -> None:
    with pytest.raises(OwnershipConflict, match="unmarked"):
        tp.plan_ensure(tap(), tp.TapHave(link("tap_1002_eth1", alias=None), None))


def test_non_tap_device_of_that_name_is_refused() -> None:
    with pytest.raises(OwnershipConflict, match="it is a veth device"):
        tp.plan_ensure(tap(), tp.TapHave(link("tap_1002_eth1", kind="veth", alias="cloudrepo:demo"), None))


def test_delete_plan_and_idempotence() -> None:
    steps = tp.plan_delete(tap(), IN_PLACE)
    assert argvs(steps)[:2] == [
        ["ovs-vsctl", "--if-exists", "del-port", "br-int", "tap_1002_eth1"],
        ["ip", "link", "delete", "dev", "tap_1002_eth1"],
    ]
    assert names(steps)[2:] == [tp.UNDROP]  # its drop flows, after its port: none is left behind
    assert tp.plan_delete(tap(), tp.TapHave(None, None)) == []


def test_delete_leaves_another_slices_tap_alone() -> None:
    have = tp.TapHave(IN_PLACE.link, port("tap_1002_eth1", 120, "other"))
    assert tp.plan_delete(tap(), have) == []


def test_observe_reports_drift() -> None:
    have = tp.TapHave(
        link("tap_1002_eth1", False, "tap", "cloudrepo:demo"), port("tap_1002_eth1", None, None, **MARKS)
    )
    observed, drift = tp.observe(tap(), have)
    assert observed["tag"] is None and observed["up"] is False
    assert drift == ["TAP is down", "tag none (trunk), want 120"]
    assert tp.observe(tap(), IN_PLACE)[1] == []


def test_preflight_is_one_read_and_parses() -> None:
    steps = tp.preflight(tap())
    assert names(steps) == ["tools", "bridge", "link", ipv6.PROBE, "port", "port bridge", tp.FLOWS]
    assert all(s.kind == "probe" for s in steps)
    link_json = (
        '[{"ifname":"tap_1002_eth1","flags":["BROADCAST","UP"],"ifalias":"cloudrepo:demo",'
        '"linkinfo":{"info_kind":"tun","info_data":{"type":"tap"}},"addr_info":[]}]'
    )
    res = ScriptResult(
        [
            StepResult("tools", 0, ""),
            StepResult("bridge", 0, ""),
            StepResult("link", 0, link_json),
            StepResult(ipv6.PROBE, 0, "1\n"),
            StepResult("port", 0, ovs_find_json("tap_1002_eth1", 120, MARKS)),
            StepResult("port bridge", 0, "br-int\n"),
        ]
    )
    have = tp.parse_have(tap(), res)
    assert have.link == link("tap_1002_eth1", True, "tap", "cloudrepo:demo")
    assert have.port is not None and have.port.tag == 120 and have.port.owner == "demo"
    assert tp.plan_ensure(tap(), have) == []
    on_read = [*res.steps[:3], StepResult(ipv6.PROBE, 0, "0\n"), *res.steps[4:]]
    on = tp.parse_have(tap(), ScriptResult(on_read))
    assert on.ipv6 and names(tp.plan_ensure(tap(), on)) == [ipv6.STEP]
    assert tp.observe(tap(), on)[1] == ["IPv6 on"]
    gone = ScriptResult(
        [
            StepResult("tools", 0, ""),
            StepResult("bridge", 0, ""),
            StepResult("link", 1, ""),
            StepResult("port", 0, '{"data":[],"headings":["name"]}'),
            StepResult("port bridge", 1, ""),
        ]
    )
    assert tp.parse_have(tap(), gone).gone


# ---- joining a link VLAN ----------------------------------------------------------------------------------

W2 = {"name": "worker2", "address": "127.0.0.1", "port": 2202}


def joining(**over: object) -> tp.TapPortSpec:
    join = {"members": ["tap_1002_eth1", "tap_1003_eth1"], "hosts": [WORKER, W2], "parkingVlan": 4094}
    return tap(join=join, **over)


class Recorder:
    """ssh.run_script as the provider calls it: (host, step names, locked), in order."""

    def __init__(self, have: tp.TapHave, parked: str = "") -> None:
        self.have, self.parked = have, parked
        self.calls: list[tuple[str, list[str], bool]] = []

    def run_script(
        self, host: object, steps: list[object], locked: bool = False, **_: object
    ) -> ScriptResult:
        names_ = [s.name for s in steps]  # type: ignore[attr-defined]
        if not names_ or names_ == [READ]:
            return ScriptResult()  # as the real one: no script at all; a read (`reading`) is not a change
        self.calls.append((host.name, names_, locked))  # type: ignore[attr-defined]
        return ScriptResult([StepResult(n, 0, self.parked if n == tp.PARK_OTHERS else "") for n in names_])


def run_ensure(monkeypatch: pytest.MonkeyPatch, spec: tp.TapPortSpec, have: tp.TapHave) -> Recorder:
    """An update whose previous outputs carry drift: read (finds `have`), plan, run."""
    rec = Recorder(have, parked="tap_1004_eth1\n")
    p = reading(monkeypatch, tp.KIND, have)
    monkeypatch.setattr(ssh, "run_script", rec.run_script)
    out = p.update("id", {**spec.inputs(), "drift": ["TAP is down"], "observed": {}}, spec.inputs()).outs
    rec.outputs = out  # type: ignore[attr-defined]
    return rec


def test_joining_a_vlan_parks_its_strays_on_every_worker_first(monkeypatch: pytest.MonkeyPatch) -> None:
    parked = port("tap_1002_eth1", 4094, None, **MARKS)  # parked, now joins 120 where tap_1004_eth1 still is
    have = tp.TapHave(IN_PLACE.link, parked, strays=("tap_1004_eth1",))
    rec = run_ensure(monkeypatch, joining(), have)
    assert rec.calls == [
        ("worker2", [tp.PARK_OTHERS], True),  # the other worker that had the VLAN first, under its lock
        ("worker1", [tp.PARK_OTHERS, "attach port", tp.UNDROP], True),  # then its own: park, tag, one script
    ]
    park = tp.park_others(joining(), joining().join)  # type: ignore[arg-type]
    assert list(park.argv[4:]) == ["demo", "120", "4094", "tap_1002_eth1", "tap_1003_eth1"]
    assert rec.outputs["observed"]["parkedOthers"] == ["worker2/tap_1004_eth1", "worker1/tap_1004_eth1"]  # type: ignore[attr-defined]


def test_joining_a_vlan_free_on_its_worker_takes_no_lock_there(monkeypatch: pytest.MonkeyPatch) -> None:
    alone = tap(join={"members": ["tap_1002_eth1", "tap_1003_eth1"], "hosts": [], "parkingVlan": 4094})
    rec = run_ensure(monkeypatch, alone, tp.TapHave(None, None))
    assert [(h, locked) for h, _, locked in rec.calls] == [("worker1", False)]  # a fresh deploy: one script


def test_the_read_names_the_strays_of_the_vlan_it_joins() -> None:
    res = ScriptResult(
        [
            StepResult("tools", 0, ""),
            StepResult("bridge", 0, ""),
            StepResult("link", 1, ""),
            StepResult("port", 0, ""),
            StepResult("port bridge", 1, ""),
            StepResult(tp.ON_VLAN, 0, "tap_1003_eth1\ntap_1004_eth1\n"),
        ]
    )
    assert tp.parse_have(joining(), res).strays == ("tap_1004_eth1",)  # tap_1003_eth1 is the link's
    assert tp.ON_VLAN in names(tp.preflight(joining())) and tp.ON_VLAN not in names(tp.preflight(tap()))


def test_staying_on_a_vlan_parks_nothing_and_takes_no_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = run_ensure(monkeypatch, joining(), IN_PLACE)
    assert rec.calls == []  # in place: no script at all
    down = tp.TapHave(link("tap_1002_eth1", False, "tap", "cloudrepo:demo"), IN_PLACE.port)
    rec = run_ensure(monkeypatch, joining(), down)
    assert rec.calls == [("worker1", ["tap up"], False)]


def test_leaving_a_vlan_is_retagged_under_the_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    rec = run_ensure(monkeypatch, tap(vlan=4094, parked=True), IN_PLACE)
    assert rec.calls == [("worker1", [tp.DROP, "attach port", tp.DROP_VLAN, tp.GC], True)]
    fresh = run_ensure(monkeypatch, tap(vlan=4094, parked=True), tp.TapHave(None, None))
    assert [locked for _, _, locked in fresh.calls] == [False]  # a new parked TAP needs no lock


def test_the_join_input_alone_is_no_change() -> None:
    p = HostProvider(tp.KIND.name)
    old = {**joining().inputs(), "drift": [], "observed": {}}
    new = {**joining().inputs(), "join": {**joining().inputs()["join"], "hosts": [WORKER]}}
    assert p.diff("id", old, new).changes is False
    assert p.diff("id", old, {**new, "vlan": 121}).changes is True

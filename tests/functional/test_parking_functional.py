"""Parked TAPs on the testbed's real Open vSwitch (the provider alone, no engine): the drop flows a parked
TAP gets, drift when one is removed by hand and its repair, their removal when the TAP joins a link or is
deleted, the parking VLAN's drop kept while any parked TAP of the bridge needs it, strays parked by a TAP
that joins their VLAN dropped too, and the host back to its baseline."""

from __future__ import annotations

import json
from typing import Any

import pytest

from providers import ipv6
from providers.kinds import tap_port as tp
from providers.pipeline import HostProvider
from tests.functional import kit
from tests.functional.kit import outs
from tests.labfixtures import Testbed, assert_scan_equal, scan, scan_parts
from transport import ssh
from vocabulary.specs import Endpoint, TapPortSpec

pytestmark = pytest.mark.integration

SLICE = "fpark"
VLAN_DROP = "cookie=0xc1d0000200000ffe, priority=60000,dl_vlan=4094 actions=drop"


def provider(testbed: Testbed) -> HostProvider:
    return kit.provider(testbed, "TapPort")


def spec(testbed: Testbed, vm: int, iface: str, vlan: int = 4094, **over: Any) -> dict[str, Any]:
    host = Endpoint(name="worker1", address="127.0.0.1", port=testbed.port("worker1"))
    s = TapPortSpec(
        slice=SLICE, host=host, name=f"tap_{vm}_{iface}", vm=vm, iface=iface,
        mac=f"52:54:00:24:{vm % 100:02x}:0{iface[-1]}", vlan=vlan, parked=vlan == 4094, **over,
    )  # fmt: skip
    return s.inputs()


def flows() -> list[str]:
    """worker1's cloudrepo flows (ports by name)."""
    return [f for f in scan("worker1")["hosts"]["worker1"]["ovs"]["br-int"]["flows"] if "0xc1d0" in f]


def port_drop(tap: str) -> str:
    return f'in_port="{tap}" actions=drop'


def test_parked_taps_are_dropped_and_their_flows_follow_them(lab: Testbed) -> None:
    baseline = scan("worker1")
    p = provider(lab)
    a, b = spec(lab, 9301, "eth0"), spec(lab, 9302, "eth0")
    made = p.create(a)
    # a new parked TAP: its port, its drop, the VLAN's drop, and only then up
    assert outs(made)["observed"]["changed"] == [
        "create tap", ipv6.STEP, "mark tap", "attach port", tp.DROP, tp.DROP_VLAN, "tap up",
    ]  # fmt: skip
    assert outs(made)["observed"]["dropped"] is True and outs(made)["drift"] == []
    p.create(b)
    now = flows()
    assert VLAN_DROP in now, now
    assert [f for f in now if port_drop("tap_9301_eth0") in f] and [
        f for f in now if port_drop("tap_9302_eth0") in f
    ]
    assert outs(p.read(made.id, a))["drift"] == []

    # removed by hand (as a restart of ovs-vswitchd would): drift, a change for the diff, put back by update
    lab.run("worker1", 'ovs-ofctl del-flows br-int "in_port=tap_9301_eth0"')
    read = p.read(made.id, a)
    drift = outs(read)["drift"]
    assert len(drift) == 1 and drift[0].startswith(
        "parked but not dropped: no drop flow on its OpenFlow port"
    )
    assert p.diff(made.id, outs(read), a).changes is True
    fixed = p.update(made.id, outs(read), a)
    assert outs(fixed)["observed"]["changed"] == [tp.DROP, tp.DROP_VLAN]
    assert outs(p.read(made.id, a))["drift"] == []
    lab.run("worker1", 'ovs-ofctl del-flows br-int "dl_vlan=4094"')
    assert outs(p.read(made.id, a))["drift"] == [
        "the bridge does not drop frames tagged with the parking VLAN 4094"
    ]
    p.update(made.id, {**a, "drift": ["x"]}, a)
    assert VLAN_DROP in flows()

    # A joins a link: retagged, its drop goes; B is still parked: the VLAN's drop stays
    linked = spec(lab, 9301, "eth0", vlan=3301)
    moved = p.update(made.id, a, linked)
    assert outs(moved)["observed"]["changed"] == ["attach port", tp.UNDROP]
    now = flows()
    assert not [f for f in now if port_drop("tap_9301_eth0") in f] and VLAN_DROP in now, now
    assert outs(p.read(made.id, linked))["drift"] == []

    # B deleted: the last parked TAP of the bridge, the VLAN's drop goes with it; deleting again is fine
    p.delete("worker1/tap/tap_9302_eth0", b)
    p.delete("worker1/tap/tap_9302_eth0", b)
    assert flows() == []
    p.delete(made.id, linked)
    assert p.read(made.id, linked).id == ""
    after = scan("worker1")
    assert_scan_equal(scan_parts(baseline, ("tap_93", "0xc1d0")), scan_parts(after, ("tap_93", "0xc1d0")))


def test_strays_parked_by_a_tap_that_joins_their_vlan_are_dropped(lab: Testbed) -> None:
    p = provider(lab)
    stray = spec(lab, 9311, "eth1", vlan=3311)
    join = {"members": ["tap_9312_eth1", "tap_9313_eth1"], "hosts": [], "parkingVlan": 4094}
    joining = spec(lab, 9312, "eth1", vlan=3311, join=join)
    try:
        p.create(stray)
        out = outs(p.create(joining))
        assert out["observed"]["parkedOthers"] == ["worker1/tap_9311_eth1"]
        tag = lab.run("worker1", "ovs-vsctl get port tap_9311_eth1 tag protected")[1].split()
        assert tag == ["4094", "true"]
        now = flows()
        assert [f for f in now if port_drop("tap_9311_eth1") in f] and VLAN_DROP in now, now
        # the stray, now parked, reads as dropped
        parked = spec(lab, 9311, "eth1")
        assert outs(p.read("worker1/tap/tap_9311_eth1", parked))["drift"] == []
    finally:
        for s in (joining, stray):
            p.delete(f"worker1/tap/{s['name']}", s)
    assert flows() == []
    assert json.dumps(scan("worker1")).count("tap_931") == 0


def test_a_tap_parked_by_a_joiner_after_its_read_loses_its_drop_when_it_moves(lab: Testbed) -> None:
    """Two links swap ends in one `up`: tap X leaves VLAN V for W while tap Y joins V. X's plan was made from
    a read taken before Y parked X as a stray of V; run under the lock after Y's, X's move still takes X's
    drop away (otherwise X sits on W with a flow dropping all it sends)."""
    p = provider(lab)
    x_on_v, y_on_w = spec(lab, 9321, "eth1", vlan=3321), spec(lab, 9322, "eth1", vlan=3322)
    join = {"members": ["tap_9322_eth1", "tap_9323_eth1"], "hosts": [], "parkingVlan": 4094}
    y_on_v = spec(lab, 9322, "eth1", vlan=3321, join=join)
    x_on_w = TapPortSpec.model_validate(spec(lab, 9321, "eth1", vlan=3322))
    try:
        p.create(x_on_v)
        p.create(y_on_w)
        have = tp.parse_have(x_on_w, ssh.run_script(x_on_w.host, tp.preflight(x_on_w)))  # X's read
        assert have.drops == ()
        assert outs(p.create(y_on_v))["observed"]["parkedOthers"] == ["worker1/tap_9321_eth1"]
        assert [f for f in flows() if port_drop("tap_9321_eth1") in f]  # Y parked X: X is dropped
        ssh.run_script(x_on_w.host, tp.plan_ensure(x_on_w, have), locked=True, holder=SLICE)
        assert [f for f in flows() if port_drop("tap_9321_eth1") in f] == [], flows()
        tag = lab.run("worker1", "ovs-vsctl get port tap_9321_eth1 tag protected")[1].split()
        assert tag == ["3322", "false"]
        assert outs(p.read("worker1/tap/tap_9321_eth1", x_on_w.inputs()))["drift"] == []
    finally:
        for s in (y_on_v, x_on_v):
            p.delete(f"worker1/tap/{s['name']}", s)
    assert flows() == []
    assert json.dumps(scan("worker1")).count("tap_932") == 0

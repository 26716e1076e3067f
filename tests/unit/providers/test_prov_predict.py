"""One round trip per change (`providers.predict`): wherever an expectation's guards let a host through, the
plan made from the expectation is the plan a read of that host would have made (generated host states);
and the provider runs it in one script, or reads and plans when a guard stops it."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers import ipv6, predict
from providers.hoststate import LinkState, PortState
from providers.kinds import dhcp_namespace as dn
from providers.kinds import dnsmasq
from providers.kinds import tap_port as tp
from providers.kinds import vlan_gateway as vg
from providers.pipeline import HostProvider
from providers.predict import Expectation
from tests.unit.providers.provkit import READ, WORKER, dhcp, gateway, link, port, reading, tap
from transport import ssh
from transport.script import ScriptResult, Step, StepResult
from vocabulary.errors import StepFailed

OWNERS = st.sampled_from([None, "demo", "other", "shared", ""])
BRIDGES = st.sampled_from(["br-int", "br-ex", None])


def ports(name: str) -> st.SearchStrategy[PortState | None]:
    state = st.builds(
        PortState,
        name=st.just(name),
        bridge=BRIDGES,
        tag=st.sampled_from([None, 120, 130, 4094]),
        external_ids=st.dictionaries(
            st.sampled_from(["cloudrepo-slice", "cloudrepo-kind", "cloudrepo-vm", "attached-mac"]),
            st.sampled_from(["demo", "other", "shared", "tap", "1002", "gateway"]),
        ),
        protected=st.booleans(),
        vlan_mode=st.sampled_from([None, "access", "trunk"]),
        trunks=st.sampled_from([(), (5,)]),
    )
    return st.none() | state


ADDRESSES = st.lists(
    st.sampled_from(
        ["192.168.120.1/24", "192.168.120.9/25", "192.168.0.1/16", "10.0.0.1/8", "198.18.0.2/24"]
    ),
    max_size=2,
).map(tuple)


def links(name: str, kinds: list[str | None]) -> st.SearchStrategy[LinkState | None]:
    state = st.builds(
        LinkState,
        name=st.just(name),
        up=st.booleans(),
        kind=st.sampled_from(kinds),
        alias=st.sampled_from([None, "cloudrepo:demo", "cloudrepo:other", "x"]),
        addresses=ADDRESSES,
    )
    return st.none() | state


def same_or_idempotent_extras(real: list[Step], expected: list[Step], extras: set[str]) -> None:
    """`real` is `expected` without some of `extras` (steps that change nothing where already done)."""
    assert [s for s in expected if s.name not in extras or s in real] == real
    assert {s.name for s in expected} - {s.name for s in real} <= extras


def holds_for_its_own_state(e: Expectation[Any]) -> None:
    assert e.holds(e.have), "the expected state must pass its own guards"
    assert all(s.kind == "guard" for s in e.guards())


# ---- TapPort ---------------------------------------------------------------------------------------------

JOINS = st.sampled_from(
    [
        None,
        {"members": ["tap_1002_eth1", "tap_1003_eth1"], "hosts": [], "parkingVlan": 4094},
        {"members": ["tap_1002_eth1", "tap_1003_eth1"], "hosts": [WORKER], "parkingVlan": 4094},
    ]
)
TAP_SPECS = st.builds(
    lambda vlan, parked, join: tap(
        vlan=4094 if parked else vlan, parked=parked, join=None if parked else join
    ),
    st.sampled_from([120, 130]),
    st.booleans(),
    JOINS,
)
TAP_HAVES = st.builds(
    tp.TapHave,
    link=links("tap_1002_eth1", ["tap", "tun", "dummy", None]),
    port=ports("tap_1002_eth1"),
    strays=st.sampled_from([(), ("tap_1004_eth1",)]),
    ofport=st.sampled_from([None, 5, 9]),
    drops=st.sampled_from([(), (5,), (9,), (5, 9)]),
    vlan_drop=st.booleans(),
)
FLOW_STEPS = {tp.DROP, tp.DROP_VLAN, tp.GC, tp.UNDROP}
"""Steps that change nothing where the flows are already as they should be."""


@settings(max_examples=300)
@given(TAP_SPECS, TAP_HAVES)
def test_tap_create_where_the_guards_pass_is_the_plan_of_a_read(
    spec: tp.TapPortSpec, have: tp.TapHave
) -> None:
    e = tp.expect_create(spec)
    assert e is not None
    holds_for_its_own_state(e)
    if e.holds(have):
        assert tp.plan_ensure(spec, have) == tp.plan_ensure(spec, e.have)
        assert spec.join is None or not have.strays  # nothing to park: no lock needed


@settings(max_examples=300)
@given(TAP_SPECS, st.sampled_from([120, 130, 4094]), TAP_HAVES)
def test_tap_update_where_the_guards_pass_is_the_plan_of_a_read(
    spec: tp.TapPortSpec, old_vlan: int, have: tp.TapHave
) -> None:
    old = spec.model_copy(update={"vlan": old_vlan, "parked": old_vlan == 4094})
    e = tp.expect_update(spec, old)
    assert e is not None and e.locked
    holds_for_its_own_state(e)
    if e.holds(have):
        extras = {"attach port", *FLOW_STEPS}
        same_or_idempotent_extras(tp.plan_ensure(spec, have), tp.plan_ensure(spec, e.have), extras)


@settings(max_examples=300)
@given(TAP_SPECS, TAP_HAVES)
def test_tap_delete_where_the_guards_pass_is_the_plan_of_a_read(
    spec: tp.TapPortSpec, have: tp.TapHave
) -> None:
    e = tp.expect_delete(spec)
    holds_for_its_own_state(e)
    if e.holds(have):
        assert tp.plan_delete(spec, have) == tp.plan_delete(spec, e.have)
        assert tp.KIND.foreign(spec, have) is None


TAP = HostProvider(tp.KIND.name)


def test_a_tap_that_joins_a_vlan_other_workers_had_is_never_made_in_one_trip() -> None:
    join = {"members": ["tap_1002_eth1", "tap_1003_eth1"], "hosts": [WORKER, {**WORKER, "name": "w2"}]}
    spec = tap(join={**join, "parkingVlan": 4094})
    assert tp.expect_create(spec) is None and tp.expect_update(spec, spec) is None


# ---- VlanGateway -----------------------------------------------------------------------------------------

OTHERS = st.lists(
    st.builds(LinkState, name=st.sampled_from(["ens3", "gw_vlan130", "dummy0"]), up=st.just(True),
              kind=st.none(), alias=st.none(), addresses=ADDRESSES),
    max_size=2,
).map(tuple)  # fmt: skip
GW_HAVES = st.builds(
    vg.GatewayHave,
    port=ports("gw_vlan120"),
    link=links("gw_vlan120", ["internal", "dummy", None]),
    others=OTHERS,
    users=st.sampled_from([(), ("demo",), ("other",)]),
    isolation=st.sets(st.sampled_from(["isolate in", "isolate out"])).map(frozenset),
)


@settings(max_examples=300)
@given(GW_HAVES)
def test_gateway_create_where_the_guards_pass_is_the_plan_of_a_read(have: vg.GatewayHave) -> None:
    spec = gateway()
    e = vg.expect_create(spec)
    assert e is not None
    holds_for_its_own_state(e)
    if e.holds(have):
        real = vg.plan_ensure(spec, have)  # raises nothing: no owner, no subnet clash
        same_or_idempotent_extras(real, vg.plan_ensure(spec, e.have), {"isolate in", "isolate out"})


@settings(max_examples=300)
@given(GW_HAVES)
def test_gateway_delete_where_the_guards_pass_is_the_plan_of_a_read(have: vg.GatewayHave) -> None:
    spec = gateway()
    e = vg.expect_delete(spec)
    assert e is not None
    holds_for_its_own_state(e)
    if e.holds(have):
        assert vg.plan_delete(spec, have) == vg.plan_delete(spec, e.have)


def test_the_shared_gateway_and_server_always_read_first() -> None:
    shared_gw = gateway(vlan=400, port="gw_vlan400", address="10.60.7.1/24", shared=True)
    assert vg.expect_create(shared_gw) is None and vg.expect_delete(shared_gw) is None
    shared_dhcp = dhcp(shared=True, reservations=[{"mac": "52:54:00:03:ea:01", "hostname": "vm1002"}])
    assert dn.expect_create(shared_dhcp) is None and dn.expect_delete(shared_dhcp) is None


# ---- DhcpNamespace ---------------------------------------------------------------------------------------

DHCP_SPEC = dhcp()
DHCP_HAVES = st.builds(
    dn.DhcpHave,
    owner=OWNERS,
    netns=st.booleans(),
    port=ports("dhcp_v120"),
    root_link=links("dhcp_v120", ["internal", None]),
    ns_links=st.lists(links("dhcp_v120", ["internal"]) | links("lo", [None]), max_size=2).map(
        lambda ls: tuple(x for x in ls if x is not None)
    ),
    pid=st.sampled_from([None, 4242]),
    cmdline=st.sampled_from([(), tuple(dnsmasq.dnsmasq_args(DHCP_SPEC))]),
    hosts=st.sampled_from([None, dn.hosts_text(DHCP_SPEC), "x"]),
    markers=st.just(dnsmasq.proc_markers(DHCP_SPEC)),
    leases=st.sampled_from([(), (("52:54:00:03:ea:09", "192.168.120.11"),)]),
)


@settings(max_examples=300)
@given(DHCP_HAVES)
def test_dhcp_create_where_the_guards_pass_is_the_plan_of_a_read(have: dn.DhcpHave) -> None:
    e = dn.expect_create(DHCP_SPEC)
    assert e is not None
    holds_for_its_own_state(e)
    if e.holds(have):
        assert dn.plan_ensure(DHCP_SPEC, have) == dn.plan_ensure(DHCP_SPEC, e.have)


@settings(max_examples=300)
@given(DHCP_HAVES)
def test_dhcp_delete_where_the_guards_pass_is_the_plan_of_a_read(have: dn.DhcpHave) -> None:
    e = dn.expect_delete(DHCP_SPEC)
    assert e is not None
    holds_for_its_own_state(e)
    if e.holds(have):
        assert dn.plan_delete(DHCP_SPEC, have) == dn.plan_delete(DHCP_SPEC, e.have)


# ---- the provider's one script, and its fall-back to read then act ---------------------------------------


class Host:
    """A fake `ssh.run_script`: records the steps each script ran; a guard named in `failing` stops it."""

    def __init__(self, failing: set[str] = frozenset(), read: ScriptResult | None = None) -> None:  # type: ignore[assignment]
        self.failing = failing
        self.read = read
        self.scripts: list[tuple[list[str], bool]] = []

    def run_script(
        self, _host: Any, steps: list[Step], locked: bool = False, holder: str = ""
    ) -> ScriptResult:
        ran: list[str] = []
        self.scripts.append((ran, locked))
        res = ScriptResult()
        for s in steps:
            ran.append(s.name)
            if s.kind == "guard" and s.name in self.failing:
                res.steps.append(StepResult(s.name, 1, ""))
                res.stopped_by = s.name
                return res
            if s.kind == "probe" and self.read is not None and self.read.ran(s.name):
                res.steps.append(StepResult(s.name, self.read.status(s.name), self.read.out(s.name)))
            else:
                res.steps.append(StepResult(s.name, 0 if s.kind != "probe" else 1, ""))
        return res


def test_a_fresh_tap_is_made_in_one_script_guards_first(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    monkeypatch.setattr(ssh, "run_script", host.run_script)
    result = TAP.create(tap().inputs())
    assert host.scripts == [
        (["expect ready and no port tap_1002_eth1", "expect no device tap_1002_eth1",
          "create tap", ipv6.STEP, tp.MARK_UP, "attach port"], False),
    ]  # fmt: skip
    assert result.outs is not None and result.outs["observed"]["adopted"] is False
    assert result.outs["observed"]["changed"] == ["create tap", ipv6.STEP, tp.MARK_UP, "attach port"]


def test_a_tap_found_in_place_falls_back_to_read_then_act(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host(failing={"expect no device tap_1002_eth1"})
    monkeypatch.setattr(ssh, "run_script", host.run_script)
    found = tp.TapHave(
        link("tap_1002_eth1", False, "tap", "cloudrepo:demo"), port("tap_1002_eth1", 120, "demo")
    )
    result = reading(monkeypatch, tp.KIND, found).create(tap().inputs())
    assert [names for names, _ in host.scripts] == [
        ["expect ready and no port tap_1002_eth1", "expect no device tap_1002_eth1"],  # stopped: no change
        [READ],
        ["tap up", "attach port"],  # planned from the read
    ]
    assert result.outs is not None and result.outs["observed"]["adopted"] is True


def test_an_update_with_drift_reads_first(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    monkeypatch.setattr(ssh, "run_script", host.run_script)
    in_place = tp.TapHave(
        link("tap_1002_eth1", True, "tap", "cloudrepo:demo"), port("tap_1002_eth1", 130, "demo")
    )
    reading(monkeypatch, tp.KIND, in_place)
    olds = {**tap(vlan=130).inputs(), "drift": ["TAP is down"], "observed": {}}
    TAP.update("id", olds, tap().inputs())
    assert [names for names, _ in host.scripts] == [[READ], ["attach port", "undrop"]]  # a move undrops
    host.scripts.clear()
    TAP.update("id", {**olds, "drift": []}, tap().inputs())
    assert host.scripts == [
        (
            [
                "expect ready",
                "expect tap ours",
                "expect tap up",
                "expect ipv6 off",
                "expect port tap_1002_eth1 ours",
                "attach port",
                tp.UNDROP,  # the port's previous tag is not read: a drop it may carry goes
            ],
            True,
        )
    ]


def test_a_delete_whose_guard_fails_reads_and_leaves_another_slices_tap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = Host(failing={"expect tap ours"})
    monkeypatch.setattr(ssh, "run_script", host.run_script)
    theirs = tp.TapHave(
        link("tap_1002_eth1", True, "tap", "cloudrepo:other"), port("tap_1002_eth1", 120, "other")
    )
    reading(monkeypatch, tp.KIND, theirs)
    TAP.delete("id", tap().inputs())
    assert [names for names, _ in host.scripts] == [["expect tap ours"], [READ], []]


def test_a_fresh_dhcp_server_reads_its_pid_back_in_the_same_script(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host()
    monkeypatch.setattr(ssh, "run_script", host.run_script)
    HostProvider(dn.KIND.name).create(dhcp().inputs())
    ((names, locked),) = host.scripts
    assert names[:3] == [
        "expect ready and no port dhcp_v120",
        "expect no dhcp state",
        "expect no device dhcp_v120",
    ]
    assert names[-2:] == ["start dnsmasq", "dnsmasq"] and not locked


def test_missed_counts_only_the_expectations_guards() -> None:
    e = tp.expect_create(tap())
    assert e is not None
    assert e.missed(ScriptResult(stopped_by="expect ready and no port tap_1002_eth1"))
    assert not e.missed(ScriptResult(stopped_by="last user"))
    assert not e.missed(ScriptResult())
    assert predict.ready("br-int", "ip").step.argv[-2:] == ("br-int", "ip")


def test_a_fresh_create_that_fails_part_way_removes_what_it_made(monkeypatch: pytest.MonkeyPatch) -> None:
    scripts: list[list[str]] = []

    def run_script(_host: Any, steps: list[Step], locked: bool = False, holder: str = "") -> ScriptResult:
        scripts.append([s.name for s in steps])
        if "attach port" in scripts[-1]:
            raise StepFailed("worker1", "attach port", 1, "ovs-vsctl: no bridge")
        return ScriptResult()

    made = tp.TapHave(link("tap_1002_eth1", True, "tap", "cloudrepo:demo"), None)
    monkeypatch.setattr(ssh, "run_script", run_script)
    reading(monkeypatch, tp.KIND, made)
    with pytest.raises(StepFailed):
        TAP.create(tap().inputs())
    assert scripts[-1] == ["delete tap", tp.UNDROP]  # the TAP the failed script made, read back and removed


def test_a_failed_update_or_a_failed_adoption_removes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    scripts: list[list[str]] = []

    def run_script(_host: Any, steps: list[Step], locked: bool = False, holder: str = "") -> ScriptResult:
        scripts.append([s.name for s in steps])
        res = ScriptResult()
        if steps and steps[0].kind == "guard":
            res.steps.append(StepResult(steps[0].name, 1, ""))
            res.stopped_by = steps[0].name  # the host is not as expected: read first
            return res
        if "attach port" in scripts[-1]:
            raise StepFailed("worker1", "attach port", 1, "ovs-vsctl: no bridge")
        return res

    theirs = tp.TapHave(
        link("tap_1002_eth1", True, "tap", "cloudrepo:demo"), port("tap_1002_eth1", 130, "demo")
    )
    monkeypatch.setattr(ssh, "run_script", run_script)
    reading(monkeypatch, tp.KIND, theirs)
    with pytest.raises(StepFailed):
        TAP.create(tap().inputs())  # adopts its own TAP: not made by this create
    assert scripts[-1] == ["attach port", "undrop"], scripts

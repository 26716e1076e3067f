"""The guards of the one-round-trip changes (`providers.predict`) against real host states: for every state
a seeded generator makes on the testbed (devices, OVS ports and marks, addresses, namespaces, state files),
each guard passes exactly when its `holds` is true of the state the resource's read parses.  Together with
the unit properties (where the guards pass, the expected plan is the plan of a read), this shows the one
script does what read-then-act would have done.  The seed is printed; CLOUDREPO_PREDICT_SEED replays one."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from providers.kinds import dhcp_namespace as dn
from providers.kinds import tap_port as tp
from providers.kinds import vlan_gateway as vg
from providers.predict import Expectation
from tests.labfixtures import Testbed, assert_scan_equal, scan
from transport import ssh
from transport.script import Step
from vocabulary.specs import DhcpNamespaceSpec, Endpoint, JoinSpec, TapPortSpec, VlanGatewaySpec

pytestmark = pytest.mark.integration

STATES = 12  # per resource kind
TAP, STRAY, VLAN = "tap_9201_eth1", "tap_9202_eth1", 3201
GW, DUMMY, DHCP_VLAN = "gw_vlan3203", "ftveth0", 3204
DHCP_DIR = f"/var/lib/cloudrepo/dhcp/vlan{DHCP_VLAN}"


@pytest.fixture(scope="module")
def seed() -> int:
    value = int(os.environ.get("CLOUDREPO_PREDICT_SEED", random.randrange(1 << 30)))
    print(f"\nguard states seed: CLOUDREPO_PREDICT_SEED={value}")
    return value


@pytest.fixture
def lab(testbed: Testbed) -> Iterator[Testbed]:
    ssh.configure(testbed.ssh_config())
    ssh.close_all()
    baselines = {h: scan(h) for h in ("worker1", "network")}
    yield testbed
    ssh.close_all()
    for host, baseline in baselines.items():
        assert_scan_equal(baseline, scan(host))


def endpoint(lab: Testbed, host: str) -> Endpoint:
    return Endpoint(name=host, address="127.0.0.1", port=lab.port(host))


def as_probe(step: Step) -> Step:
    return Step(step.name, step.argv, "probe")


def check_state(
    lab: Testbed,
    host: str,
    setup: list[str],
    cleanup: str,
    spec: Any,
    preflight: list[Step],
    parse: Callable[[Any], Any],
    expectations: list[Expectation[Any]],
) -> list[str]:
    """Make one state, read it and run every guard in one script; each guard's status must match `holds`."""
    lab.run(host, cleanup, check=False)
    try:
        for cmd in setup:
            lab.run(host, cmd)
        guards = [as_probe(e.step) for x in expectations for e in x.expects]
        res = ssh.run_script(spec.host, [*preflight, *guards])
        have = parse(res)
        wrong = []
        for x in expectations:
            for e in x.expects:
                passed = res.status(e.step.name) == 0
                if passed != e.holds(have):
                    wrong.append(
                        f"{e.step.name}: guard {'passed' if passed else 'failed'}, holds={e.holds(have)}"
                    )
        return [f"state {setup}: {w} (have {have})" for w in wrong]
    finally:
        lab.run(host, cleanup, check=False)


def check_states(
    lab: Testbed,
    host: str,
    make_state: Callable[[], list[str]],
    cleanup: str,
    spec: Any,
    preflight: list[Step],
    parse: Callable[[Any], Any],
    expectations: list[Expectation[Any] | None],
) -> list[str]:
    """`check_state` on STATES states made by `make_state`; the expectations that are None are skipped."""
    wanted = [x for x in expectations if x is not None]
    wrong: list[str] = []
    for _ in range(STATES):
        wrong += check_state(lab, host, make_state(), cleanup, spec, preflight, parse, wanted)
    return wrong


def tap_state(rng: random.Random) -> list[str]:
    cmds: list[str] = []
    device = rng.choice(["none", "tap", "tap", "tun"])
    if device != "none":
        cmds.append(f"ip tuntap add mode {device} name {TAP}")
        alias = rng.choice(["cloudrepo:ftest", "cloudrepo:ftest", "cloudrepo:other", ""])
        if alias:
            cmds.append(f"ip link set dev {TAP} alias {alias}")
        if rng.random() < 0.5:
            cmds.append(f"echo 1 > /proc/sys/net/ipv6/conf/{TAP}/disable_ipv6")
        if rng.random() < 0.7:
            cmds.append(f"ip link set dev {TAP} up")
    if rng.random() < 0.6:
        owner = rng.choice(["ftest", "ftest", "other", ""])
        marks = f' -- set port {TAP} external_ids:cloudrepo-slice="{owner}"' if owner else ""
        cmds.append(f"ovs-vsctl add-port br-int {TAP} tag={rng.choice([VLAN, VLAN + 1])}{marks}")
    if rng.random() < 0.4:
        cmds.append(
            f"ip tuntap add mode tap name {STRAY} && ovs-vsctl add-port br-int {STRAY} tag={VLAN} "
            f'-- set port {STRAY} external_ids:cloudrepo-slice="ftest" external_ids:cloudrepo-kind=tap'
        )
    return cmds


def test_tap_guards_agree_with_the_read(lab: Testbed, seed: int) -> None:
    rng = random.Random(seed)
    join = JoinSpec(members=[TAP, "tap_9203_eth2"], hosts=[], parking_vlan=4094)
    spec = TapPortSpec(
        slice="ftest", host=endpoint(lab, "worker1"), name=TAP, vm=9201, iface="eth1",
        mac="52:54:00:23:92:01", vlan=VLAN, join=join,
    )  # fmt: skip
    old = spec.model_copy(update={"vlan": 4094, "parked": True, "join": None})
    expectations = [tp.expect_create(spec), tp.expect_update(spec, old), tp.expect_delete(spec)]
    cleanup = "; ".join(
        f"ovs-vsctl --if-exists del-port {n}; ip link delete {n} 2>/dev/null" for n in (TAP, STRAY)
    )
    wrong = check_states(
        lab, "worker1", lambda: tap_state(rng), cleanup + "; true", spec, tp.preflight(spec),
        lambda res: tp.parse_have(spec, res), expectations,
    )  # fmt: skip
    assert not wrong, "\n".join(wrong)


def gateway_state(rng: random.Random) -> list[str]:
    cmds: list[str] = []
    port = rng.choice(["none", "ours", "other", "device"])
    if port == "device":
        cmds.append(f"ip link add name {GW} type veth peer name ftpeer1")
    elif port != "none":
        owner = "ftest" if port == "ours" else "other"
        cmds.append(
            f"ovs-vsctl add-port br-int {GW} tag=3203 -- set interface {GW} type=internal -- set port {GW} "
            f'external_ids:cloudrepo-slice="{owner}" external_ids:cloudrepo-kind=gateway'
        )
    other = rng.choice(["", "10.234.3.77/24", "10.234.0.1/16", "10.235.3.1/24", "10.234.3.200/25"])
    if other:
        cmds.append(
            f"ip link add name {DUMMY} type veth peer name ftpeer0 && ip addr add {other} dev {DUMMY}"
        )
    return cmds


def test_gateway_guards_agree_with_the_read(lab: Testbed, seed: int) -> None:
    rng = random.Random(seed + 1)
    spec = VlanGatewaySpec(
        slice="ftest", host=endpoint(lab, "network"), vlan=3203, port=GW, address="10.234.3.1/24"
    )
    expectations = [vg.expect_create(spec), vg.expect_delete(spec)]
    cleanup = (
        f"ovs-vsctl --if-exists del-port {GW}; ip link delete {GW} 2>/dev/null; "
        f"ip link delete {DUMMY} 2>/dev/null; true"
    )
    wrong = check_states(
        lab, "network", lambda: gateway_state(rng), cleanup, spec, vg.preflight(spec),
        lambda res: vg.parse_have(spec, res), expectations,
    )  # fmt: skip
    assert not wrong, "\n".join(wrong)


def dhcp_state(rng: random.Random, spec: DhcpNamespaceSpec) -> list[str]:
    cmds: list[str] = []
    owner = rng.choice(["none", "ftest", "other", "dir"])
    if owner != "none":
        cmds.append(f"mkdir -p {DHCP_DIR}")
        if owner != "dir":
            cmds.append(f"echo {owner} > {DHCP_DIR}/owner")
        extra = rng.choice(["", "hosts.d/ftest", "leases"])
        if extra:
            cmds.append(
                f"mkdir -p {DHCP_DIR}/hosts.d && echo 0 52:54:00:01:02:03 10.236.4.11 > {DHCP_DIR}/{extra}"
            )
    if rng.random() < 0.5:
        cmds.append(f"ip netns add {spec.namespace}")
    if rng.random() < 0.4:
        cmds.append(
            f"ovs-vsctl add-port br-int {spec.port} tag={DHCP_VLAN} "
            f"-- set interface {spec.port} type=internal -- set port {spec.port} "
            f'external_ids:cloudrepo-slice="ftest" external_ids:cloudrepo-kind=dhcp'
        )
    return cmds


def test_dhcp_guards_agree_with_the_read(lab: Testbed, seed: int) -> None:
    rng = random.Random(seed + 2)
    spec = DhcpNamespaceSpec(
        slice="ftest", host=endpoint(lab, "network"), vlan=DHCP_VLAN, namespace=f"ns-dhcp-vlan{DHCP_VLAN}",
        port=f"dhcp_v{DHCP_VLAN}", address="10.236.4.2/24", range_start="10.236.4.10",
        range_end="10.236.4.250", router="10.236.4.1",
    )  # fmt: skip
    expectations = [dn.expect_create(spec), dn.expect_delete(spec)]
    cleanup = (
        f"ip netns delete {spec.namespace} 2>/dev/null; ovs-vsctl --if-exists del-port {spec.port}; "
        f"rm -rf {DHCP_DIR}; true"
    )
    wrong = check_states(
        lab, "network", lambda: dhcp_state(rng, spec), cleanup, spec, dn.preflight(spec),
        lambda res: dn.parse_have(spec, res), expectations,
    )  # fmt: skip
    assert not wrong, "\n".join(wrong)

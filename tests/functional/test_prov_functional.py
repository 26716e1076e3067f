"""The providers against the testbed over real SSH: create twice, read after damage, update, delete twice.

Calls the provider classes directly, configured as the engine configures them (the stack config as a dict
with `cloudrepo:ssh` as a JSON string).  Every test ends with the host's scan equal to its baseline.
Figures (SSH round trips and seconds per create/read/delete) are printed and written to
$CLOUDREPO_PROVIDER_FIGURES (default the testbed's `figures/provider-figures.json`).
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import paramiko
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config

from lab.common import host_paths, lab_dir
from providers import ipv6
from providers.kinds import dhcp_namespace as dn
from providers.kinds.tap_port import MARK_UP
from providers.pipeline import HostProvider
from tests.functional import kit
from tests.functional.kit import outs
from tests.labfixtures import Testbed, assert_scan_equal, held_host_lock, scan, scan_parts
from transport import ssh
from vocabulary.errors import Conflict, HostKeyError, LockTimeout, OwnershipConflict
from vocabulary.specs import (
    DhcpNamespaceSpec,
    Endpoint,
    NatRuleSpec,
    PoolClaimSpec,
    Reservation,
    TapPortSpec,
    VlanGatewaySpec,
)

pytestmark = pytest.mark.integration

T = TypeVar("T")
IPV6_OFF = "/proc/sys/net/ipv6/conf/{}/disable_ipv6"
"""A device's IPv6 switch (1: off)."""
FIGURES: dict[str, dict[str, dict[str, float]]] = {}


def engine_config(testbed: Testbed, known_hosts: str | None = None) -> dict[str, Any]:
    raw = {
        "user": "root",
        "privateKeyPath": testbed.inventory["privateKeyPath"],
        "knownHostsPath": known_hosts or testbed.inventory["knownHostsPath"],
        "sudo": True,
    }
    return {"cloudrepo:ssh": json.dumps(raw), "cloudrepo:bridge": "br-int"}


def configure(provider: Any, testbed: Testbed, known_hosts: str | None = None) -> None:
    provider.configure(ConfigureRequest(Config(engine_config(testbed, known_hosts), "cloudrepo")))


def endpoint(testbed: Testbed, host: str) -> Endpoint:
    return Endpoint(name=host, address="127.0.0.1", port=testbed.port(host))


def measure(resource: str, op: str, fn: Callable[[], T]) -> T:
    before = ssh.stats()
    t0 = time.monotonic()
    out = fn()
    seconds = time.monotonic() - t0
    after = ssh.stats()
    FIGURES.setdefault(resource, {})[op] = {
        "round_trips": after["commands_run"] - before["commands_run"],
        "connections": after["connections_opened"] - before["connections_opened"],
        "seconds": round(seconds, 3),
    }
    return out


@pytest.fixture(scope="module", autouse=True)
def figures() -> Iterator[None]:
    yield
    path = Path(os.environ.get("CLOUDREPO_PROVIDER_FIGURES", lab_dir() / "figures" / "provider-figures.json"))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(FIGURES, indent=2, sort_keys=True) + "\n")
    print("\nprovider figures (round trips / connections / seconds):")
    for res, ops in sorted(FIGURES.items()):
        for op, f in ops.items():
            print(f"  {res:14} {op:16} {f['round_trips']:>3} {f['connections']:>3} {f['seconds']:>7.3f}")


def assert_back_to_baseline(host: str, baseline: dict[str, Any], markers: tuple[str, ...]) -> None:
    """The host's scan equals its baseline.  The testbed is shared with other test sessions, so when the
    full scans differ, the test still requires every object it touched (`markers`) to be as before, and
    reports the foreign difference instead of failing on it."""
    now = scan(host)
    if now == baseline:
        return
    assert_scan_equal(scan_parts(baseline, markers), scan_parts(now, markers))
    import warnings

    warnings.warn(f"{host}: scan changed outside this test's objects (another session at work)", stacklevel=2)


def sh(testbed: Testbed, host: str, command: str) -> str:
    return testbed.run(host, command)[1]


# ---- TapPort --------------------------------------------------------------------------------------------


def test_tap_port_lifecycle(lab: Testbed) -> None:
    baseline = scan("worker1")
    p = HostProvider("TapPort")
    configure(p, lab)
    spec = TapPortSpec(
        slice="ftest", host=endpoint(lab, "worker1"), name="tap_9101_eth1", vm=9101, iface="eth1",
        mac="52:54:00:23:8d:01", vlan=3101,
    )  # fmt: skip
    props = spec.inputs()
    created = measure("TapPort", "create", lambda: p.create(props))
    assert created.id == "worker1/tap/tap_9101_eth1"
    assert outs(created)["observed"]["changed"] == ["create tap", ipv6.STEP, MARK_UP, "attach port"]
    assert sh(lab, "worker1", f"cat {IPV6_OFF.format('tap_9101_eth1')}").strip() == "1"
    again = measure("TapPort", "create (again)", lambda: p.create(props))
    assert outs(again)["observed"]["changed"] == [] and outs(again)["observed"]["adopted"] is True
    tag = sh(lab, "worker1", "ovs-vsctl get port tap_9101_eth1 tag").strip()
    assert tag == "3101"
    ids = sh(lab, "worker1", "ovs-vsctl get port tap_9101_eth1 external_ids")
    assert "cloudrepo-slice=ftest" in ids and 'attached-mac="52:54:00:23:8d:01"' in ids

    # damage by hand: untag (a trunk!), take the link down, turn IPv6 on
    sh(lab, "worker1", "ovs-vsctl clear port tap_9101_eth1 tag && ip link set dev tap_9101_eth1 down")
    sh(lab, "worker1", f"echo 0 > {IPV6_OFF.format('tap_9101_eth1')}")
    read = measure("TapPort", "read", lambda: p.read(created.id, outs(created)))
    assert read.id == created.id
    assert outs(read)["drift"] == ["TAP is down", "IPv6 on", "tag none (trunk), want 3101"]
    assert p.diff(created.id, outs(read), {**props, "__provider": "x"}).changes is True
    fixed = measure("TapPort", "update", lambda: p.update(created.id, outs(read), props))
    # untagged: maybe parked, so undropped
    assert outs(fixed)["observed"]["changed"] == [ipv6.STEP, "tap up", "attach port", "undrop"]
    assert outs(p.read(created.id, outs(fixed)))["drift"] == []
    assert sh(lab, "worker1", f"cat {IPV6_OFF.format('tap_9101_eth1')}").strip() == "1"

    # retag in place (the seed's --may-exist add-port would not), then park
    parked = {**props, "vlan": 4094, "parked": True}
    p.update(created.id, props, parked)
    assert sh(lab, "worker1", "ovs-vsctl get port tap_9101_eth1 tag protected").split() == ["4094", "true"]

    # another slice is refused and nothing changes
    before = scan("worker1")
    with pytest.raises(OwnershipConflict, match="wanted by slice 'other' but belongs to slice 'ftest'"):
        p.create({**parked, "slice": "other"})
    assert_scan_equal(before, scan("worker1"))

    measure("TapPort", "delete", lambda: p.delete(created.id, parked))
    measure("TapPort", "delete (again)", lambda: p.delete(created.id, parked))
    assert p.read(created.id, parked).id == ""
    assert_back_to_baseline("worker1", baseline, ("tap_9101", "3101", "4094"))


def test_unmarked_tap_is_refused_and_left_alone(lab: Testbed) -> None:
    sh(lab, "worker1", "ip tuntap add mode tap name tap_9102_eth1")
    try:
        baseline = scan("worker1")
        p = HostProvider("TapPort")
        configure(p, lab)
        spec = TapPortSpec(
            slice="ftest", host=endpoint(lab, "worker1"), name="tap_9102_eth1", vm=9102, iface="eth1",
            mac="52:54:00:23:8e:01", vlan=3101,
        )  # fmt: skip
        with pytest.raises(OwnershipConflict, match="belongs to no slice \\(unmarked\\)"):
            p.create(spec.inputs())
        p.delete("worker1/tap/tap_9102_eth1", spec.inputs())  # not ours: left in place
        assert_back_to_baseline("worker1", baseline, ("tap_9102",))
    finally:
        sh(lab, "worker1", "ip tuntap del mode tap name tap_9102_eth1")


def test_wrong_host_key_is_refused_before_any_command(lab: Testbed, tmp_path: Path) -> None:
    baseline = scan("worker1")
    bad = paramiko.HostKeys()
    key = paramiko.ECDSAKey.generate(bits=256)
    for host in ("worker1",):
        bad.add(f"[127.0.0.1]:{lab.port(host)}", key.get_name(), key)
    bad.save(str(tmp_path / "known_hosts"))
    p = HostProvider("TapPort")
    configure(p, lab, known_hosts=str(tmp_path / "known_hosts"))
    spec = TapPortSpec(
        slice="ftest", host=endpoint(lab, "worker1"), name="tap_9103_eth1", vm=9103, iface="eth1",
        mac="52:54:00:23:8f:01", vlan=3101,
    )  # fmt: skip
    before = ssh.stats()["commands_run"]
    with pytest.raises(HostKeyError, match="CHANGED"):
        p.create(spec.inputs())
    assert ssh.stats()["commands_run"] == before
    assert_back_to_baseline("worker1", baseline, ("tap_9103",))
    configure(p, lab)  # back to the real known_hosts for the other tests


# ---- VlanGateway ----------------------------------------------------------------------------------------


def test_vlan_gateway_lifecycle_and_subnet_conflict(lab: Testbed) -> None:
    baseline = scan("network")
    p = HostProvider("VlanGateway")
    configure(p, lab)
    net = endpoint(lab, "network")
    spec = VlanGatewaySpec(slice="ftest", host=net, vlan=3102, port="gw_vlan3102", address="10.231.2.1/24")
    props = spec.inputs()
    created = measure("VlanGateway", "create", lambda: p.create(props))
    assert (
        outs(measure("VlanGateway", "create (again)", lambda: p.create(props)))["observed"]["changed"] == []
    )
    # the same subnet on another VLAN's gateway is refused, naming the interface holding it
    clash = VlanGatewaySpec(
        slice="ftest2", host=net, vlan=3103, port="gw_vlan3103", address="10.231.2.254/24"
    )
    with pytest.raises(Conflict, match=r"overlaps 10\.231\.2\.1/24 on interface gw_vlan3102"):
        p.create(clash.inputs())
    assert sh(lab, "network", f"cat {IPV6_OFF.format('gw_vlan3102')}").strip() == "1"
    assert sh(lab, "network", "ip -6 addr show dev gw_vlan3102") == ""  # no link-local address either
    sh(lab, "network", "ip addr flush dev gw_vlan3102")
    sh(lab, "network", f"echo 0 > {IPV6_OFF.format('gw_vlan3102')}")
    read = measure("VlanGateway", "read", lambda: p.read(created.id, outs(created)))
    assert outs(read)["drift"] == ["address 10.231.2.1/24 missing (has none)", "IPv6 on"]
    moved = {**props, "address": "10.231.2.254/24"}
    p.update(created.id, props, moved)
    assert "10.231.2.254/24" in sh(lab, "network", "ip -4 -o addr show dev gw_vlan3102")
    assert sh(lab, "network", f"cat {IPV6_OFF.format('gw_vlan3102')}").strip() == "1"
    measure("VlanGateway", "delete", lambda: p.delete(created.id, moved))
    measure("VlanGateway", "delete (again)", lambda: p.delete(created.id, moved))
    assert p.read(created.id, moved).id == ""
    assert_back_to_baseline("network", baseline, ("gw_vlan3102", "gw_vlan3103", "10.231.2.", "3102", "3103"))


def test_shared_gateway_lives_until_its_last_user_leaves(lab: Testbed) -> None:
    baseline = scan("network")
    p = HostProvider("VlanGateway")
    configure(p, lab)
    a = VlanGatewaySpec(
        slice="fa", host=endpoint(lab, "network"), vlan=3104, port="gw_vlan3104", address="10.231.4.1/24",
        shared=True,
    ).inputs()  # fmt: skip
    b = {**a, "slice": "fb"}
    p.create(a)
    p.create(b)
    assert outs(p.read("x", a))["observed"]["users"] == ["fa", "fb"]
    p.delete("x", a)
    assert outs(p.read("x", b))["observed"]["exists"] is True
    p.delete("x", b)
    assert p.read("x", b).id == ""
    assert_back_to_baseline("network", baseline, ("gw_vlan3104", "10.231.4.", "3104"))


# ---- DhcpNamespace --------------------------------------------------------------------------------------


def dhcp_spec(lab: Testbed, slice_name: str = "ftest", vlan: int = 3105, **over: Any) -> dict[str, Any]:
    n = vlan % 100
    base = DhcpNamespaceSpec(
        slice=slice_name, host=endpoint(lab, "network"), vlan=vlan, namespace=f"ns-dhcp-vlan{vlan}",
        port=f"dhcp_v{vlan}", address=f"10.232.{n}.2/24", range_start=f"10.232.{n}.10",
        range_end=f"10.232.{n}.250", router=f"10.232.{n}.1", dns_servers=["8.8.8.8"],
        reservations=[Reservation(mac="52:54:00:23:90:01", ip=f"10.232.{n}.77", hostname="guest1")],
    ).inputs()  # fmt: skip
    base.update(over)
    return base


def test_dhcp_lifecycle_serves_the_reservation_and_survives_damage(lab: Testbed, guest: Any) -> None:
    net_base = scan("network")  # worker1 is checked by the TapPort tests: the guest stays up until teardown
    d, t = HostProvider("DhcpNamespace"), HostProvider("TapPort")
    configure(d, lab)
    props = dhcp_spec(lab)
    created = measure("DhcpNamespace", "create", lambda: d.create(props))
    assert outs(created)["observed"]["dnsmasqAlive"] is True
    again = measure("DhcpNamespace", "create (again)", lambda: d.create(props))
    assert outs(again)["observed"]["changed"] == []
    assert outs(again)["observed"]["dnsmasqPid"] == outs(created)["observed"]["dnsmasqPid"]

    # a guest on a worker TAP in the same VLAN gets its reserved address across the trunk
    tap = TapPortSpec(
        slice="ftest", host=endpoint(lab, "worker1"), name="tap_9105_eth1", vm=9105, iface="eth1",
        mac="52:54:00:23:90:01", vlan=3105,
    ).inputs()  # fmt: skip
    t.create(tap)
    g = guest("fg9105", host="worker1", tap="tap_9105_eth1", iface="eth1", mac="52:54:00:23:90:01")
    assert g.dhcp("eth1") == "10.232.5.77"

    # damage: kill dnsmasq by hand; read shows it, update restarts it
    pid = outs(created)["observed"]["dnsmasqPid"]
    sh(lab, "network", f"kill {pid}; {kit.until_gone(pid)}")  # dnsmasq writes its leases as it ends
    read = measure("DhcpNamespace", "read", lambda: d.read(created.id, outs(created)))
    assert outs(read)["observed"]["dnsmasqAlive"] is False and "dnsmasq not running" in outs(read)["drift"]
    fixed = d.update(created.id, outs(read), props)
    assert outs(fixed)["observed"]["dnsmasqAlive"] is True

    # a reservation change is a SIGHUP (same pid); an option change is a restart (new pid)
    pid1 = outs(fixed)["observed"]["dnsmasqPid"]
    more = {
        **props,
        "reservations": [
            *props["reservations"],
            {"mac": "52:54:00:23:90:02", "ip": "10.232.5.78", "hostname": "guest2"},
        ],
    }
    r1 = d.update(created.id, props, more)
    assert outs(r1)["observed"]["changed"] == ["write reservations", "assemble reservations"]
    assert outs(r1)["observed"]["dnsmasqPid"] == pid1
    hosts = sh(lab, "network", "cat /var/lib/cloudrepo/dhcp/vlan3105/hosts.d/ftest")
    assert hosts == "52:54:00:23:90:01,10.232.5.77,guest1\n52:54:00:23:90:02,10.232.5.78,guest2\n"
    assert sh(lab, "network", "cat /var/lib/cloudrepo/dhcp/vlan3105/hosts") == hosts  # what dnsmasq reads

    # IPv6 is off on the port in its namespace; turned on by hand, it is drift, and turned off again
    # without touching the server
    in_ns = f"ip netns exec ns-dhcp-vlan3105 sh -c 'cat {IPV6_OFF.format('dhcp_v3105')}'"
    assert sh(lab, "network", in_ns).strip() == "1"
    sh(lab, "network", in_ns.replace("cat ", "echo 0 > "))
    read = d.read(created.id, outs(r1))
    assert outs(read)["drift"] == ["IPv6 on"]
    r6 = d.update(created.id, outs(read), more)
    assert outs(r6)["observed"]["changed"] == [ipv6.STEP]
    assert outs(r6)["observed"]["dnsmasqPid"] == pid1
    assert sh(lab, "network", in_ns).strip() == "1"
    opts = {**more, "dnsServers": ["9.9.9.9"]}
    r2 = d.update(created.id, more, opts)
    assert outs(r2)["observed"]["dnsmasqPid"] != pid1 and outs(r2)["observed"]["dnsmasqAlive"]

    # another slice's dnsmasq on another VLAN is untouched by this one's delete (no pkill by name)
    other = dhcp_spec(lab, slice_name="fother", vlan=3106, reservations=[])
    o = d.create(other)
    measure("DhcpNamespace", "delete", lambda: d.delete(created.id, opts))
    measure("DhcpNamespace", "delete (again)", lambda: d.delete(created.id, opts))
    assert d.read(created.id, opts).id == ""
    still = d.read(o.id, other)
    assert outs(still)["observed"]["dnsmasqAlive"] is True
    assert outs(still)["observed"]["dnsmasqPid"] == outs(o)["observed"]["dnsmasqPid"]
    d.delete(o.id, other)
    t.delete("x", tap)
    assert_back_to_baseline("network", net_base, ("3105", "3106", "10.232.5.", "10.232.6."))


def shared_pair(lab: Testbed, vlan: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """Slices fa and fb on one shared VLAN, a reservation each (its address handed out by the node)."""
    a = dhcp_spec(
        lab, slice_name="fa", vlan=vlan, shared=True,
        reservations=[{"mac": "52:54:00:23:90:01", "hostname": "guest1"}],
    )  # fmt: skip
    b = dhcp_spec(
        lab, slice_name="fb", vlan=vlan, shared=True,
        reservations=[Reservation(mac="52:54:00:23:91:02", hostname="bguest")],
    )  # fmt: skip
    return a, b


def test_shared_dhcp_keeps_each_slices_reservations(lab: Testbed) -> None:
    baseline = scan("network")
    d = HostProvider("DhcpNamespace")
    configure(d, lab)
    a, b = shared_pair(lab, 3107)
    ra = d.create(a)
    rb = d.create(b)
    assert outs(rb)["observed"]["dnsmasqPid"] == outs(ra)["observed"]["dnsmasqPid"]  # no restart for slice b
    files = sh(lab, "network", "ls /var/lib/cloudrepo/dhcp/vlan3107/hosts.d").split()
    assert files == ["fa", "fb"]
    # the node hands out the lowest free addresses, one slice after the other, and keeps them
    assert outs(ra)["observed"]["reserved"] == {"52:54:00:23:90:01": "10.232.7.10"}
    assert outs(rb)["observed"]["reserved"] == {"52:54:00:23:91:02": "10.232.7.11"}
    assert outs(d.create(b))["observed"]["reserved"] == outs(rb)["observed"]["reserved"]
    # another slice's differing DHCP options are refused while the shared server serves slice fa
    with pytest.raises(Conflict, match=r"dnsServers 1.1.1.1 of slice 'fc' differ from 8.8.8.8"):
        d.create(
            {
                **b,
                "slice": "fc",
                "dnsServers": ["1.1.1.1"],
                "reservations": [{"mac": "52:54:00:23:92:03", "hostname": "cguest"}],
            }
        )
    d.delete("x", a)
    left = d.read("x", b)
    assert outs(left)["observed"]["dnsmasqAlive"] is True
    assert outs(left)["observed"]["dnsmasqPid"] == outs(ra)["observed"]["dnsmasqPid"]
    assert sh(lab, "network", "ls /var/lib/cloudrepo/dhcp/vlan3107/hosts.d").split() == ["fb"]
    d.delete("x", b)
    assert d.read("x", b).id == ""
    assert_back_to_baseline("network", baseline, ("3107", "10.232.7."))


def test_shared_dhcp_plan_read_half_made_leaves_one_server(lab: Testbed) -> None:
    """Two slices' first `up`s at once: slice fb's read (outside the lock) caught the namespace that slice
    fa's locked create was making, before its server started. fb's plan, run under the lock after fa's,
    reloads fa's server instead of starting a second one on the VLAN."""
    baseline = scan("network")
    d = HostProvider("DhcpNamespace")
    configure(d, lab)
    a, b = shared_pair(lab, 3108)
    ra = d.create(a)
    server = outs(ra)["observed"]["dnsmasqPid"]
    log = "/var/lib/cloudrepo/dhcp/vlan3108/dnsmasq.log"
    reads = sh(lab, "network", f"grep -c 'read /var/lib/cloudrepo/dhcp/vlan3108/hosts' {log} || true")
    spec = DhcpNamespaceSpec.model_validate(b)
    have = dn.parse_have(spec, ssh.run_script(spec.host, dn.preflight(spec)))
    half = dataclasses.replace(have, pid=None, cmdline=())  # the server not started yet when fb read
    work = dn.resolve(spec, half)
    steps = dn.plan_ensure(work, half)
    assert "start dnsmasq" in [s.name for s in steps]
    res = ssh.run_script(spec.host, steps, locked=True, holder="fb")
    pids = sh(lab, "network", "ip netns pids ns-dhcp-vlan3108").split()
    assert [sh(lab, "network", f"cat /proc/{p}/comm").strip() for p in pids] == ["dnsmasq"]
    assert pids == [str(server)]
    assert res.out("start dnsmasq").strip() == f"running: {server}"
    # reloaded: fb's reservation is served (dnsmasq logs the read once it has handled the SIGHUP)
    count = f"grep -c 'read /var/lib/cloudrepo/dhcp/vlan3108/hosts' {log}"
    again = sh(lab, "network", f"i=0; until [ $({count}) -gt {int(reads)} ] || [ $i -ge 300 ]; do sleep 0.1; "
               f"i=$((i+1)); done; {count}")  # fmt: skip
    assert int(again) == int(reads) + 1
    assert outs(d.read("x", b))["drift"] == []
    d.delete("x", b)
    d.delete("x", a)
    assert_back_to_baseline("network", baseline, ("3108", "10.232.8."))


def test_shared_dhcp_address_reserved_meanwhile_is_chosen_again(
    lab: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Slices joining the shared VLAN at once: slice fb read the node (.11 free), then slice fc reserved .11
    before fb's locked script ran; fb read again (.12 free), and slice fd reserved .12 first. Each time fb's
    check under the lock finds its address taken, and fb reads and chooses again (.13) instead of failing;
    each slice serves its own address."""
    baseline = scan("network")
    d = HostProvider("DhcpNamespace")
    configure(d, lab)
    a, b = shared_pair(lab, 3109)
    racers = [
        {**b, "slice": s, "reservations": [{"mac": f"52:54:00:23:92:0{i}", "hostname": f"{s}guest"}]}
        for i, s in enumerate(("fc", "fd"))
    ]
    d.create(a)  # the server, with .10
    real = ssh.run_script
    cut_in: list[str] = []

    def racer_first(endpoint: Endpoint, steps: Any, **kw: Any) -> Any:
        if kw.get("holder") == "fb" and kw.get("locked") and len(cut_in) < len(racers):
            racer = racers[len(cut_in)]
            cut_in.append(racer["slice"])
            d.create(racer)  # between fb's read and its locked script
        return real(endpoint, steps, **kw)

    monkeypatch.setattr(ssh, "run_script", racer_first)
    rb = d.create(b)
    monkeypatch.setattr(ssh, "run_script", real)
    assert cut_in == ["fc", "fd"]
    assert outs(rb)["observed"]["reserved"] == {"52:54:00:23:91:02": "10.232.9.13"}
    assert [outs(d.read("x", r))["observed"]["reserved"] for r in racers] == [
        {"52:54:00:23:92:00": "10.232.9.11"},
        {"52:54:00:23:92:01": "10.232.9.12"},
    ]
    served = sh(lab, "network", "cat /var/lib/cloudrepo/dhcp/vlan3109/hosts").splitlines()
    assert sorted(ln.split(",")[1] for ln in served) == [f"10.232.9.{n}" for n in (10, 11, 12, 13)]
    assert outs(d.read("x", b))["drift"] == []
    for spec in (*racers, b, a):
        d.delete("x", spec)
    assert_back_to_baseline("network", baseline, ("3109", "10.232.9."))


# ---- NatRule --------------------------------------------------------------------------------------------


def test_nat_is_shared_and_never_cut_while_used(lab: Testbed) -> None:
    baseline = scan("network")
    p = HostProvider("NatRule")
    configure(p, lab)
    a = NatRuleSpec(
        slice="fa", host=endpoint(lab, "network"), subnet="10.233.0.0/24", gateway_port="gw_vlan3108",
        uplink=lab.inventory["hosts"]["network"]["uplink"],
    ).inputs()  # fmt: skip
    b = {**a, "slice": "fb"}
    created = measure("NatRule", "create", lambda: p.create(a))
    assert outs(measure("NatRule", "create (again)", lambda: p.create(a)))["observed"]["changed"] == []
    p.create(b)
    rules = sh(lab, "network", "iptables -w -t nat -S POSTROUTING")
    assert rules.count("cloudrepo:nat-10.233.0.0-24-ens3") == 1
    sh(lab, "network", "iptables -w -t nat -D POSTROUTING -s 10.233.0.0/24 -o ens3 "
       "-m comment --comment cloudrepo:nat-10.233.0.0-24-ens3 -j MASQUERADE")  # fmt: skip
    read = measure("NatRule", "read", lambda: p.read(created.id, outs(created)))
    assert outs(read)["drift"] == ["rule masquerade missing"]
    assert outs(p.update(created.id, outs(read), a))["observed"]["changed"] == ["add masquerade"]
    measure("NatRule", "delete", lambda: p.delete(created.id, a))
    assert outs(p.read(created.id, b))["observed"]["rules"] == [
        "forward out",
        "forward replies",
        "masquerade",
    ]
    p.delete(created.id, b)
    measure("NatRule", "delete (again)", lambda: p.delete(created.id, b))
    assert p.read(created.id, b).id == ""
    assert_back_to_baseline("network", baseline, ("10.233.0.", "gw_vlan3108", "cloudrepo:nat", "ip_forward"))


# ---- PoolClaim ------------------------------------------------------------------------------------------


def test_pool_claims_refuse_overlap(lab: Testbed) -> None:
    baseline = scan("network")
    p = HostProvider("PoolClaim")
    configure(p, lab)
    a = PoolClaimSpec(slice="fa", host=endpoint(lab, "network"), start=3200, end=3219).inputs()
    created = measure("PoolClaim", "create", lambda: p.create(a))
    assert outs(measure("PoolClaim", "create (again)", lambda: p.create(a)))["observed"]["changed"] == []
    with pytest.raises(Conflict, match="VLANs 3210-3229 of slice 'fb' meet slice 'fa' \\(claims 3200-3219"):
        p.create({**a, "slice": "fb", "start": 3210, "end": 3229})
    # 3456..3475 is 3200..3219 modulo 256: the same link subnets, refused too
    with pytest.raises(Conflict, match="VLANs 3456-3475 of slice 'fb' meet slice 'fa'"):
        p.create({**a, "slice": "fb", "start": 3456, "end": 3475})
    ok = p.create({**a, "slice": "fb", "start": 3220, "end": 3239})
    assert outs(measure("PoolClaim", "read", lambda: p.read(created.id, a)))["observed"]["others"][
        "fb@3220"
    ] == [
        3220,
        3239,
    ]
    sh(lab, "network", "rm /var/lib/cloudrepo/pools/fa@3200")
    assert p.read(created.id, a).id == ""
    measure("PoolClaim", "delete", lambda: p.delete(created.id, a))
    p.delete(ok.id, {**a, "slice": "fb", "start": 3220, "end": 3239})
    assert_back_to_baseline("network", baseline, ("pools", "32"))


def test_a_lock_wait_that_times_out_names_the_lock_and_its_holder(
    lab: Testbed, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another slice's locked operation holds the network node's lock: the wait ends with a clear error."""
    p = HostProvider("PoolClaim")
    configure(p, lab)
    monkeypatch.setattr(ssh, "LOCK_WAIT_SECONDS", 1)
    # the other slice holds the lock for as long as the create runs (a barrier, no clock to race)
    with held_host_lock("network"):
        (host_paths("network").state / "lock.holder").write_text("fz\n")
        spec = PoolClaimSpec(slice="fy", host=endpoint(lab, "network"), start=3300, end=3319).inputs()
        with pytest.raises(LockTimeout) as err:
            p.create(spec)
    assert str(err.value) == (
        "network: waited 1 s for the lock /var/lib/cloudrepo/lock (last taken by slice 'fz'); nothing was run"
    )
    assert "fy@3300" not in sh(lab, "network", "ls /var/lib/cloudrepo/pools 2>/dev/null || true")

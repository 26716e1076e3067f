"""VlanGateway, DhcpNamespace, NatRule, PoolClaim: exact command plans from fake host reads."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers import bodies, ipv6
from providers.hoststate import LinkState
from providers.kinds import dhcp_namespace as dn
from providers.kinds import dnsmasq
from providers.kinds import nat_rule as nr
from providers.kinds import pool_claim as pc
from providers.kinds import vlan_gateway as vg
from providers.pipeline import HostProvider
from tests.unit.providers.provkit import argvs, dhcp, gateway, link, names, nat, pool, port
from transport import ssh
from transport.script import ScriptResult, StepResult
from vocabulary.errors import Conflict, OwnershipConflict
from vocabulary.specs import DhcpNamespaceSpec

GW_MARKS = {"cloudrepo-kind": "gateway", "cloudrepo-vlan": "120"}
GW_ADD = [
    "ovs-vsctl", "--may-exist", "add-port", "br-int", "gw_vlan120", "tag=120",
    "--", "set", "interface", "gw_vlan120", "type=internal",
    "--", "set", "port", "gw_vlan120", "tag=120", "vlan_mode=access", "trunks=[]",
    'external_ids:cloudrepo-slice="demo"', 'external_ids:cloudrepo-kind="gateway"',
    'external_ids:cloudrepo-vlan="120"',
]  # fmt: skip


ISOLATION = ("isolate in", "isolate out")
MARK = ["-m", "comment", "--comment", "cloudrepo:gw_vlan120"]
ISOLATE = [
    list(
        bodies.add_rule(
            "isolate in", "filter", "FORWARD", ["-i", "gw_vlan120", *MARK, "-j", "DROP"], first=True
        ).argv
    ),
    list(
        bodies.add_rule(
            "isolate out", "filter", "FORWARD", ["-o", "gw_vlan120", *MARK, "-j", "DROP"], first=True
        ).argv
    ),
]


def gw_have(
    owner: str = "demo",
    addrs: tuple[str, ...] = ("192.168.120.1/24",),
    others: tuple[LinkState, ...] = (),
    users: tuple[str, ...] = (),
    isolation: tuple[str, ...] = ISOLATION,
) -> vg.GatewayHave:
    return vg.GatewayHave(
        port=port("gw_vlan120", 120, owner, **GW_MARKS),
        link=link("gw_vlan120", True, "internal", None, *addrs),
        others=tuple(others),
        users=tuple(users),
        isolation=frozenset(isolation),
    )


# ---- VlanGateway ----------------------------------------------------------------------------------------


def test_gateway_fresh() -> None:
    have = vg.GatewayHave(None, None, (link("ens3", True, None, None, "198.19.0.2/24"),))
    assert argvs(vg.plan_ensure(gateway(), have)) == [
        GW_ADD,
        list(ipv6.off_step("gw_vlan120").argv),
        ["ip", "addr", "add", "192.168.120.1/24", "dev", "gw_vlan120"],
        ["ip", "link", "set", "dev", "gw_vlan120", "up"],
        *ISOLATE,
    ]


def test_gateway_in_place_no_commands() -> None:
    assert vg.plan_ensure(gateway(), gw_have()) == []


def test_gateway_missing_isolation_rule_is_reinserted_first_in_forward() -> None:
    assert argvs(vg.plan_ensure(gateway(), gw_have(isolation=("isolate in",)))) == [ISOLATE[1]]
    observed, drift = vg.observe(gateway(), gw_have(isolation=("isolate in",)))
    assert observed["isolation"] == ["isolate in"]
    assert drift == ["FORWARD rule 'isolate out' missing"]


def test_gateway_with_ipv6_on_is_drift_and_the_update_turns_it_off() -> None:
    have = vg.GatewayHave(gw_have().port, gw_have().link, (), isolation=frozenset(ISOLATION), ipv6=True)
    assert argvs(vg.plan_ensure(gateway(), have)) == [list(ipv6.off_step("gw_vlan120").argv)]
    observed, drift = vg.observe(gateway(), have)
    assert observed["ipv6"] is True
    assert drift == ["IPv6 on"]


def test_shared_gateway_has_no_isolation_rules() -> None:
    spec = gateway(slice="b", vlan=400, port="gw_vlan400", address="10.60.7.1/24", shared=True)
    assert vg.isolation_rules(spec) == {}


def test_gateway_address_change_replaces_the_old_address() -> None:
    steps = vg.plan_ensure(gateway(address="192.168.120.254/24"), gw_have())
    assert argvs(steps) == [
        ["ip", "addr", "del", "192.168.120.1/24", "dev", "gw_vlan120"],
        ["ip", "addr", "add", "192.168.120.254/24", "dev", "gw_vlan120"],
    ]


def test_gateway_refuses_a_subnet_on_another_interface_naming_it() -> None:
    have = vg.GatewayHave(None, None, (link("gw_vlan376", True, "internal", None, "192.168.120.1/24"),))
    with pytest.raises(Conflict) as err:
        vg.plan_ensure(gateway(), have)
    assert str(err.value) == (
        "network: subnet 192.168.120.0/24 of gw_vlan120 (slice 'demo') overlaps 192.168.120.1/24 "
        "on interface gw_vlan376; nothing changed"
    )


def test_gateway_of_another_slice_or_unmarked_is_refused() -> None:
    with pytest.raises(OwnershipConflict, match="belongs to slice 'other'"):
        vg.plan_ensure(gateway(), gw_have(owner="other"))
    with pytest.raises(OwnershipConflict, match="unmarked"):
        vg.plan_ensure(gateway(), vg.GatewayHave(None, link("gw_vlan120", True, "veth"), ()))


def test_shared_gateway_second_slice_only_registers() -> None:
    spec = gateway(slice="b", vlan=400, port="gw_vlan400", address="10.60.7.1/24", shared=True)
    have = vg.GatewayHave(
        port=port("gw_vlan400", 400, "shared", **{"cloudrepo-kind": "gateway", "cloudrepo-vlan": "400"}),
        link=link("gw_vlan400", True, "internal", None, "10.60.7.1/24"),
        others=(),
        users=("a",),
    )
    steps = vg.plan_ensure(spec, have)
    assert names(steps) == [vg.STILL_THERE, "register user"]
    assert argvs(steps)[1] == [
        "sh",
        "-c",
        'mkdir -p "$1" && : > "$1/$2"',
        "sh",
        "/var/lib/cloudrepo/shared/gw_vlan400/users",
        "b",
    ]
    assert vg.plan_ensure(spec, vg.GatewayHave(have.port, have.link, (), ("a", "b"))) == []


def test_gateway_delete() -> None:
    assert argvs(vg.plan_delete(gateway(), gw_have())) == [
        ["ovs-vsctl", "--if-exists", "del-port", "gw_vlan120"],
        list(bodies.remove_rule("r", "filter", "FORWARD", ["-i", "gw_vlan120", *MARK, "-j", "DROP"]).argv),
        list(bodies.remove_rule("r", "filter", "FORWARD", ["-o", "gw_vlan120", *MARK, "-j", "DROP"]).argv),
    ]
    assert vg.plan_delete(gateway(), gw_have(owner="other")) == []
    assert vg.plan_delete(gateway(), vg.GatewayHave(None, None, ())) == []


def test_shared_gateway_delete_is_guarded_by_other_users() -> None:
    spec = gateway(vlan=400, port="gw_vlan400", address="10.60.7.1/24", shared=True)
    have = vg.GatewayHave(port("gw_vlan400", 400, "shared"), None, ())
    steps = vg.plan_delete(spec, have)
    assert names(steps) == ["unregister user", "no other users", "delete port", "forget registry"]
    assert steps[1].kind == "guard"


# ---- DhcpNamespace --------------------------------------------------------------------------------------

D = "/var/lib/cloudrepo/dhcp/vlan120"
DNSMASQ = [
    "dnsmasq", "--conf-file=/dev/null", "--no-hosts", "--no-resolv", "--port=0",
    f"--pid-file={D}/dnsmasq.pid", "--interface=dhcp_v120", "--bind-interfaces", "--except-interface=lo",
    "--dhcp-range=192.168.120.10,192.168.120.250,24h", "--dhcp-option=3,192.168.120.1",
    "--dhcp-option=6,8.8.8.8", f"--dhcp-leasefile={D}/leases", f"--dhcp-hostsfile={D}/hosts",
    "--log-dhcp", f"--log-facility={D}/dnsmasq.log",
]  # fmt: skip
DHCP_MARKS = {"cloudrepo-kind": "dhcp", "cloudrepo-vlan": "120"}


def dhcp_in_place(**over: object) -> dn.DhcpHave:
    base: dict[str, object] = dict(
        owner="demo",
        netns=True,
        port=port("dhcp_v120", 120, "demo", **DHCP_MARKS),
        root_link=None,
        ns_links=(link("lo", True, None), link("dhcp_v120", True, "internal", None, "192.168.120.2/24")),
        pid=4242,
        cmdline=tuple(DNSMASQ),
        hosts="52:54:00:03:ea:01,192.168.120.11,vm1002\n",
        hostsfile="52:54:00:03:ea:01,192.168.120.11,vm1002\n",
        markers=(f"--pid-file={D}/dnsmasq.pid", "--interface=dhcp_v120"),
    )
    base.update(over)
    return dn.DhcpHave(**base)  # type: ignore[arg-type]


def test_dnsmasq_command_line_is_isolated() -> None:
    assert dnsmasq.dnsmasq_args(dhcp()) == DNSMASQ
    assert "--keep-in-foreground" not in DNSMASQ


def test_dhcp_fresh_create() -> None:
    have = dn.DhcpHave(None, False, None, None, markers=dhcp_in_place().markers)
    steps = dn.plan_ensure(dhcp(), have)
    assert names(steps) == [
        "mark owner", "add namespace", "add port", "move port into namespace", "no ipv6", "add address",
        "port up", "lo up", "write reservations", "assemble reservations", "start dnsmasq",
    ]  # fmt: skip
    a = argvs(steps)
    assert a[0][-2:] == [f"{D}/owner", "demo\n"]
    assert a[1] == ["ip", "netns", "add", "ns-dhcp-vlan120"]
    assert a[2][:6] == ["ovs-vsctl", "--may-exist", "add-port", "br-int", "dhcp_v120", "tag=120"]
    assert a[3][-2:] == ["dhcp_v120", "ns-dhcp-vlan120"]
    assert a[4] == list(ipv6.off_step("dhcp_v120", "ns-dhcp-vlan120").argv)
    assert a[5] == ["ip", "-n", "ns-dhcp-vlan120", "addr", "add", "192.168.120.2/24", "dev", "dhcp_v120"]
    assert a[7] == ["ip", "-n", "ns-dhcp-vlan120", "link", "set", "dev", "lo", "up"]
    assert a[8][-2:] == [f"{D}/hosts.d/demo", "52:54:00:03:ea:01,192.168.120.11,vm1002\n"]
    assert a[9][-5:] == [
        D,
        f"{D}/dnsmasq.pid",
        f"--pid-file={D}/dnsmasq.pid",
        "--interface=dhcp_v120",
        "keep",
    ]
    assert a[10][4:] == [
        f"{D}/dnsmasq.pid",
        f"--pid-file={D}/dnsmasq.pid",
        "--interface=dhcp_v120",
        "ns-dhcp-vlan120",
        *DNSMASQ,
    ]  # started in its namespace unless the pid file's server runs (`dnsmasq.start_step`)


def test_dhcp_in_place_no_commands() -> None:
    assert dn.plan_ensure(dhcp(), dhcp_in_place()) == []


def test_changed_reservations_rewrite_the_file_and_sighup_by_pid() -> None:
    spec = dhcp(reservations=[])
    steps = dn.plan_ensure(spec, dhcp_in_place())
    assert names(steps) == ["write reservations", "assemble reservations"]
    hup = steps[1].argv
    assert "kill -HUP" in hup[2] and "pkill" not in hup[2] and "killall" not in hup[2]
    assert list(hup[4:]) == [
        D,
        f"{D}/dnsmasq.pid",
        f"--pid-file={D}/dnsmasq.pid",
        "--interface=dhcp_v120",
        "hup",
    ]


def test_changed_options_restart_by_pid() -> None:
    steps = dn.plan_ensure(dhcp(dnsServers=["9.9.9.9"]), dhcp_in_place())
    assert names(steps) == ["stop dnsmasq", "start dnsmasq"]
    assert "--dhcp-option=6,9.9.9.9" in steps[1].argv
    stop = steps[0].argv[2]
    assert "kill -TERM" in stop and "kill -KILL" in stop and "pkill" not in stop


def test_dead_or_foreign_pid_means_not_alive() -> None:
    assert not dhcp_in_place(pid=None).alive
    # pid reused by another process: its cmdline does not name this VLAN's pid file
    reused = dhcp_in_place(cmdline=("dnsmasq", "--pid-file=/var/lib/cloudrepo/dhcp/vlan121/dnsmasq.pid"))
    assert not reused.alive
    assert names(dn.plan_ensure(dhcp(), reused)) == ["stop dnsmasq", "start dnsmasq"]


def test_deleted_namespace_is_rebuilt_and_dnsmasq_restarted() -> None:
    have = dhcp_in_place(netns=False, ns_links=(), pid=None, cmdline=())
    assert names(dn.plan_ensure(dhcp(), have)) == [
        "add namespace", "remove stale port", "add port", "move port into namespace", "no ipv6",
        "add address", "port up", "lo up", "start dnsmasq",
    ]  # fmt: skip


def test_a_dhcp_port_with_ipv6_on_is_drift_and_the_update_turns_it_off_in_its_namespace() -> None:
    have = dataclasses.replace(dhcp_in_place(), ipv6=True)
    assert argvs(dn.plan_ensure(dhcp(), have)) == [list(ipv6.off_step("dhcp_v120", "ns-dhcp-vlan120").argv)]
    observed, drift = dn.observe(dhcp(), have)
    assert observed["ipv6"] is True
    assert drift == ["IPv6 on"]


def test_dhcp_of_another_slice_or_unmarked_is_refused() -> None:
    with pytest.raises(OwnershipConflict, match="wanted by slice 'demo' but belongs to slice 'other'"):
        dn.plan_ensure(dhcp(), dhcp_in_place(owner="other"))
    with pytest.raises(OwnershipConflict, match="unmarked"):
        dn.plan_ensure(dhcp(), dn.DhcpHave(None, True, None, None))


def test_dhcp_delete_stops_by_pid_then_removes_everything() -> None:
    steps = dn.plan_delete(dhcp(), dhcp_in_place())
    assert names(steps) == ["stop dnsmasq", "delete port", "delete namespace", "remove state"]
    assert argvs(steps)[3] == ["rm", "-rf", "--", D]
    assert dn.plan_delete(dhcp(), dn.DhcpHave(None, False, None, None)) == []
    assert dn.plan_delete(dhcp(), dhcp_in_place(owner="other")) == []


def shared_dhcp(**kw: Any) -> DhcpNamespaceSpec:
    base: dict[str, Any] = {
        "shared": True,
        "slice": "b",
        "vlan": 400,
        "namespace": "ns-dhcp-vlan400",
        "port": "dhcp_v400",
        "address": "10.60.7.2/24",
        "rangeStart": "10.60.7.10",
        "rangeEnd": "10.60.7.250",
        "router": "10.60.7.1",
        "reservations": [
            {"mac": "52:54:00:05:00:00", "hostname": "vm1280-eth0"},
            {"mac": "52:54:00:05:01:00", "hostname": "vm1281-eth0"},
        ],
    }
    return dhcp(**{**base, **kw})


def test_shared_dhcp_hands_out_the_lowest_free_addresses_and_keeps_them() -> None:
    spec = shared_dhcp()
    others = (("a", "52:54:00:03:ea:00", "10.60.7.10"), ("a", "52:54:00:03:eb:00", "10.60.7.12"))
    leases = (("52:54:00:09:09:00", "10.60.7.13"), ("52:54:00:05:01:00", "10.60.7.11"))
    fresh = dn.DhcpHave(None, False, None, None, others=others, leases=leases)
    # .10 and .12 are another slice's, .13 is leased to an unknown MAC; a lease of our own MAC is no obstacle
    assert [r.ip for r in dn.resolve(spec, fresh).reservations] == ["10.60.7.11", "10.60.7.14"]
    # a MAC keeps the address its slice's file gives it, even when a lower one is free
    kept = dn.DhcpHave(None, False, None, None, hosts="52:54:00:05:01:00,10.60.7.200,vm1281-eth0\n")
    assert [r.ip for r in dn.resolve(spec, kept).reservations] == ["10.60.7.10", "10.60.7.200"]
    # ... unless another slice now holds it
    stolen = dn.DhcpHave(None, False, None, None, hosts=kept.hosts, others=(("a", "x", "10.60.7.200"),))
    assert [r.ip for r in dn.resolve(spec, stolen).reservations] == ["10.60.7.10", "10.60.7.11"]
    # a link VLAN's addresses are the plan's
    assert dn.resolve(dhcp(), fresh) == dhcp()


def test_shared_dhcp_writes_after_verifying_the_addresses_under_the_lock() -> None:
    spec = dn.resolve(shared_dhcp(), dn.DhcpHave(None, False, None, None))
    steps = dn.plan_ensure(spec, dn.DhcpHave(None, False, None, None))
    verify = next(s for s in steps if s.name == "verify addresses free")
    assert list(verify.argv[4:]) == [
        "/var/lib/cloudrepo/dhcp/vlan400/hosts.d",
        "b",
        "",  # no bare-name file to adopt: the spec has no uid
        "10.60.7.10",
        "10.60.7.11",
    ]
    assert names(steps).index("verify addresses free") < names(steps).index("write reservations")


def test_shared_dhcp_full_range_and_foreign_mac_are_refused() -> None:
    spec = shared_dhcp(rangeEnd="10.60.7.10")
    with pytest.raises(Conflict, match=r"VLAN 400 has no free address left for vm1281-eth0 \(slice 'b'\)"):
        dn.resolve(spec, dn.DhcpHave(None, False, None, None))
    taken_mac = dn.DhcpHave(None, False, None, None, others=(("a", "52:54:00:05:00:00", "10.60.7.99"),))
    with pytest.raises(Conflict, match=r"MAC 52:54:00:05:00:00 of vm1280-eth0 .* by slice 'a'"):
        dn.plan_ensure(dn.resolve(shared_dhcp(), taken_mac), taken_mac)


def test_shared_dhcp_refuses_other_dns_servers_while_others_use_it() -> None:
    running = dnsmasq.dnsmasq_args(dn.resolve(shared_dhcp(), dn.DhcpHave(None, False, None, None)))
    mine = dn.resolve(shared_dhcp(dnsServers=["1.1.1.1"]), dn.DhcpHave(None, False, None, None))

    def serving(*users: str) -> dn.DhcpHave:
        """The shared server running with `running`'s options, used by `users`."""
        markers = dnsmasq.proc_markers(mine)
        return dn.DhcpHave(
            "shared", True, None, None, pid=42, cmdline=tuple(running), users=users, markers=markers
        )

    used = serving("a")
    assert used.alive
    with pytest.raises(Conflict) as err:
        dn.plan_ensure(mine, used)
    assert str(err.value) == (
        "network: dnsServers 1.1.1.1 of slice 'b' differ from 8.8.8.8, which the shared VLAN 400 DHCP server "
        "gives slice(s) 'a'; the options of VLAN 400's DHCP are one setting of the network node: give every "
        "slice the same dnsServers; nothing changed"
    )
    alone = serving("b")
    assert "start dnsmasq" in names(dn.plan_ensure(mine, alone))  # its only user may change them


def test_link_dhcp_drops_leases_another_mac_holds_on_a_reserved_address() -> None:
    spec = dhcp()
    stale = dhcp_in_place()
    stale = dn.DhcpHave(**{**stale.__dict__, "leases": (("52:54:00:99:99:01", "192.168.120.11"),)})
    steps = dn.plan_ensure(spec, stale)
    assert names(steps) == ["stop dnsmasq", "drop stale leases", "start dnsmasq"]
    assert list(steps[1].argv[4:]) == ["/var/lib/cloudrepo/dhcp/vlan120/leases", "52:54:00:99:99:01"]
    ok = dn.DhcpHave(**{**stale.__dict__, "leases": (("52:54:00:03:ea:01", "192.168.120.11"),)})
    assert dn.plan_ensure(spec, ok) == []


def test_shared_dhcp_delete_drops_own_reservations_then_guards() -> None:
    spec = shared_dhcp(slice="demo", vlan=120, namespace="ns-dhcp-vlan120", port="dhcp_v120")
    steps = dn.plan_delete(spec, dhcp_in_place(owner="shared"))
    assert names(steps) == [
        "unregister user", "remove reservations", "assemble reservations", "no other users",
        "stop dnsmasq", "delete port", "delete namespace", "remove state", "forget registry",
    ]  # fmt: skip


# ---- NatRule --------------------------------------------------------------------------------------------

C = ["-m", "comment", "--comment", "cloudrepo:nat-10.60.7.0-24-ens3"]


def test_nat_rules_are_commented_and_checked_first() -> None:
    assert [(r.table, r.chain, list(r.spec)) for r in nr.rules(nat())] == [
        ("nat", "POSTROUTING", ["-s", "10.60.7.0/24", "-o", "ens3", *C, "-j", "MASQUERADE"]),
        ("filter", "FORWARD", ["-i", "gw_vlan400", "-o", "ens3", *C, "-j", "ACCEPT"]),
        ("filter", "FORWARD", ["-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", *C, "-j", "ACCEPT"]),
    ]
    steps = nr.plan_ensure(nat(), nr.NatHave(frozenset(), "0", ()))
    assert names(steps) == [
        "register user",
        "add masquerade",
        "add forward out",
        "add forward replies",
        "enable forwarding",
    ]
    # appended when missing (what the body does is run in test_prov_shell_bodies and on the testbed)
    rules = nr.rules(nat())
    assert steps[1:4] == [bodies.add_rule(f"add {r.name}", r.table, r.chain, r.spec) for r in rules]


def test_nat_in_place_no_commands_and_partial_repair() -> None:
    full = frozenset({"masquerade", "forward out", "forward replies"})
    assert nr.plan_ensure(nat(), nr.NatHave(full, "1", ("demo",))) == []
    assert names(nr.plan_ensure(nat(), nr.NatHave(full - {"masquerade"}, "1", ("demo",)))) == [
        "add masquerade"
    ]


def test_nat_delete_is_guarded_and_restores_forwarding() -> None:
    steps = nr.plan_delete(nat())
    assert names(steps) == [
        "unregister user", "no other users", "delete masquerade", "delete forward out",
        "delete forward replies", "restore forwarding", "forget registry",
    ]  # fmt: skip
    assert steps[1].kind == "guard"


# ---- PoolClaim ------------------------------------------------------------------------------------------


def claim(slice_name: str, start: int, end: int, *parking: int) -> pc.Claim:
    return pc.Claim(slice_name, start, end, f"{slice_name}@{start}", parking=parking)


def test_pool_claim_plan() -> None:
    steps = pc.plan_ensure(pool(), pc.PoolHave(()))
    assert names(steps) == [pc.VERIFY, "write claim"]
    assert argvs(steps)[1][-2:] == ["/var/lib/cloudrepo/pools/demo@120", "120 139\n"]
    assert pc.plan_ensure(pool(), pc.PoolHave((claim("demo", 120, 139),))) == []
    # the same slice's other claim (its pool moving) is no clash
    assert names(pc.plan_ensure(pool(), pc.PoolHave((claim("demo", 130, 149),)))) == [
        pc.VERIFY,
        "write claim",
    ]


def test_pool_clash_names_both_slices_and_ranges() -> None:
    with pytest.raises(Conflict) as err:
        pc.plan_ensure(pool(), pc.PoolHave((claim("other", 130, 149),)))
    assert str(err.value) == (
        "network: VLANs 120-139 of slice 'demo' meet slice 'other' (claims 130-149: the same VLAN as its "
        "VLAN 130, subnet 192.168.130.0/24); choose another vlanPool.start; pool starts still free on this "
        "node: 1-110, 150-366, 406-622, 662-878, 918-980; nothing changed"
    )
    # 376..395 is 120..139 modulo 256: the same link subnets
    with pytest.raises(
        Conflict, match=r"claims 376-395: the same subnet as its VLAN 376, subnet 192.168.120"
    ):
        pc.plan_ensure(pool(), pc.PoolHave((claim("other", 376, 395),)))
    # the next range is free: the claim is written (and verified again under the lock)
    steps = pc.plan_ensure(pool(), pc.PoolHave((claim("other", 140, 159),)))
    assert names(steps) == [pc.VERIFY, "write claim"]


@given(st.integers(1, 4075), st.integers(1, 4075))
def test_pools_meet_exactly_when_they_share_a_subnet(a: int, b: int) -> None:
    subnets = {v % 256 for v in range(a, a + 20)} & {w % 256 for w in range(b, b + 20)}
    assert (pc.meet(a, a + 19, b, b + 19) is not None) == bool(subnets)


def test_the_parking_vlan_is_claimed_with_the_pool() -> None:
    spec = pool(parkingVlan=4094)
    steps = pc.plan_ensure(spec, pc.PoolHave(()))
    assert argvs(steps)[0][-7:] == ["/var/lib/cloudrepo/pools", "demo", "120", "139", "", "", "4094"]
    assert argvs(steps)[1][-2:] == ["/var/lib/cloudrepo/pools/demo@120", "120 139\nparking 4094\n"]
    assert pc.plan_ensure(spec, pc.PoolHave((claim("demo", 120, 139, 4094),))) == []
    # a claim written before parking VLANs were claimed is written again, with it
    assert names(pc.plan_ensure(spec, pc.PoolHave((claim("demo", 120, 139),)))) == [pc.VERIFY, "write claim"]
    assert pc.observe(spec, pc.PoolHave((claim("demo", 120, 139),)))[1] == [
        "claim records parking VLANs [], want [4094]"
    ]
    # slices may share a parking VLAN: parked ports pass nothing
    assert names(pc.plan_ensure(spec, pc.PoolHave((claim("other", 200, 219, 4094),)))) == [
        pc.VERIFY,
        "write claim",
    ]


def test_a_parking_vlan_in_another_slices_pool_is_refused_both_ways() -> None:
    with pytest.raises(Conflict) as err:
        pc.plan_ensure(pool(parkingVlan=205), pc.PoolHave((claim("other", 200, 219, 4094),)))
    assert str(err.value) == (
        "network: parking VLAN 205 of slice 'demo' is in the pool of slice 'other' (claims 200-219): its "
        "parked TAPs would sit on that slice's VLAN; choose another parkingVlan; nothing changed"
    )
    with pytest.raises(Conflict) as err:
        pc.plan_ensure(pool(parkingVlan=4094), pc.PoolHave((claim("other", 200, 219, 125),)))
    assert str(err.value) == (
        "network: VLANs 120-139 of slice 'demo' hold VLAN 125, the parking VLAN of slice 'other' "
        "(claims 200-219); choose another vlanPool.start; pool starts still free on this node: 1-105, "
        "126-180, 220-380, 401-436, 476-692, 732-948; nothing changed"
    )
    # only the VLAN itself counts: a parked port has no subnet (4094 % 256 == 254)
    assert (
        pc.clash(pool(start=254, end=273, parkingVlan=100), pc.PoolHave((claim("other", 300, 319, 4094),)))
        is None
    )
    assert pc.clash(pool(parkingVlan=4094), pc.PoolHave((claim("other", 254, 273, 100),))) is None


def test_an_update_that_moves_the_parking_vlan_keeps_the_old_one_claimed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    written: list[str] = []

    def run_script(_host: object, steps: list[Any], **_: object) -> ScriptResult:
        if steps and steps[0].name == "claims":
            return ScriptResult([StepResult("claims", 0, "demo@120 120 139\ndemo@120 parking 4094\n")])
        written.extend(s.argv[-1] for s in steps if s.name == "write claim")
        return ScriptResult()

    monkeypatch.setattr(ssh, "run_script", run_script)
    olds = {**pool(parkingVlan=4094).inputs(), "drift": [], "observed": {}}
    out = HostProvider(pc.KIND.name).update("id", olds, pool(parkingVlan=4000).inputs())
    assert written == ["120 139\nparking 4000\nparking 4094\n"]  # its TAPs leave 4094 later in the up
    assert out.outs is not None and out.outs["observed"]["parkingVlan"] == [4000, 4094]
    # the next write (refresh reports the extra one as drift) forgets it
    claimed = pc.PoolHave((claim("demo", 120, 139, 4000, 4094),))
    assert pc.observe(pool(parkingVlan=4000), claimed)[1] == [
        "claim records parking VLANs [4000, 4094], want [4000]"
    ]
    assert argvs(pc.plan_ensure(pool(parkingVlan=4000), claimed))[1][-1] == "120 139\nparking 4000\n"


def test_pool_claims_parse_and_delete() -> None:
    assert pc.parse_claims("a@120 120 139\nb 140 159\njunk\na@120 parking 4094\na@120 parking 7\n") == (
        pc.Claim("a", 120, 139, "a@120", parking=(7, 4094)),
        pc.Claim("b", 140, 159, "b"),  # an older claim file: "<slice>", and no parking VLAN
    )
    assert argvs(pc.plan_delete(pool(), pc.PoolHave((claim("demo", 120, 139),))))[0][-2:] == [
        "/var/lib/cloudrepo/pools/demo@120",
        "",  # removed only when it holds no uid, checked again under the lock
    ]
    assert pc.plan_delete(pool(), pc.PoolHave((claim("demo", 140, 159),))) == []

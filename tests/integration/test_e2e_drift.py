"""Scenario 7: drift. A deployed slice is damaged by hand over SSH (a TAP deleted, a dnsmasq killed by the
pid in its pid file, a gateway address removed, a DHCP namespace deleted, the NAT rule deleted, IPv6 turned
on on a TAP and on a gateway);
`pulumi refresh` reports each one in the resources' `drift` outputs, `pulumi up` repairs them all, the
guests work again and the hosts' scan equals the one taken right after the first `up`."""

from __future__ import annotations

import re
from collections.abc import Callable

from lab.slicecheck import check_slice, guest_exec, stop_guests
from tests.integration.e2ekit import assert_slice_ok, drift_by_name, duplicates, wall_time
from tests.integration.slicekit import SliceStack
from tests.labfixtures import Testbed, assert_scan_equal, scan

SLICE = "e2e-drift"
VMS = [
    {"id": 7301, "worker": "worker1", "dataInterfaces": 2, "internet": True},
    {"id": 7302, "worker": "worker2", "dataInterfaces": 2},
]
LINKS = [["7301.eth1", "7302.eth1"], ["7301.eth2", "7302.eth2"]]
NAT_COMMENT = "cloudrepo:nat-10.60.7.0-24"
MADE = {
    "worker1": ["tap_7301_eth0", "tap_7301_eth1", "tap_7301_eth2"],
    "worker2": ["tap_7302_eth1", "tap_7302_eth2"],
    "network": ["gw_vlan300", "gw_vlan301", "gw_vlan400"],
}
"""The interfaces the slice makes in the hosts' own namespaces (its DHCP ports are in their own)."""
DHCP_PORTS = {"ns-dhcp-vlan300": "dhcp_v300", "ns-dhcp-vlan301": "dhcp_v301", "ns-dhcp-vlan400": "dhcp_v400"}


def ipv6_off(testbed: Testbed, host: str, dev: str, namespace: str = "") -> bool:
    """IPv6 is off on the device (`disable_ipv6` is 1) and it has no IPv6 address."""
    there = f"ip netns exec {namespace} " if namespace else ""
    switch = testbed.run(host, f"{there}cat /proc/sys/net/ipv6/conf/{dev}/disable_ipv6")[1].strip()
    addrs = testbed.run(host, f"{there}ip -6 -o addr show dev {dev}")[1].strip()
    return switch == "1" and addrs == ""


def link_local(vm: str, iface: str) -> str:
    """The guest's IPv6 link-local address on `iface` ("" when it has none)."""
    words = guest_exec(vm, "ip", "-6", "-o", "addr", "show", "dev", iface, "scope", "link").stdout.split()
    return words[3].split("/")[0] if len(words) > 3 else ""


def answering_all_nodes(vm: str, iface: str) -> set[str]:
    """The link-local addresses that answer the guest's ping to every IPv6 node on its link (ff02::1)."""
    ping = guest_exec(vm, "ping", "-6", "-c", "3", "-i", "0.5", "-w", "5", f"ff02::1%{iface}", timeout=30)
    return set(re.findall(r"from (fe80::[0-9a-f:]+)", ping.stdout))


def all_ipv6_off(testbed: Testbed) -> dict[str, bool]:
    made = {f"{h}/{d}": ipv6_off(testbed, h, d) for h, devs in MADE.items() for d in devs}
    return made | {f"network/{ns}/{d}": ipv6_off(testbed, "network", d, ns) for ns, d in DHCP_PORTS.items()}


def test_drift_is_reported_and_repaired(slice_stack: Callable[..., SliceStack], testbed: Testbed) -> None:
    with wall_time("7 drift"):
        run_drift(slice_stack, testbed)


def run_drift(slice_stack: Callable[..., SliceStack], testbed: Testbed) -> None:
    stack = slice_stack(SLICE, 300, VMS, LINKS)
    stack.up()
    outputs = stack.outputs()
    assert [link["vlan"] for link in outputs["links"]] == [300, 301]
    baseline = scan()
    assert drift_by_name(stack) == {}
    # IPv4 only: no interface the slice made on a host has IPv6 (a guest cannot reach its host over fe80::)
    assert all(all_ipv6_off(testbed).values()), all_ipv6_off(testbed)

    # the damage, by hand on the hosts
    testbed.run("worker2", "ip link delete tap_7302_eth1")
    testbed.run("network", "kill $(cat /var/lib/cloudrepo/dhcp/vlan300/dnsmasq.pid)")
    testbed.run("network", "ip addr del 192.168.45.1/24 dev gw_vlan301")
    testbed.run("network", "ip netns delete ns-dhcp-vlan301")
    masq = [
        line
        for line in testbed.run("network", "iptables -w -t nat -S POSTROUTING")[1].splitlines()
        if NAT_COMMENT in line and "MASQUERADE" in line
    ]
    assert len(masq) == 1, masq
    testbed.run("network", "iptables -w -t nat " + masq[0].replace("-A ", "-D ", 1))
    testbed.run("worker1", "echo 0 > /proc/sys/net/ipv6/conf/tap_7301_eth2/disable_ipv6")
    testbed.run("network", "echo 0 > /proc/sys/net/ipv6/conf/gw_vlan300/disable_ipv6")
    damaged = scan()
    assert damaged != baseline

    # refresh finds every one of them
    refresh_out = stack.refresh()
    drift = drift_by_name(stack)
    print("drift after refresh:", drift)
    expected = {
        f"{SLICE}-tap-7302-eth1": "TAP device missing",
        f"{SLICE}-dhcp-vlan300": "dnsmasq not running",
        f"{SLICE}-gw-vlan301": "address 192.168.45.1/24 missing",
        f"{SLICE}-dhcp-vlan301": "namespace missing",
        f"{SLICE}-nat": "rule masquerade missing",
        f"{SLICE}-tap-7301-eth2": "IPv6 on",
        f"{SLICE}-gw-vlan300": "IPv6 on",
    }
    for name, problem in expected.items():
        assert any(problem in d for d in drift.get(name, [])), f"{name}: {problem!r} not in {drift.get(name)}"
        assert name in refresh_out, f"`pulumi refresh` does not mention {name}:\n{refresh_out}"
    assert set(drift) == set(expected), f"unexpected drift: {drift}"

    # up repairs everything; a second up has nothing left to do
    stack.up()
    assert drift_by_name(stack) == {}
    assert all(all_ipv6_off(testbed).values()), all_ipv6_off(testbed)
    repaired = scan()
    assert not duplicates(repaired), duplicates(repaired)
    assert_scan_equal(baseline, repaired)
    again = stack.cli.run("preview", "--non-interactive", "--expect-no-changes", check=False)
    assert again.returncode == 0, again.stdout + again.stderr

    # and the guests work again
    try:
        assert_slice_ok(check_slice(outputs, testbed.inventory))
        # over IPv6 a guest finds its peer on the link (on the other worker) and no host: neither worker's
        # TAPs nor the network node's gateway and DHCP port answer
        own, peer = link_local("7301", "eth1"), link_local("7302", "eth1")
        answers = answering_all_nodes("7301", "eth1")
        print("ff02::1 on 7301.eth1 answered by", sorted(answers), "own", own, "peer", peer)
        assert peer and peer in answers and answers <= {own, peer}, (answers, own, peer)
    finally:
        stop_guests(outputs["vms"])
    assert_scan_equal(baseline, scan())

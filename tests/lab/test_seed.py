"""The seed's own commands, typed over SSH into the testbed's hosts, give a working tenant network."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.labfixtures import Testbed, assert_scan_equal, lab_cli

pytestmark = pytest.mark.integration

TESTDIR = "/var/lib/cloudrepo/labtest"  # on the network node: its own state root


def seed_tap(tap: str, vlan: int) -> str:
    return "\n".join(
        [
            "set -e",
            f"sudo ip tuntap add mode tap name {tap}",
            f"sudo ip link set dev {tap} up",
            f"sudo ovs-vsctl --may-exist add-port br-int {tap} tag={vlan}",
        ]
    )


def seed_gateway_dhcp(vlan: int, net: str) -> str:
    """The seed's gateway port + DHCP namespace for one VLAN. dnsmasq also gets a pid file, lease file
    and log under the host's state root (so the test can stop it by pid), and no system config."""
    ns, port, gw = f"ns-dhcp-vlan{vlan}", f"dhcp_v{vlan}", f"gw_vlan{vlan}"
    return "\n".join(
        [
            "set -e",
            f"sudo mkdir -p {TESTDIR}",
            f"sudo ovs-vsctl --may-exist add-port br-int {gw} tag={vlan} -- set interface {gw} type=internal",
            f"sudo ip addr add {net}.1/24 dev {gw}",
            f"sudo ip link set dev {gw} up",
            f"sudo ip netns add {ns}",
            f"sudo ovs-vsctl --may-exist add-port br-int {port} tag={vlan}"
            f" -- set interface {port} type=internal",
            f"sudo ip link set {port} netns {ns}",
            f"sudo ip netns exec {ns} ip addr add {net}.2/24 dev {port}",
            f"sudo ip netns exec {ns} ip link set dev {port} up",
            f"sudo ip netns exec {ns} dnsmasq --conf-file=/dev/null"
            f" --pid-file={TESTDIR}/dnsmasq_vlan{vlan}.pid"
            f" --dhcp-leasefile={TESTDIR}/dnsmasq_vlan{vlan}.leases"
            f" --interface={port} --bind-interfaces"
            f" --dhcp-range={net}.10,{net}.250,24h"
            f" --dhcp-option=3,{net}.1 --dhcp-option=6,8.8.8.8"
            f" --log-dhcp --log-facility={TESTDIR}/dnsmasq_vlan{vlan}.log",
        ]
    )


SEED_NAT = "\n".join(
    [
        "set -e",
        "sudo sysctl -w net.ipv4.ip_forward=1",
        "sudo iptables -t nat -A POSTROUTING -s 10.60.7.0/24 -o ens3 -j MASQUERADE",
        "sudo iptables -A FORWARD -i gw_vlan400 -o ens3 -j ACCEPT",
        "sudo iptables -A FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
    ]
)

UNDO_NAT = "\n".join(
    [
        "sudo iptables -t nat -D POSTROUTING -s 10.60.7.0/24 -o ens3 -j MASQUERADE",
        "sudo iptables -D FORWARD -i gw_vlan400 -o ens3 -j ACCEPT",
        "sudo iptables -D FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "sudo sysctl -w net.ipv4.ip_forward=0",
    ]
)


def undo_gateway_dhcp(vlan: int) -> str:
    pidfile = f"{TESTDIR}/dnsmasq_vlan{vlan}.pid"
    return "\n".join(
        [
            f"if [ -s {pidfile} ]; then pid=$(cat {pidfile}); sudo kill $pid;"
            " for i in $(seq 50); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done; fi",
            f"sudo ip netns del ns-dhcp-vlan{vlan}",
            f"sudo ovs-vsctl --if-exists del-port br-int gw_vlan{vlan}"
            f" -- --if-exists del-port br-int dhcp_v{vlan}",
        ]
    )


def undo_tap(tap: str) -> str:
    return f"sudo ovs-vsctl --if-exists del-port br-int {tap}; sudo ip link del {tap}"


class Undo:
    """Cleanup steps registered as things are made; run in reverse order, each even if others fail."""

    def __init__(self, testbed: Testbed) -> None:
        self.testbed = testbed
        self.steps: list[tuple[str, str]] = []

    def add(self, host: str, command: str) -> None:
        self.steps.append((host, command))

    def run(self) -> None:
        for host, command in reversed(self.steps):
            self.testbed.run(host, command, check=False)
        self.testbed.run("network", f"sudo rm -rf {TESTDIR}", check=False)


@pytest.fixture
def undo(testbed: Testbed) -> Iterator[Undo]:
    u = Undo(testbed)
    yield u
    u.run()


LINK_VLAN = 3777  # a VLAN (subnet 192.168.193.0/24) no slice of the demo uses
LINK_NET = f"192.168.{LINK_VLAN % 256}"
TAP_A, TAP_B, TAP_NAT = "tap_7771_eth1", "tap_7772_eth1", "tap_7773_eth0"


def require_free(testbed: Testbed, host: str, names: list[str], namespaces: list[str]) -> None:
    """Fail when an object the test would make already exists: the test run owns its testbed."""
    data = testbed.scan(host)["hosts"][host]
    taken = [n for n in names if n in data["links"] or n in data["ovs"]["br-int"]["ports"]]
    taken += [ns for ns in namespaces if ns in data["namespaces"]]
    if taken:
        pytest.fail(f"{host} already has {', '.join(taken)}: left by an earlier test?")


def test_seed_link_vlan_two_workers_dhcp_and_ping(testbed: Testbed, guest, undo: Undo) -> None:
    w1, w2 = testbed.workers[0], testbed.workers[-1]
    vlan, net = LINK_VLAN, LINK_NET
    require_free(testbed, w1, [TAP_A], [])
    require_free(testbed, w2, [TAP_B], [])
    require_free(testbed, "network", [f"gw_vlan{vlan}", f"dhcp_v{vlan}"], [f"ns-dhcp-vlan{vlan}"])
    mine = [TAP_A, TAP_B, f"gw_vlan{vlan}", f"dhcp_v{vlan}", f"ns-dhcp-vlan{vlan}", f"{net}."]
    baseline = testbed.scan()
    undo.add(w1, undo_tap(TAP_A))
    testbed.run(w1, seed_tap(TAP_A, vlan))
    undo.add(w2, undo_tap(TAP_B))
    testbed.run(w2, seed_tap(TAP_B, vlan))
    undo.add("network", undo_gateway_dhcp(vlan))
    testbed.run("network", seed_gateway_dhcp(vlan, net))

    now = testbed.scan()
    assert now["hosts"][w1]["ovs"]["br-int"]["ports"][TAP_A]["tag"] == vlan
    assert TAP_B in now["hosts"][w2]["taps"]
    netnode = now["hosts"]["network"]
    dhcp_ns = f"ns-dhcp-vlan{vlan}"
    assert netnode["namespaces"][dhcp_ns]["addresses"][f"dhcp_v{vlan}"] == [f"{net}.2/24"]
    assert dhcp_ns in [d["namespace"] for d in netnode["dnsmasq"]]
    assert netnode["addresses"][f"gw_vlan{vlan}"] == [f"{net}.1/24"]

    g1 = guest("t7771", host=w1, tap=TAP_A, iface="eth1", mac="52:54:00:77:71:01")
    g2 = guest("t7772", host=w2, tap=TAP_B, iface="eth1", mac="52:54:00:77:72:01")
    ip1 = g1.dhcp("eth1")
    ip2 = g2.dhcp("eth1")
    assert ip1.startswith(f"{net}.") and ip2.startswith(f"{net}.") and ip1 != ip2
    g1.exec("ping", "-c", "2", "-W", "2", ip2)
    g2.exec("ping", "-c", "2", "-W", "2", ip1)
    g1.exec("ping", "-c", "1", "-W", "2", f"{net}.1")
    # dnsmasq handed the leases to the guests' MACs.
    _, leases, _ = testbed.run("network", f"cat {TESTDIR}/dnsmasq_vlan{vlan}.leases")
    assert "52:54:00:77:71:01" in leases and "52:54:00:77:72:01" in leases

    for name in (g1.name, g2.name):
        lab_cli("vm", "stop", name)
    undo.run()
    undo.steps.clear()
    assert_scan_equal(baseline, testbed.scan(), only=mine)


def test_seed_vlan400_nat_to_internet(testbed: Testbed, guest, undo: Undo) -> None:
    w1 = testbed.workers[0]
    internet = testbed.internet
    require_free(testbed, w1, [TAP_NAT], [])
    require_free(testbed, "network", ["gw_vlan400", "dhcp_v400"], ["ns-dhcp-vlan400"])
    baseline = testbed.scan()
    network = baseline["hosts"]["network"]
    if any("10.60.7.0/24" in rule for rule in network["iptables"]["nat"]) or network["ip_forward"]:
        pytest.fail("the network node already NATs VLAN 400 or forwards: left by an earlier test?")
    mine = [TAP_NAT, "gw_vlan400", "dhcp_v400", "ns-dhcp-vlan400", "10.60.7.", "ip_forward", "ens3"]
    undo.add(w1, undo_tap(TAP_NAT))
    testbed.run(w1, seed_tap(TAP_NAT, 400))
    undo.add("network", undo_gateway_dhcp(400))
    testbed.run("network", seed_gateway_dhcp(400, "10.60.7"))
    undo.add("network", UNDO_NAT)
    testbed.run("network", SEED_NAT)

    g = guest("t7773", host=w1, tap=TAP_NAT, iface="eth0", mac="52:54:00:77:73:00")
    ip = g.dhcp("eth0")
    assert ip.startswith("10.60.7.")
    marker = f"/lab-test-{time.time_ns()}"
    body = g.exec("curl", "-sS", "--max-time", "10", internet["url"].rstrip("/") + marker).stdout
    assert body == internet["body"]
    seen = g.exec("curl", "-sS", "--max-time", "10", internet["whoamiUrl"]).stdout.strip()
    assert seen == internet["networkNodeUplinkAddress"]
    log = Path(internet["requestLog"]).read_text().splitlines()
    hits = [line.split() for line in log if line.endswith(marker)]
    assert hits and hits[-1][1] == internet["networkNodeUplinkAddress"]

    lab_cli("vm", "stop", g.name)
    undo.run()
    undo.steps.clear()
    assert_scan_equal(baseline, testbed.scan(), only=mine)

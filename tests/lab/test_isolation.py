"""Each simulated host is its own machine: namespaces, OVS and state root private to it; the root
namespace has no route into the lab; scans are deterministic."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import time

import pytest

from lab.common import host_ns, settings
from lab.testbed import read_inventory
from tests.labfixtures import Testbed, assert_scan_equal, scan

pytestmark = pytest.mark.integration

LAB_NETS = [ipaddress.ip_network(n) for n in ("198.18.0.0/15", "10.60.7.0/24", "192.168.0.0/16")]


def test_scan_is_deterministic_and_per_host(testbed: Testbed) -> None:
    # Other test sessions may share the testbed: a volatile field differs in every pair of scans,
    # a concurrent change only in one.
    first = scan()
    for _ in range(10):
        second = scan()
        if second == first:
            break
        first = second
        time.sleep(0.5)
    assert_scan_equal(first, second)
    inventory = read_inventory()  # now: a test may have added a worker since this session's first use
    assert inventory is not None and sorted(first["hosts"]) == sorted(inventory["hosts"])
    one = scan("worker1")
    assert list(one["hosts"]) == ["worker1"]
    assert one["hosts"]["worker1"] == first["hosts"]["worker1"]


def test_every_host_has_netdev_br_int_with_trunk_and_forwarding_off(testbed: Testbed) -> None:
    doc = scan()
    for host, data in doc["hosts"].items():
        br = data["ovs"]["br-int"]
        assert br["datapath_type"] == "netdev", host
        trunk = br["ports"]["ens4"]
        assert trunk["tag"] is None and trunk["trunks"] == [], host
        # Forwarding is off at start; only a deployed internet VLAN (NAT on the network node) turns it on.
        if "gw_vlan400" not in br["ports"]:
            assert data["ip_forward"] is False, host
    assert doc["hosts"]["network"]["addresses"]["ens3"] == [
        f"{testbed.internet['networkNodeUplinkAddress']}/24"
    ]


def test_host_namespaces_are_private(testbed: Testbed) -> None:
    _, listed, _ = testbed.run("network", "ip netns list")
    assert not [line for line in listed.splitlines() if settings().owns_ns(line)]
    # the root's worker1 namespace is not reachable from a host: `ip` finds no such namespace there
    reached = testbed.run("network", f"sudo ip netns exec {host_ns('worker1')} true", check=False)
    assert reached == (
        255,
        "",
        f'Cannot open network namespace "{host_ns("worker1")}": No such file or directory\n',
    ), reached
    try:
        testbed.run("network", "sudo ip netns add ns-iso-test && sudo ip netns exec ns-iso-test ip -br link")
        _, listed, _ = testbed.run("network", "ip netns list")
        assert "ns-iso-test" in listed
        assert "ns-iso-test" not in os.listdir("/run/netns")
        _, other, _ = testbed.run("worker1", "ip netns list")
        assert "ns-iso-test" not in other
        assert "ns-iso-test" in scan("network")["hosts"]["network"]["namespaces"]
    finally:
        testbed.run("network", "sudo ip netns del ns-iso-test", check=False)


def test_each_host_has_its_own_ovs_and_state_root(testbed: Testbed) -> None:
    get_uuid = "sudo ovs-vsctl get Open_vSwitch . _uuid"
    uuids = {h: testbed.run(h, get_uuid)[1].strip() for h in ("network", "worker1")}
    assert uuids["network"] != uuids["worker1"]
    try:
        testbed.run("worker1", "sudo sh -c 'echo worker1 > /var/lib/cloudrepo/isolation-test'")
        seen = testbed.run("worker2", "test -e /var/lib/cloudrepo/isolation-test", check=False)
        assert seen == (1, "", ""), seen  # `test -e`: the file does not exist on worker2
        state = testbed.inventory["hosts"]["worker1"]["stateDir"]
        with open(os.path.join(state, "isolation-test")) as fh:
            assert fh.read() == "worker1\n"
    finally:
        testbed.run("worker1", "sudo rm -f /var/lib/cloudrepo/isolation-test", check=False)


def test_root_namespace_has_no_lab_address_or_route(testbed: Testbed) -> None:
    addrs = json.loads(subprocess.check_output(["ip", "-j", "addr"], text=True))
    for link in addrs:
        for a in link.get("addr_info", []):
            ip = ipaddress.ip_address(a["local"])
            assert not any(ip in net for net in LAB_NETS if net.version == ip.version), (link["ifname"], ip)
    show = ["ip", "-j", "-4", "route", "show", "table", "all"]
    routes = json.loads(subprocess.check_output(show, text=True))
    for r in routes:
        dst = r.get("dst", "")
        if dst in ("default", "") or not dst[0].isdigit():
            continue
        net = ipaddress.ip_network(dst if "/" in dst else dst + "/32", strict=False)
        assert not any(net.overlaps(n) for n in LAB_NETS), r


def test_ssh_rejects_unknown_host_key(testbed: Testbed, tmp_path) -> None:
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    with pytest.raises(paramiko.SSHException):
        client.connect(
            "127.0.0.1",
            port=testbed.port("worker1"),
            username="root",
            key_filename=testbed.inventory["privateKeyPath"],
            look_for_keys=False,
            allow_agent=False,
            timeout=10,
        )
    client.close()

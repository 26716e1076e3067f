"""`vm` commands: clear errors, bounded DHCP, several interfaces, exit codes, clean stop."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from lab.common import settings
from lab.guest import host_end
from tests.labfixtures import Testbed, assert_scan_equal, lab_cli

pytestmark = pytest.mark.integration


@pytest.fixture
def taps(testbed: Testbed):
    made: list[str] = []

    def make(name: str, vlan: int, host: str = "worker1") -> str:
        made.append(name)
        testbed.run(
            host,
            f"sudo ip tuntap add mode tap name {name} && sudo ip link set {name} up && "
            f"sudo ovs-vsctl --may-exist add-port br-int {name} tag={vlan}",
        )
        return name

    yield make
    for name in made:
        testbed.run(
            "worker1",
            f"sudo ovs-vsctl --if-exists del-port br-int {name}; sudo ip link del {name}",
            check=False,
        )


def test_start_without_tap_is_a_clear_error(testbed: Testbed) -> None:
    proc = lab_cli("vm", "start", "notap", "--host", "worker1", "--tap", "tap_404_eth1", check=False)
    assert (proc.returncode, proc.stderr) == (
        2,
        "lab: error: worker1 has no interface 'tap_404_eth1': create the TAP first (ip tuntap add ...)\n",
    )
    assert settings().guest_ns("notap") not in subprocess.check_output(["ip", "netns", "list"], text=True)


def test_dhcp_times_out_with_a_message(testbed: Testbed, guest, taps) -> None:
    taps("tap_77_eth1", 131)  # a VLAN nobody serves
    g = guest("nodhcp", host="worker1", tap="tap_77_eth1")
    t0 = time.monotonic()
    proc = lab_cli("vm", "dhcp", g.name, "--timeout", "3", check=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("lab: error: nodhcp/eth1: no DHCP lease within 3s"), proc.stderr
    assert time.monotonic() - t0 < 20


def test_several_interfaces_macs_exit_code_and_stop(testbed: Testbed, guest, taps) -> None:
    baseline = testbed.scan()
    taps("tap_78_eth1", 132)
    taps("tap_78_eth2", 133)
    g = guest("multi", host="worker1", tap="tap_78_eth1", iface="eth1", mac="52:54:00:aa:00:01")
    g.add_iface("worker1", "tap_78_eth2", "eth2", "52:54:00:aa:00:02")
    links = {e["ifname"]: e for e in json.loads(g.exec("ip", "-j", "link").stdout)}
    assert links["eth1"]["address"] == "52:54:00:aa:00:01"
    assert links["eth2"]["address"] == "52:54:00:aa:00:02"
    offload = g.exec("ethtool", "-k", "eth1").stdout
    assert "tx-checksumming: off" in offload
    assert g.exec("sh", "-c", "exit 7", check=False).returncode == 7
    lab_cli("vm", "stop", g.name)
    assert settings().guest_ns("multi") not in subprocess.check_output(["ip", "netns", "list"], text=True)
    worker_links = testbed.scan("worker1")["hosts"]["worker1"]["links"]
    ends = [host_end("multi", "eth1"), host_end("multi", "eth2")]
    assert not [n for n in worker_links if n in ends], "veth host ends left in the worker"
    testbed.run(
        "worker1",
        "for t in tap_78_eth1 tap_78_eth2; do sudo ovs-vsctl del-port br-int $t; sudo ip link del $t; done",
    )
    assert_scan_equal(baseline, testbed.scan(), only=["tap_78_", *ends])

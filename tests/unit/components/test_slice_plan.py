"""The pure plan: MACs, link subnets and reservations, one entry per VLAN, QEMU arguments, Mermaid."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.allocation import allocate_vlans
from components.config import load_config
from components.outputs import qemu_net_args, stack_outputs, topology_output
from components.plan import build_plan, mac_address, vlan_subnet
from tests.cfgkit import ROOT, guest_project, raw_from_file


def test_mac_is_the_originals_and_unique() -> None:
    assert mac_address(1002, 1) == "52:54:00:03:ea:01"
    assert mac_address(65535, 255) == "52:54:00:ff:ff:ff"
    macs = {mac_address(v, i) for v in (1, 255, 256, 1002, 65535) for i in range(4)}
    assert len(macs) == 20
    for bad in ((0, 0), (65536, 0), (1, 256), (1, -1)):
        with pytest.raises(ValueError, match="MAC needs"):
            mac_address(*bad)


def test_vlan_subnet_is_the_seeds() -> None:
    assert str(vlan_subnet(120)) == "192.168.120.0/24"
    assert str(vlan_subnet(376)) == "192.168.120.0/24"  # why pools are claimed per node (see design.md)
    assert str(vlan_subnet(400)) == "10.60.7.0/24"


def test_dev_plan_interfaces(tmp_path: Path) -> None:
    cfg = load_config(raw_from_file(ROOT / "Pulumi.dev.yaml"), "dev", guest_project(tmp_path))
    plan = build_plan(cfg, allocate_vlans(cfg.links, cfg.pool))
    rows = {(i.vm, i.iface): (i.tap, i.vlan, i.parked, i.ip, i.gateway) for i in plan.interfaces}
    assert rows == {
        (1002, "eth0"): ("tap_1002_eth0", 400, False, None, "10.60.7.1"),  # the node allocates it
        (1002, "eth1"): ("tap_1002_eth1", 120, False, "192.168.120.10", "192.168.120.1"),
        (1002, "eth2"): ("tap_1002_eth2", 121, False, "192.168.121.10", "192.168.121.1"),
        (1003, "eth0"): ("tap_1003_eth0", 4094, True, None, None),
        (1003, "eth1"): ("tap_1003_eth1", 120, False, "192.168.120.11", "192.168.120.1"),
        (1004, "eth0"): ("tap_1004_eth0", 4094, True, None, None),
        (1004, "eth1"): ("tap_1004_eth1", 121, False, "192.168.121.11", "192.168.121.1"),
        (1004, "eth2"): ("tap_1004_eth2", 4094, True, None, None),
    }
    nets = [
        (n.vlan, n.link, n.members, n.shared, [(r.mac, r.ip) for r in n.reservations]) for n in plan.networks
    ]
    assert nets == [
        (
            120,
            ("1002.eth1", "1003.eth1"),
            ("tap_1002_eth1", "tap_1003_eth1"),
            False,
            [("52:54:00:03:ea:01", "192.168.120.10"), ("52:54:00:03:eb:01", "192.168.120.11")],
        ),
        (
            121,
            ("1002.eth2", "1004.eth1"),
            ("tap_1002_eth2", "tap_1004_eth1"),
            False,
            [("52:54:00:03:ea:02", "192.168.121.10"), ("52:54:00:03:ec:01", "192.168.121.11")],
        ),
        (400, None, (), True, [("52:54:00:03:ea:00", None)]),
    ]
    outputs = stack_outputs(plan, {"52:54:00:03:ea:00": "10.60.7.10"}.get)
    assert outputs["vms"]["1002"]["interfaces"]["eth0"]["ip"] == "10.60.7.10"
    assert outputs["vlanPool"] == {"start": 120, "end": 139, "used": [120, 121], "free": 18}
    assert outputs["links"][0] == {
        "endpoints": ["1002.eth1", "1003.eth1"],
        "vlan": 120,
        "cidr": "192.168.120.0/24",
        "gateway": "192.168.120.1",
    }
    assert outputs["vms"]["1004"]["interfaces"]["eth2"] == {
        "tap": "tap_1004_eth2",
        "vlan": None,
        "mac": "52:54:00:03:ec:02",
        "ip": None,
        "gateway": None,
        "parked": True,
    }
    assert qemu_net_args(plan.by_vm(1003)) == [
        "-netdev",
        "tap,id=net0,ifname=tap_1003_eth0,script=no,downscript=no",
        "-device",
        "virtio-net-pci,netdev=net0,mac=52:54:00:03:eb:00",
        "-netdev",
        "tap,id=net1,ifname=tap_1003_eth1,script=no,downscript=no",
        "-device",
        "virtio-net-pci,netdev=net1,mac=52:54:00:03:eb:01",
    ]
    assert topology_output(plan) == (
        "graph LR\n"
        "  subgraph worker1\n"
        '    vm1002["VM 1002"]\n'
        "  end\n"
        "  subgraph worker2\n"
        '    vm1003["VM 1003"]\n'
        '    vm1004["VM 1004"]\n'
        "  end\n"
        '  vm1002 ---|"eth1 - eth1, VLAN 120"| vm1003\n'
        '  vm1002 ---|"eth2 - eth1, VLAN 121"| vm1004\n'
        '  internet(("internet"))\n'
        '  vm1002 -.-|"eth0, VLAN 400, NAT"| internet\n'
    )

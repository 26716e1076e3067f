"""The slice's desired network plane as plain data: MACs, TAPs, one entry per VLAN (link VLANs and VLAN 400).

Everything here is a pure function of the validated config and the VLAN allocation, so the whole plan (and
the stack outputs built from it) is known at `pulumi preview` -- except the VLAN 400 addresses, which the
network node hands out under its lock (first free address, kept while the VM exists), so that slices
cannot collide on the shared subnet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from components.model import INTERNET_VLAN, NAMESPACE, LinkKey, SliceConfig
from vocabulary.errors import ConfigError
from vocabulary.naming import tap_name
from vocabulary.specs import Reservation

INTERNET_SUBNET = ipaddress.IPv4Network("10.60.7.0/24")
RANGE_FIRST = 10
RANGE_LAST = 250
LEASE_TIME = "24h"


def mac_address(vm: int, index: int) -> str:
    """The original's deterministic MAC `52:54:00:{vm>>8}:{vm&0xff}:{index}` (vm < 65536, index < 256)."""
    if not (0 < vm <= 0xFFFF and 0 <= index <= 0xFF):
        raise ValueError(f"MAC needs 0 < vm <= 65535 and 0 <= index <= 255, got vm={vm} index={index}")
    return f"52:54:00:{vm >> 8:02x}:{vm & 0xFF:02x}:{index:02x}"


def vlan_subnet(vlan: int) -> ipaddress.IPv4Network:
    """The subnet of a VLAN: the seed's `192.168.{vlan % 256}.0/24` for links, 10.60.7.0/24 for VLAN 400."""
    return INTERNET_SUBNET if vlan == INTERNET_VLAN else ipaddress.IPv4Network(f"192.168.{vlan % 256}.0/24")


def host_in(net: ipaddress.IPv4Network, n: int) -> str:
    return str(net.network_address + n)


def hostname(vm: int, iface: str) -> str:
    return f"vm{vm}-{iface}"


@dataclass(frozen=True)
class InterfacePlan:
    vm: int
    iface: str
    worker: str
    tap: str
    mac: str
    vlan: int
    """The TAP's tag: the link VLAN, 400, or the parking VLAN."""
    parked: bool
    ip: str | None
    """Fixed address on a link; None when parked or on VLAN 400 (the network node allocates it)."""
    gateway: str | None
    link: LinkKey | None = None


@dataclass(frozen=True)
class VlanPlan:
    """One VLAN the slice uses on the network node: its gateway, its DHCP server and who is on it."""

    vlan: int
    subnet: ipaddress.IPv4Network
    reservations: tuple[Reservation, ...]
    """Link VLANs: fixed addresses. VLAN 400: `ip` is None (allocated on the node)."""
    link: LinkKey | None
    """The link on this VLAN; None for the shared VLAN 400."""
    members: tuple[str, ...] = ()
    """The TAPs (names) that belong on this VLAN: nothing else of the slice may stay on it."""

    @property
    def shared(self) -> bool:
        return self.vlan == INTERNET_VLAN

    @property
    def gateway(self) -> str:
        return host_in(self.subnet, 1)

    @property
    def dhcp_address(self) -> str:
        return host_in(self.subnet, 2)

    @property
    def range_start(self) -> str:
        return host_in(self.subnet, RANGE_FIRST)

    @property
    def range_end(self) -> str:
        return host_in(self.subnet, RANGE_LAST)


@dataclass(frozen=True)
class SlicePlan:
    config: SliceConfig
    vlans: dict[LinkKey, int]
    """The allocation: link -> VLAN, in config order."""
    interfaces: tuple[InterfacePlan, ...]
    networks: tuple[VlanPlan, ...]
    """One entry per VLAN in use: the links' VLANs in config order, then VLAN 400 when any VM has internet."""

    def by_vm(self, vm: int) -> list[InterfacePlan]:
        return [ip for ip in self.interfaces if ip.vm == vm]

    @property
    def link_networks(self) -> tuple[VlanPlan, ...]:
        return tuple(n for n in self.networks if not n.shared)

    @property
    def internet(self) -> VlanPlan | None:
        return next((n for n in self.networks if n.shared), None)


def build_plan(config: SliceConfig, vlans: Mapping[LinkKey, int]) -> SlicePlan:
    """The whole desired network plane of the slice."""
    size = RANGE_LAST - RANGE_FIRST + 1
    if len(config.internet_vms) > size:
        raise ConfigError(
            [f"{NAMESPACE}:slice.vms: {len(config.internet_vms)} internet VMs, but VLAN 400 holds {size}"]
        )
    link_of: dict[str, LinkKey] = {}
    endpoint_ip: dict[str, str] = {}
    networks: list[VlanPlan] = []
    for link in config.links:
        vlan = vlans[link.key]
        net = vlan_subnet(vlan)
        res: list[Reservation] = []
        for n, end in enumerate((link.a, link.b)):
            end_ip = host_in(net, RANGE_FIRST + n)
            endpoint_ip[str(end)] = end_ip
            link_of[str(end)] = link.key
            res.append(
                Reservation(
                    mac=mac_address(end.vm, end.index), ip=end_ip, hostname=hostname(end.vm, end.iface)
                )
            )
        members = tuple(tap_name(e.vm, e.iface) for e in (link.a, link.b))
        networks.append(VlanPlan(vlan, net, tuple(res), link.key, members))
    vlan_of = {n.link: n for n in networks}

    internet = sorted(config.internet_vms, key=lambda v: v.id)
    if internet:
        res400 = tuple(
            Reservation(mac=mac_address(vm.id, 0), ip=None, hostname=hostname(vm.id, "eth0"))
            for vm in internet
        )
        networks.append(VlanPlan(INTERNET_VLAN, INTERNET_SUBNET, res400, None))

    interfaces: list[InterfacePlan] = []
    for vm in config.vms:
        for iface in vm.interfaces:
            ref = f"{vm.id}.{iface}"
            tap, mac = tap_name(vm.id, iface), mac_address(vm.id, int(iface[3:]))
            vlan, parked = config.parking_vlan, True
            ip: str | None = None
            gateway: str | None = None
            on_link: LinkKey | None = None
            if iface == "eth0" and vm.internet:
                vlan, parked, gateway = INTERNET_VLAN, False, host_in(INTERNET_SUBNET, 1)
            elif ref in link_of:
                vp = vlan_of[link_of[ref]]
                vlan, parked, ip, gateway, on_link = vp.vlan, False, endpoint_ip[ref], vp.gateway, vp.link
            interfaces.append(
                InterfacePlan(vm.id, iface, vm.worker, tap, mac, vlan, parked, ip, gateway, on_link)
            )
    return SlicePlan(config=config, vlans=dict(vlans), interfaces=tuple(interfaces), networks=tuple(networks))

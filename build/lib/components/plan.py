"""The slice's desired network plane as plain data: MACs, TAPs, link subnets, DHCP reservations, VLAN 400.

Everything here is a pure function of the validated config and the VLAN allocation, so the whole plan (and
the stack outputs built from it) is known at `pulumi preview`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from components.config import INTERNET_VLAN, NAMESPACE, ConfigError, LinkKey, SliceConfig, Vm
from providers.naming import dhcp_namespace, dhcp_port, gateway_port, tap_name

INTERNET_SUBNET = ipaddress.IPv4Network("10.60.7.0/24")
INTERNET_GATEWAY = "10.60.7.1"
INTERNET_DHCP = "10.60.7.2"
RANGE_FIRST = 10
RANGE_LAST = 250
LEASE_TIME = "24h"


def mac_address(vm: int, index: int) -> str:
    """The original's deterministic MAC `52:54:00:{vm>>8}:{vm&0xff}:{index}` (vm < 65536, index < 256)."""
    if not (0 < vm <= 0xFFFF and 0 <= index <= 0xFF):
        raise ValueError(f"MAC needs 0 < vm <= 65535 and 0 <= index <= 255, got vm={vm} index={index}")
    return f"52:54:00:{vm >> 8:02x}:{vm & 0xFF:02x}:{index:02x}"


def link_subnet(vlan: int) -> ipaddress.IPv4Network:
    """The seed's link subnet `192.168.{vlan % 256}.0/24`."""
    return ipaddress.IPv4Network(f"192.168.{vlan % 256}.0/24")


def host_in(net: ipaddress.IPv4Network, n: int) -> str:
    return str(net.network_address + n)


@dataclass(frozen=True)
class Reservation:
    mac: str
    ip: str
    hostname: str

    def as_input(self) -> dict[str, str]:
        return {"mac": self.mac, "ip": self.ip, "hostname": self.hostname}


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
    gateway: str | None
    link: LinkKey | None = None


@dataclass(frozen=True)
class LinkPlan:
    key: LinkKey
    vlan: int
    cidr: str
    gateway: str
    """Gateway address (no prefix)."""
    dhcp_address: str
    """DHCP server address (no prefix)."""
    reservations: tuple[Reservation, ...]

    @property
    def gateway_port(self) -> str:
        return gateway_port(self.vlan)

    @property
    def dhcp_port(self) -> str:
        return dhcp_port(self.vlan)

    @property
    def namespace(self) -> str:
        return dhcp_namespace(self.vlan)


@dataclass(frozen=True)
class SlicePlan:
    config: SliceConfig
    vlans: dict[LinkKey, int]
    interfaces: tuple[InterfacePlan, ...]
    links: tuple[LinkPlan, ...]
    internet: tuple[Reservation, ...]
    """Reservations of this slice's internet VMs on the shared VLAN 400 (empty: no internet)."""
    by_vm: dict[int, list[InterfacePlan]] = field(default_factory=dict)


def hostname(vm: int, iface: str) -> str:
    return f"vm{vm}-{iface}"


def internet_ips(vms: list[Vm], previous: Mapping[int, str] | None = None) -> dict[int, str]:
    """VLAN 400 addresses of this slice's internet VMs.

    Each VM keeps the address it had (`previous`, from the last run's `vms` output) when that is still in the
    range and not taken; otherwise it gets `10.60.7.{10 + vm % 241}`, probing upwards (wrapping in
    .10-.250) past addresses taken in this slice. VM ids are unique across the cloud, so two slices collide
    only when two ids are congruent mod 241; the shared DhcpNamespace provider must refuse a reservation
    whose address another slice already holds, naming both slices.
    """
    previous = previous or {}
    size = RANGE_LAST - RANGE_FIRST + 1
    if len(vms) > size:
        raise ConfigError(
            [f"{NAMESPACE}:slice.vms: {len(vms)} internet VMs, but VLAN 400 holds {size} addresses"]
        )
    taken: set[str] = set()
    out: dict[int, str] = {}
    ordered = sorted(vms, key=lambda v: v.id)
    for vm in ordered:
        ip = previous.get(vm.id)
        if ip is None:
            continue
        try:
            addr = ipaddress.IPv4Address(ip)
        except ValueError:
            continue
        n = int(addr) - int(INTERNET_SUBNET.network_address)
        if addr in INTERNET_SUBNET and RANGE_FIRST <= n <= RANGE_LAST and ip not in taken:
            out[vm.id] = ip
            taken.add(ip)
    for vm in ordered:
        if vm.id in out:
            continue
        slot = vm.id % size
        while True:
            ip = host_in(INTERNET_SUBNET, RANGE_FIRST + slot)
            if ip not in taken:
                break
            slot = (slot + 1) % size
        out[vm.id] = ip
        taken.add(ip)
    return {vm.id: out[vm.id] for vm in vms}


def build_plan(
    config: SliceConfig, vlans: Mapping[LinkKey, int], previous_ips: Mapping[int, str] | None = None
) -> SlicePlan:
    """The whole desired network plane of the slice."""
    link_of: dict[str, LinkKey] = {}
    links: list[LinkPlan] = []
    endpoint_ip: dict[str, str] = {}
    for link in config.links:
        vlan = vlans[link.key]
        net = link_subnet(vlan)
        res: list[Reservation] = []
        for n, end in enumerate((link.a, link.b)):
            end_ip = host_in(net, RANGE_FIRST + n)
            endpoint_ip[str(end)] = end_ip
            link_of[str(end)] = link.key
            mac = mac_address(end.vm, end.index)
            res.append(Reservation(mac=mac, ip=end_ip, hostname=hostname(end.vm, end.iface)))
        links.append(
            LinkPlan(
                key=link.key,
                vlan=vlan,
                cidr=str(net),
                gateway=host_in(net, 1),
                dhcp_address=host_in(net, 2),
                reservations=tuple(res),
            )
        )
    link_by_key = {lp.key: lp for lp in links}

    inet_ips = internet_ips(config.internet_vms, previous_ips)
    internet = tuple(
        Reservation(mac=mac_address(vm.id, 0), ip=inet_ips[vm.id], hostname=hostname(vm.id, "eth0"))
        for vm in sorted(config.internet_vms, key=lambda v: v.id)
    )

    interfaces: list[InterfacePlan] = []
    by_vm: dict[int, list[InterfacePlan]] = {}
    for vm in config.vms:
        for iface in vm.interfaces:
            ref = f"{vm.id}.{iface}"
            tap = tap_name(vm.id, iface)
            mac = mac_address(vm.id, int(iface[3:]))
            tag: int
            ip: str | None
            gw: str | None
            lk: LinkKey | None
            if iface == "eth0" and vm.internet:
                tag, parked, ip, gw, lk = INTERNET_VLAN, False, inet_ips[vm.id], INTERNET_GATEWAY, None
            elif ref in link_of:
                lp = link_by_key[link_of[ref]]
                tag, parked, ip, gw, lk = lp.vlan, False, endpoint_ip[ref], lp.gateway, lp.key
            else:
                tag, parked, ip, gw, lk = config.parking_vlan, True, None, None, None
            ip_plan = InterfacePlan(
                vm=vm.id,
                iface=iface,
                worker=vm.worker,
                tap=tap,
                mac=mac,
                vlan=tag,
                parked=parked,
                ip=ip,
                gateway=gw,
                link=lk,
            )
            interfaces.append(ip_plan)
            by_vm.setdefault(vm.id, []).append(ip_plan)
    return SlicePlan(
        config=config,
        vlans=dict(vlans),
        interfaces=tuple(interfaces),
        links=tuple(links),
        internet=internet,
        by_vm=by_vm,
    )

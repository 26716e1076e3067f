"""The inputs of each resource, validated in one place (pydantic); `check()` reports every problem at once."""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from vocabulary import naming

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_LEASE = re.compile(r"^(infinite|[1-9][0-9]{0,7}[smhdw]?)$")
_HOSTLIKE = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")


def _ifname(value: str) -> str:
    problem = naming.ifname_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _netns(value: str) -> str:
    if not naming.SAFE_NETNS.fullmatch(value):
        raise ValueError(
            f"namespace name {value!r} must be 1..63 characters of letters, digits, '_', '.' and '-'"
        )
    return value


def _slice(value: str) -> str:
    problem = naming.slice_problem(value)
    if problem:
        raise ValueError(problem)
    return value


def _mac(value: str) -> str:
    mac = value.lower()
    if not _MAC.fullmatch(mac):
        raise ValueError(f"MAC address {value!r} must be six ':'-separated hex octets")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"MAC address {value!r} is a multicast address")
    if mac == "00:00:00:00:00:00":
        raise ValueError("MAC address 00:00:00:00:00:00 is not usable")
    return mac


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address") from None


def _ipv4_interface(value: str) -> str:
    if "/" not in value:
        raise ValueError(f"{value!r} must be an IPv4 address with a prefix length, e.g. 192.168.120.1/24")
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 address with a prefix length") from None
    if iface.network.prefixlen > 30:
        raise ValueError(f"{value!r}: prefix /{iface.network.prefixlen} leaves no room for hosts")
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise ValueError(f"{value!r} is the network or broadcast address of its subnet")
    return str(iface)


def _ipv4_network(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError:
        raise ValueError(f"{value!r} is not an IPv4 network (CIDR with no host bits set)") from None


def _hostlike(value: str) -> str:
    if not _HOSTLIKE.fullmatch(value):
        raise ValueError(f"{value!r} is not a host name or IP address")
    return value


IfName = Annotated[str, AfterValidator(_ifname)]
NetnsName = Annotated[str, AfterValidator(_netns)]
SliceName = Annotated[str, AfterValidator(_slice)]
Mac = Annotated[str, AfterValidator(_mac)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
IPv4Iface = Annotated[str, AfterValidator(_ipv4_interface)]
IPv4Net = Annotated[str, AfterValidator(_ipv4_network)]
Vlan = Annotated[int, Field(ge=1, le=4094)]


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=False
    )

    def inputs(self) -> dict[str, Any]:
        """The resource inputs: camelCase keys, JSON-compatible values."""
        return self.model_dump(by_alias=True, mode="json")


class Endpoint(_Model):
    """An SSH endpoint: `name` is the logical host (identity); `address`/`port` only say how to reach it."""

    name: Annotated[str, Field(pattern=naming.SAFE_SLICE.pattern)]
    address: Annotated[str, AfterValidator(_hostlike)]
    port: Annotated[int, Field(ge=1, le=65535)] = 22


class HostSpec(_Model):
    slice: SliceName
    """The slice that owns (or, for shared objects, uses) the object."""
    host: Endpoint
    """Where the object lives."""
    bridge: IfName = "br-int"
    """The OVS integration bridge."""
    uid: Annotated[str, Field(pattern=naming.SAFE_UID.pattern)] | None = None
    """The slice's uid (`kinds.identity`): with the name, the owner mark of its objects. None only in
    the state of a slice deployed before slices had uids."""

    @property
    def owner(self) -> str:
        """The owner mark of the slice's own objects (`naming.owner_mark`)."""
        return naming.owner_mark(self.slice, self.uid)

    def owns(self, mark: str | None) -> bool:
        """An object marked `mark` is the slice's to change or remove (`naming.owns`)."""
        return naming.owns(mark, self.slice, self.uid)

    def adopts(self, mark: str | None) -> bool:
        """A create or update may take an object marked `mark` and mark it anew (`naming.adoptable`)."""
        return naming.adoptable(mark, self.slice, self.uid)


class JoinSpec(_Model):
    """How a TAP joins a link VLAN: first every port of the slice still tagged with that VLAN that is not
    one of `members` is parked, under the worker's lock, on its own worker and on `hosts` (a VLAN handed
    from one link to another is never carried by both)."""

    members: list[IfName]
    """The TAPs that belong on the VLAN (the link's two ends)."""
    hosts: list[Endpoint]
    """The other workers that had TAPs of the slice on the VLAN (from the previous outputs)."""
    parking_vlan: Vlan


class TapPortSpec(HostSpec):
    """A VM interface's TAP on a worker, attached to the bridge with a VLAN tag."""

    name: IfName
    vm: Annotated[int, Field(ge=1)]
    iface: IfName
    mac: Mac
    vlan: Vlan
    parked: bool = False
    """True: `vlan` is the parking VLAN and the port is also `protected=true`."""
    join: JoinSpec | None = None
    """On a link VLAN: what joining it clears first. Not part of the diff (see `TapPortProvider`)."""


class VlanGatewaySpec(HostSpec):
    """A VLAN's gateway: an internal OVS port on the network node carrying the subnet's `.1`."""

    vlan: Vlan
    port: IfName
    address: IPv4Iface
    shared: bool = False


class Reservation(_Model):
    """A fixed MAC -> IP lease; on a shared VLAN `ip` is None and the network node allocates it."""

    mac: Mac
    ip: IPv4 | None = None
    hostname: Annotated[str, Field(pattern=naming.SAFE_HOSTNAME.pattern)]


class DhcpNamespaceSpec(HostSpec):
    """A VLAN's DHCP server: dnsmasq in its own namespace on its own internal OVS port."""

    vlan: Vlan
    namespace: NetnsName
    port: IfName
    address: IPv4Iface
    range_start: IPv4
    range_end: IPv4
    lease_time: Annotated[str, Field(pattern=_LEASE.pattern)] = "24h"
    router: IPv4
    dns_servers: list[IPv4] = Field(default_factory=list)
    reservations: list[Reservation] = Field(default_factory=list)
    shared: bool = False

    @model_validator(mode="after")
    def _addresses_fit(self) -> Self:
        net = ipaddress.IPv4Interface(self.address).network
        own = ipaddress.IPv4Interface(self.address).ip
        problems: list[str] = []
        start, end = ipaddress.IPv4Address(self.range_start), ipaddress.IPv4Address(self.range_end)
        router = ipaddress.IPv4Address(self.router)
        for label, addr in (("rangeStart", start), ("rangeEnd", end), ("router", router)):
            if addr not in net:
                problems.append(f"{label}: {addr} is outside {net}")
        if start > end:
            problems.append(f"rangeStart: {start} is after rangeEnd {end}")
        elif start <= own <= end:
            problems.append(f"address: the server address {own} lies inside the range {start}-{end}")
        seen_mac: dict[str, str] = {}
        seen_ip: dict[str, str] = {}
        for i, r in enumerate(self.reservations):
            where = f"reservations.{i}"
            if r.mac in seen_mac:
                problems.append(f"{where}: {seen_mac[r.mac]} and {r.hostname} share MAC {r.mac}")
            seen_mac.setdefault(r.mac, r.hostname)
            if r.ip is None:
                if not self.shared:
                    problems.append(f"{where}: {r.hostname} has no IP (only a shared VLAN allocates them)")
                continue
            if self.shared:
                problems.append(f"{where}: {r.hostname}: the network node allocates shared-VLAN addresses")
            ip = ipaddress.IPv4Address(r.ip)
            if ip not in net:
                problems.append(f"{where}: {r.hostname}'s {ip} is outside {net}")
            elif ip in (own, router, net.network_address, net.broadcast_address):
                problems.append(f"{where}: {r.hostname}'s {ip} is not a free host address")
            if r.ip in seen_ip:
                problems.append(f"{where}: {seen_ip[r.ip]} and {r.hostname} share IP {r.ip}")
            seen_ip.setdefault(r.ip, r.hostname)
        if problems:
            raise ValueError("; ".join(problems))
        return self


class NatRuleSpec(HostSpec):
    """MASQUERADE of a subnet out of the uplink, and the FORWARD rules it needs (shared by slices)."""

    subnet: IPv4Net
    gateway_port: IfName
    uplink: IfName


class PoolClaimSpec(HostSpec):
    """A slice's VLAN range claimed on a network node."""

    start: Vlan
    end: Vlan
    parking_vlan: Vlan | None = None
    """The slice's parking VLAN, claimed with the pool (no other slice's pool may hold it, nor may its pool
    hold another slice's). None: a claim made before parking VLANs were claimed."""
    stack: Annotated[str, Field(pattern=naming.SAFE_STACK.pattern)] | None = None
    """The stack that holds the claim, recorded in it so that a refusal can name it."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"start: {self.start} is after end {self.end}")
        return self


class LinkShapeSpec(HostSpec):
    """A token-bucket rate limit (tc `tbf`) on one of the slice's TAPs on a worker."""

    tap: IfName
    """The TAP: its OVS port must carry the slice's owner mark."""
    rate_kbit: Annotated[int, Field(ge=8, le=100_000_000)]
    """The rate, in kbit/s (1000 bit/s)."""
    burst_bytes: Annotated[int, Field(ge=1600, le=1 << 30)]
    """The bucket's size, in bytes (at least one full frame)."""
    latency_ms: Annotated[int, Field(ge=1, le=60_000)]
    """How long a packet may wait for tokens before it is dropped."""


def problems(model: type[_Model], inputs: dict[str, Any]) -> list[tuple[str, str]]:
    """Every validation problem of `inputs` as (property path, reason); empty when valid."""
    try:
        model.model_validate(inputs)
    except ValidationError as exc:
        out = []
        for err in exc.errors():
            reason = err["msg"].removeprefix("Value error, ")
            if err["loc"]:
                out.append((".".join(str(p) for p in err["loc"]), reason))
                continue
            # a cross-field check: "prop: reason; prop: reason"
            for part in reason.split("; "):
                prop, _, why = part.partition(": ")
                out.append((prop, why) if why else ("(inputs)", part))
        return out
    return []

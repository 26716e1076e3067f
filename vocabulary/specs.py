"""The inputs of each resource, validated in one place (pydantic); `check()` reports every problem at once."""

from __future__ import annotations

import hashlib
import ipaddress
import re
from typing import Annotated, Any, Literal, Self

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

from vocabulary import naming, netem
from vocabulary.shown import shown
from vocabulary.values import (
    Endpoint,
    IfName,
    IPv4Address,
    IPv4Interface,
    IPv4Network,
    Mac,
    NetnsName,
    ParkingVlan,
    SliceName,
    Vlan,
    VmId,
)

_LEASE = re.compile(r"^(infinite|[1-9][0-9]{0,7}[smhdw]?)$")


class _Model(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=False
    )

    def inputs(self) -> dict[str, Any]:
        """The resource inputs: camelCase keys, JSON-compatible values."""
        return self.model_dump(by_alias=True, mode="json")


class HostSpec(_Model):
    slice: SliceName
    """The slice that owns (or, for shared objects, uses) the object."""
    host: Endpoint
    """Where the object lives."""
    bridge: IfName = "br-int"
    """The OVS integration bridge."""
    uid: Annotated[str, Field(pattern=naming.SAFE_UID.pattern)] | None = None
    """The slice's uid (`providers.identity`): with the name, the owner mark of its objects. None only in
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
    parking_vlan: ParkingVlan


class TapPortSpec(HostSpec):
    """A VM interface's TAP on a worker, attached to the bridge with a VLAN tag."""

    name: IfName
    vm: VmId
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
    address: IPv4Interface
    shared: bool = False


class Reservation(_Model):
    """A fixed MAC -> IP lease; on a shared VLAN `ip` is None and the network node allocates it."""

    mac: Mac
    ip: IPv4Address | None = None
    hostname: Annotated[str, Field(pattern=naming.SAFE_HOSTNAME.pattern)]


class DhcpNamespaceSpec(HostSpec):
    """A VLAN's DHCP server: dnsmasq in its own namespace on its own internal OVS port."""

    vlan: Vlan
    namespace: NetnsName
    port: IfName
    address: IPv4Interface
    range_start: IPv4Address
    range_end: IPv4Address
    lease_time: Annotated[str, Field(pattern=_LEASE.pattern)] = "24h"
    router: IPv4Address
    dns_servers: list[IPv4Address] = Field(default_factory=list)
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

    subnet: IPv4Network
    gateway_port: IfName
    uplink: IfName


class PoolClaimSpec(HostSpec):
    """A slice's VLAN range claimed on a network node."""

    start: Vlan
    end: Vlan
    parking_vlan: ParkingVlan | None = None
    """The slice's parking VLAN, claimed with the pool (no other slice's pool may hold it, nor may its pool
    hold another slice's). None: a claim made before parking VLANs were claimed."""
    stack: Annotated[str, Field(pattern=naming.SAFE_STACK.pattern)] | None = None
    """The stack that holds the claim, recorded in it so that a refusal can name it."""

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.start > self.end:
            raise ValueError(f"start: {self.start} is after end {self.end}")
        return self


class WorkerClaimSpec(HostSpec):
    """A launched VM's share of its worker (vCPUs, memory), claimed there under the lock against the
    worker's capacity and every slice's claims."""

    vm: Annotated[int, Field(ge=1, le=0xFFFF)]
    cpus: Annotated[int, Field(ge=0, le=4096)]
    memory_mb: Annotated[int, Field(ge=0, le=1 << 30)]
    capacity_cpus: Annotated[int, Field(ge=1, le=4096)]
    capacity_memory_mb: Annotated[int, Field(ge=1, le=1 << 30)]
    """The worker's capacity: declared (`cloudrepo:workers.NAME.capacity`), else as its host reported it."""
    stack: Annotated[str, Field(pattern=naming.SAFE_STACK.pattern)] | None = None
    """The stack that holds the claim, recorded so that `cloudrepo workers` and a refusal can name it."""


class PendingClaimsSpec(HostSpec):
    """The pending claims the slice's `up` reserved on a worker for `worker: auto` (`providers.reservation`):
    nothing to make; its delete removes those its stack left."""

    stack: Annotated[str, Field(pattern=naming.SAFE_STACK.pattern)]
    """The stack whose pending claims these are (`<project>/<stack>`, the mark the reservation writes)."""


ACCELS = ("kvm", "tcg")
MAX_CPUS = 64
MIN_MEMORY_MB = 32
MAX_MEMORY_MB = 1 << 20
MAX_APPEND = 1024
BINARY_PATTERN = r"^(?:[A-Za-z0-9_][A-Za-z0-9_.+-]{0,254}|/[A-Za-z0-9_./+-]{1,254})$"
"""A command name (no `/`, no leading `-` or `.`) or an absolute path: no spaces or shell characters."""


def _accel(value: str) -> str:
    if value not in ACCELS:
        raise ValueError(f"must be one of {', '.join(ACCELS)}, got {shown(value)}")
    return value


def _binary(value: str) -> str:
    if not re.fullmatch(BINARY_PATTERN, value):
        raise ValueError(
            "must be a command name or an absolute path, without spaces or shell characters, "
            f"got {shown(value)}"
        )
    return value


def _printable(value: str) -> str:
    if len(value) > MAX_APPEND or not value.isprintable():
        raise ValueError(
            f"printable text of at most {MAX_APPEND} characters (a kernel command line), got {shown(value)}"
        )
    return value


Accel = Annotated[str, AfterValidator(_accel)]
QemuBinary = Annotated[str, AfterValidator(_binary)]
KernelAppend = Annotated[str, AfterValidator(_printable)]
Cpus = Annotated[int, Field(ge=1, le=MAX_CPUS)]
MemoryMb = Annotated[int, Field(ge=MIN_MEMORY_MB, le=MAX_MEMORY_MB)]
NetemPercent = Annotated[float, Field(gt=0, le=100)]


class BootFileRef(_Model):
    """A file on the worker that the VM boots from, with the sha256 it must have."""

    path: Annotated[str, Field(pattern=rf"^{naming.IMAGES_DIR}/[0-9a-f]{{64}}$")]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class QemuVmSpec(HostSpec):
    """A VM's QEMU process; `net_args` are exactly the VM's `qemuNetArgs` output."""

    vm: VmId
    binary: QemuBinary
    accel: Accel
    cpus: Cpus = 1
    memory_mb: MemoryMb = 256
    kernel: BootFileRef | None = None
    initrd: BootFileRef | None = None
    append: KernelAppend | None = None
    image: BootFileRef | None = None
    image_format: Literal["qcow2", "raw"] | None = None
    net_args: list[str] = Field(default_factory=list)
    seed: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """The content hash of the VM's NoCloud seed (`CloudSeedSpec.sha256`), attached read-only at
    `naming.seed_path`: a new seed is a new argv, so the VM restarts with it."""


MAX_SEED_DOCUMENT = 1 << 18
"""Characters of one seed document (user-data carries the slice's `userData`)."""
SeedDocument = Annotated[str, Field(max_length=MAX_SEED_DOCUMENT)]


def seed_hash(meta_data: str, user_data: str, network_config: str) -> str:
    """The content hash of a seed's three documents (the guest's host key, added on the worker, aside)."""
    return hashlib.sha256("\0".join([meta_data, user_data, network_config]).encode()).hexdigest()


class CloudSeedSpec(HostSpec):
    """A launched VM's NoCloud seed on its worker: the three documents (user-data without the guest's host
    key, which the worker makes and adds) and their hash."""

    vm: VmId
    meta_data: SeedDocument
    user_data: SeedDocument
    network_config: SeedDocument
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

    @model_validator(mode="after")
    def _hash_matches(self) -> Self:
        if seed_hash(self.meta_data, self.user_data, self.network_config) != self.sha256:
            raise ValueError("sha256: not the hash of the documents")
        return self


class LinkShapeSpec(HostSpec):
    """A link's impairment on one of the slice's TAPs on a worker: a rate alone is a token bucket (tc
    `tbf`); a delay, jitter, loss, corruption, duplication or reordering is a `netem` (with its own rate when
    one is set too). The values as numbers: `vocabulary.netem`."""

    tap: IfName
    """The TAP: its OVS port must carry the slice's owner mark."""
    rate_kbit: Annotated[int, Field(ge=netem.MIN_RATE_KBIT, le=netem.MAX_RATE_KBIT)] | None = None
    """The rate, in kbit/s (1000 bit/s)."""
    burst_bytes: Annotated[int, Field(ge=1600, le=1 << 30)] = 1600
    """The bucket's size, in bytes (at least one full frame; `tbf` only)."""
    latency_ms: Annotated[int, Field(ge=1, le=60_000)] = 50
    """How long a packet may wait for tokens before it is dropped (`tbf` only)."""
    delay_us: Annotated[int, Field(ge=1, le=netem.MAX_TIME_US)] | None = None
    jitter_us: Annotated[int, Field(ge=1, le=netem.MAX_TIME_US)] | None = None
    loss_pct: NetemPercent | None = None
    corrupt_pct: NetemPercent | None = None
    duplicate_pct: NetemPercent | None = None
    reorder_pct: NetemPercent | None = None

    @model_validator(mode="after")
    def _something_set(self) -> Self:
        problems = [
            f"{to_camel(key)}: needs delayUs (netem varies or reorders a delay)"
            for key in ("jitter_us", "reorder_pct")
            if getattr(self, key) is not None and self.delay_us is None
        ]
        if self.impairment.qdisc == "tbf" and self.rate_kbit is None:
            problems.append("rateKbit: set a rate or one of the netem values")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def impairment(self) -> netem.Netem:
        """The impairment as `vocabulary.netem` holds it (its `qdisc` says which one carries it)."""
        return netem.Netem(**{f: getattr(self, f) for f in netem.Netem.model_fields})


class NetemSupportSpec(HostSpec):
    """A worker's kernel checked for the netem qdisc before anything of the slice is made (no host object:
    a read, and a refusal naming the qdisc when it is missing)."""

    keys: list[netem.NetemOnlyKey]
    """The `links[].netem` keys of the worker's links that need a netem (for the message)."""
    taps: list[IfName]
    """The worker's TAPs that carry one (for the message)."""


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

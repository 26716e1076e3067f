"""The validated stack config: constants and the model types that `load_config` returns."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from components.bootfiles import BootFile
from components.check_specs import Check
from vocabulary.naming import NAMESPACE as NAMESPACE
from vocabulary.netem import Netem
from vocabulary.values import INTERNET_VLAN as INTERNET_VLAN
from vocabulary.values import MAX_VM_ID as MAX_VM_ID
from vocabulary.values import (
    VLAN_MAX,
    Endpoint,
    IfName,
    IPv4Address,
    NodeName,
    ParkingVlan,
    SliceName,
)

POOL_SIZE = 20
DEFAULT_PARKING_VLAN = VLAN_MAX
DEFAULT_DNS = ("8.8.8.8",)
MAX_DATA_INTERFACES = 0xFF
"""... and the interface number in its last byte."""
NETWORK_NODE_NAME = "network"
"""The logical host name of `cloudrepo:networkNode` in every resource's `host` input."""

IFACE_REF_RE = re.compile(r"^(?P<vm>[0-9]+)\.(?P<iface>eth(?:0|[1-9][0-9]*))$")
"""A link endpoint `VM.ethN`."""


# The validated model


class IfaceRef(BaseModel):
    """A VM interface, `1002.eth1`."""

    model_config = ConfigDict(frozen=True)
    vm: int
    iface: str

    @property
    def index(self) -> int:
        return int(self.iface[3:])

    def __str__(self) -> str:
        return f"{self.vm}.{self.iface}"

    def sort_key(self) -> tuple[int, int]:
        return (self.vm, self.index)


LinkKey = tuple[str, str]
"""A link's identity: its two endpoints as text, in canonical order (lower VM id / interface first)."""


class Link(BaseModel):
    """A validated link; `a` is the canonical first endpoint (lower VM id, then lower interface)."""

    model_config = ConfigDict(frozen=True)
    a: IfaceRef
    b: IfaceRef
    pinned: int | None = None
    netem: Netem | None = None
    """The link's impairment, applied on both of its TAPs (`providers.kinds.link_shape`)."""

    @property
    def key(self) -> LinkKey:
        return (str(self.a), str(self.b))

    @property
    def label(self) -> str:
        return f"{self.a} -- {self.b}"


class Vm(BaseModel):
    model_config = ConfigDict(frozen=True)
    id: int
    worker: str
    data_interfaces: int
    internet: bool

    @property
    def interfaces(self) -> list[str]:
        return [f"eth{i}" for i in range(self.data_interfaces + 1)]


class VlanPool(BaseModel):
    model_config = ConfigDict(frozen=True)
    start: int

    @property
    def end(self) -> int:
        return self.start + POOL_SIZE - 1

    @property
    def vlans(self) -> range:
        return range(self.start, self.end + 1)


@dataclass(frozen=True)
class CloudInit:
    """A launched VM's cloud-init, the VM's `launch.cloudInit` over `slice.cloudInit` (`components.guest`)."""

    user: str
    hostname: str
    ssh_authorized_keys: tuple[str, ...]
    user_data: Mapping[str, Any] | None = None
    """The `#cloud-config` of `userData` (a mapping), merged after ours."""


@dataclass(frozen=True)
class Launch:
    """One launched VM, validated (`components.launch`)."""

    vm: int
    worker: str
    binary: str
    accel: Literal["kvm", "tcg"]
    cpus: int
    memory_mb: int
    image: BootFile | None = None
    image_format: Literal["qcow2", "raw"] | None = None
    kernel: BootFile | None = None
    initrd: BootFile | None = None
    append: str | None = None
    cloud_init: CloudInit | None = None
    """The VM's NoCloud seed (a disk image is then required)."""

    @property
    def files(self) -> tuple[BootFile, ...]:
        return tuple(f for f in (self.image, self.kernel, self.initrd) if f is not None)


class SshSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    user: str
    private_key_path: str | None
    known_hosts_path: str
    sudo: bool
    private_key: SecretStr | None
    """The secret `cloudrepo:sshPrivateKey`, when set."""


class SliceConfig(BaseModel):
    """The whole stack config, validated (its value types say each field's rule once)."""

    model_config = ConfigDict(frozen=True)
    stack: str
    slice_name: SliceName
    network_node: Endpoint
    uplink: IfName
    workers: dict[NodeName, Endpoint]
    ssh: SshSettings
    bridge: IfName
    parking_vlan: ParkingVlan
    dns_servers: tuple[IPv4Address, ...]
    pool: VlanPool
    vms: tuple[Vm, ...]
    links: tuple[Link, ...]
    launches: Mapping[int, Launch] = Field(default_factory=dict)
    """The VMs with a `launch`, by id: how QEMU runs them and the files they boot from."""
    checks: tuple[Check, ...] = ()
    """The declared expectations (`slice.checks`, `components.checks`), run by `cloudrepo check`."""

    def vm(self, vm_id: int) -> Vm:
        return next(v for v in self.vms if v.id == vm_id)

    @property
    def internet_vms(self) -> list[Vm]:
        return [v for v in self.vms if v.internet]


# ---------------------------------------------------------------------------------------------------------


def parse_iface_ref(text: str) -> IfaceRef | None:
    m = IFACE_REF_RE.fullmatch(text)
    if not m:
        return None
    return IfaceRef(vm=int(m["vm"]), iface=m["iface"])

"""The value types both the stack config and the resource specs are made of: each rule and its message
written once, as a pydantic `Annotated` type.

A rule of our own raises a `ValueError` whose text names the value (`vocabulary.shown`), so a message reads
whole after the key path or property that carries it: `cloudrepo:bridge: interface name 'br;x' must ...`.
Pydantic's own constraints (`Field(ge=..., le=...)`) keep pydantic's text; `problem_text` adds the value.
"""

from __future__ import annotations

import ipaddress
import re
from functools import cache
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError
from pydantic.alias_generators import to_camel

from vocabulary import naming
from vocabulary.shown import looks_like_key, shown

VLAN_MIN = 1
VLAN_MAX = 4094
"""802.1Q VLAN ids in use: 0 and 4095 are reserved."""
INTERNET_VLAN = 400
"""The VLAN every slice's `internet: true` VMs share (10.60.7.0/24, NAT out of the uplink)."""
PORT_MAX = 65535
MAX_VM_ID = 0xFFFF
"""The MAC `52:54:00:{vm>>8}:{vm&0xff}:{iface}` holds 16 bits of the VM id."""

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
LOGIN_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
"""A POSIX login name (useradd's default NAME_REGEX)."""
GUEST_HOST_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
"""The OpenSSH public key types a guest's `authorized_keys` may hold (DSA is gone from OpenSSH)."""
_SSH_KEY_LINE = re.compile(
    r"^(?P<type>[a-z0-9@.-]{1,64}) (?P<blob>[A-Za-z0-9+/]{16,16384}={0,2})(?: (?P<comment>.*))?$"
)
SSH_KEY_MAX = 16384
SSH_RSA_MIN_BITS = 2048


def _ifname(value: str) -> str:
    if (why := naming.ifname_problem(value)) is not None:
        raise ValueError(why)
    return value


def _netns(value: str) -> str:
    if not naming.SAFE_NETNS.fullmatch(value):
        raise ValueError(
            f"namespace name {shown(value)} must be 1..63 characters of letters, digits, '_', '.' and '-'"
        )
    return value


def _slice(value: str) -> str:
    if (why := naming.slice_problem(value)) is not None:
        raise ValueError(why)
    return value


def _node(value: str) -> str:
    if not naming.SAFE_SLICE.fullmatch(value):
        raise ValueError(
            f"node name {shown(value)} must be 1..63 characters, start with a letter or digit and contain "
            "only letters, digits, '_', '.' and '-'"
        )
    return value


def _host(value: str) -> str:
    if not _HOST.fullmatch(value):
        raise ValueError(f"{shown(value)} is not a host name or IP address")
    return value


def _login(value: str) -> str:
    if not LOGIN_RE.fullmatch(value):
        raise ValueError(
            f"{shown(value)} is not a login name "
            "(lower-case letters, digits, '_' and '-', starting with a letter or '_')"
        )
    return value


def _guest_host(value: str) -> str:
    if not GUEST_HOST_RE.fullmatch(value):
        raise ValueError(
            f"host name {shown(value)} must be 1..63 lower-case letters, digits and '-', "
            "not starting or ending with '-'"
        )
    return value


def _ssh_public_key(value: str) -> str:
    """One OpenSSH public key line (`type base64 [comment]`, no options): its blob read by `cryptography`."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    what = f"SSH public key {shown(value)}"
    if looks_like_key(value):
        raise ValueError(f"{what} is private key text: give the public key (the .pub file)")
    m = _SSH_KEY_LINE.fullmatch(value) if len(value) <= SSH_KEY_MAX else None
    if m is None:
        raise ValueError(f"{what} must be one line 'TYPE BASE64 [COMMENT]' as in a .pub file (no options)")
    if m["type"] not in SSH_KEY_TYPES:
        raise ValueError(f"{what}: type {shown(m['type'])} is not one of {', '.join(SSH_KEY_TYPES)}")
    comment = m["comment"] or ""
    if not comment.isprintable():
        raise ValueError(f"{what}: its comment holds control characters")
    try:
        key = load_ssh_public_key(f"{m['type']} {m['blob']}".encode())
    except (ValueError, TypeError):
        raise ValueError(f"{what}: its base64 body is not a {m['type']} key") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < SSH_RSA_MIN_BITS:
        raise ValueError(f"{what}: an RSA key of {key.key_size} bits (at least {SSH_RSA_MIN_BITS})")
    return value


def _mac(value: str) -> str:
    mac = value.lower()
    if not _MAC.fullmatch(mac):
        raise ValueError(f"MAC address {shown(value)} must be six ':'-separated hex octets")
    if int(mac[:2], 16) & 1:
        raise ValueError(f"MAC address {shown(value)} is a multicast address")
    if mac == "00:00:00:00:00:00":
        raise ValueError("MAC address 00:00:00:00:00:00 is not usable")
    return mac


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IPv4 address") from None


def _ipv4_interface(value: str) -> str:
    if "/" not in value:
        raise ValueError(
            f"{shown(value)} must be an IPv4 address with a prefix length, e.g. 192.168.120.1/24"
        )
    try:
        iface = ipaddress.IPv4Interface(value)
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IPv4 address with a prefix length") from None
    if iface.network.prefixlen > 30:
        raise ValueError(f"{shown(value)}: prefix /{iface.network.prefixlen} leaves no room for hosts")
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise ValueError(f"{shown(value)} is the network or broadcast address of its subnet")
    return str(iface)


def _ipv4_network(value: str) -> str:
    try:
        return str(ipaddress.IPv4Network(value, strict=True))
    except ValueError:
        raise ValueError(f"{shown(value)} is not an IPv4 network (CIDR with no host bits set)") from None


def _not_internet(value: int) -> int:
    if value == INTERNET_VLAN:
        raise ValueError(f"VLAN {INTERNET_VLAN} is the shared internet VLAN, not a parking VLAN")
    return value


Vlan = Annotated[int, Field(ge=VLAN_MIN, le=VLAN_MAX)]
ParkingVlan = Annotated[Vlan, AfterValidator(_not_internet)]
"""The VLAN of TAPs on no link: any VLAN but the shared internet one (and, a slice's own rule, none of its
pool: `components.slice_rules.check_pool`)."""
Port = Annotated[int, Field(ge=1, le=PORT_MAX)]
VmId = Annotated[int, Field(ge=1, le=MAX_VM_ID)]
IfName = Annotated[str, AfterValidator(_ifname)]
"""A Linux interface name (`naming.ifname_problem`: at most `naming.IFNAMSIZ_MAX` safe characters)."""
NetnsName = Annotated[str, AfterValidator(_netns)]
SliceName = Annotated[str, AfterValidator(_slice)]
NodeName = Annotated[str, AfterValidator(_node)]
"""A host's logical name (a worker's key, `network`): part of resource ids and names."""
HostName = Annotated[str, AfterValidator(_host)]
"""How to reach a host: a DNS name or an IPv4 address (no spaces, no leading '-')."""
LoginName = Annotated[str, AfterValidator(_login)]
GuestHostName = Annotated[str, AfterValidator(_guest_host)]
"""A guest's host name: one DNS label, lower case (what `hostname` prints in the guest)."""
SshPublicKey = Annotated[str, AfterValidator(_ssh_public_key)]
"""One OpenSSH public key line of a type in `SSH_KEY_TYPES`, its body a valid key of that type."""
Mac = Annotated[str, AfterValidator(_mac)]
IPv4Address = Annotated[str, AfterValidator(_ipv4)]
IPv4Interface = Annotated[str, AfterValidator(_ipv4_interface)]
IPv4Network = Annotated[str, AfterValidator(_ipv4_network)]


class Endpoint(BaseModel):
    """An SSH endpoint: `name` is the logical host (identity); `address`/`port` only say how to reach it."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True, strict=False
    )

    name: NodeName
    address: HostName
    port: Port = 22


# ---------------------------------------------------------------------------------------------------------
# Messages


def problem_text(err: Any) -> str:
    """One pydantic error as the text after its key path: a rule of ours as it wrote it (it names the
    value), any other with the offending value after it."""
    msg = str(err["msg"])
    if err["type"] == "value_error":
        return msg.removeprefix("Value error, ")
    return f"{msg[0].lower()}{msg[1:]}, got {shown(err['input'])}"


@cache
def _adapter(tp: Any) -> TypeAdapter[Any]:
    return TypeAdapter(tp)


def value_problem(tp: Any, value: Any, strict: bool = True) -> str | None:
    """Why `value` is not a `tp` (the text after the key path), or None when it is."""
    try:
        _adapter(tp).validate_python(value, strict=strict)
    except ValidationError as exc:
        return "; ".join(problem_text(e) for e in exc.errors(include_url=False))
    return None

"""How to reach a launched VM over SSH, from the slice's stack outputs and its stack config (pure).

`guest_access` is the one reader of the per-VM access facts in the outputs (the cloud-init user, the
addresses, the guest's public host key); `jump_host` reads the network node and the hosts' SSH settings
from the config, as the providers do. Every value is checked with the vocabulary's rules, so nothing that
reaches OpenSSH (`cloudrepo/sshargv.py`) can be an option, a second argument or a config directive.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from vocabulary.errors import ConfigError
from vocabulary.shown import shown
from vocabulary.ssh_input import DEFAULT_CONNECT_TIMEOUT, SSH_CONFIG_KEY, SSH_KEY_SECRET, parse_input
from vocabulary.values import INTERNET_VLAN, HostName, LoginName, Port, SshPublicKey

NETWORK_NODE_KEY = "cloudrepo:networkNode"
SSH_PORT = 22


class AccessError(ValueError):
    """The VM cannot be reached as asked; the message says why and what to do."""


@dataclass(frozen=True)
class GuestAccess:
    """One launched VM with cloud-init, as its outputs (`vms["<id>"].cloudInit`) describe it."""

    vm: int
    user: str
    address: str
    """The address used: reachable from the network node (VLAN 400's, else the first link address)."""
    addresses: tuple[str, ...]
    """Every address the VM was given (each one pinned to its host key)."""
    host_key: str
    """The guest's public host key, `TYPE BASE64` (no comment)."""


@dataclass(frozen=True)
class JumpHost:
    """The network node as OpenSSH's ProxyJump: where it is and how the providers log in to it."""

    host: str
    port: int
    user: str
    known_hosts: Path
    key_path: Path | None
    """The hosts' key file (`ssh.privateKeyPath`); None when the key is the secret `sshPrivateKey`."""
    connect_timeout: int


def _checked(kind: Any, value: Any, what: str) -> Any:
    try:
        return TypeAdapter(kind).validate_python(value, strict=True)
    except ValidationError as exc:
        reason = exc.errors()[0].get("msg", "invalid").removeprefix("Value error, ")
        raise AccessError(f"{what}: {reason}") from None


def deployed_vms(outputs: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    """The `vms` output; `AccessError` when the slice has no outputs (never deployed, or destroyed)."""
    vms = outputs.get("vms")
    if not outputs or not isinstance(vms, Mapping):
        raise AccessError(f"slice {name!r} is not deployed (no outputs): cloudrepo deploy {name}")
    return vms


def _vm_entry(outputs: Mapping[str, Any], name: str, vm: int) -> Mapping[str, Any]:
    vms = deployed_vms(outputs, name)
    entry = vms.get(str(vm))
    if not isinstance(entry, Mapping):
        known = ", ".join(sorted(vms, key=lambda k: (len(k), k))) or "none"
        raise AccessError(f"slice {name!r} has no VM {vm} (its VMs: {known})")
    return entry


def reachable_addresses(addresses: Any, interfaces: Any) -> tuple[str, ...]:
    """The guest's addresses (`cloudInit.addresses`: interface -> IPv4) in the order they are tried:
    VLAN 400's first (the interface's `vlan` in `interfaces`), then the others by interface number;
    addresses not known yet (VLAN 400's before the first deploy) and malformed entries left out."""
    vlans = {
        k: v.get("vlan") for k, v in (interfaces.items() if isinstance(interfaces, Mapping) else ())
        if isinstance(v, Mapping)
    }  # fmt: skip
    found: list[tuple[int, int, str]] = []
    for iface, ip in addresses.items() if isinstance(addresses, Mapping) else ():
        try:
            address = str(ipaddress.IPv4Address(ip)) if isinstance(ip, str) else None
        except ValueError:
            address = None
        if address is None:
            continue
        number = int(iface[3:]) if isinstance(iface, str) and iface[3:].isdigit() else 1 << 16
        found.append((0 if vlans.get(iface) == INTERNET_VLAN else 1, number, address))
    return tuple(address for *_, address in sorted(found))


def guest_access(outputs: Mapping[str, Any], name: str, vm: int) -> GuestAccess:
    """The access facts of VM `vm` of slice `name`; `AccessError` when it is unknown, not launched, has no
    cloud-init or no reachable address yet. The only reader of their shape in the outputs."""
    entry = _vm_entry(outputs, name, vm)
    where = f"slice {name!r}, VM {vm}"
    if "running" not in entry:
        raise AccessError(
            f"{where} is not launched (no `launch` in its config): there is no guest to log in to"
        )
    seed = entry.get("cloudInit")
    if not isinstance(seed, Mapping):
        raise AccessError(
            f"{where} has no cloud-init (set vms[].launch.cloudInit or slice.cloudInit with its "
            "sshAuthorizedKeys, then cloudrepo deploy): its guest has no user or key to log in with"
        )
    user = _checked(LoginName, seed.get("user"), f"{where}: its cloud-init user")
    if seed.get("hostKey") is None:
        raise AccessError(
            f"{where}: its guest's host key is not known yet (cloudrepo deploy {name} makes it)"
        )
    key = _checked(SshPublicKey, seed.get("hostKey"), f"{where}: its host key")
    addresses = reachable_addresses(seed.get("addresses"), entry.get("interfaces"))
    if not addresses:
        raise AccessError(
            f"{where} has no address reachable through the network node (no VLAN 400 address and no link "
            "address yet; a VM with `internet: true` gets its address at its first deploy)"
        )
    return GuestAccess(
        vm=vm, user=user, address=addresses[0], addresses=addresses, host_key=" ".join(key.split()[:2])
    )


def guest_vms(outputs: Mapping[str, Any]) -> list[int]:
    """The VMs of the outputs that have cloud-init (what `cloudrepo exec` runs on by default), by id."""
    vms = outputs.get("vms")
    if not isinstance(vms, Mapping):
        return []
    ids = [k for k, v in vms.items() if isinstance(v, Mapping) and isinstance(v.get("cloudInit"), Mapping)]
    return sorted(int(k) for k in ids if k.isdigit())


def known_hosts_text(guests: Sequence[GuestAccess]) -> str:
    """The slice's `known_hosts`: every address of every guest pinned to that guest's host key."""
    return "".join(f"{a} {g.host_key}\n" for g in guests for a in g.addresses)


def jump_host(config: Mapping[str, Any], project: Path) -> JumpHost:
    """The network node and the hosts' SSH login from a stack config (as in `Pulumi.NAME.yaml`: objects,
    secrets as `{secure: ...}`), paths relative to `project`. `ConfigError` names the key that is wrong."""
    node = config.get(NETWORK_NODE_KEY)
    if not isinstance(node, Mapping):
        raise ConfigError(
            f"{NETWORK_NODE_KEY}: not set (the network node is the ProxyJump), got {shown(node)}"
        )
    try:
        host = _checked(HostName, node.get("host"), f"{NETWORK_NODE_KEY}.host")
        port = _checked(Port, node.get("port", SSH_PORT), f"{NETWORK_NODE_KEY}.port")
    except AccessError as exc:
        raise ConfigError(str(exc)) from None
    ssh_in = parse_input(config.get(SSH_CONFIG_KEY), config.get(SSH_KEY_SECRET) is not None)

    def resolved(path: str) -> Path:
        p = Path(path).expanduser()
        return (p if p.is_absolute() else project / p).absolute()

    return JumpHost(
        host=host,
        port=port,
        user=ssh_in.user,
        known_hosts=resolved(ssh_in.known_hosts_path),
        key_path=None if config.get(SSH_KEY_SECRET) is not None else resolved(str(ssh_in.private_key_path)),
        connect_timeout=max(1, round(ssh_in.connect_timeout or DEFAULT_CONNECT_TIMEOUT)),
    )

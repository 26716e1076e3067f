"""A VM's NoCloud seed as data: meta-data, user-data and network-config, pure.

`seed_documents(spec)` turns a `SeedSpec` (the VM, its host name, its user and that user's SSH keys, the
MAC of each interface, optional extra `#cloud-config`) into the three files of a `cidata` volume (the
`CloudSeed` kind writes them on the worker with `cloud-localds`):

- user-data: `#cloud-config` with the user (keys only: no password, `lock_passwd`, `ssh_pwauth: false`,
  root login off) and the host name. The guest's host key (`ssh_keys`) is not part of it: the worker makes
  the key beside the VM and appends it (`providers.kinds.cloud_seed`), so its private half is never here.
  The user's `authorized_keys` is emptied once per instance before cloud-init adds the seed's keys
  (`cloud-init-per instance`): cloud-init only appends, and a key taken out of the seed must stop working
  on the same disk. Extra `#cloud-config` is merged after ours the way cloud-init merges parts by
  default: a top-level key it sets replaces ours.
- network-config (v2): every interface matched by its MAC and named as in the slice (`set-name`), so
  eth0..ethN are the slice's whatever order the guest finds them in; DHCP on each but the parked ones
  (on no link: no server answers there, and ifupdown would hold the boot about a minute per interface).
- meta-data: `instance-id` derived from the other two and the host name, so any change of the seed is a
  new instance and cloud-init applies it on the next boot; `local-hostname`.

The YAML is written by `yaml.safe_dump` and reads back to exactly the data built here (`parsed`); every
value is checked by the vocabulary's types first (`seed_spec` names the offending key and value).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from vocabulary.errors import ConfigError
from vocabulary.problems import validate_input
from vocabulary.shown import shown
from vocabulary.values import GuestHostName, IfName, LoginName, Mac, SshPublicKey, VmId

DEFAULT_USER = "cloud"
RESERVED_USERS = frozenset({"root", "daemon", "bin", "sys", "sync", "nobody", "sshd", "messagebus"})
"""Accounts the image already has: a seed's user is a new, unprivileged login."""
CLOUD_CONFIG = "#cloud-config\n"
HOST_KEYS_KEY = "ssh_keys"
"""The user-data key of the guest's host key: added on the worker (`providers.kinds.cloud_seed`)."""
MAX_KEYS = 64
MAX_INTERFACES = 32


def default_hostname(vm: int) -> str:
    return f"vm{vm}"


def check_user(value: str) -> str:
    if value in RESERVED_USERS:
        raise ValueError(f"user {shown(value)} is an account of the image; choose a new login name")
    return value


def plain_data(value: Any, depth: int = 0) -> None:
    """Refuse what YAML cannot carry back unchanged: only null, booleans, integers, finite numbers, text
    (valid Unicode), lists and string-keyed mappings, at most 32 levels deep."""
    if depth > 32:
        raise ValueError("extra cloud-config is nested more than 32 levels deep")
    if value is None or isinstance(value, (bool, int)):
        return
    if isinstance(value, float):
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError(f"extra cloud-config holds {shown(value)}, not a finite number")
        return
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"extra cloud-config holds {shown(value)}, not valid Unicode text") from None
        return
    if isinstance(value, list):
        for item in value:
            plain_data(item, depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValueError(f"extra cloud-config key {shown(key)} is not text")
            plain_data(key, depth + 1)
            plain_data(item, depth + 1)
        return
    raise ValueError(f"extra cloud-config holds a {type(value).__name__} value, not YAML data")


def check_extra(value: dict[str, Any]) -> dict[str, Any]:
    """Extra `#cloud-config`: plain YAML data (`plain_data`) that leaves the guest's host key to us."""
    plain_data(value)
    if HOST_KEYS_KEY in value:
        raise ValueError(
            f"extra cloud-config sets {HOST_KEYS_KEY!r}: the guest's SSH host key is made on its worker"
        )
    return value


def unique_keys(keys: list[str]) -> list[str]:
    seen: set[str] = set()
    for key in keys:
        body = " ".join(key.split(" ")[:2])
        if body in seen:
            raise ValueError(f"SSH public key {shown(key)} is listed twice")
        seen.add(body)
    return keys


class SeedSpec(BaseModel):
    """What a VM's seed is made of; every field checked by its vocabulary type."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)

    vm: VmId
    hostname: GuestHostName
    user: LoginName = DEFAULT_USER
    ssh_authorized_keys: list[SshPublicKey] = Field(min_length=1, max_length=MAX_KEYS)
    interfaces: dict[IfName, Mac] = Field(min_length=1, max_length=MAX_INTERFACES)
    parked: frozenset[IfName] = frozenset()
    """Interfaces on no link: matched and named, but no DHCP (no server answers there, and ifupdown would
    hold the boot about a minute per interface waiting for one); cloud-init leaves them down."""
    extra: dict[str, Any] | None = None
    """Extra `#cloud-config` (a mapping), merged after ours."""

    @field_validator("user")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        return check_user(value)

    @field_validator("ssh_authorized_keys")
    @classmethod
    def _keys_unique(cls, value: list[str]) -> list[str]:
        return unique_keys(value)

    @field_validator("extra")
    @classmethod
    def _extra_plain(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else check_extra(value)

    @field_validator("interfaces")
    @classmethod
    def _macs_unique(cls, value: dict[str, str]) -> dict[str, str]:
        seen: dict[str, str] = {}
        for name, mac in value.items():
            if mac in seen:
                raise ValueError(f"MAC address {shown(mac)} is given to both {seen[mac]} and {name}")
            seen[mac] = name
        return value

    @model_validator(mode="after")
    def _parked_known(self) -> SeedSpec:
        unknown = sorted(self.parked - set(self.interfaces))
        if unknown:
            raise ValueError(f"parked interface(s) {', '.join(map(shown, unknown))} not among the interfaces")
        return self


def seed_spec(raw: Any, where: str = "seed") -> SeedSpec:
    """`raw` validated as a `SeedSpec`; every problem at once, each naming its key path and value."""
    problems: list[str] = []
    spec = validate_input(SeedSpec, raw, where, problems)
    if spec is None:
        raise ConfigError(problems)
    assert isinstance(spec, SeedSpec)
    return spec


@dataclass(frozen=True)
class SeedDocuments:
    """The three files of a NoCloud seed, as their text."""

    meta_data: str
    user_data: str
    network_config: str

    @property
    def instance_id(self) -> str:
        return str(parsed(self.meta_data)["instance-id"])


def home(user: str) -> str:
    return f"/home/{user}"


def user_config(spec: SeedSpec) -> dict[str, Any]:
    """The `#cloud-config` mapping of `spec`, extra config merged (its top-level keys replace ours)."""
    keys_file = f"{home(spec.user)}/.ssh/authorized_keys"
    ours: dict[str, Any] = {
        "hostname": spec.hostname,
        "preserve_hostname": False,
        "manage_etc_hosts": True,
        "ssh_pwauth": False,
        "disable_root": True,
        "users": [
            {
                "name": spec.user,
                "lock_passwd": True,
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "ssh_authorized_keys": list(spec.ssh_authorized_keys),
            }
        ],
        "bootcmd": [["cloud-init-per", "instance", "cloudrepo-keys", "rm", "-f", keys_file]],
        "ssh_deletekeys": True,
    }
    return {**ours, **(spec.extra or {})}


def network_config(spec: SeedSpec) -> dict[str, Any]:
    """Network config v2: each interface matched by its MAC and named as in the slice; DHCP on each but
    the parked ones."""
    return {
        "version": 2,
        "ethernets": {
            name: {"match": {"macaddress": mac}, "set-name": name, "dhcp4": name not in spec.parked}
            for name, mac in sorted(spec.interfaces.items())
        },
    }


class _Dumper(yaml.SafeDumper):
    """Safe YAML with multi-line text (the host key) as a literal block where YAML allows one."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def _dump(data: dict[str, Any]) -> str:
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=False, width=1 << 16
    )


def parsed(text: str) -> Any:
    return yaml.safe_load(text)


def instance_id(hostname: str, user_data: str, network: str) -> str:
    digest = hashlib.sha256("\0".join([hostname, user_data, network]).encode()).hexdigest()
    return f"i-{digest[:20]}"


def seed_documents(spec: SeedSpec) -> SeedDocuments:
    """The seed's files for `spec` (deterministic: the same spec gives the same text)."""
    user_data = CLOUD_CONFIG + _dump(user_config(spec))
    network = _dump(network_config(spec))
    meta = _dump(
        {"instance-id": instance_id(spec.hostname, user_data, network), "local-hostname": spec.hostname}
    )
    return SeedDocuments(meta_data=meta, user_data=user_data, network_config=network)


def known_hosts_line(address: str, host_key: str) -> str:
    """The `known_hosts` line that pins the guest at `address` to its host key (`ssh-ed25519 AAAA...`)."""
    kind, body = host_key.split(" ")[:2]
    return f"{address} {kind} {body}\n"

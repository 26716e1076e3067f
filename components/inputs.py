"""The raw stack config: the input models of each `cloudrepo:*` object (unknown fields are errors), the
decoding of the engine's raw values, and readable problems from pydantic's errors."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from vocabulary.naming import NAMESPACE
from vocabulary.problems import path_of, suggest
from vocabulary.shown import shown
from vocabulary.values import HostName, IfName, Port


class SecretText(str):
    """A raw config value the engine holds as a secret (`pulumi config set --secret`); never shown."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "(a secret, not shown)"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False, strict=True)


class NetworkNodeInput(_Input):
    """`cloudrepo:networkNode`: the dedicated network node (gateways, DHCP, NAT)."""

    host: HostName
    """SSH address or name."""
    port: Port = 22
    """SSH port."""
    uplink: IfName = "ens3"
    """NAT egress interface."""


class WorkerInput(_Input):
    """One entry of `cloudrepo:workers`."""

    host: HostName
    port: Port = 22


class VlanPoolInput(_Input):
    start: StrictInt
    """The first VLAN of the slice's pool; the pool is start..start+19."""


class VmInput(_Input):
    id: StrictInt
    """VM id, unique across the cloud, 1..65535."""
    worker: StrictStr
    """A key of `cloudrepo:workers`."""
    data_interfaces: StrictInt = Field(default=0, alias="dataInterfaces", ge=0)
    """Number of data interfaces eth1..ethN (eth0 is the management interface)."""
    internet: StrictBool = False
    """eth0 on the shared VLAN 400 with NAT."""
    launch: Any = None
    """Optional QEMU launch of the VM; validated by `components.launch`."""


class LinkInput(_Input):
    a: StrictStr
    b: StrictStr
    vlan: StrictInt | None = None
    """Pin the link to this VLAN of the pool."""
    netem: Any = None
    """The link's impairment (`vocabulary.netem.NetemInput`); validated by `components.slice_rules`."""


class SliceInput(_Input):
    name: StrictStr | None = None
    """Default: the stack name."""
    vlan_pool: VlanPoolInput = Field(alias="vlanPool")
    vms: list[dict[str, Any]] = Field(default_factory=list)
    """Validated one by one (`VmInput`) so one bad VM does not hide the other problems."""
    links: list[Any] = Field(default_factory=list)
    """`["1002.eth1", "1003.eth1"]` or `{a, b, vlan, netem}`; validated one by one."""
    topology: list[Any] = Field(default_factory=list)
    """Presets `{preset, vms}` expanded into more links (components/topology.py)."""
    cloud_init: Any = Field(default=None, alias="cloudInit")
    """Defaults of the launched VMs' cloud-init; validated by `components.guest`."""
    checks: Any = None
    """Declared expectations run in the guests (`cloudrepo check`); validated by `components.checks`."""


# ---------------------------------------------------------------------------------------------------------
# Raw config -> model

KeyKind = Literal["json", "text", "int"]
KNOWN_KEYS: dict[str, KeyKind] = {
    "networkNode": "json",
    "workers": "json",
    "ssh": "json",
    "sshPrivateKey": "text",
    "bridge": "text",
    "slice": "json",
    "parkingVlan": "int",
    "dnsServers": "json",
    "qemu": "json",  # validated by components.launch, called by load_config
}
REQUIRED_KEYS = ("networkNode", "workers", "ssh", "slice")
SECRET_KEYS = ("sshPrivateKey",)
"""Keys whose value must be a Pulumi secret: refused when the stack file holds them in clear."""
OPERATOR_KEYS = (*(k for k in KNOWN_KEYS if k != "slice"), "uplink")
"""The operator's keys (hosts, SSH, QEMU, the network node's VLANs and bridge, the uplink): never part of
a slice section that `cloudrepo slice create --from` takes."""


def parse_raw(raw: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    """Split the raw config into the `cloudrepo:` keys and decode them; report unknown and bad keys."""
    values: dict[str, Any] = {}
    for full_key in sorted(raw):
        ns, sep, key = full_key.partition(":")
        if not sep or ns != NAMESPACE:
            continue
        if key not in KNOWN_KEYS:
            problems.append(
                f"{path_of(f'{NAMESPACE}:', [key])}: unknown config key{suggest(key, KNOWN_KEYS)}"
                f" (known: {', '.join(f'{NAMESPACE}:{k}' for k in KNOWN_KEYS)})"
            )
            continue
        text = raw[full_key]
        kind = KNOWN_KEYS[key]
        if key in SECRET_KEYS and not isinstance(text, SecretText):
            problems.append(
                f"{full_key}: must be a secret, but the stack config holds it in clear (the value is not "
                f"shown): pulumi config set --secret {full_key} < KEYFILE"
            )
            continue
        if kind == "json":
            if not isinstance(text, str):
                values[key] = text
                continue
            try:
                values[key] = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
            except json.JSONDecodeError as exc:
                problems.append(f"{full_key}: not a YAML/JSON object or list ({exc.msg}), got {shown(text)}")
            except (ValueError, RecursionError):  # an integer of thousands of digits; nesting past any use
                problems.append(f"{full_key}: not a usable YAML/JSON value, got {shown(text)}")
        elif kind == "int":
            if (number := _integer(full_key, text, problems)) is not None:
                values[key] = number
        else:
            values[key] = str(text)
    for key in REQUIRED_KEYS:
        if key not in values and f"{NAMESPACE}:{key}" not in raw:
            problems.append(f"{NAMESPACE}:{key}: required")
    return values


def _no_constant(word: str) -> Any:
    """JSON has no NaN or Infinity (Python's decoder takes them; the engine never sends them)."""
    raise ValueError(f"{word} is not JSON")


def _finite(word: str) -> float:
    """A JSON number as a float; one past the float range (`1e999`) is refused, not made infinite."""
    number = float(word)
    if not math.isfinite(number):
        raise ValueError(f"{word} is out of range")
    return number


def _integer(full_key: str, text: Any, problems: list[str]) -> int | None:
    word = str(text).strip()
    if not re.fullmatch(r"-?[0-9]{1,9}", word):
        problems.append(f"{full_key}: must be an integer, got {shown(text)}")
        return None
    return int(word)


def raw_stack_config() -> dict[str, str]:
    """The raw config the engine gave this program: every key, including unknown `cloudrepo:*` ones, the
    values of secret keys as `SecretText`.

    `pulumi.Config` only answers for keys it is asked about, so typos would pass unnoticed; the SDK keeps
    the whole map in `pulumi.runtime.config` (set from the engine's run request, or `PULUMI_CONFIG`), and
    the keys the engine holds as secrets beside it (`PULUMI_CONFIG_SECRET_KEYS`).
    """
    from pulumi.runtime import config as runtime_config

    raw: dict[str, Any] = dict(runtime_config.get_config_env())
    raw.update(runtime_config.CONFIG.get())
    secret = set(runtime_config.get_config_secret_keys_env())
    return {
        str(k): SecretText(v) if k in secret or runtime_config.is_config_secret(str(k)) else v
        for k, v in raw.items()
    }

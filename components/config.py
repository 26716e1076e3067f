"""The stack-config model: every `cloudrepo:*` key parsed, validated and reported in one error.

`load_config(raw, stack)` is pure: it takes the raw config of the stack (keys `cloudrepo:<name>`, values as
the engine passes them: JSON text for objects and lists, plain text for strings and numbers) and returns a
`SliceConfig`, or raises one `ConfigError` that lists every problem, each naming the offending value.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    StrictStr,
    ValidationError,
)

from providers.errors import ConfigError
from providers.naming import (
    IFNAMSIZ_MAX,
    SAFE_NETNS,
    SAFE_SLICE,
    dhcp_namespace,
    dhcp_port,
    gateway_port,
    ifname_problem,
    slice_problem,
    tap_name,
)
from providers.specs import Endpoint

NAMESPACE = "cloudrepo"
POOL_SIZE = 20
INTERNET_VLAN = 400
DEFAULT_PARKING_VLAN = 4094
DEFAULT_DNS = ("8.8.8.8",)
MAX_VM_ID = 0xFFFF
"""The MAC `52:54:00:{vm>>8}:{vm&0xff}:{iface}` holds 16 bits of the VM id."""
MAX_DATA_INTERFACES = 0xFF
"""... and the interface number in its last byte."""
NETWORK_NODE_NAME = "network"
"""The logical host name of `cloudrepo:networkNode` in every resource's `host` input."""

HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
"""An SSH address: a DNS name or an IPv4 address (the providers' `Endpoint.address` rule)."""
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
"""A POSIX login name (useradd's default NAME_REGEX)."""
SAFE_WORKER = SAFE_SLICE
"""A worker name: part of resource ids and Pulumi resource names."""
IFACE_REF_RE = re.compile(r"^(?P<vm>[0-9]+)\.(?P<iface>eth(?:0|[1-9][0-9]*))$")
"""A link endpoint `VM.ethN`."""


# ---------------------------------------------------------------------------------------------------------
# The input models (one per config object; unknown fields are errors)


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)


class NetworkNodeInput(_Input):
    """`cloudrepo:networkNode`: the dedicated network node (gateways, DHCP, NAT)."""

    host: StrictStr
    """SSH address or name."""
    port: StrictInt = 22
    """SSH port."""
    uplink: StrictStr = "ens3"
    """NAT egress interface."""


class WorkerInput(_Input):
    """One entry of `cloudrepo:workers`."""

    host: StrictStr
    port: StrictInt = 22


class SshInput(_Input):
    """`cloudrepo:ssh`: how the providers reach the hosts (they read it themselves in `configure()`)."""

    user: StrictStr
    private_key_path: StrictStr | None = Field(default=None, alias="privateKeyPath")
    """A private key file; or the secret `cloudrepo:sshPrivateKey`."""
    known_hosts_path: StrictStr = Field(alias="knownHostsPath")
    """Required: host keys are always verified against this file."""
    sudo: StrictBool = False
    """Privileged commands run as `sudo -n ...`."""
    connect_timeout: float | None = Field(default=None, alias="connectTimeout", gt=0)
    """Seconds (read by the providers' SSH layer)."""
    command_timeout: float | None = Field(default=None, alias="commandTimeout", gt=0)
    """Seconds (read by the providers' SSH layer)."""


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


class SliceInput(_Input):
    name: StrictStr | None = None
    """Default: the stack name."""
    vlan_pool: VlanPoolInput = Field(alias="vlanPool")
    vms: list[dict[str, Any]] = Field(default_factory=list)
    """Validated one by one (`VmInput`) so one bad VM does not hide the other problems."""
    links: list[Any] = Field(default_factory=list)
    """`["1002.eth1", "1003.eth1"]` or `{a, b, vlan}`; validated one by one."""


# ---------------------------------------------------------------------------------------------------------
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


class SshSettings(BaseModel):
    model_config = ConfigDict(frozen=True)
    user: str
    private_key_path: str | None
    known_hosts_path: str
    sudo: bool
    private_key: SecretStr | None
    """The secret `cloudrepo:sshPrivateKey`, when set."""


class SliceConfig(BaseModel):
    """The whole stack config, validated."""

    model_config = ConfigDict(frozen=True)
    stack: str
    slice_name: str
    network_node: Endpoint
    uplink: str
    workers: dict[str, Endpoint]
    ssh: SshSettings
    bridge: str
    parking_vlan: int
    dns_servers: tuple[str, ...]
    pool: VlanPool
    vms: tuple[Vm, ...]
    links: tuple[Link, ...]

    def vm(self, vm_id: int) -> Vm:
        return next(v for v in self.vms if v.id == vm_id)

    @property
    def internet_vms(self) -> list[Vm]:
        return [v for v in self.vms if v.internet]


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
    "qemu": "json",  # validated by components.launch
}
REQUIRED_KEYS = ("networkNode", "workers", "ssh", "slice")


def _fmt_loc(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def _known_fields(model: type[BaseModel]) -> list[str]:
    return [f.alias or name for name, f in model.model_fields.items()]


def _suggest(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _validate(model: type[_Input], value: Any, where: str, problems: list[str]) -> Any:
    """Validate `value` with `model`; append one readable problem per pydantic error; None when invalid."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        for err in exc.errors(include_url=False):
            loc = tuple(err["loc"])
            path = _fmt_loc(where, loc)
            kind = err["type"]
            if kind == "extra_forbidden":
                # find the model that owns the unknown field, to list the known ones
                owner: type[BaseModel] = model
                for part in loc[:-1]:
                    if isinstance(part, str):
                        field = next(
                            (f for n, f in owner.model_fields.items() if (f.alias or n) == part), None
                        )
                        ann = getattr(field, "annotation", None)
                        if isinstance(ann, type) and issubclass(ann, BaseModel):
                            owner = ann
                known = _known_fields(owner)
                problems.append(
                    f"{path}: unknown key {str(loc[-1])!r}{_suggest(str(loc[-1]), known)}"
                    f" (known: {', '.join(known)})"
                )
            elif kind == "missing":
                problems.append(f"{path}: required")
            elif kind in ("model_type", "dict_type"):
                problems.append(f"{path}: must be an object, got {err['input']!r}")
            else:
                msg = err["msg"].removeprefix("Value error, ")
                problems.append(f"{path}: {msg[0].lower()}{msg[1:]}, got {err['input']!r}")
        return None


def _parse_raw(raw: Mapping[str, str], problems: list[str]) -> dict[str, Any]:
    """Split the raw config into the `cloudrepo:` keys and decode them; report unknown and bad keys."""
    values: dict[str, Any] = {}
    for full_key in sorted(raw):
        ns, sep, key = full_key.partition(":")
        if not sep or ns != NAMESPACE:
            continue
        if key not in KNOWN_KEYS:
            problems.append(
                f"{full_key}: unknown config key{_suggest(key, KNOWN_KEYS)}"
                f" (known: {', '.join(f'{NAMESPACE}:{k}' for k in KNOWN_KEYS)})"
            )
            continue
        text = raw[full_key]
        kind = KNOWN_KEYS[key]
        if kind == "json":
            if not isinstance(text, str):
                values[key] = text
                continue
            try:
                values[key] = json.loads(text)
            except json.JSONDecodeError as exc:
                problems.append(f"{full_key}: not a YAML/JSON object or list ({exc.msg}), got {text!r}")
        elif kind == "int":
            try:
                values[key] = int(str(text).strip())
            except ValueError:
                problems.append(f"{full_key}: must be an integer, got {text!r}")
        else:
            values[key] = str(text)
    for key in REQUIRED_KEYS:
        if key not in values and f"{NAMESPACE}:{key}" not in raw:
            problems.append(f"{NAMESPACE}:{key}: required")
    return values


def _host_problem(where: str, host: str) -> str | None:
    if not HOST_RE.fullmatch(host):
        return (
            f"{where}: host {host!r} is not an IPv4 address or DNS name (letters, digits, '.' and '-' only)"
        )
    return None


def _port_problem(where: str, port: int) -> str | None:
    if not 1 <= port <= 65535:
        return f"{where}: port must be 1..65535, got {port}"
    return None


def parse_iface_ref(text: str) -> IfaceRef | None:
    m = IFACE_REF_RE.fullmatch(text)
    if not m:
        return None
    return IfaceRef(vm=int(m["vm"]), iface=m["iface"])


def load_config(raw: Mapping[str, str], stack: str) -> SliceConfig:
    """Parse and validate the raw `cloudrepo:*` config of `stack`.

    Raises one `ConfigError` listing every problem.
    """
    problems: list[str] = []
    add = problems.append
    values = _parse_raw(raw, problems)
    ns = NAMESPACE

    # ---- hosts
    node: NetworkNodeInput | None = None
    if "networkNode" in values:
        node = _validate(NetworkNodeInput, values["networkNode"], f"{ns}:networkNode", problems)
    if node is not None:
        for p in (
            _host_problem(f"{ns}:networkNode", node.host),
            _port_problem(f"{ns}:networkNode", node.port),
        ):
            if p:
                add(p)
        if (why := ifname_problem(node.uplink)) is not None:
            add(f"{ns}:networkNode.uplink: {why}")

    workers: dict[str, WorkerInput] = {}
    if "workers" in values:
        wraw = values["workers"]
        if not isinstance(wraw, dict):
            add(f"{ns}:workers: must be an object of worker name -> {{host, port}}, got {wraw!r}")
        else:
            if not wraw:
                add(f"{ns}:workers: at least one worker is required")
            for wname, wval in wraw.items():
                where = f"{ns}:workers.{wname}"
                if not SAFE_WORKER.fullmatch(wname):
                    add(
                        f"{where}: worker name {wname!r} must be 1..63 characters, start with a letter or "
                        "digit and contain only letters, digits, '_', '.' and '-'"
                    )
                elif wname == NETWORK_NODE_NAME:
                    add(f"{where}: worker name {wname!r} is reserved for cloudrepo:networkNode")
                w = _validate(WorkerInput, wval, where, problems)
                if w is None:
                    continue
                for p in (_host_problem(where, w.host), _port_problem(where, w.port)):
                    if p:
                        add(p)
                workers[wname] = w

    # ---- ssh
    ssh_in: SshInput | None = None
    if "ssh" in values:
        ssh_in = _validate(SshInput, values["ssh"], f"{ns}:ssh", problems)
    secret = values.get("sshPrivateKey")
    if ssh_in is not None:
        if not USER_RE.fullmatch(ssh_in.user):
            add(
                f"{ns}:ssh.user: {ssh_in.user!r} is not a login name "
                "(lower-case letters, digits, '_' and '-', starting with a letter or '_')"
            )
        if ssh_in.private_key_path is None and not secret:
            add(
                f"{ns}:ssh: no SSH key configured: set ssh.privateKeyPath or the secret "
                f"{ns}:sshPrivateKey (pulumi config set --secret {ns}:sshPrivateKey < KEY)"
            )
        paths = (("privateKeyPath", ssh_in.private_key_path), ("knownHostsPath", ssh_in.known_hosts_path))
        for field, path in paths:
            if path is not None and (not path or "\0" in path or "\n" in path):
                add(f"{ns}:ssh.{field}: not a usable file path, got {path!r}")

    # ---- bridge, parking VLAN, DNS
    bridge = values.get("bridge", "br-int")
    if (why := ifname_problem(bridge)) is not None:
        add(f"{ns}:bridge: {why}")
    parking = values.get("parkingVlan", DEFAULT_PARKING_VLAN)
    if not 1 <= parking <= 4094:
        add(f"{ns}:parkingVlan: must be 1..4094, got {parking}")
    elif parking == INTERNET_VLAN:
        add(f"{ns}:parkingVlan: VLAN {INTERNET_VLAN} is the shared internet VLAN, got {parking}")
    dns: tuple[str, ...] = DEFAULT_DNS
    if "dnsServers" in values:
        draw = values["dnsServers"]
        if not isinstance(draw, list) or not draw:
            add(f"{ns}:dnsServers: must be a non-empty list of IPv4 addresses, got {draw!r}")
        else:
            good: list[str] = []
            for i, d in enumerate(draw):
                try:
                    good.append(str(ipaddress.IPv4Address(d)))
                except (ValueError, TypeError):
                    add(f"{ns}:dnsServers[{i}]: not an IPv4 address, got {d!r}")
            dns = tuple(good)

    # ---- slice
    slice_in: SliceInput | None = None
    if "slice" in values:
        slice_in = _validate(SliceInput, values["slice"], f"{ns}:slice", problems)
    slice_name = stack
    pool: VlanPool | None = None
    vms: list[Vm] = []
    links: list[Link] = []
    if slice_in is not None:
        where = f"{ns}:slice"
        slice_name = slice_in.name if slice_in.name is not None else stack
        if (why := slice_problem(slice_name)) is not None:
            origin = "" if slice_in.name is not None else " (the stack name, the default of slice.name)"
            add(f"{where}.name: {why}{origin}")
        pool = _check_pool(slice_in.vlan_pool.start, parking, add)
        vms, bad_vm_ids = _check_vms(slice_in.vms, workers if "workers" in values else None, add)
        links = _check_links(slice_in.links, vms, bad_vm_ids, pool, add)

    if problems:
        raise ConfigError(problems)
    assert node is not None and ssh_in is not None and pool is not None
    return SliceConfig(
        stack=stack,
        slice_name=slice_name,
        network_node=Endpoint(name=NETWORK_NODE_NAME, address=node.host, port=node.port),
        uplink=node.uplink,
        workers={n: Endpoint(name=n, address=w.host, port=w.port) for n, w in workers.items()},
        ssh=SshSettings(
            user=ssh_in.user,
            private_key_path=ssh_in.private_key_path,
            known_hosts_path=ssh_in.known_hosts_path,
            sudo=ssh_in.sudo,
            private_key=SecretStr(secret) if secret else None,
        ),
        bridge=bridge,
        parking_vlan=parking,
        dns_servers=dns,
        pool=pool,
        vms=tuple(vms),
        links=tuple(links),
    )


def _check_pool(start: int, parking: int, add: Callable[[str], None]) -> VlanPool | None:
    where = f"{NAMESPACE}:slice.vlanPool.start"
    pool = VlanPool(start=start)
    ok = True
    if start < 1:
        add(f"{where}: the pool {start}..{pool.end} starts below VLAN 1, got {start}")
        ok = False
    if pool.end > 4094:
        add(f"{where}: the pool {start}..{pool.end} reaches past VLAN 4094, got {start}")
        ok = False
    if INTERNET_VLAN in pool.vlans:
        add(f"{where}: the pool {start}..{pool.end} contains VLAN {INTERNET_VLAN} (the shared internet VLAN)")
        ok = False
    if parking in pool.vlans:
        add(
            f"{where}: the pool {start}..{pool.end} contains the parking VLAN {parking} "
            f"({NAMESPACE}:parkingVlan)"
        )
        ok = False
    if ok:
        # Names on the network node derived from the pool's VLANs.
        for vlan in (start, pool.end):
            for name in (gateway_port(vlan), dhcp_port(vlan)):
                if (why := ifname_problem(name)) is not None:
                    add(f"{where}: VLAN {vlan}: {why}")
            ns_name = dhcp_namespace(vlan)
            if len(ns_name) > IFNAMSIZ_MAX:
                # Held to the interface limit too: the spec treats every name on a host alike.
                add(
                    f"{where}: VLAN {vlan}: namespace name {ns_name!r} is {len(ns_name)} characters, "
                    f"over the Linux limit of {IFNAMSIZ_MAX}"
                )
            elif not SAFE_NETNS.fullmatch(ns_name):
                add(f"{where}: VLAN {vlan}: namespace name {ns_name!r} is not a valid namespace name")
    return pool if ok else None


def _unknown_worker(where: str, vm_id: Any, worker: str, workers: Mapping[str, Any]) -> str:
    known = ", ".join(sorted(workers)) or "none"
    return (
        f"{where}.worker: VM {vm_id}: unknown worker {worker!r}{_suggest(worker, workers)}"
        f" (cloudrepo:workers has: {known})"
    )


def _check_vms(
    raw_vms: list[dict[str, Any]],
    workers: dict[str, WorkerInput] | None,
    add: Callable[[str], None],
) -> tuple[list[Vm], set[int]]:
    """Validate the VMs one by one; return the valid ones and the ids of those that are invalid."""
    vms: list[Vm] = []
    bad_ids: set[int] = set()
    first_index: dict[int, int] = {}
    for i, raw_vm in enumerate(raw_vms):
        where = f"{NAMESPACE}:slice.vms[{i}]"
        local: list[str] = []
        v = _validate(VmInput, raw_vm, where, local)
        if v is None:
            for p in local:
                add(
                    p.replace(
                        f"{where}.id: input should be a valid integer",
                        f"{where}.id: must be a positive integer",
                    )
                )
            rid = raw_vm.get("id") if isinstance(raw_vm, dict) else None
            if isinstance(rid, int) and not isinstance(rid, bool):
                bad_ids.add(rid)
            rworker = raw_vm.get("worker") if isinstance(raw_vm, dict) else None
            if workers is not None and isinstance(rworker, str) and rworker not in workers:
                add(_unknown_worker(where, rid, rworker, workers))
            continue
        ok = True
        if not 1 <= v.id <= MAX_VM_ID:
            add(
                f"{where}.id: must be a positive integer up to {MAX_VM_ID} "
                f"(the MAC holds 16 bits of it), got {v.id}"
            )
            bad_ids.add(v.id)
            ok = False
        elif v.data_interfaces > MAX_DATA_INTERFACES:
            add(
                f"{where}.dataInterfaces: VM {v.id}: at most {MAX_DATA_INTERFACES} data interfaces "
                f"(the MAC holds the interface number in one byte), got {v.data_interfaces}"
            )
            ok = False
        if ok and v.id in first_index:
            add(f"{where}.id: duplicate VM id {v.id} (also cloudrepo:slice.vms[{first_index[v.id]}])")
            ok = False
        elif ok:
            first_index[v.id] = i
        if workers is not None and v.worker not in workers:
            add(_unknown_worker(where, v.id, v.worker, workers))
            ok = False
        if ok:
            vm = Vm(id=v.id, worker=v.worker, data_interfaces=v.data_interfaces, internet=v.internet)
            # The longest TAP name of the VM is its last interface's; report the first one that is too long.
            last = tap_name(vm.id, f"eth{vm.data_interfaces}")
            if len(last) > IFNAMSIZ_MAX:
                digits = IFNAMSIZ_MAX - len(tap_name(vm.id, "eth"))
                first_long = tap_name(vm.id, f"eth{10**digits}")
                add(
                    f"{where}.dataInterfaces: VM {vm.id}: {vm.data_interfaces} data interfaces: TAP name "
                    f"{first_long!r} is {len(first_long)} characters, over the Linux limit of {IFNAMSIZ_MAX}"
                )
                ok = False
        if ok:
            vms.append(vm)
        else:
            bad_ids.add(v.id)
    return vms, bad_ids - {v.id for v in vms}


def _check_links(
    raw_links: list[Any],
    vms: list[Vm],
    bad_vm_ids: set[int],
    pool: VlanPool | None,
    add: Callable[[str], None],
) -> list[Link]:
    by_id = {v.id: v for v in vms}
    links: list[Link] = []
    used_by: dict[str, int] = {}
    seen_pairs: dict[LinkKey, int] = {}
    pinned_by: dict[int, int] = {}
    for i, raw_link in enumerate(raw_links):
        where = f"{NAMESPACE}:slice.links[{i}]"
        if isinstance(raw_link, list):
            if len(raw_link) != 2:
                add(f'{where}: a link is a pair ["VM.ethN", "VM.ethN"], got {raw_link!r}')
                continue
            raw_link = {"a": raw_link[0], "b": raw_link[1]}
        local: list[str] = []
        li = _validate(LinkInput, raw_link, where, local)
        if li is None:
            for p in local:
                add(p)
            continue
        refs: list[IfaceRef] = []
        ok = True
        for side, text in (("a", li.a), ("b", li.b)):
            ref = parse_iface_ref(text)
            if ref is None:
                add(f'{where}.{side}: {text!r} is not an interface of the form VM.ethN (e.g. "1002.eth1")')
                ok = False
                continue
            refs.append(ref)
            if ref.iface == "eth0":
                add(f"{where}.{side}: {text!r}: eth0 is the management interface and cannot be linked")
                ok = False
            elif ref.vm not in by_id:
                if ref.vm not in bad_vm_ids:
                    add(f"{where}.{side}: {text!r}: VM {ref.vm} is not defined in cloudrepo:slice.vms")
                ok = False
            elif ref.index > by_id[ref.vm].data_interfaces:
                n = by_id[ref.vm].data_interfaces
                has = f"eth1..eth{n}" if n > 1 else ("eth1" if n == 1 else "none")
                add(
                    f"{where}.{side}: {text!r}: VM {ref.vm} has no interface {ref.iface} "
                    f"(data interfaces: {has})"
                )
                ok = False
        if len(refs) == 2 and refs[0] == refs[1]:
            add(f"{where}: self link: {refs[0]} is linked to itself")
            ok = False
        elif len(refs) == 2 and refs[0].vm == refs[1].vm:
            add(f"{where}: self link: {refs[0]} and {refs[1]} are interfaces of the same VM {refs[0].vm}")
            ok = False
        if li.vlan is not None and pool is not None:
            if li.vlan not in pool.vlans:
                add(f"{where}.vlan: pinned VLAN {li.vlan} is outside the pool {pool.start}..{pool.end}")
                ok = False
            elif li.vlan in pinned_by:
                add(
                    f"{where}.vlan: VLAN {li.vlan} is pinned twice "
                    f"(also cloudrepo:slice.links[{pinned_by[li.vlan]}])"
                )
                ok = False
            else:
                pinned_by[li.vlan] = i
        if len(refs) == 2:
            a, b = sorted(refs, key=IfaceRef.sort_key)
            pair = (str(a), str(b))
            if pair in seen_pairs and a != b:
                add(f"{where}: duplicate link {a} -- {b} (also cloudrepo:slice.links[{seen_pairs[pair]}])")
                continue
            seen_pairs.setdefault(pair, i)
            if a != b:
                for ref in (a, b):
                    if str(ref) in used_by:
                        add(
                            f"{where}: interface {ref} is already in "
                            f"cloudrepo:slice.links[{used_by[str(ref)]}]"
                        )
                        ok = False
                    else:
                        used_by[str(ref)] = i
            if ok:
                links.append(Link(a=a, b=b, pinned=li.vlan))
    if pool is not None and len(raw_links) > POOL_SIZE:
        extra = ", ".join(
            f"cloudrepo:slice.links[{i}]{_link_label(raw_links[i])}" for i in range(POOL_SIZE, len(raw_links))
        )
        add(
            f"{NAMESPACE}:slice.links: VLAN pool exhausted: {len(raw_links)} links, but the pool "
            f"{pool.start}..{pool.end} holds {POOL_SIZE} VLANs (no VLAN for {extra})"
        )
    return links


def _link_label(raw: Any) -> str:
    """' (A -- B)' for a link entry whose endpoints are strings, else ''."""
    ends = [raw.get("a"), raw.get("b")] if isinstance(raw, dict) else raw
    if isinstance(ends, list | tuple) and len(ends) == 2 and all(isinstance(e, str) for e in ends):
        return f" ({ends[0]} -- {ends[1]})"
    return ""


def raw_stack_config() -> dict[str, str]:
    """The raw config the engine gave this program: every key, including unknown `cloudrepo:*` ones.

    `pulumi.Config` only answers for keys it is asked about, so typos would pass unnoticed; the SDK keeps
    the whole map in `pulumi.runtime.config` (set from the engine's run request, or `PULUMI_CONFIG`).
    """
    from pulumi.runtime import config as runtime_config

    raw: dict[str, Any] = dict(runtime_config.get_config_env())
    raw.update(runtime_config.CONFIG.get())
    return {str(k): v for k, v in raw.items()}

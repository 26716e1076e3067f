"""The stack config: every `cloudrepo:*` key parsed, validated and reported in one error.

`load_config(raw, stack)` is pure: it takes the raw config of the stack (keys `cloudrepo:<name>`, values as
the engine passes them: JSON text for objects and lists, plain text for strings and numbers, `SecretText`
for the keys the engine holds as secrets) and returns a `SliceConfig` (`components.model`), or raises one
`ConfigError` that lists every problem, each starting with the key path and showing the offending value as
`vocabulary.shown` renders it. Raw decoding and input models: `components.inputs`; the slice's rules:
`components.slice_rules`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from pydantic import SecretStr

from components.inputs import NetworkNodeInput, SliceInput, WorkerInput, parse_raw, path_of, validate_input
from components.model import (
    DEFAULT_DNS,
    DEFAULT_PARKING_VLAN,
    INTERNET_VLAN,
    NAMESPACE,
    NETWORK_NODE_NAME,
    POOL_SIZE,
    Link,
    SliceConfig,
    SshSettings,
    VlanPool,
    Vm,
)
from components.slice_rules import check_links, check_pool, check_vms, vm_paths
from components.topology import expand_topology
from transport.ssh_settings import SshInput, input_problems
from vocabulary.errors import ConfigError
from vocabulary.naming import SAFE_SLICE, ifname_problem, slice_problem
from vocabulary.shown import shown
from vocabulary.specs import Endpoint

HOST_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$")
"""An SSH address: a DNS name or an IPv4 address (the providers' `Endpoint.address` rule)."""
SAFE_WORKER = SAFE_SLICE
"""A worker name: part of resource ids and Pulumi resource names."""


def _host_problem(where: str, host: str) -> str | None:
    if not HOST_RE.fullmatch(host):
        return (
            f"{where}.host: {shown(host)} is not an IPv4 address or DNS name "
            "(letters, digits, '.' and '-' only)"
        )
    return None


def _port_problem(where: str, port: int) -> str | None:
    if not 1 <= port <= 65535:
        return f"{where}.port: must be 1..65535, got {port}"
    return None


def load_config(raw: Mapping[str, str], stack: str) -> SliceConfig:
    """Parse and validate the raw `cloudrepo:*` config of `stack`.

    Raises one `ConfigError` listing every problem.
    """
    problems: list[str] = []
    add = problems.append
    values = parse_raw(raw, problems)
    ns = NAMESPACE

    # ---- hosts
    node: NetworkNodeInput | None = None
    if "networkNode" in values:
        node = validate_input(NetworkNodeInput, values["networkNode"], f"{ns}:networkNode", problems)
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
            add(f"{ns}:workers: must be an object of worker name -> {{host, port}}, got {shown(wraw)}")
        else:
            if not wraw:
                add(f"{ns}:workers: at least one worker is required")
            for wname, wval in wraw.items():
                where = path_of(f"{ns}:workers", [wname])
                if not SAFE_WORKER.fullmatch(wname):
                    add(
                        f"{where}: worker name {shown(wname)} must be 1..63 characters, start with a letter "
                        "or digit and contain only letters, digits, '_', '.' and '-'"
                    )
                elif wname == NETWORK_NODE_NAME:
                    add(f"{where}: worker name {shown(wname)} is reserved for cloudrepo:networkNode")
                w = validate_input(WorkerInput, wval, where, problems)
                if w is None:
                    continue
                for p in (_host_problem(where, w.host), _port_problem(where, w.port)):
                    if p:
                        add(p)
                workers[wname] = w

    # ---- ssh
    ssh_in: SshInput | None = None
    if "ssh" in values:
        ssh_in = validate_input(SshInput, values["ssh"], f"{ns}:ssh", problems)
    secret = values.get("sshPrivateKey")
    if ssh_in is not None:
        for p in input_problems(ssh_in, bool(secret) or f"{ns}:sshPrivateKey" in raw):
            add(p)

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
            add(f"{ns}:dnsServers: must be a non-empty list of IPv4 addresses, got {shown(draw)}")
        else:
            good: list[str] = []
            for i, d in enumerate(draw):
                try:
                    good.append(str(ipaddress.IPv4Address(d)))
                except (ValueError, TypeError):
                    add(f"{ns}:dnsServers[{i}]: not an IPv4 address, got {shown(d)}")
            dns = tuple(good)

    # ---- slice
    slice_in: SliceInput | None = None
    if "slice" in values:
        slice_in = validate_input(SliceInput, values["slice"], f"{ns}:slice", problems)
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
        pool = check_pool(slice_in.vlan_pool.start, parking, add)
        vms, bad_vm_ids = check_vms(slice_in.vms, workers if "workers" in values else None, add)
        sizes = {v.id: v.data_interfaces for v in vms}
        paths = vm_paths(slice_in.vms)
        preset_links = expand_topology(
            slice_in.topology, sizes, bad_vm_ids, slice_in.links, POOL_SIZE, add, paths
        )
        links = check_links([*slice_in.links, *preset_links], vms, bad_vm_ids, pool, add, paths)

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

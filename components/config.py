"""The stack config: every `cloudrepo:*` key parsed, validated and reported in one error.

`load_config(raw, stack)` is pure: it takes the raw config of the stack (keys `cloudrepo:<name>`, values as
the engine passes them: JSON text for objects and lists, plain text for strings and numbers, `SecretText`
for the keys the engine holds as secrets) and returns a `SliceConfig` (`components.model`), or raises one
`ConfigError` that lists every problem, each starting with the key path and showing the offending value as
`vocabulary.shown` renders it. Raw decoding and input models: `components.inputs`; the rules of single
values: `vocabulary.values`; the slice's rules: `components.slice_rules`; the VMs' launches:
`components.launch`. `components.prepare` runs this, then the allocation and the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from components.check_specs import Check
from components.checks import check_checks
from components.inputs import NetworkNodeInput, SliceInput, WorkerInput, parse_raw
from components.launch import parse_launches
from components.model import (
    DEFAULT_DNS,
    DEFAULT_PARKING_VLAN,
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
from vocabulary.errors import ConfigError
from vocabulary.problems import path_of, validate_input, validate_value
from vocabulary.shown import shown
from vocabulary.ssh_input import SshInput, input_problems
from vocabulary.values import Endpoint, IfName, IPv4Address, NodeName, ParkingVlan, SliceName


def load_config(raw: Mapping[str, str], stack: str, base: Path | None = None) -> SliceConfig:
    """Parse and validate the raw `cloudrepo:*` config of `stack`, the VMs' launches with it (boot files
    relative to `base`, the project directory: default the working directory).

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

    workers: dict[str, WorkerInput] = {}
    named: set[str] = set()
    """Every worker the config names with an object (a VM on it is on a known worker, even when the
    worker's own entry has problems)."""
    if "workers" in values:
        wraw = values["workers"]
        if not isinstance(wraw, dict):
            add(f"{ns}:workers: must be an object of worker name -> {{host, port}}, got {shown(wraw)}")
        else:
            if not wraw:
                add(f"{ns}:workers: at least one worker is required")
            for wname, wval in wraw.items():
                where = path_of(f"{ns}:workers", [wname])
                if validate_value(NodeName, wname, where, problems) and wname == NETWORK_NODE_NAME:
                    add(f"{where}: worker name {shown(wname)} is reserved for cloudrepo:networkNode")
                if isinstance(wval, dict):
                    named.add(wname)
                w = validate_input(WorkerInput, wval, where, problems)
                if w is not None:
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
    validate_value(IfName, bridge, f"{ns}:bridge", problems)
    parking = values.get("parkingVlan", DEFAULT_PARKING_VLAN)
    validate_value(ParkingVlan, parking, f"{ns}:parkingVlan", problems)
    dns: tuple[str, ...] = DEFAULT_DNS
    if "dnsServers" in values:
        draw = values["dnsServers"]
        if not isinstance(draw, list) or not draw:
            add(f"{ns}:dnsServers: must be a non-empty list of IPv4 addresses, got {shown(draw)}")
        else:
            at = f"{ns}:dnsServers"
            ok = [validate_value(IPv4Address, d, f"{at}[{i}]", problems) for i, d in enumerate(draw)]
            dns = tuple(d for d, good in zip(draw, ok, strict=True) if good)

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
        origin = "" if slice_in.name is not None else " (the stack name, the default of slice.name)"
        local: list[str] = []
        if not validate_value(SliceName, slice_name, f"{where}.name", local):
            add(local[0] + origin)
        pool = check_pool(slice_in.vlan_pool.start, parking, add)
        vms, bad_vm_ids = check_vms(slice_in.vms, named if "workers" in values else None, add)
        sizes = {v.id: v.data_interfaces for v in vms}
        paths = vm_paths(slice_in.vms)
        preset_links = expand_topology(
            slice_in.topology, sizes, bad_vm_ids, slice_in.links, POOL_SIZE, add, paths
        )
        links = check_links([*slice_in.links, *preset_links], vms, bad_vm_ids, pool, add, paths)
    launches = parse_launches(values, base or Path.cwd(), add)
    checks: tuple[Check, ...] = ()
    if slice_in is not None:
        launching = [r for r in slice_in.vms if isinstance(r, dict) and r.get("launch") is not None]
        launched = {v.id for v in vms if any(r.get("id") == v.id for r in launching)}
        checks = check_checks(slice_in.checks, vms, links, launched, dns, add, bad_vm_ids)

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
        launches=launches,
        checks=checks,
    )

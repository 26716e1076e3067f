"""VLAN allocation over the link graph: pure functions.

Order of precedence: pinned VLANs first; then every link keeps the VLAN it had in the previous run (the
allocation memory, see docs/design.md "VLAN allocation memory"); then each remaining link, in config order,
takes the lowest free VLAN of the pool. A removed link is simply absent, so its VLAN is free again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from components.config import NAMESPACE, ConfigError, IfaceRef, Link, LinkKey, VlanPool, parse_iface_ref


def canonical_key(a: str, b: str) -> LinkKey | None:
    """The canonical identity of a link given as two `VM.ethN` texts, or None when one is malformed."""
    ra, rb = parse_iface_ref(a), parse_iface_ref(b)
    if ra is None or rb is None:
        return None
    x, y = sorted((ra, rb), key=IfaceRef.sort_key)
    return (str(x), str(y))


def allocate_vlans(
    links: Sequence[Link], pool: VlanPool, previous: Mapping[LinkKey, int] | None = None
) -> dict[LinkKey, int]:
    """Give every link a VLAN of `pool`; keep `previous` VLANs; raise `ConfigError` when it cannot.

    The result is ordered like `links`.
    """
    previous = previous or {}
    problems: list[str] = []
    taken: dict[int, LinkKey] = {}
    result: dict[LinkKey, int] = {}
    labels = {link.key: link.label for link in links}

    # 1. pinned VLANs
    for link in links:
        if link.pinned is None:
            continue
        if link.pinned not in pool.vlans:
            problems.append(
                f"{NAMESPACE}:slice.links: link {link.label}: pinned VLAN {link.pinned} is outside the pool "
                f"{pool.start}..{pool.end}"
            )
            continue
        if link.pinned in taken:
            problems.append(
                f"{NAMESPACE}:slice.links: VLAN {link.pinned} is pinned by both {labels[taken[link.pinned]]} "
                f"and {link.label}"
            )
            continue
        taken[link.pinned] = link.key
        result[link.key] = link.pinned

    # 2. deployed links keep their VLAN
    for link in links:
        if link.key in result:
            continue
        vlan = previous.get(link.key)
        if vlan is None or vlan not in pool.vlans:
            continue
        if vlan in taken:
            holder = taken[vlan]
            owner = next(x for x in links if x.key == holder)
            if owner.pinned == vlan:
                problems.append(
                    f"{NAMESPACE}:slice.links: link {owner.label} pins VLAN {vlan}, which the deployed link "
                    f"{link.label} holds; pin another VLAN, or remove {link.label} in an earlier update"
                )
            continue
        taken[vlan] = link.key
        result[link.key] = vlan

    # 3. the rest: lowest free VLAN, in config order
    free = [v for v in pool.vlans if v not in taken]
    free.reverse()
    for link in links:
        if link.key in result:
            continue
        if not free:
            problems.append(
                f"{NAMESPACE}:slice.links: VLAN pool exhausted: no VLAN of {pool.start}..{pool.end} is left "
                f"for link {link.label}"
            )
            continue
        vlan = free.pop()
        taken[vlan] = link.key
        result[link.key] = vlan

    if problems:
        raise ConfigError(problems)
    return {link.key: result[link.key] for link in links}


def previous_allocation(links_output: Any) -> dict[LinkKey, int]:
    """Read the allocation of the previous run from its `links` stack output (anything else: empty).

    Entries that are malformed are skipped: the memory only ever keeps VLANs stable, it never decides
    whether a config is valid.
    """
    out: dict[LinkKey, int] = {}
    if not isinstance(links_output, list):
        return out
    for entry in links_output:
        if not isinstance(entry, Mapping):
            continue
        endpoints = entry.get("endpoints")
        vlan = entry.get("vlan")
        if (
            not isinstance(endpoints, Sequence)
            or isinstance(endpoints, str)
            or len(endpoints) != 2
            or not all(isinstance(e, str) for e in endpoints)
        ):
            continue
        if isinstance(vlan, float) and vlan.is_integer():
            vlan = int(vlan)  # the engine hands numbers to Python as floats
        if not isinstance(vlan, int) or isinstance(vlan, bool):
            continue
        key = canonical_key(endpoints[0], endpoints[1])
        if key is not None:
            out[key] = vlan
    return out


def previous_internet_ips(vms_output: Any) -> dict[int, str]:
    """Read the VLAN 400 address each VM had in the previous run from its `vms` stack output."""
    out: dict[int, str] = {}
    if not isinstance(vms_output, Mapping):
        return out
    for vm_text, vm in vms_output.items():
        if not isinstance(vm_text, str) or not vm_text.isdigit() or not isinstance(vm, Mapping):
            continue
        ifaces = vm.get("interfaces")
        eth0 = ifaces.get("eth0") if isinstance(ifaces, Mapping) else None
        if not isinstance(eth0, Mapping):
            continue
        vlan = eth0.get("vlan")
        ip = eth0.get("ip")
        if vlan in (400, 400.0) and isinstance(ip, str):
            out[int(vm_text)] = ip
    return out

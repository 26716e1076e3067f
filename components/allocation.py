"""VLAN allocation over the link graph: pure functions.

Order of precedence: pinned VLANs first; then every link keeps the VLAN it had in the previous run (the
allocation memory, see docs/design.md "VLAN allocation memory"); then each remaining link, in config order,
takes the lowest free VLAN of the pool. A removed link is simply absent, so its VLAN is free again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from components.model import NAMESPACE, Link, LinkKey, VlanPool
from vocabulary.errors import ConfigError


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

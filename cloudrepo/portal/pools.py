"""The VLAN pool the portal gives a new slice: the lowest range that meets no other slice's VLANs or link
subnets (a link on VLAN v gets 192.168.{v % 256}.0/24, so two pools whose VLANs share a residue mod 256
would give two slices the same subnet). Pure."""

from __future__ import annotations

from collections.abc import Iterable

from components.model import DEFAULT_PARKING_VLAN, POOL_SIZE
from components.slice_rules import check_pool
from vocabulary.values import VLAN_MAX, VLAN_MIN

SUBNETS = 256


def pool_vlans(start: int) -> range:
    return range(start, start + POOL_SIZE)


def free_pool(taken: Iterable[int], parking: int = DEFAULT_PARKING_VLAN) -> int | None:
    """The lowest pool start whose VLANs are not in `taken` nor share a subnet with one of them, and that
    the slice rules accept (`check_pool`); None when none is left."""
    used = set(taken)
    residues = {v % SUBNETS for v in used}
    for start in range(VLAN_MIN, VLAN_MAX - POOL_SIZE + 2):
        vlans = pool_vlans(start)
        if any(v in used or v % SUBNETS in residues for v in vlans):
            continue
        problems: list[str] = []
        if check_pool(start, parking, problems.append) is not None:
            return start
    return None


def clashes(start: int, taken: Iterable[int]) -> bool:
    """Whether the pool at `start` meets one of the `taken` VLANs or their subnets."""
    used = set(taken)
    residues = {v % SUBNETS for v in used}
    return any(v in used or v % SUBNETS in residues for v in pool_vlans(start))

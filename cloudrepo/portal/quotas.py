"""Quotas: what a slice uses (VMs, vCPUs, memory, links) from its checked config, and the check of a
user's total against their limits. Pure."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from cloudrepo.portal.accounts import Limits
from components.model import SliceConfig

QUOTA_NAMES = {
    "vms": "VMs",
    "vcpus": "vCPUs",
    "memory_mb": "memory (MiB)",
    "links": "links",
    "slices": "slices",
}


@dataclass(frozen=True)
class Usage:
    vms: int = 0
    vcpus: int = 0
    memory_mb: int = 0
    links: int = 0
    slices: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(*(a + b for a, b in zip(self.__dict__.values(), other.__dict__.values(), strict=True)))


def usage(config: SliceConfig) -> Usage:
    """One slice: its VMs, the vCPUs and memory of its launched VMs, its links (presets' included)."""
    launches = config.launches.values()
    return Usage(
        vms=len(config.vms),
        vcpus=sum(x.cpus for x in launches),
        memory_mb=sum(x.memory_mb for x in launches),
        links=len(config.links),
        slices=1,
    )


def total(parts: Iterable[Usage]) -> Usage:
    out = Usage()
    for p in parts:
        out = out + p
    return out


def overruns(user: str, limits: Limits | None, wanted: Usage) -> list[str]:
    """One problem per quota `wanted` exceeds, naming the quota and the numbers."""
    if limits is None:
        return []
    return [
        f"quota {field} of {user}: {getattr(wanted, field)} {QUOTA_NAMES[field]} wanted, "
        f"{getattr(limits, field)} allowed"
        for field in QUOTA_NAMES
        if getattr(wanted, field) > getattr(limits, field)
    ]

"""`cloudrepo capture NAME LINK`: which TAP a link is captured on (pure, from the stack outputs), the
checks of `--count` and `--filter`. The worker's login is `hostaccess`'s, the stream itself
`transport.capture`.

LINK is a link as the config and the outputs name it: its two endpoints (`1002.eth1--1003.eth1`, or
`1002.eth1,1003.eth1`; in either order), one of them (`1002.eth1`: that end's TAP) or its VLAN (`120`).
A link is captured on its first endpoint's TAP unless one endpoint is named: a TAP sees both directions.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from components.model import parse_iface_ref
from components.outputs import canonical_key
from vocabulary.shown import shown

MAX_FILTER = 1024
"""Characters of the longest `--filter` (a pcap filter expression)."""
MAX_COUNT = 1_000_000_000
_SPLIT = re.compile(r"\s*(?:--|,)\s*")


class CaptureError(ValueError):
    """LINK names no link of the slice, or the slice's outputs do not say where it is."""


@dataclass(frozen=True)
class Target:
    worker: str
    tap: str
    label: str
    """`1002.eth1 -- 1003.eth1 (VLAN 120)`."""


def bpf_filter(text: str) -> str:
    """argparse type of `--filter`: printable ASCII text of at most `MAX_FILTER` characters (tcpdump reads
    it as one argument; no line break, which would end it early on the way there)."""
    if not text.strip() or len(text) > MAX_FILTER or not (text.isascii() and text.isprintable()):
        raise argparse.ArgumentTypeError(
            f"a filter is printable ASCII text of 1 to {MAX_FILTER} characters (a pcap filter expression "
            f"like 'icmp or arp'), got {shown(text)}"
        )
    return text


def packet_count(text: str) -> int:
    """argparse type of `--count`: 1 to `MAX_COUNT` packets."""
    if not re.fullmatch(r"[0-9]{1,10}", text) or not 1 <= int(text) <= MAX_COUNT:
        raise argparse.ArgumentTypeError(
            f"a count is a whole number from 1 to {MAX_COUNT}, got {shown(text)}"
        )
    return int(text)


def _links(outputs: Mapping[str, Any]) -> list[tuple[tuple[str, str], int]]:
    found = []
    for entry in outputs.get("links") or []:
        ends = entry.get("endpoints") if isinstance(entry, Mapping) else None
        if isinstance(ends, list) and len(ends) == 2 and all(isinstance(e, str) for e in ends):
            key = canonical_key(ends[0], ends[1])
            vlan = entry.get("vlan")
            if key is not None and isinstance(vlan, int | float):
                found.append((key, int(vlan)))
    return found


def target(name: str, outputs: Mapping[str, Any], link: str) -> Target:
    """The worker and TAP that LINK is captured on; `CaptureError` naming LINK and the slice's links."""
    links = _links(outputs)
    text = link.strip()
    end: str | None = None
    found: tuple[tuple[str, str], int] | None = None
    if re.fullmatch(r"[0-9]{1,4}", text):
        found = next((x for x in links if x[1] == int(text)), None)
    elif len(parts := _SPLIT.split(text)) == 2:
        key = canonical_key(parts[0], parts[1])
        found = next((x for x in links if x[0] == key), None)
    elif parse_iface_ref(text) is not None:
        end = str(parse_iface_ref(text))
        found = next((x for x in links if end in x[0]), None)
    if found is None:
        have = ", ".join(f"{a}--{b} (VLAN {v})" for (a, b), v in links) or "none"
        raise CaptureError(
            f"slice {name!r} has no link {shown(link)} (its links: {have}); LINK is VM.ethN--VM.ethN, "
            "one endpoint VM.ethN, or the link's VLAN"
        )
    (a, b), vlan = found
    vm, iface = (end or a).split(".")
    try:
        info = outputs["vms"][vm]
        worker, tap = info["worker"], info["interfaces"][iface]["tap"]
    except (KeyError, TypeError):
        raise CaptureError(f"slice {name!r}: its outputs do not say where {end or a}'s TAP is") from None
    return Target(str(worker), str(tap), f"{a} -- {b} (VLAN {vlan})")

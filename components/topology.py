"""Topology presets (`cloudrepo:slice.topology`): ring, bus, star and mesh expanded into links.

Pure and deterministic: entries are expanded in order, after the written `links`, which claim their
interfaces first. Each preset link, in the preset's order, takes the lowest free data interface of each of
its two VMs. `expand_topology` returns the links as written ones (`["1002.eth1", "1003.eth1"]`) and reports
every problem naming the entry and the VM.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from components.slice_rules import defined
from vocabulary.problems import path_of
from vocabulary.shown import shown

MIN_VMS = {"ring": 3, "bus": 2, "star": 3, "mesh": 2}
"""The presets and the fewest VMs each takes (a star's first VM is its centre)."""
WHERE = "cloudrepo:slice.topology"

Pair = tuple[int, int]


def preset_pairs(preset: str, vms: Sequence[int]) -> list[Pair]:
    """The VM pairs a preset links, in order (`vms` distinct, at least `MIN_VMS[preset]` of them)."""
    n = len(vms)
    if preset == "bus":
        return [(vms[i], vms[i + 1]) for i in range(n - 1)]
    if preset == "ring":
        return [(vms[i], vms[(i + 1) % n]) for i in range(n)]
    if preset == "star":
        return [(vms[0], v) for v in vms[1:]]
    if preset == "mesh":
        return [(vms[i], vms[j]) for i in range(n) for j in range(i + 1, n)]
    raise ValueError(f"unknown preset {preset!r}")


def link_count(preset: str, n: int) -> int:
    """How many links a preset of `n` VMs makes."""
    return {"bus": n - 1, "ring": n, "star": n - 1, "mesh": n * (n - 1) // 2}[preset]


def written_endpoints(raw_links: Iterable[Any]) -> set[str]:
    """The interfaces the written links name (`["A", "B"]` or `{a, b}`), as text; malformed ones skipped."""
    used: set[str] = set()
    for raw in raw_links:
        ends = [raw.get("a"), raw.get("b")] if isinstance(raw, dict) else raw
        if isinstance(ends, list | tuple):
            used |= {e for e in ends if isinstance(e, str)}
    return used


def _entry_problems(i: int, entry: Any, known: Mapping[int, int], invalid: set[int]) -> list[str]:

    where = f"{WHERE}[{i}]"
    if not isinstance(entry, dict):
        return [f"{where}: an entry is {{preset: ring|bus|star|mesh, vms: [ids]}}, got {shown(entry)}"]
    problems = []
    for key in sorted(map(str, set(entry) - {"preset", "vms"})):
        problems.append(f"{path_of(where, [key])}: unknown key {shown(key)} (known: preset, vms)")
    preset, vms = entry.get("preset"), entry.get("vms")
    least = MIN_VMS.get(preset) if isinstance(preset, str) else None
    if least is None:
        problems.append(f"{where}.preset: unknown preset {shown(preset)} (known: {', '.join(MIN_VMS)})")
    if not isinstance(vms, list):
        return [*problems, f"{where}.vms: must be a list of VM ids, got {shown(vms)}"]
    not_ids = [j for j, v in enumerate(vms) if not isinstance(v, int) or isinstance(v, bool)]
    if not_ids:
        return [
            *problems,
            *(f"{where}.vms[{j}]: not a VM id (an integer), got {shown(vms[j])}" for j in not_ids),
        ]
    if least is not None and len(vms) < least:
        problems.append(f"{where}.vms: a {preset} takes at least {least} VMs, got {len(vms)} ({shown(vms)})")
    for v, count in Counter(vms).items():
        if count > 1:
            problems.append(f"{where}.vms: VM {v} is listed {count} times")
        if v not in known and v not in invalid:
            problems.append(f"{where}.vms: VM {v} is not defined in cloudrepo:slice.vms {defined(known)}")
    return problems


def expand_topology(
    entries: Sequence[Any],
    data_interfaces: Mapping[int, int],
    invalid_vms: set[int],
    raw_links: Sequence[Any],
    pool_size: int,
    add: Callable[[str], None],
    paths: Mapping[int, str] | None = None,
) -> list[list[str]]:
    """Expand the presets into links; report problems with `add` (then no link is returned).

    `data_interfaces`: the valid VMs' data interface counts; `invalid_vms`: ids already reported as bad
    (not reported again); `raw_links`: the written links (they take their interfaces and VLANs first);
    `pool_size`: the VLANs of the pool; `paths`: each VM's key path (for messages).
    """
    problems: list[str] = []
    used = written_endpoints(raw_links)
    links: list[list[str]] = []
    for i, entry in enumerate(entries):
        entry_problems = _entry_problems(i, entry, data_interfaces, invalid_vms)
        problems += entry_problems
        if entry_problems:
            continue
        preset, vms = entry["preset"], entry["vms"]
        if any(v in invalid_vms for v in vms):
            continue
        pairs = preset_pairs(preset, vms)
        need = Counter(v for pair in pairs for v in pair)
        free = {
            v: [f"{v}.eth{k}" for k in range(1, data_interfaces[v] + 1) if f"{v}.eth{k}" not in used]
            for v in vms
        }
        short = [v for v in vms if len(free[v]) < need[v]]
        for v in short:
            field = f"{paths[v]}.dataInterfaces" if paths and v in paths else "dataInterfaces"
            problems.append(
                f"{WHERE}[{i}] ({preset}): VM {v} needs {need[v]} free data interfaces, has {len(free[v])} "
                f"({field}: {data_interfaces[v]}, {data_interfaces[v] - len(free[v])} in other links)"
            )
        if len(raw_links) + len(links) + len(pairs) > pool_size:
            before = f", the entries before it {len(links)}" if links else ""
            problems.append(
                f"{WHERE}[{i}] ({preset} of {len(vms)} VMs): VLAN pool exhausted: it makes {len(pairs)} links"
                f" (cloudrepo:slice.links has {len(raw_links)}{before}), but the pool holds {pool_size} VLANs"
            )
        if short:
            continue
        taken = {v: iter(free[v]) for v in vms}
        for a, b in pairs:
            ends = [next(taken[a]), next(taken[b])]
            used.update(ends)
            links.append(ends)
    for p in problems:
        add(p)
    return [] if problems else links

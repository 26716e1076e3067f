# ruff: noqa: E501  (the exact messages are long strings; splitting them would hide what is asserted)
"""Topology presets (components/topology.py): generated cases for the expansion, exact messages at load."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.config import load_config
from components.model import POOL_SIZE
from components.topology import MIN_VMS, expand_topology, link_count, preset_pairs
from tests.cfgkit import raw_config, slice_with, with_changes
from vocabulary.errors import ConfigError

PRESETS = sorted(MIN_VMS)


def expand(
    entries: list[Any], sizes: dict[int, int], raw_links: list[Any] | None = None
) -> tuple[list[list[str]], list[str]]:
    problems: list[str] = []
    links = expand_topology(entries, sizes, set(), raw_links or [], POOL_SIZE, problems.append)
    return links, problems


@st.composite
def preset_case(draw: st.DrawFn) -> tuple[str, list[int], dict[int, int]]:
    preset = draw(st.sampled_from(PRESETS))
    n = draw(st.integers(MIN_VMS[preset], 7 if preset != "mesh" else 6))
    vms = draw(st.lists(st.integers(1, 65535), min_size=n, max_size=n, unique=True))
    degree = Counter(v for pair in preset_pairs(preset, vms) for v in pair)
    sizes = {v: degree[v] + draw(st.integers(0, 3)) for v in vms}
    return preset, vms, sizes


@given(preset_case())
def test_expansion_is_the_preset_on_the_lowest_free_interfaces(
    case: tuple[str, list[int], dict[int, int]],
) -> None:
    preset, vms, sizes = case
    links, problems = expand([{"preset": preset, "vms": vms}], sizes)
    assert problems == []
    assert len(links) == link_count(preset, len(vms)) == len(preset_pairs(preset, vms))
    # the VM pairs are the preset's, in its order
    assert [(int(a.split(".")[0]), int(b.split(".")[0])) for a, b in links] == preset_pairs(preset, vms)
    ends = [e for link in links for e in link]
    assert len(ends) == len(set(ends)), "an interface is in two links"
    for v in vms:
        mine = sorted(int(e.split(".eth")[1]) for e in ends if e.startswith(f"{v}."))
        assert mine == list(range(1, len(mine) + 1)), "not the lowest data interfaces"
        assert len(mine) <= sizes[v]
    # deterministic: the same config gives the same links
    assert expand([{"preset": preset, "vms": vms}], sizes)[0] == links


@given(preset_case(), st.data())
def test_written_links_keep_their_interfaces(
    case: tuple[str, list[int], dict[int, int]], data: st.DataObject
) -> None:
    preset, vms, sizes = case
    v = data.draw(st.sampled_from(vms))
    k = data.draw(st.integers(1, sizes[v]))
    written = [[f"{v}.eth{k}", "0.eth1"]]  # VM 0: never one of the generated VMs
    links, problems = expand([{"preset": preset, "vms": vms}], sizes, written)
    degree = Counter(x for pair in preset_pairs(preset, vms) for x in pair)
    if sizes[v] - 1 < degree[v]:
        assert problems == [
            f"cloudrepo:slice.topology[0] ({preset}): VM {v} needs {degree[v]} free data interfaces, has {sizes[v] - 1} (dataInterfaces: {sizes[v]}, 1 in other links)"
        ]
        assert links == []
    else:
        assert problems == []
        assert f"{v}.eth{k}" not in {e for link in links for e in link}


@given(st.sampled_from(PRESETS), st.integers(0, 8))
def test_too_few_vms_names_the_entry(preset: str, n: int) -> None:
    vms = list(range(1001, 1001 + n))
    _, problems = expand([{"preset": preset, "vms": vms}], dict.fromkeys(vms, 10))
    if n < MIN_VMS[preset]:
        assert problems == [
            f"cloudrepo:slice.topology[0].vms: a {preset} takes at least {MIN_VMS[preset]} VMs, got {n} ({vms})"
        ]
    else:
        links = link_count(preset, n)
        exhausted = f"cloudrepo:slice.topology[0] ({preset} of {n} VMs): VLAN pool exhausted: it makes {links} links (cloudrepo:slice.links has 0), but the pool holds {POOL_SIZE} VLANs"
        assert problems == ([] if links <= POOL_SIZE else [exhausted])


def test_mesh_beyond_the_pool() -> None:
    vms = list(range(1001, 1008))  # 7 VMs: 21 links
    links, problems = expand([{"preset": "mesh", "vms": vms}], dict.fromkeys(vms, 6))
    assert links == []
    assert problems == [
        "cloudrepo:slice.topology[0] (mesh of 7 VMs): VLAN pool exhausted: it makes 21 links (cloudrepo:slice.links has 0), but the pool holds 20 VLANs"
    ]


def test_pool_counts_written_links_and_earlier_entries() -> None:
    sizes = dict.fromkeys(range(1001, 1012), 10)
    entries = [
        {"preset": "bus", "vms": [1001, 1002, 1003]},
        {"preset": "mesh", "vms": list(range(1004, 1010))},
    ]
    _, problems = expand(entries, sizes, [["1010.eth1", "1011.eth1"]] * 4)
    assert problems == [
        "cloudrepo:slice.topology[1] (mesh of 6 VMs): VLAN pool exhausted: it makes 15 links (cloudrepo:slice.links has 4, the entries before it 2), but the pool holds 20 VLANs"
    ]


def test_bad_entries_are_all_reported() -> None:
    entries: list[Any] = [
        {"preset": "hexagon", "vms": [1, 2]},
        {"preset": "ring", "vms": [1, 1, 2]},
        {"preset": "bus", "vms": "1,2"},
        {"preset": "star", "vms": [1, 2, 77], "size": 3},
        "ring",
    ]
    _, problems = expand(entries, {1: 3, 2: 3})
    assert problems == [
        "cloudrepo:slice.topology[0].preset: unknown preset 'hexagon' (known: ring, bus, star, mesh)",
        "cloudrepo:slice.topology[1].vms: VM 1 is listed 2 times",
        "cloudrepo:slice.topology[2].vms: must be a list of VM ids, got '1,2'",
        "cloudrepo:slice.topology[3].size: unknown key 'size' (known: preset, vms)",
        "cloudrepo:slice.topology[3].vms: VM 77 is not defined in cloudrepo:slice.vms (defined: 1, 2)",
        "cloudrepo:slice.topology[4]: an entry is {preset: ring|bus|star|mesh, vms: [ids]}, got 'ring'",
    ]


# ---------------------------------------------------------------------------------------------------------
# through the stack config


def config(**slice_fields: Any) -> dict[str, str]:
    return raw_config(with_changes(slice=slice_with(**slice_fields)))


VMS = [
    {"id": 1002, "worker": "worker1", "dataInterfaces": 3},
    {"id": 1003, "worker": "worker2", "dataInterfaces": 2},
    {"id": 1004, "worker": "worker2", "dataInterfaces": 2},
    {"id": 1005, "worker": "worker1", "dataInterfaces": 1},
]


def test_presets_become_links_after_the_written_ones() -> None:
    cfg = load_config(
        config(
            vms=VMS,
            links=[["1002.eth1", "1005.eth1"]],
            topology=[{"preset": "ring", "vms": [1002, 1003, 1004]}],
        ),
        "dev",
    )
    assert [link.label for link in cfg.links] == [
        "1002.eth1 -- 1005.eth1",
        "1002.eth2 -- 1003.eth1",
        "1003.eth2 -- 1004.eth1",
        "1002.eth3 -- 1004.eth2",
    ]


def test_preset_errors_at_load_name_entry_and_vm() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(
            config(vms=VMS, links=[], topology=[{"preset": "star", "vms": [1005, 1002, 1003]}]), "dev"
        )
    assert info.value.problems == [
        "cloudrepo:slice.topology[0] (star): VM 1005 needs 2 free data interfaces, has 1 (cloudrepo:slice.vms[3].dataInterfaces: 1, 0 in other links)"
    ]


def test_preset_on_an_invalid_vm_reports_the_vm_once() -> None:
    vms = [*VMS, {"id": 1006, "worker": "nowhere", "dataInterfaces": 2}]
    with pytest.raises(ConfigError) as info:
        load_config(config(vms=vms, links=[], topology=[{"preset": "bus", "vms": [1002, 1006]}]), "dev")
    assert len(info.value.problems) == 1 and "unknown worker 'nowhere'" in info.value.problems[0]

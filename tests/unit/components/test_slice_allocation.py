# ruff: noqa: E501  (exact messages)
"""VLAN allocation: lowest free, pinned first, deployed links keep their VLAN across runs, exhaustion."""

from __future__ import annotations

import pytest

from components.allocation import allocate_vlans
from components.model import IfaceRef, Link, VlanPool
from components.outputs import Deployed, previous_allocation, previous_vlan_workers
from vocabulary.errors import ConfigError

POOL = VlanPool(start=120)


def link(a: str, b: str, pinned: int | None = None) -> Link:
    ra = IfaceRef(vm=int(a.split(".")[0]), iface=a.split(".")[1])
    rb = IfaceRef(vm=int(b.split(".")[0]), iface=b.split(".")[1])
    x, y = sorted((ra, rb), key=IfaceRef.sort_key)
    return Link(a=x, b=y, pinned=pinned)


def chain(n: int) -> list[Link]:
    """Links L1..Ln: 1000+i.eth1 -- 2000+i.eth1."""
    return [link(f"{1000 + i}.eth1", f"{2000 + i}.eth1") for i in range(1, n + 1)]


def run(links: list[Link], previous: dict[tuple[str, str], int] | None = None) -> dict[tuple[str, str], int]:
    """One program run: allocate, then 'export' the links output and read it back as the next memory."""
    return allocate_vlans(links, POOL, previous or {})


def as_output(alloc: dict[tuple[str, str], int]) -> list[dict[str, object]]:
    """What the `links` stack output holds (the engine returns numbers as floats)."""
    return [{"endpoints": list(k), "vlan": float(v), "cidr": "x", "gateway": "y"} for k, v in alloc.items()]


def test_lowest_free_in_config_order() -> None:
    assert list(run(chain(3)).values()) == [120, 121, 122]


def test_pinned_first_then_lowest_free() -> None:
    links = [*chain(2), link("3001.eth1", "3002.eth1", pinned=120)]
    assert list(run(links).values()) == [121, 122, 120]


def test_twenty_links_fill_the_pool() -> None:
    assert sorted(run(chain(20)).values()) == list(range(120, 140))


def test_exhaustion_when_the_memory_holds_no_room() -> None:
    with pytest.raises(ConfigError) as info:
        allocate_vlans(chain(21), POOL, {})
    assert info.value.problems == [
        "cloudrepo:slice.links: VLAN pool exhausted: no VLAN of 120..139 is left for link 1021.eth1 -- 2021.eth1"
    ]


def test_add_and_remove_never_move_an_existing_link() -> None:
    links = chain(5)
    gen1 = run(links)
    assert list(gen1.values()) == [120, 121, 122, 123, 124]

    # remove L2 and L4: the others keep their VLANs
    links2 = [links[0], links[2], links[4]]
    gen2 = run(links2, previous_allocation(as_output(gen1)))
    assert gen2 == {k: gen1[k] for k in (links[0].key, links[2].key, links[4].key)}

    # add two new links at the front: they take the freed VLANs (lowest first), old ones stay
    new_a, new_b = link("5001.eth1", "5002.eth1"), link("6001.eth1", "6002.eth1")
    links3 = [new_a, new_b, *links2]
    gen3 = run(links3, previous_allocation(as_output(gen2)))
    assert gen3[new_a.key] == 121 and gen3[new_b.key] == 123
    assert all(gen3[k] == v for k, v in gen2.items())

    # reorder the config and write endpoints the other way round: nothing moves
    links4 = [link(str(lk.b), str(lk.a)) for lk in reversed(links3)]
    gen4 = run(links4, previous_allocation(as_output(gen3)))
    assert gen4 == gen3

    # a link added later goes to the lowest free VLAN
    new_c = link("7001.eth1", "7002.eth1")
    gen5 = run([*links4, new_c], previous_allocation(as_output(gen4)))
    assert gen5[new_c.key] == 125
    assert all(gen5[k] == v for k, v in gen4.items())


def test_long_random_sequence_keeps_every_surviving_link() -> None:
    import random

    rng = random.Random(7)
    universe = [link(f"{1000 + i}.eth1", f"{2000 + i}.eth1") for i in range(60)]
    current: list[Link] = []
    memory: dict[tuple[str, str], int] = {}
    for _ in range(300):
        if current and (len(current) == 20 or rng.random() < 0.45):
            current.pop(rng.randrange(len(current)))
        else:
            candidates = [x for x in universe if x not in current]
            current.insert(rng.randrange(len(current) + 1), rng.choice(candidates))
        alloc = run(current, previous_allocation(as_output(memory)))
        for key, vlan in alloc.items():
            if key in memory:
                assert vlan == memory[key]
            else:  # a new link gets the lowest VLAN nobody else holds
                others = {v for k, v in alloc.items() if k != key and k in memory}
                assert vlan == min(
                    v for v in POOL.vlans if v not in others and v not in _new_before(alloc, key, memory)
                )
        assert len(set(alloc.values())) == len(alloc)
        memory = alloc


def _new_before(
    alloc: dict[tuple[str, str], int], key: tuple[str, str], memory: dict[tuple[str, str], int]
) -> set[int]:
    out: set[int] = set()
    for k, v in alloc.items():
        if k == key:
            break
        if k not in memory:
            out.add(v)
    return out


def test_removed_links_vlan_returns_to_the_pool() -> None:
    links = chain(20)
    gen1 = run(links)
    gone = links.pop(7)
    gen2 = run(links, previous_allocation(as_output(gen1)))
    assert gen1[gone.key] not in gen2.values()
    newcomer = link("9001.eth1", "9002.eth1")
    gen3 = run([*links, newcomer], previous_allocation(as_output(gen2)))
    assert gen3[newcomer.key] == gen1[gone.key] == 127


def test_pin_wins_over_lowest_free_but_not_over_a_deployed_link() -> None:
    links = chain(3)
    gen1 = run(links)
    pinned = [links[0], links[1], link("1003.eth1", "2003.eth1", pinned=121)]
    with pytest.raises(ConfigError) as info:
        run(pinned, previous_allocation(as_output(gen1)))
    assert info.value.problems == [
        "cloudrepo:slice.links: link 1003.eth1 -- 2003.eth1 pins VLAN 121, which the deployed link "
        "1002.eth1 -- 2002.eth1 holds; pin another VLAN, or remove 1002.eth1 -- 2002.eth1 in an earlier update"
    ]
    # pinning a link to a free VLAN moves only that link
    ok = [links[0], links[1], link("1003.eth1", "2003.eth1", pinned=130)]
    gen2 = run(ok, previous_allocation(as_output(gen1)))
    assert list(gen2.values()) == [120, 121, 130]


def test_pins_checked_again_in_the_pure_function() -> None:
    with pytest.raises(ConfigError) as info:
        allocate_vlans(
            [link("1.eth1", "2.eth1", 150), link("3.eth1", "4.eth1", 125), link("5.eth1", "6.eth1", 125)],
            POOL,
        )
    assert info.value.problems == [
        "cloudrepo:slice.links: link 1.eth1 -- 2.eth1: pinned VLAN 150 is outside the pool 120..139",
        "cloudrepo:slice.links: VLAN 125 is pinned by both 3.eth1 -- 4.eth1 and 5.eth1 -- 6.eth1",
    ]


def test_memory_outside_a_moved_pool_is_ignored() -> None:
    links = chain(2)
    gen1 = run(links)
    moved = allocate_vlans(links, VlanPool(start=200), previous_allocation(as_output(gen1)))
    assert list(moved.values()) == [200, 201]


def test_previous_allocation_reads_only_well_formed_entries() -> None:
    out = previous_allocation(
        [
            {"endpoints": ["1003.eth1", "1002.eth1"], "vlan": 125.0},
            {"endpoints": ["1004.eth1"], "vlan": 126},
            {"endpoints": ["x", "1002.eth2"], "vlan": 127},
            {"endpoints": ["1005.eth1", "1006.eth1"], "vlan": True},
            {"endpoints": ["1005.eth1", "1006.eth1"], "vlan": "128"},
            "junk",
        ]
    )
    assert out == {("1002.eth1", "1003.eth1"): 125}
    assert previous_allocation(None) == {}
    assert previous_allocation({"links": []}) == {}


def test_memory_reads_vlans_and_the_workers_on_each() -> None:
    vms = {
        "1002": {
            "worker": "worker1",
            "interfaces": {"eth0": {"vlan": 400.0, "ip": "10.60.7.10"}, "eth1": {"vlan": 120.0}},
        },
        "1003": {"worker": "worker2", "interfaces": {"eth1": {"vlan": 120.0}, "eth2": {"vlan": None}}},
        "bad": {"worker": "worker3"},
        "1004": {"worker": 7, "interfaces": {"eth1": {"vlan": 121}}},
    }
    assert previous_vlan_workers(vms) == {120: ("worker1", "worker2"), 400: ("worker1",)}
    assert previous_vlan_workers(None) == {}
    deployed = Deployed.from_outputs(
        {"links": [{"endpoints": ["1003.eth1", "1002.eth1"], "vlan": 120.0}], "vms": vms}
    )
    assert deployed.vlans == {("1002.eth1", "1003.eth1"): 120}
    assert deployed.vlan_workers[120] == ("worker1", "worker2")
    assert Deployed.from_outputs({}) == Deployed()

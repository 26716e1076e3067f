"""Edits of a slice as an operator makes them, on a small model of the slice section; one generator for the
property tests (choices drawn by hypothesis) and the end-to-end churn scenario (choices from a seeded RNG).

A state is `{"pool": start, "vms": {id: {"worker", "n", "internet"}}, "links": [(a, b, pin | None)]}`.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

T = TypeVar("T")

EDITS = (
    "add link", "remove link", "move end", "swap ends", "add vm", "remove vm", "move vm", "toggle internet",
    "pin", "unpin", "data interfaces", "move pool",
)  # fmt: skip


class Chooser(Protocol):
    """Where the choices come from: `random.Random` has both methods; hypothesis gets an adapter."""

    def choice(self, seq: Sequence[T]) -> T: ...

    def randint(self, a: int, b: int) -> int: ...


def free_ifaces(state: dict[str, Any]) -> list[str]:
    used = {e for a, b, _ in state["links"] for e in (a, b)}
    return [
        f"{i}.eth{k}"
        for i, v in sorted(state["vms"].items())
        for k in range(1, v["n"] + 1)
        if f"{i}.eth{k}" not in used
    ]


def vm_of(end: str) -> int:
    return int(end.split(".")[0])


def edit(
    state: dict[str, Any],
    kind: str,
    pick: Chooser,
    *,
    workers: Sequence[str],
    vm_ids: Sequence[int],
    pool_starts: Sequence[int],
    max_interfaces: int = 3,
) -> dict[str, Any]:
    """`state` with one edit of `kind` applied (unchanged when that edit does not apply to it)."""
    s = copy.deepcopy(state)
    links, vms = s["links"], s["vms"]
    if kind == "add link":
        free = free_ifaces(s)
        if free:
            a = pick.choice(free)
            others = [f for f in free if vm_of(f) != vm_of(a)]
            if others:
                links.append((a, pick.choice(others), None))
    elif kind == "remove link" and links:
        links.pop(pick.randint(0, len(links) - 1))
    elif kind == "move end" and links:
        i = pick.randint(0, len(links) - 1)
        a, _, pin = links[i]
        free = [f for f in free_ifaces(s) if vm_of(f) != vm_of(a)]
        if free:
            links[i] = (a, pick.choice(free), pin)
    elif kind == "swap ends" and len(links) >= 2:
        i = pick.randint(0, len(links) - 1)
        j = pick.choice([k for k in range(len(links)) if k != i])
        (a1, b1, p1), (a2, b2, p2) = links[i], links[j]
        if vm_of(a1) != vm_of(b2) and vm_of(a2) != vm_of(b1):  # no VM linked to itself
            links[i], links[j] = (a1, b2, p1), (a2, b1, p2)
    elif kind == "add vm":
        new = [i for i in vm_ids if i not in vms]
        if new:
            vms[pick.choice(new)] = {
                "worker": pick.choice(list(workers)),
                "n": pick.randint(1, max_interfaces),
                "internet": pick.choice([False, True]),
            }
    elif kind == "remove vm" and vms:
        vm = pick.choice(sorted(vms))
        del vms[vm]
        s["links"] = [lk for lk in links if vm not in (vm_of(lk[0]), vm_of(lk[1]))]
    elif kind == "move vm" and vms:
        vms[pick.choice(sorted(vms))]["worker"] = pick.choice(list(workers))
    elif kind == "toggle internet" and vms:
        v = vms[pick.choice(sorted(vms))]
        v["internet"] = not v["internet"]
    elif kind == "pin" and links:
        i = pick.randint(0, len(links) - 1)
        links[i] = (*links[i][:2], s["pool"] + pick.randint(0, 19))
    elif kind == "unpin" and links:
        i = pick.randint(0, len(links) - 1)
        links[i] = (*links[i][:2], None)
    elif kind == "data interfaces" and vms:
        vm = pick.choice(sorted(vms))
        vms[vm]["n"] = pick.randint(1, max_interfaces)
        valid = {f"{vm}.eth{k}" for k in range(1, vms[vm]["n"] + 1)}
        s["links"] = [lk for lk in links if all(vm_of(e) != vm or e in valid for e in lk[:2])]
    elif kind == "move pool":
        s["pool"] = pick.choice([p for p in pool_starts if p != s["pool"]] or list(pool_starts))
        s["links"] = [(a, b, None) for a, b, _ in s["links"]]
    return s


def slice_section(state: dict[str, Any], name: str) -> dict[str, Any]:
    """The `cloudrepo:slice` value of a state."""
    return {
        "name": name,
        "vlanPool": {"start": state["pool"]},
        "vms": [
            {"id": i, "worker": v["worker"], "dataInterfaces": v["n"], "internet": v["internet"]}
            for i, v in sorted(state["vms"].items())
        ],
        "links": [
            {"a": a, "b": b, **({"vlan": pin} if pin is not None else {})} for a, b, pin in state["links"]
        ],
    }

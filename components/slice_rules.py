"""Validation of the slice section: the VLAN pool, the VMs and the links (every problem named)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Any

from components.inputs import LinkInput, VmInput
from components.model import (
    INTERNET_VLAN,
    MAX_DATA_INTERFACES,
    MAX_VM_ID,
    NAMESPACE,
    POOL_SIZE,
    IfaceRef,
    Link,
    LinkKey,
    VlanPool,
    Vm,
    parse_iface_ref,
)
from vocabulary.naming import IFNAMSIZ_MAX, dhcp_namespace, dhcp_port, gateway_port, tap_name
from vocabulary.netem import NEEDS_DELAY, Netem, NetemInput
from vocabulary.problems import suggest, validate_input
from vocabulary.shown import shown
from vocabulary.values import VLAN_MAX, VLAN_MIN, IfName, NetnsName, value_problem


def check_pool(start: int, parking: int, add: Callable[[str], None]) -> VlanPool | None:
    where = f"{NAMESPACE}:slice.vlanPool.start"
    pool = VlanPool(start=start)
    ok = True
    if start < VLAN_MIN:
        add(f"{where}: the pool {start}..{pool.end} starts below VLAN {VLAN_MIN}, got {start}")
        ok = False
    if pool.end > VLAN_MAX:
        add(f"{where}: the pool {start}..{pool.end} reaches past VLAN {VLAN_MAX}, got {start}")
        ok = False
    if INTERNET_VLAN in pool.vlans:
        add(f"{where}: the pool {start}..{pool.end} contains VLAN {INTERNET_VLAN} (the shared internet VLAN)")
        ok = False
    if parking in pool.vlans:
        add(
            f"{where}: the pool {start}..{pool.end} contains the parking VLAN {parking} "
            f"({NAMESPACE}:parkingVlan)"
        )
        ok = False
    if ok:
        # Names on the network node derived from the pool's VLANs.
        for vlan in (start, pool.end):
            for name in (gateway_port(vlan), dhcp_port(vlan)):
                if (why := value_problem(IfName, name)) is not None:
                    add(f"{where}: VLAN {vlan}: {why}")
            ns_name = dhcp_namespace(vlan)
            if len(ns_name) > IFNAMSIZ_MAX:
                # Held to the interface limit too, so that the pool's names are all alike.
                add(
                    f"{where}: VLAN {vlan}: namespace name {ns_name!r} is {len(ns_name)} characters, "
                    f"over the Linux limit of {IFNAMSIZ_MAX}"
                )
            elif (why := value_problem(NetnsName, ns_name)) is not None:
                add(f"{where}: VLAN {vlan}: {why}")
    return pool if ok else None


def _unknown_worker(where: str, vm_id: Any, worker: str, workers: Collection[str]) -> str:
    known = ", ".join(sorted(workers)) or "none"
    return (
        f"{where}.worker: VM {vm_id}: unknown worker {shown(worker)}{suggest(worker, workers)}"
        f" (cloudrepo:workers has: {known})"
    )


def check_vms(
    raw_vms: list[dict[str, Any]],
    workers: Collection[str] | None,
    add: Callable[[str], None],
) -> tuple[list[Vm], set[int]]:
    """Validate the VMs one by one (`workers`: the worker names the config has, None when it has none);
    return the valid ones and the ids of those that are invalid."""
    vms: list[Vm] = []
    bad_ids: set[int] = set()
    first_index: dict[int, int] = {}
    for i, raw_vm in enumerate(raw_vms):
        where = f"{NAMESPACE}:slice.vms[{i}]"
        local: list[str] = []
        v = validate_input(VmInput, raw_vm, where, local)
        if v is None:
            for p in local:
                add(
                    p.replace(
                        f"{where}.id: input should be a valid integer",
                        f"{where}.id: must be a positive integer",
                    )
                )
            rid = raw_vm.get("id") if isinstance(raw_vm, dict) else None
            if isinstance(rid, int) and not isinstance(rid, bool):
                bad_ids.add(rid)
            rworker = raw_vm.get("worker") if isinstance(raw_vm, dict) else None
            if workers is not None and isinstance(rworker, str) and rworker not in workers:
                add(_unknown_worker(where, rid, rworker, workers))
            continue
        ok = True
        if not 1 <= v.id <= MAX_VM_ID:
            add(
                f"{where}.id: must be a positive integer up to {MAX_VM_ID} "
                f"(the MAC holds 16 bits of it), got {v.id}"
            )
            bad_ids.add(v.id)
            ok = False
        elif v.data_interfaces > MAX_DATA_INTERFACES:
            add(
                f"{where}.dataInterfaces: VM {v.id}: at most {MAX_DATA_INTERFACES} data interfaces "
                f"(the MAC holds the interface number in one byte), got {v.data_interfaces}"
            )
            ok = False
        if ok and v.id in first_index:
            add(f"{where}.id: duplicate VM id {v.id} (also cloudrepo:slice.vms[{first_index[v.id]}])")
            ok = False
        elif ok:
            first_index[v.id] = i
        if workers is not None and v.worker not in workers:
            add(_unknown_worker(where, v.id, v.worker, workers))
            ok = False
        if ok:
            vm = Vm(id=v.id, worker=v.worker, data_interfaces=v.data_interfaces, internet=v.internet)
            # The longest TAP name of the VM is its last interface's; report the first one that is too long.
            last = tap_name(vm.id, f"eth{vm.data_interfaces}")
            if value_problem(IfName, last) is not None:
                digits = IFNAMSIZ_MAX - len(tap_name(vm.id, "eth"))
                first_long = tap_name(vm.id, f"eth{10**digits}")
                add(
                    f"{where}.dataInterfaces: VM {vm.id}: {vm.data_interfaces} data interfaces: TAP "
                    f"{value_problem(IfName, first_long)}"
                )
                ok = False
        if ok:
            vms.append(vm)
        else:
            bad_ids.add(v.id)
    return vms, bad_ids - {v.id for v in vms}


def vm_paths(raw_vms: list[Any]) -> dict[int, str]:
    """The key path of each VM id's (first) entry: `cloudrepo:slice.vms[1]`."""
    out: dict[int, str] = {}
    for i, raw in enumerate(raw_vms):
        rid = raw.get("id") if isinstance(raw, dict) else None
        if isinstance(rid, int) and not isinstance(rid, bool):
            out.setdefault(rid, f"{NAMESPACE}:slice.vms[{i}]")
    return out


def defined(ids: Collection[int]) -> str:
    """`(defined: 1002, 1003)`: the VM ids a reference could have meant (the first 10)."""
    listed = sorted(ids)
    more = f", ... ({len(listed)} in all)" if len(listed) > 10 else ""
    return f"(defined: {', '.join(map(str, listed[:10]))}{more})" if listed else "(none defined)"


def check_links(
    raw_links: list[Any],
    vms: list[Vm],
    bad_vm_ids: set[int],
    pool: VlanPool | None,
    add: Callable[[str], None],
    paths: Mapping[int, str] | None = None,
) -> list[Link]:
    """Validate the links (written and expanded); `paths`: each VM's key path (`vm_paths`), for messages."""
    by_id = {v.id: v for v in vms}
    paths = paths or {}
    links: list[Link] = []
    used_by: dict[str, int] = {}
    seen_pairs: dict[LinkKey, int] = {}
    pinned_by: dict[int, int] = {}
    for i, raw_link in enumerate(raw_links):
        where = f"{NAMESPACE}:slice.links[{i}]"
        if isinstance(raw_link, list):
            if len(raw_link) != 2:
                add(f'{where}: a link is a pair ["VM.ethN", "VM.ethN"], got {shown(raw_link)}')
                continue
            raw_link = {"a": raw_link[0], "b": raw_link[1]}
        local: list[str] = []
        li = validate_input(LinkInput, raw_link, where, local)
        if li is None:
            for p in local:
                add(p)
            continue
        refs: list[IfaceRef] = []
        ok = True
        for side, text in (("a", li.a), ("b", li.b)):
            ref = parse_iface_ref(text)
            if ref is None:
                add(
                    f"{where}.{side}: {shown(text)} is not an interface of the form VM.ethN "
                    '(e.g. "1002.eth1")'
                )
                ok = False
                continue
            refs.append(ref)
            if ref.iface == "eth0":
                add(f"{where}.{side}: {shown(text)}: eth0 is the management interface and cannot be linked")
                ok = False
            elif ref.vm not in by_id:
                if ref.vm not in bad_vm_ids:
                    add(
                        f"{where}.{side}: {shown(text)}: VM {ref.vm} is not defined in cloudrepo:slice.vms "
                        f"{defined(by_id)}"
                    )
                ok = False
            elif ref.index > by_id[ref.vm].data_interfaces:
                n = by_id[ref.vm].data_interfaces
                has = f"eth1..eth{n}" if n > 1 else ("eth1" if n == 1 else "none")
                field = f", {paths[ref.vm]}.dataInterfaces: {n}" if ref.vm in paths else ""
                add(
                    f"{where}.{side}: {shown(text)}: VM {ref.vm} has no interface {ref.iface} "
                    f"(data interfaces: {has}{field})"
                )
                ok = False
        if len(refs) == 2 and refs[0] == refs[1]:
            add(f"{where}: self link: {refs[0]} is linked to itself")
            ok = False
        elif len(refs) == 2 and refs[0].vm == refs[1].vm:
            add(f"{where}: self link: {refs[0]} and {refs[1]} are interfaces of the same VM {refs[0].vm}")
            ok = False
        if li.vlan is not None and pool is not None:
            if li.vlan not in pool.vlans:
                add(
                    f"{where}.vlan: pinned VLAN {li.vlan} is outside the pool {pool.start}..{pool.end} "
                    f"({NAMESPACE}:slice.vlanPool.start: {pool.start})"
                )
                ok = False
            elif li.vlan in pinned_by:
                add(
                    f"{where}.vlan: VLAN {li.vlan} is pinned twice "
                    f"(also cloudrepo:slice.links[{pinned_by[li.vlan]}])"
                )
                ok = False
            else:
                pinned_by[li.vlan] = i
        impairment = check_netem(li.netem, f"{where}.netem", add) if li.netem is not None else None
        if li.netem is not None and impairment is None:
            ok = False
        if len(refs) == 2:
            a, b = sorted(refs, key=IfaceRef.sort_key)
            pair = (str(a), str(b))
            if pair in seen_pairs and a != b:
                add(f"{where}: duplicate link {a} -- {b} (also cloudrepo:slice.links[{seen_pairs[pair]}])")
                continue
            seen_pairs.setdefault(pair, i)
            if a != b:
                for ref in (a, b):
                    if str(ref) in used_by:
                        add(
                            f"{where}: interface {ref} is already in "
                            f"cloudrepo:slice.links[{used_by[str(ref)]}]"
                        )
                        ok = False
                    else:
                        used_by[str(ref)] = i
            if ok:
                links.append(Link(a=a, b=b, pinned=li.vlan, netem=impairment))
    if pool is not None and len(raw_links) > POOL_SIZE:
        extra = ", ".join(
            f"cloudrepo:slice.links[{i}]{_link_label(raw_links[i])}" for i in range(POOL_SIZE, len(raw_links))
        )
        add(
            f"{NAMESPACE}:slice.links: VLAN pool exhausted: {len(raw_links)} links, but the pool "
            f"{pool.start}..{pool.end} holds {POOL_SIZE} VLANs (no VLAN for {extra})"
        )
    return links


CROSS_KEYS = (*(f"{k}: " for k in NEEDS_DELAY), "(netem): ")
"""How `NetemInput`'s own checks begin (`jitter: needs delay; (netem): ...`)."""


def check_netem(raw: Any, where: str, add: Callable[[str], None]) -> Netem | None:
    """A link's `netem` (`vocabulary.netem.NetemInput`) as numbers; every problem at its key path."""
    local: list[str] = []
    value = validate_input(NetemInput, raw, where, local)
    for p in local:
        head, _, rest = p.partition(": ")
        if head != where or not rest.startswith(CROSS_KEYS):
            add(p)
            continue
        for part in rest.split("; "):  # the model's own checks: "key: why; (netem): why"
            key, _, why = part.partition(": ")
            add(f"{where}: {why}" if key == "(netem)" else f"{where}.{key}: {why}")
    return value.numbers() if value is not None else None


def _link_label(raw: Any) -> str:
    """' (A -- B)' for a link entry whose endpoints are strings, else ''."""
    ends = [raw.get("a"), raw.get("b")] if isinstance(raw, dict) else raw
    if isinstance(ends, list | tuple) and len(ends) == 2 and all(isinstance(e, str) for e in ends):
        return f" ({ends[0]} -- {ends[1]})"
    return ""

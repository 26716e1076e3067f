"""`cloudrepo:slice.checks`: the slice's declared expectations, validated at `pulumi preview` (pure).

Three forms, each problem at its key path (`cloudrepo:slice.checks[2].from: ...`), all collected:

- `{from: 1002, to: 1003, expect: reach|blocked}`: the guest of 1002 pings 1003's address on a link the
  two share (else 1003's first linked interface, else eth0 of an internet VM; the table says which), or the
  address of the interface written as `to: 1003.eth2`. `expect` defaults to `reach`.
- `{from: 1002, to: internet, host: 198.51.100.7}`: 1002 pings an address outside the cloud (`host`,
  default the first of `cloudrepo:dnsServers`); `expect` defaults to `reach`.
- `{vm: 1003, lease: eth1}`: the guest of 1003 holds its reserved address on eth1.

The guest a check runs in must be launched (`vms[].launch`): there is no other guest to run it in.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, get_args

from components.check_specs import INTERNET, Check, Expect, Lease, Reach
from components.model import NAMESPACE, Link, Vm, parse_iface_ref
from vocabulary.problems import suggest
from vocabulary.shown import shown
from vocabulary.values import IPv4Address, value_problem

WHERE = f"{NAMESPACE}:slice.checks"
EXPECTS: tuple[str, ...] = get_args(Expect)
REACH_KEYS = ("from", "to", "expect", "host")
LEASE_KEYS = ("vm", "lease")


def _vm_id(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def addressed(vm: Vm, links: Sequence[Link]) -> list[str]:
    """The interfaces of `vm` that hold a reserved address: its linked ones in order, then eth0 when it has
    internet (a link address is the one another VM of the slice is meant to reach)."""
    linked = {e.iface for k in links for e in (k.a, k.b) if e.vm == vm.id}
    return [i for i in vm.interfaces if i in linked] + (["eth0"] if vm.internet else [])


def shared_iface(src: int, dst: int, links: Sequence[Link]) -> str | None:
    """The interface of `dst` on the first link between `src` and `dst`, or None when they share none."""
    for k in links:
        for near, far in ((k.a, k.b), (k.b, k.a)):
            if near.vm == src and far.vm == dst:
                return far.iface
    return None


def check_checks(
    raw: Any,
    vms: Sequence[Vm],
    links: Sequence[Link],
    launched: Collection[int],
    dns: Sequence[str],
    add: Callable[[str], None],
    bad_vm_ids: Collection[int] = (),
) -> tuple[Check, ...]:
    """The checks of `raw` (the `slice.checks` value); every problem to `add`. VMs in `bad_vm_ids` have
    problems of their own: a check naming one adds none."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        add(f"{WHERE}: must be a list of checks ({{from, to, expect}} or {{vm, lease}}), got {shown(raw)}")
        return ()
    by_id = {v.id: v for v in vms}
    out: list[Check] = []
    for i, entry in enumerate(raw):
        found = _one(i, entry, by_id, links, launched, dns, add, bad_vm_ids)
        if found is not None:
            out.append(found)
    return tuple(out)


def _one(
    i: int,
    entry: Any,
    by_id: Mapping[int, Vm],
    links: Sequence[Link],
    launched: Collection[int],
    dns: Sequence[str],
    add: Callable[[str], None],
    bad: Collection[int],
) -> Check | None:
    where = f"{WHERE}[{i}]"
    if not isinstance(entry, dict):
        add(f"{where}: must be an object {{from, to, expect}} or {{vm, lease}}, got {shown(entry)}")
        return None
    lease_form = "lease" in entry or "vm" in entry
    known = LEASE_KEYS if lease_form else REACH_KEYS
    problems: list[str] = []
    for key in entry:
        if key not in known:
            text = str(key)
            other = " (a check is either {from, to, expect, host} or {vm, lease})"
            problems.append(
                f"{where}: unknown key {shown(text)}{suggest(text, known)} (known: {', '.join(known)}){other}"
            )
    for key in known[:2]:
        if key not in entry:
            problems.append(f"{where}.{key}: required")

    def guest(key: str) -> int | None:
        """The VM at `key` that runs the check: a defined, launched VM."""
        value = entry.get(key)
        vm = _vm_id(value)
        if key not in entry:
            return None
        if vm is None:
            problems.append(f"{where}.{key}: must be a VM id (an integer), got {shown(value)}")
        elif vm not in by_id:
            if vm not in bad:
                problems.append(f"{where}.{key}: VM {vm} is not defined in {NAMESPACE}:slice.vms")
        elif vm not in launched:
            problems.append(
                f"{where}.{key}: VM {vm} is not launched (no `launch` in its {NAMESPACE}:slice.vms entry): "
                "there is no guest to run the check in"
            )
        else:
            return vm
        return None

    if lease_form:
        vm = guest("vm")
        iface = _iface(entry, "lease", where, vm, by_id, links, problems)
        for p in problems:
            add(p)
        return Lease(i, vm, iface) if vm is not None and iface is not None and not problems else None

    src = guest("from")
    expect = entry.get("expect", "reach")
    if expect not in EXPECTS:
        problems.append(f"{where}.expect: must be one of {', '.join(EXPECTS)}, got {shown(expect)}")
    to = entry.get("to")
    check: Reach | None = None
    if to == INTERNET:
        host = entry.get("host", dns[0] if dns else None)
        why = value_problem(IPv4Address, host) if host is not None else "no address (set host)"
        if why is not None:
            problems.append(f"{where}.host: {why}")
        elif src is not None:
            check = Reach(i, src, expect, host=host)
    elif "to" in entry:
        if "host" in entry:
            problems.append(f"{where}.host: only with `to: internet` (a VM's address comes from the slice)")
        check = _to_vm(i, where, src, expect, to, by_id, links, problems, bad)
    for p in problems:
        add(p)
    return check if not problems else None


def _iface(
    entry: Mapping[str, Any],
    key: str,
    where: str,
    vm: int | None,
    by_id: Mapping[int, Vm],
    links: Sequence[Link],
    problems: list[str],
) -> str | None:
    """The interface at `key` of `vm`: one of its interfaces that holds a reserved address."""
    value = entry.get(key)
    if key not in entry:
        return None
    ref = parse_iface_ref(f"0.{value}") if isinstance(value, str) else None
    if ref is None:
        problems.append(f"{where}.{key}: must be an interface name ethN, got {shown(value)}")
        return None
    if vm is None:
        return None
    has = addressed(by_id[vm], links)
    if ref.iface not in has:
        problems.append(
            f"{where}.{key}: VM {vm} has no reserved address on {ref.iface} (its addressed interfaces: "
            f"{', '.join(has) or 'none'})"
        )
        return None
    return ref.iface


def _to_vm(
    i: int,
    where: str,
    src: int | None,
    expect: Any,
    to: Any,
    by_id: Mapping[int, Vm],
    links: Sequence[Link],
    problems: list[str],
    bad: Collection[int],
) -> Reach | None:
    """`to: VM` or `to: VM.ethN`: the address pinged, as an interface of a defined VM."""
    vm = _vm_id(to)
    iface: str | None = None
    if vm is None:
        ref = parse_iface_ref(to) if isinstance(to, str) else None
        if ref is None:
            problems.append(
                f"{where}.to: must be a VM id, an interface VM.ethN or {INTERNET!r}, got {shown(to)}"
            )
            return None
        vm, iface = ref.vm, ref.iface
    if vm not in by_id:
        if vm not in bad:
            problems.append(f"{where}.to: VM {vm} is not defined in {NAMESPACE}:slice.vms")
        return None
    if vm == src:
        problems.append(f"{where}.to: VM {vm} is the `from` VM (a check is between two VMs)")
        return None
    has = addressed(by_id[vm], links)
    if iface is not None and iface not in has:
        problems.append(
            f"{where}.to: VM {vm} has no reserved address on {iface} (its addressed interfaces: "
            f"{', '.join(has) or 'none'})"
        )
        return None
    chosen = iface is None
    if iface is None:
        iface = (shared_iface(src, vm, links) if src is not None else None) or (has[0] if has else None)
    if iface is None:
        problems.append(
            f"{where}.to: VM {vm} has no reserved address (no link and no internet): nothing to ping"
        )
        return None
    if src is None or expect not in EXPECTS:
        return None
    return Reach(i, src, expect, dst_vm=vm, dst_iface=iface, chosen=chosen)

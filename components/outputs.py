"""The stack outputs: written from the plan, and read back by the next run (the allocation memory).

Both directions live here, so the shape the program exports and the shape it reads back are one fact.
Every value but the VLAN 400 addresses is a pure function of the plan, known at `pulumi preview`.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from components.model import INTERNET_VLAN, POOL_SIZE, IfaceRef, LinkKey, parse_iface_ref
from components.plan import InterfacePlan, SlicePlan
from vocabulary.netem import summary

InternetIp = Callable[[str], Any]
"""MAC -> that interface's VLAN 400 address (a plain value or a `pulumi.Output`)."""


def vlan_pool_output(plan: SlicePlan) -> dict[str, Any]:
    pool = plan.config.pool
    used = sorted(plan.vlans.values())
    return {"start": pool.start, "end": pool.end, "used": used, "free": POOL_SIZE - len(used)}


def links_output(plan: SlicePlan) -> list[dict[str, Any]]:
    """Per link: endpoints, VLAN, subnet, gateway; with `netem`, the impairment (canonical units) and the
    qdisc that carries it on both TAPs."""
    impairment = {link.key: link.netem for link in plan.config.links if link.netem is not None}
    out = []
    for n in plan.link_networks:
        if n.link is None:
            continue
        entry: dict[str, Any] = {
            "endpoints": list(n.link), "vlan": n.vlan, "cidr": str(n.subnet), "gateway": n.gateway
        }  # fmt: skip
        if (shape := impairment.get(n.link)) is not None:
            entry["netem"] = shape.shown()
            entry["qdisc"] = shape.qdisc
        out.append(entry)
    return out


def qemu_net_args(ifaces: list[InterfacePlan]) -> list[str]:
    """QEMU arguments attaching the VM to its (already created) TAPs, one netdev/device pair per interface."""
    args: list[str] = []
    for ip in ifaces:
        netdev = f"net{ip.iface[3:]}"
        args += [
            "-netdev",
            f"tap,id={netdev},ifname={ip.tap},script=no,downscript=no",
            "-device",
            f"virtio-net-pci,netdev={netdev},mac={ip.mac}",
        ]
    return args


def _no_internet_ip(_mac: str) -> None:
    return None


def ssh_command(stack: str, vm: int) -> str:
    """The command that logs into a VM's guest (`cloudrepo ssh`), as the outputs print it."""
    return shlex.join(["cloudrepo", "ssh", stack, str(vm)])


def guest_output(plan: SlicePlan, vm: int, addresses: Mapping[str, Any]) -> dict[str, Any] | None:
    """How to reach a launched VM's guest when it has a cloud-init seed: its login `user`, `hostname`,
    `addresses` (interface -> reserved IPv4 address: every interface on a link or on VLAN 400) and the
    `ssh` command. `hostKey` (its public SSH host key, made on the worker) is added with the VM's
    resources (`components.vm_resources`)."""
    launch = plan.config.launches.get(vm)
    if launch is None or launch.cloud_init is None:
        return None
    ci = launch.cloud_init
    return {
        "user": ci.user,
        "hostname": ci.hostname,
        "addresses": dict(addresses),
        "ssh": ssh_command(plan.config.stack, vm),
    }


def vms_output(plan: SlicePlan, internet_ip: InternetIp = _no_internet_ip) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for vm in plan.config.vms:
        ifaces = plan.by_vm(vm.id)
        interfaces = {
            ip.iface: {
                "tap": ip.tap,
                "vlan": None if ip.parked else ip.vlan,
                "mac": ip.mac,
                "ip": internet_ip(ip.mac) if ip.vlan == INTERNET_VLAN and not ip.parked else ip.ip,
                "gateway": ip.gateway,
                "parked": ip.parked,
            }
            for ip in ifaces
        }
        out[str(vm.id)] = {
            "worker": vm.worker,
            "internet": vm.internet,
            "interfaces": interfaces,
            "qemuNetArgs": qemu_net_args(ifaces),
        }
        image = launch.image if (launch := plan.config.launches.get(vm.id)) is not None else None
        if image is not None and image.registry is not None:  # `cloudrepo image rm` reads it
            out[str(vm.id)]["image"] = {"name": image.registry, "sha256": image.sha256}
        if vm.auto:
            out[str(vm.id)]["placement"] = "auto"  # the worker the program chose (components.placement)
        reached = {name: i["ip"] for name, i in interfaces.items() if not i["parked"]}
        guest = guest_output(plan, vm.id, reached)
        if guest is not None:
            out[str(vm.id)]["cloudInit"] = guest
    return out


def topology_output(plan: SlicePlan) -> str:
    """The link graph as Mermaid text: one subgraph per worker, one edge per link (and per internet VM)."""
    lines = ["graph LR"]
    workers = sorted({vm.worker for vm in plan.config.vms})
    for worker in workers:
        lines.append(f"  subgraph {worker}")
        for vm in plan.config.vms:
            if vm.worker == worker:
                lines.append(f'    vm{vm.id}["VM {vm.id}"]')
        lines.append("  end")
    for net in plan.link_networks:
        assert net.link is not None
        (a_vm, a_if), (b_vm, b_if) = (e.split(".") for e in net.link)
        shaped = next((f", {summary(k.netem.shown())}" for k in plan.config.links
                       if k.key == net.link and k.netem is not None), "")  # fmt: skip
        lines.append(f'  vm{a_vm} ---|"{a_if} - {b_if}, VLAN {net.vlan}{shaped}"| vm{b_vm}')
    if plan.internet is not None:
        lines.append('  internet(("internet"))')
        for vm in plan.config.internet_vms:
            lines.append(f'  vm{vm.id} -.-|"eth0, VLAN {INTERNET_VLAN}, NAT"| internet')
    return "\n".join(lines) + "\n"


def stack_outputs(plan: SlicePlan, internet_ip: InternetIp = _no_internet_ip) -> dict[str, Any]:
    """Every stack output of the program, by name."""
    return {
        "slice": plan.config.slice_name,
        "vlanPool": vlan_pool_output(plan),
        "links": links_output(plan),
        "vms": vms_output(plan, internet_ip),
        "topology": topology_output(plan),
    }


# ---------------------------------------------------------------------------------------------------------
# Reading them back


def canonical_key(a: str, b: str) -> LinkKey | None:
    """The canonical identity of a link given as two `VM.ethN` texts, or None when one is malformed."""
    ra, rb = parse_iface_ref(a), parse_iface_ref(b)
    if ra is None or rb is None:
        return None
    x, y = sorted((ra, rb), key=IfaceRef.sort_key)
    return (str(x), str(y))


def _int(value: Any) -> int | None:
    """The engine hands numbers to Python as floats; anything not a whole number is None."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def previous_allocation(links: Any) -> dict[LinkKey, int]:
    """Link -> VLAN from a `links` output (malformed entries skipped: memory only keeps VLANs stable)."""
    out: dict[LinkKey, int] = {}
    for entry in links if isinstance(links, list) else []:
        if not isinstance(entry, Mapping):
            continue
        ends, vlan = entry.get("endpoints"), _int(entry.get("vlan"))
        if (
            vlan is None
            or not isinstance(ends, Sequence)
            or isinstance(ends, str)
            or len(ends) != 2
            or not all(isinstance(e, str) for e in ends)
        ):
            continue
        key = canonical_key(ends[0], ends[1])
        if key is not None:
            out[key] = vlan
    return out


def previous_vlan_workers(vms: Any) -> dict[int, tuple[str, ...]]:
    """VLAN -> the workers that had a TAP of the slice on it, from a `vms` output."""
    out: dict[int, set[str]] = {}
    for vm in vms.values() if isinstance(vms, Mapping) else []:
        worker = vm.get("worker") if isinstance(vm, Mapping) else None
        ifaces = vm.get("interfaces") if isinstance(vm, Mapping) else None
        if not isinstance(worker, str) or not isinstance(ifaces, Mapping):
            continue
        for iface in ifaces.values():
            vlan = _int(iface.get("vlan")) if isinstance(iface, Mapping) else None
            if vlan is not None:
                out.setdefault(vlan, set()).add(worker)
    return {vlan: tuple(sorted(ws)) for vlan, ws in sorted(out.items())}


def previous_workers(vms: Any) -> dict[int, str]:
    """VM id -> its worker, from a `vms` output (the placement memory)."""
    out: dict[int, str] = {}
    for key, vm in vms.items() if isinstance(vms, Mapping) else []:
        worker = vm.get("worker") if isinstance(vm, Mapping) else None
        if isinstance(key, str) and key.isdigit() and isinstance(worker, str):
            out[int(key)] = worker
    return out


@dataclass(frozen=True)
class Deployed:
    """What the previous run of the stack deployed, as its outputs remember it."""

    vlans: dict[LinkKey, int] = field(default_factory=dict)
    vlan_workers: dict[int, tuple[str, ...]] = field(default_factory=dict)
    """VLAN -> the workers that had TAPs of the slice on it."""
    workers: dict[int, str] = field(default_factory=dict)
    """VM id -> the worker it was on (an `auto` VM keeps it: `components.placement`)."""

    @classmethod
    def from_outputs(cls, outputs: Mapping[str, Any]) -> Deployed:
        vms = outputs.get("vms")
        return cls(
            previous_allocation(outputs.get("links")), previous_vlan_workers(vms), previous_workers(vms)
        )

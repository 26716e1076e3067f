"""Stack outputs as pure functions of the plan (plain values, so they are known at `pulumi preview`)."""

from __future__ import annotations

from typing import Any

from components.config import INTERNET_VLAN, POOL_SIZE
from components.plan import InterfacePlan, SlicePlan


def vlan_pool_output(plan: SlicePlan) -> dict[str, Any]:
    pool = plan.config.pool
    used = sorted(plan.vlans.values())
    return {"start": pool.start, "end": pool.end, "used": used, "free": POOL_SIZE - len(used)}


def links_output(plan: SlicePlan) -> list[dict[str, Any]]:
    return [
        {"endpoints": list(lp.key), "vlan": lp.vlan, "cidr": lp.cidr, "gateway": lp.gateway}
        for lp in plan.links
    ]


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


def vms_output(plan: SlicePlan) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for vm in plan.config.vms:
        ifaces = plan.by_vm[vm.id]
        out[str(vm.id)] = {
            "worker": vm.worker,
            "internet": vm.internet,
            "interfaces": {
                ip.iface: {
                    "tap": ip.tap,
                    "vlan": None if ip.parked else ip.vlan,
                    "mac": ip.mac,
                    "ip": ip.ip,
                    "gateway": ip.gateway,
                    "parked": ip.parked,
                }
                for ip in ifaces
            },
            "qemuNetArgs": qemu_net_args(ifaces),
        }
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
    for lp in plan.links:
        (a_vm, a_if), (b_vm, b_if) = (e.split(".") for e in lp.key)
        lines.append(f'  vm{a_vm} ---|"{a_if} - {b_if}, VLAN {lp.vlan}"| vm{b_vm}')
    if plan.internet:
        lines.append('  internet(("internet"))')
        for vm in plan.config.internet_vms:
            lines.append(f'  vm{vm.id} -.-|"eth0, VLAN {INTERNET_VLAN}, NAT"| internet')
    return "\n".join(lines) + "\n"


def stack_outputs(plan: SlicePlan) -> dict[str, Any]:
    """Every stack output of the program, by name."""
    return {
        "slice": plan.config.slice_name,
        "vlanPool": vlan_pool_output(plan),
        "links": links_output(plan),
        "vms": vms_output(plan),
        "topology": topology_output(plan),
    }

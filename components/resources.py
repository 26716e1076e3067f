"""The slice's resources and their dependency graph, as plain data (a pure function of the plan).

The graph is acyclic by construction: the pool claim depends on nothing (but the workers' netem checks,
when a link needs netem, and the `PendingClaims` of a slice with `auto` VMs, which depend on nothing),
every other resource depends on the claim (so nothing
of the slice is tagged or started before its VLAN range is held), and NAT also waits for VLAN 400's
gateway. No resource waits for a sibling TAP: a TAP that joins a link VLAN first parks every
port of the slice still on that VLAN that does not belong there, on its own worker and on the workers that
had the VLAN (see `JoinSpec` and docs/design.md, "Edits of a deployed slice"), so VLAN hand-overs need no
ordering between TAPs at all.
"""

from __future__ import annotations

import graphlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from components.model import SliceConfig
from components.outputs import Deployed
from components.plan import LEASE_TIME, SlicePlan, VlanPlan
from vocabulary import specs
from vocabulary.naming import dhcp_namespace, dhcp_port, gateway_port, tap_name
from vocabulary.netem import NETEM_ONLY_KEYS


@dataclass(frozen=True)
class PlannedResource:
    """One child of the component: which class, its logical name suffix, its spec, what it waits for."""

    kind: str
    """A key of `components.slice.RESOURCE_CLASSES`."""
    name: str
    """Suffix of the Pulumi name (`{component}-{name}`)."""
    spec: specs.HostSpec
    depends_on: tuple[str, ...] = field(default=())
    """Names (suffixes) of sibling resources this one must wait for."""


def pool_name(start: int) -> str:
    """A claim per pool start: moving the pool claims the new range before the old one is released."""
    return f"pool-{start}"


def tap_resource(vm: int, iface: str) -> str:
    return f"tap-{vm}-{iface}"


def shape_resource(vm: int, iface: str) -> str:
    return f"shape-{vm}-{iface}"


TBF_LATENCY_MS = 50
"""How long a packet may wait in a rate-limited link's bucket before it is dropped."""


def tbf_burst(rate_kbit: int) -> int:
    """A token bucket that holds 10 ms of the rate, at least one full frame."""
    return max(1600, rate_kbit * 125 // 100)


def netem_resource(worker: str) -> str:
    return f"netem-{worker}"


def _netem_checks(plan: SlicePlan) -> list[PlannedResource]:
    """One `NetemSupport` per worker whose links need a netem (a key other than `rate`): the pool claim,
    and so every other resource, waits for them, so a kernel without netem is refused before any change."""
    config = plan.config
    keys: dict[str, set[str]] = {}
    taps: dict[str, list[str]] = {}
    for link in config.links:
        if link.netem is None or link.netem.qdisc != "netem":
            continue
        wanted = {k for k in link.netem.shown() if k != "rate"}
        for end in (link.a, link.b):
            worker = config.vm(end.vm).worker
            keys.setdefault(worker, set()).update(wanted)
            taps.setdefault(worker, []).append(tap_name(end.vm, end.iface))
    return [
        PlannedResource(
            "NetemSupport",
            netem_resource(worker),
            specs.NetemSupportSpec(
                slice=config.slice_name,
                bridge=config.bridge,
                host=config.workers[worker],
                keys=[k for k in NETEM_ONLY_KEYS if k in keys[worker]],
                taps=taps[worker],
            ),
        )
        for worker in sorted(keys)
    ]


def _shape_resources(plan: SlicePlan, pool: str) -> list[PlannedResource]:
    """One `LinkShape` on each TAP of a link with `netem`: a qdisc shapes what its TAP sends into the VM,
    so the two shape both directions."""
    config = plan.config
    out = []
    for link in config.links:
        if link.netem is None:
            continue
        n = link.netem
        for end in (link.a, link.b):
            out.append(
                PlannedResource(
                    "LinkShape",
                    shape_resource(end.vm, end.iface),
                    specs.LinkShapeSpec(
                        slice=config.slice_name,
                        bridge=config.bridge,
                        host=config.workers[config.vm(end.vm).worker],
                        tap=tap_name(end.vm, end.iface),
                        burst_bytes=tbf_burst(n.rate_kbit) if n.rate_kbit is not None else 1600,
                        latency_ms=TBF_LATENCY_MS,
                        **n.model_dump(),
                    ),
                    (pool, tap_resource(end.vm, end.iface)),
                )
            )
    return out


def claim_resource(vm: int) -> str:
    return f"claim-{vm}"


def claimed(config: SliceConfig) -> dict[str, list[tuple[int, int, int]]]:
    """Worker -> (VM id, vCPUs, MiB) of each launched VM on it, on a worker whose capacity is known
    (declared, or as its host reported it): the VMs that claim their share there (`WorkerClaim`, and the
    pending claims of `providers.reservation`)."""
    out: dict[str, list[tuple[int, int, int]]] = {}
    for vm in config.vms:
        launch = config.launches.get(vm.id)
        if launch is not None and vm.worker in config.capacities:
            out.setdefault(vm.worker, []).append((vm.id, launch.cpus, launch.memory_mb))
    return out


def pending_resource(worker: str) -> str:
    return f"pending-{worker}"


def _pending_claims(config: SliceConfig, stack: str | None) -> list[PlannedResource]:
    """In a slice with `auto` VMs, one `PendingClaims` per worker its launched VMs claim a share of (where
    the reservation at `up` writes): its delete removes what the reservation left there. The pool claim
    waits for them, so they are in the state before anything of the `up` can fail."""
    if stack is None or not any(vm.auto for vm in config.vms):
        return []
    return [
        PlannedResource(
            "PendingClaims",
            pending_resource(worker),
            specs.PendingClaimsSpec(
                slice=config.slice_name, bridge=config.bridge, host=config.workers[worker], stack=stack
            ),
        )
        for worker in sorted(claimed(config))
    ]


def _claim_resources(plan: SlicePlan, pool: str, stack: str | None) -> list[PlannedResource]:
    """One `WorkerClaim` per VM of `claimed`: its share, claimed there under the worker's lock against
    every slice's claims (its `QemuVm` waits for it)."""
    config = plan.config
    claims = {vm for shares in claimed(config).values() for vm, _, _ in shares}
    out = []
    for vm in config.vms:
        if vm.id not in claims:
            continue
        launch = config.launches[vm.id]
        cap = config.capacities[vm.worker]
        spec = specs.WorkerClaimSpec(
            slice=config.slice_name,
            bridge=config.bridge,
            host=config.workers[vm.worker],
            vm=vm.id,
            cpus=launch.cpus,
            memory_mb=launch.memory_mb,
            capacity_cpus=cap.cpus,
            capacity_memory_mb=cap.memory_mb,
            stack=stack,
        )
        out.append(PlannedResource("WorkerClaim", claim_resource(vm.id), spec, (pool,)))
    return out


def gateway_resource(vlan: int) -> str:
    return f"gw-vlan{vlan}"


def dhcp_resource(vlan: int) -> str:
    return f"dhcp-vlan{vlan}"


def _network_resources(
    plan: SlicePlan, net: VlanPlan, node: specs.Endpoint, pool: str
) -> list[PlannedResource]:
    config = plan.config
    common = specs.HostSpec(slice=config.slice_name, bridge=config.bridge, host=node).model_dump()
    prefix = net.subnet.prefixlen
    gw = gateway_resource(net.vlan)
    out = [
        PlannedResource(
            "VlanGateway",
            gw,
            specs.VlanGatewaySpec(
                **common,
                vlan=net.vlan,
                port=gateway_port(net.vlan),
                address=f"{net.gateway}/{prefix}",
                shared=net.shared,
            ),
            (pool,),
        ),
        PlannedResource(
            "DhcpNamespace",
            dhcp_resource(net.vlan),
            specs.DhcpNamespaceSpec(
                **common,
                vlan=net.vlan,
                namespace=dhcp_namespace(net.vlan),
                port=dhcp_port(net.vlan),
                address=f"{net.dhcp_address}/{prefix}",
                range_start=net.range_start,
                range_end=net.range_end,
                lease_time=LEASE_TIME,
                router=net.gateway,
                dns_servers=list(config.dns_servers),
                reservations=list(net.reservations),
                shared=net.shared,
            ),
            (pool,),
        ),
    ]
    if net.shared:
        out.append(
            PlannedResource(
                "NatRule",
                "nat",
                specs.NatRuleSpec(
                    **common,
                    subnet=str(net.subnet),
                    gateway_port=gateway_port(net.vlan),
                    uplink=config.uplink,
                ),
                (pool, gw),
            )
        )
    return out


def resource_plan(
    plan: SlicePlan, deployed: Deployed | None = None, stack: str | None = None
) -> list[PlannedResource]:
    """Every child resource of the slice, dependencies first, with its validated spec.

    `deployed` (the last run's outputs) tells which workers had TAPs of the slice on each VLAN: a TAP that
    joins the VLAN clears those workers too (a removed VM's TAPs are deleted only at the end of the update).
    `stack` (`<project>/<stack>`) is recorded in the pool claim, so that a refusal can name it. The slice's
    uid is not in the specs: the component gives each resource the output of its `SliceIdentity`.
    """
    config = plan.config
    node = config.network_node
    pool = pool_name(config.pool.start)
    checks = [*_netem_checks(plan), *_pending_claims(config, stack)]
    out = [
        *checks,
        PlannedResource(
            "PoolClaim",
            pool,
            specs.PoolClaimSpec(
                slice=config.slice_name,
                bridge=config.bridge,
                host=node,
                start=config.pool.start,
                end=config.pool.end,
                parking_vlan=config.parking_vlan,
                stack=stack,
            ),
            tuple(c.name for c in checks),
        ),
    ]
    had = (deployed or Deployed()).vlan_workers
    by_vlan = {n.vlan: n for n in plan.link_networks}
    for ip in plan.interfaces:
        net = None if ip.parked else by_vlan.get(ip.vlan)
        join = None
        if net is not None:
            hosts = [
                config.workers[w] for w in had.get(net.vlan, ()) if w in config.workers and w != ip.worker
            ]
            join = specs.JoinSpec(members=list(net.members), hosts=hosts, parking_vlan=config.parking_vlan)
        out.append(
            PlannedResource(
                "TapPort",
                tap_resource(ip.vm, ip.iface),
                specs.TapPortSpec(
                    slice=config.slice_name,
                    bridge=config.bridge,
                    host=config.workers[ip.worker],
                    name=ip.tap,
                    vm=ip.vm,
                    iface=ip.iface,
                    mac=ip.mac,
                    vlan=ip.vlan,
                    parked=ip.parked,
                    join=join,
                ),
                (pool,),
            )
        )
    for net in plan.networks:
        out += _network_resources(plan, net, node, pool)
    out += _shape_resources(plan, pool)
    out += _claim_resources(plan, pool, stack)
    return ordered(out)


class GraphError(ValueError):
    """The resource graph names a dependency that is not in it, or has a cycle."""


def ordered(resources: Iterable[PlannedResource]) -> list[PlannedResource]:
    """`resources` with every dependency before its dependents (stable otherwise); `GraphError` when the
    graph is incomplete or cyclic."""
    by_name: dict[str, PlannedResource] = {}
    for r in resources:
        if r.name in by_name:
            raise GraphError(f"two resources are named {r.name!r}")
        by_name[r.name] = r
    missing = sorted({d for r in by_name.values() for d in r.depends_on if d not in by_name})
    if missing:
        raise GraphError(f"dependencies not in the plan: {', '.join(missing)}")
    sorter = graphlib.TopologicalSorter({n: r.depends_on for n, r in by_name.items()})
    try:
        names = list(sorter.static_order())
    except graphlib.CycleError as exc:
        raise GraphError(f"dependency cycle: {' -> '.join(exc.args[1])}") from None
    rank = {n: i for i, n in enumerate(by_name)}
    # static_order is a valid order; re-sort stably by (depth, declaration order) for readable plans
    depth: dict[str, int] = {}
    for n in names:
        depth[n] = 1 + max((depth[d] for d in by_name[n].depends_on), default=-1)
    return [by_name[n] for n in sorted(names, key=lambda n: (depth[n], rank[n]))]

"""`SliceComponent` (`cloudrepo:index:Slice`): every resource of one slice's network plane.

The resources and their inputs come from `resource_plan(plan)`, a pure function (tested without Pulumi);
the component only instantiates them with the right parents and dependencies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pulumi

from components.config import INTERNET_VLAN, Endpoint
from components.launch import Launch
from components.outputs import stack_outputs
from components.plan import (
    INTERNET_DHCP,
    INTERNET_GATEWAY,
    INTERNET_SUBNET,
    LEASE_TIME,
    RANGE_FIRST,
    RANGE_LAST,
    SlicePlan,
    host_in,
    link_subnet,
)
from components.vms import add_launched_vms
from providers import specs
from providers.dhcp_namespace import DhcpNamespace
from providers.naming import dhcp_namespace, dhcp_port, gateway_port
from providers.nat_rule import NatRule
from providers.pool_claim import PoolClaim
from providers.tap_port import TapPort
from providers.vlan_gateway import VlanGateway

COMPONENT_TYPE = "cloudrepo:index:Slice"
RESOURCE_CLASSES: dict[str, Any] = {
    "PoolClaim": PoolClaim,
    "TapPort": TapPort,
    "VlanGateway": VlanGateway,
    "DhcpNamespace": DhcpNamespace,
    "NatRule": NatRule,
}


@dataclass(frozen=True)
class PlannedResource:
    """One child of the component: which class, its logical name suffix, its spec, what it waits for."""

    kind: str
    """A key of RESOURCE_CLASSES."""
    name: str
    """Suffix of the Pulumi name (`{component}-{name}`)."""
    spec: specs.HostSpec
    depends_on: tuple[str, ...] = field(default=())
    """Names (suffixes) of sibling resources this one must wait for."""


def _endpoint(ep: Endpoint) -> specs.Endpoint:
    return specs.Endpoint(name=ep.name, address=ep.address, port=ep.port)


def resource_plan(
    plan: SlicePlan, previous_vlans: Mapping[str, int | None] | None = None
) -> list[PlannedResource]:
    """Every child resource of the slice, in creation order, with its validated spec.

    `previous_vlans` maps `VM.ethN` to the VLAN the interface had in the previous run (None: parked). A TAP
    that joins a VLAN waits for the TAPs that leave it in the same update, so a reused VLAN never briefly
    bridges an old and a new link.
    """
    config = plan.config
    node = _endpoint(config.network_node)
    out: list[PlannedResource] = []
    common = {"slice": config.slice_name, "bridge": config.bridge}

    pool = "pool"
    out.append(
        PlannedResource(
            "PoolClaim",
            pool,
            specs.PoolClaimSpec(**common, host=node, start=config.pool.start, end=config.pool.end),
        )
    )

    previous_vlans = previous_vlans or {}
    leaving: dict[int, list[str]] = {}
    for ip in plan.interfaces:
        ref = f"{ip.vm}.{ip.iface}"
        old = previous_vlans.get(ref)
        new = None if ip.parked else ip.vlan
        if old is not None and old != new:
            leaving.setdefault(old, []).append(f"tap-{ip.vm}-{ip.iface}")
    for ip in plan.interfaces:
        ref = f"{ip.vm}.{ip.iface}"
        name = f"tap-{ip.vm}-{ip.iface}"
        waits: tuple[str, ...] = ()
        if not ip.parked and previous_vlans.get(ref) != ip.vlan:
            waits = tuple(n for n in leaving.get(ip.vlan, []) if n != name)
        out.append(
            PlannedResource(
                "TapPort",
                name,
                specs.TapPortSpec(
                    **common,
                    host=_endpoint(config.workers[ip.worker]),
                    name=ip.tap,
                    vm=ip.vm,
                    iface=ip.iface,
                    mac=ip.mac,
                    vlan=ip.vlan,
                    parked=ip.parked,
                ),
                waits,
            )
        )

    for lp in plan.links:
        net = link_subnet(lp.vlan)
        out.append(
            PlannedResource(
                "VlanGateway",
                f"gw-vlan{lp.vlan}",
                specs.VlanGatewaySpec(
                    **common,
                    host=node,
                    vlan=lp.vlan,
                    port=gateway_port(lp.vlan),
                    address=f"{lp.gateway}/{net.prefixlen}",
                    shared=False,
                ),
                (pool,),
            )
        )
        out.append(
            PlannedResource(
                "DhcpNamespace",
                f"dhcp-vlan{lp.vlan}",
                specs.DhcpNamespaceSpec(
                    **common,
                    host=node,
                    vlan=lp.vlan,
                    namespace=dhcp_namespace(lp.vlan),
                    port=dhcp_port(lp.vlan),
                    address=f"{lp.dhcp_address}/{net.prefixlen}",
                    range_start=host_in(net, RANGE_FIRST),
                    range_end=host_in(net, RANGE_LAST),
                    lease_time=LEASE_TIME,
                    router=lp.gateway,
                    dns_servers=list(config.dns_servers),
                    reservations=[specs.Reservation(**r.as_input()) for r in lp.reservations],
                    shared=False,
                ),
                (pool,),
            )
        )

    if plan.internet:
        gw = f"gw-vlan{INTERNET_VLAN}"
        prefix = INTERNET_SUBNET.prefixlen
        out.append(
            PlannedResource(
                "VlanGateway",
                gw,
                specs.VlanGatewaySpec(
                    **common,
                    host=node,
                    vlan=INTERNET_VLAN,
                    port=gateway_port(INTERNET_VLAN),
                    address=f"{INTERNET_GATEWAY}/{prefix}",
                    shared=True,
                ),
                (pool,),
            )
        )
        out.append(
            PlannedResource(
                "DhcpNamespace",
                f"dhcp-vlan{INTERNET_VLAN}",
                specs.DhcpNamespaceSpec(
                    **common,
                    host=node,
                    vlan=INTERNET_VLAN,
                    namespace=dhcp_namespace(INTERNET_VLAN),
                    port=dhcp_port(INTERNET_VLAN),
                    address=f"{INTERNET_DHCP}/{prefix}",
                    range_start=host_in(INTERNET_SUBNET, RANGE_FIRST),
                    range_end=host_in(INTERNET_SUBNET, RANGE_LAST),
                    lease_time=LEASE_TIME,
                    router=INTERNET_GATEWAY,
                    dns_servers=list(config.dns_servers),
                    reservations=[specs.Reservation(**r.as_input()) for r in plan.internet],
                    shared=True,
                ),
                (pool,),
            )
        )
        out.append(
            PlannedResource(
                "NatRule",
                "nat",
                specs.NatRuleSpec(
                    **common,
                    host=node,
                    subnet=str(INTERNET_SUBNET),
                    gateway_port=gateway_port(INTERNET_VLAN),
                    uplink=config.uplink,
                ),
                (pool, gw),
            )
        )
    return out


class SliceComponent(pulumi.ComponentResource):
    """One slice's tenant network plane: pool claim, TAPs, per-link gateway + DHCP, shared VLAN 400 + NAT."""

    resources: dict[str, pulumi.Resource]
    """The children by name suffix (`pool`, `tap-1002-eth1`, `gw-vlan120`, ...)."""
    outputs: dict[str, Any]
    """The stack outputs (plain values)."""

    def __init__(
        self,
        name: str,
        plan: SlicePlan,
        previous_vlans: Mapping[str, int | None] | None = None,
        opts: pulumi.ResourceOptions | None = None,
        launches: Mapping[int, Launch] | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, {}, opts)
        self.resources = {}
        for planned in resource_plan(plan, previous_vlans):
            cls = RESOURCE_CLASSES[planned.kind]
            deps = [self.resources[d] for d in planned.depends_on]
            self.resources[planned.name] = cls(
                f"{name}-{planned.name}",
                planned.spec,
                pulumi.ResourceOptions(parent=self, depends_on=deps or None),
            )
        self.outputs = stack_outputs(plan)
        for vm_id, extra in add_launched_vms(self, name, plan, launches or {}, self.resources).items():
            self.outputs["vms"][vm_id].update(extra)
        self.register_outputs(self.outputs)

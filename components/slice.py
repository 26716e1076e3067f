"""`SliceComponent` (`cloudrepo:index:Slice`): every resource of one slice's network plane.

The resources, their inputs and their dependencies come from `components.resources.resource_plan`, a pure
function (tested without Pulumi); the component only instantiates them, dependencies first.
"""

from __future__ import annotations

from typing import Any

import pulumi

from components.model import INTERNET_VLAN
from components.outputs import Deployed, stack_outputs
from components.plan import SlicePlan
from components.resources import dhcp_resource, resource_plan
from components.vm_resources import add_launched_vms
from components.vms import launch_plan
from providers.identity import SliceIdentity
from providers.kinds.dhcp_namespace import DhcpNamespace
from providers.kinds.link_shape import LinkShape
from providers.kinds.nat_rule import NatRule
from providers.kinds.netem_support import NetemSupport
from providers.kinds.pending_claims import PendingClaims
from providers.kinds.pool_claim import PoolClaim
from providers.kinds.tap_port import TapPort
from providers.kinds.vlan_gateway import VlanGateway
from providers.kinds.worker_claim import WorkerClaim

COMPONENT_TYPE = "cloudrepo:index:Slice"
IDENTITY_NAME = "slice-identity"
RESOURCE_CLASSES: dict[str, Any] = {
    "PoolClaim": PoolClaim,
    "TapPort": TapPort,
    "VlanGateway": VlanGateway,
    "DhcpNamespace": DhcpNamespace,
    "NatRule": NatRule,
    "LinkShape": LinkShape,
    "NetemSupport": NetemSupport,
    "WorkerClaim": WorkerClaim,
    "PendingClaims": PendingClaims,
}


class SliceComponent(pulumi.ComponentResource):
    """One slice's tenant network plane: its identity, pool claim, TAPs, per-VLAN gateway + DHCP, shared
    VLAN 400 + NAT, launched VMs. Every host resource gets the identity's uid as its `uid` input."""

    identity: SliceIdentity
    """The slice's uid, made by its first `up` and kept in the state (`providers.identity`)."""
    resources: dict[str, pulumi.Resource]
    """The children by name suffix (`pool-120`, `tap-1002-eth1`, `gw-vlan120`, ...)."""
    outputs: dict[str, Any]
    """The stack outputs (plain values, but VLAN 400 addresses, which the network node allocates)."""

    def __init__(
        self,
        name: str,
        plan: SlicePlan,
        deployed: Deployed | None = None,
        opts: pulumi.ResourceOptions | None = None,
        stack: str | None = None,
    ) -> None:
        super().__init__(COMPONENT_TYPE, name, {}, opts)
        # a fixed name: the uid stays when the slice is renamed
        self.identity = SliceIdentity(IDENTITY_NAME, pulumi.ResourceOptions(parent=self))
        self.resources = {}
        for planned in resource_plan(plan, deployed, stack):
            cls = RESOURCE_CLASSES[planned.kind]
            deps = [self.resources[d] for d in planned.depends_on]
            self.resources[planned.name] = cls(
                f"{name}-{planned.name}",
                planned.spec,
                pulumi.ResourceOptions(parent=self, depends_on=deps or None),
                uid=self.identity.uid,
            )
        internet = self.resources.get(dhcp_resource(INTERNET_VLAN))
        if internet is None:
            self.outputs = stack_outputs(plan)
        else:
            addresses: pulumi.Output[Any] = internet.observed  # type: ignore[attr-defined]

            def internet_ip(mac: str) -> pulumi.Output[Any]:
                return addresses.apply(lambda o: ((o or {}).get("reserved") or {}).get(mac))

            self.outputs = stack_outputs(plan, internet_ip)
        copies, vms = launch_plan(plan)
        for vm_id, extra in add_launched_vms(
            self, name, plan.config, copies, vms, self.resources, uid=self.identity.uid
        ).items():
            entry = self.outputs["vms"][vm_id]
            host_key = extra.pop("hostKey", None)
            entry.update(extra)
            if host_key is not None and "cloudInit" in entry:
                entry["cloudInit"]["hostKey"] = host_key
        self.register_outputs(self.outputs)

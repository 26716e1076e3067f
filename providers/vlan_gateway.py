"""VlanGateway: provider and resource (implementation in progress)."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult

from .base import HostProvider, HostResource
from .specs import VlanGatewaySpec


class VlanGatewayProvider(HostProvider[VlanGatewaySpec]):
    spec_model = VlanGatewaySpec
    kind = "vlan_gateway"
    identity = ("host", "port", "vlan")

    def create(self, props: dict[str, Any]) -> CreateResult:
        raise NotImplementedError("VlanGatewayProvider.create")


class VlanGateway(HostResource, name="VlanGateway"):
    """See `VlanGatewaySpec` for the inputs."""

    def __init__(
        self, resource_name: str, spec: VlanGatewaySpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(VlanGatewayProvider(), resource_name, spec, opts)

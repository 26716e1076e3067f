"""PoolClaim: provider and resource (implementation in progress)."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult

from .base import HostProvider, HostResource
from .specs import PoolClaimSpec


class PoolClaimProvider(HostProvider[PoolClaimSpec]):
    spec_model = PoolClaimSpec
    kind = "pool_claim"
    identity = ("host",)

    def create(self, props: dict[str, Any]) -> CreateResult:
        raise NotImplementedError("PoolClaimProvider.create")


class PoolClaim(HostResource, name="PoolClaim"):
    """See `PoolClaimSpec` for the inputs."""

    def __init__(
        self, resource_name: str, spec: PoolClaimSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(PoolClaimProvider(), resource_name, spec, opts)

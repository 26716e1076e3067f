"""NatRule: provider and resource (implementation in progress)."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult

from .base import HostProvider, HostResource
from .specs import NatRuleSpec


class NatRuleProvider(HostProvider[NatRuleSpec]):
    spec_model = NatRuleSpec
    kind = "nat_rule"
    identity = ("host", "subnet")

    def create(self, props: dict[str, Any]) -> CreateResult:
        raise NotImplementedError("NatRuleProvider.create")


class NatRule(HostResource, name="NatRule"):
    """See `NatRuleSpec` for the inputs."""

    def __init__(
        self, resource_name: str, spec: NatRuleSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(NatRuleProvider(), resource_name, spec, opts)

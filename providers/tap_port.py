"""TapPort: provider and resource (implementation in progress)."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult

from .base import HostProvider, HostResource
from .specs import TapPortSpec


class TapPortProvider(HostProvider[TapPortSpec]):
    spec_model = TapPortSpec
    kind = "tap_port"
    identity = ("host", "name")

    def create(self, props: dict[str, Any]) -> CreateResult:
        raise NotImplementedError("TapPortProvider.create")


class TapPort(HostResource, name="TapPort"):
    """See `TapPortSpec` for the inputs."""

    def __init__(
        self, resource_name: str, spec: TapPortSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(TapPortProvider(), resource_name, spec, opts)

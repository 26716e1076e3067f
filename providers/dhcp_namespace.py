"""DhcpNamespace: provider and resource (implementation in progress)."""

from __future__ import annotations

from typing import Any

import pulumi
from pulumi.dynamic import CreateResult

from .base import HostProvider, HostResource
from .specs import DhcpNamespaceSpec


class DhcpNamespaceProvider(HostProvider[DhcpNamespaceSpec]):
    spec_model = DhcpNamespaceSpec
    kind = "dhcp_namespace"
    identity = ("host", "namespace", "port", "vlan")

    def create(self, props: dict[str, Any]) -> CreateResult:
        raise NotImplementedError("DhcpNamespaceProvider.create")


class DhcpNamespace(HostResource, name="DhcpNamespace"):
    """See `DhcpNamespaceSpec` for the inputs."""

    def __init__(
        self, resource_name: str, spec: DhcpNamespaceSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(DhcpNamespaceProvider(), resource_name, spec, opts)

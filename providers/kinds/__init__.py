"""The resource kinds: one module per kind, each declaring its `KIND` record (`providers.kind.Kind`) and
its resource class, and the parts some kinds share. `KINDS` is the registry the pipeline finds a kind in by
its name (`providers.pipeline.HostProvider.kind`): a kind is added here, and never renamed."""

from __future__ import annotations

from typing import Any

from providers.kind import Kind
from providers.kinds import (
    cloud_seed,
    dhcp_namespace,
    link_shape,
    nat_rule,
    netem_support,
    pending_claims,
    pool_claim,
    qemu_vm,
    tap_port,
    vlan_gateway,
    worker_claim,
)

KINDS: dict[str, Kind[Any, Any]] = {
    k.name: k
    for k in (
        tap_port.KIND,
        vlan_gateway.KIND,
        dhcp_namespace.KIND,
        nat_rule.KIND,
        pool_claim.KIND,
        qemu_vm.KIND,
        link_shape.KIND,
        cloud_seed.KIND,
        netem_support.KIND,
        worker_claim.KIND,
        pending_claims.KIND,
    )
}

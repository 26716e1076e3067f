"""VlanGateway: a VLAN's gateway on the network node, an internal OVS port carrying the subnet's `.1`.

A link VLAN's gateway is an address, not a router: FORWARD rules (marked `cloudrepo:<port>`, inserted
first) drop whatever would be routed into or out of it, so links, slices and the uplink stay apart even
while the node forwards for the internet VLAN. Refuses a subnet already on another interface of the node.
Shared (VLAN 400): marked `shared`, its users registered under the lock; the last user's delete removes it.

One round trip (`providers.predict`) for a link VLAN's gateway: a create expects no port or device of that
name and the subnet on no other interface; a delete expects the port marked as the slice's. The shared
gateway's decisions involve other slices: it reads first, then acts under the lock.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from providers import bodies, hoststate, ipv6, predict, shared
from providers.hoststate import LinkState, PortState
from providers.kind import Kind
from providers.kinds import internal_port
from providers.pipeline import HostResource
from providers.predict import Expect, Expectation
from transport.script import ScriptResult, Step, probe, run
from vocabulary import naming
from vocabulary.errors import Conflict, OwnershipConflict
from vocabulary.specs import VlanGatewaySpec

TOOLS = ("ip", "ovs-vsctl", "flock", "iptables")
STILL_THERE = "gateway still there"


def resource_id(spec: VlanGatewaySpec) -> str:
    return f"{spec.host.name}/gateway/{spec.port}"


def owner_mark(spec: VlanGatewaySpec) -> str:
    return bodies.owner_mark(spec.shared, spec.owner)


def marks(spec: VlanGatewaySpec) -> dict[str, str]:
    return {
        naming.OWNER_KEY: owner_mark(spec),
        "cloudrepo-kind": "gateway",
        "cloudrepo-vlan": str(spec.vlan),
    }


def isolation_rules(spec: VlanGatewaySpec) -> dict[str, tuple[str, ...]]:
    """FORWARD rules that keep a link VLAN unrouted (none for the shared internet VLAN: NatRule's job)."""
    if spec.shared:
        return {}
    mark = ("-m", "comment", "--comment", f"cloudrepo:{spec.port}")
    return {
        "isolate in": ("-i", spec.port, *mark, "-j", "DROP"),
        "isolate out": ("-o", spec.port, *mark, "-j", "DROP"),
    }


@dataclass(frozen=True)
class GatewayHave:
    port: PortState | None
    link: LinkState | None
    others: tuple[LinkState, ...]
    """Every other interface of the node (for the subnet check)."""
    users: tuple[str, ...] = ()
    isolation: frozenset[str] = frozenset()
    """Names of the isolation rules found."""
    ipv6: bool = False
    """IPv6 is on on the gateway's interface (`providers.ipv6`)."""

    @property
    def gone(self) -> bool:
        return self.port is None and self.link is None


def preflight(spec: VlanGatewaySpec) -> list[Step]:
    steps = [
        *hoststate.readiness_steps(spec.bridge, *TOOLS),
        hoststate.port_probe("port", spec.port),
        hoststate.port_bridge_probe("port bridge", spec.port),
        probe("links", "ip", "-d", "-j", "addr", "show"),
        ipv6.probe(spec.port),
    ]
    if spec.shared:
        steps.append(shared.users_probe(spec.port))
    for name, rule in isolation_rules(spec).items():
        steps.append(probe(f"rule {name}", "iptables", "-w", "-C", "FORWARD", *rule))
    return steps


def parse_have(spec: VlanGatewaySpec, res: ScriptResult) -> GatewayHave:
    links = hoststate.parse_links(res.out("links")) if res.status("links") == 0 else []
    mine = next((lk for lk in links if lk.name == spec.port), None)
    return GatewayHave(
        port=hoststate.parse_port(res.out("port"), res.out("port bridge"), res.status("port bridge")),
        link=mine,
        others=tuple(lk for lk in links if lk.name != spec.port),
        users=tuple(shared.parse_users(res.out("users"))) if res.ran("users") else (),
        isolation=frozenset(n for n in isolation_rules(spec) if res.status(f"rule {n}") == 0),
        ipv6=ipv6.parse_on(res),
    )


def check_ownership(spec: VlanGatewaySpec, have: GatewayHave) -> None:
    what = f"gateway port {spec.port}"
    if have.port is None:
        if have.link is not None:
            raise OwnershipConflict(
                spec.host.name, what, spec.slice, None, "an interface of that name exists"
            )
        return
    mark = have.port.owner
    if not (spec.shared and mark == naming.SHARED_OWNER) and not spec.adopts(mark):
        raise OwnershipConflict(spec.host.name, what, spec.owner, mark)


def check_subnet(spec: VlanGatewaySpec, have: GatewayHave) -> None:
    """Refuse a subnet already configured on another interface of the node, naming that interface."""
    want = ipaddress.IPv4Interface(spec.address).network
    for link in have.others:
        for addr in link.addresses:
            if ipaddress.IPv4Interface(addr).network.overlaps(want):
                raise Conflict(
                    spec.host.name,
                    f"subnet {want} of {spec.port} (slice {spec.slice!r}) overlaps {addr} on interface "
                    f"{link.name}; nothing changed",
                )


def subnet_clash(spec: VlanGatewaySpec, have: GatewayHave) -> bool:
    """Whether another interface of the node has an address in the subnet (what `check_subnet` refuses)."""
    try:
        check_subnet(spec, have)
    except Conflict:
        return True
    return False


def expect_create(spec: VlanGatewaySpec) -> Expectation[GatewayHave] | None:
    """A link VLAN's gateway: no port or device of that name, the subnet on no other interface."""
    if spec.shared:
        return None
    expects: tuple[Expect[GatewayHave], ...] = (
        predict.ready_no_port(spec.bridge, TOOLS, spec.port, lambda have: have.port is None),
        predict.no_device(spec.port, lambda have: have.link is None),
        predict.subnet_free(spec.address, spec.port, lambda have: not subnet_clash(spec, have)),
    )
    return Expectation(GatewayHave(None, None, ()), expects)


def expect_delete(spec: VlanGatewaySpec) -> Expectation[GatewayHave] | None:
    """A link VLAN's gateway: the port marked as this slice's."""
    if spec.shared:
        return None
    have = GatewayHave(PortState(spec.port, spec.bridge, spec.vlan, marks(spec)), None, ())
    ours: Expect[GatewayHave] = predict.port_ours(
        spec.port, owner_mark(spec), None, lambda h: h.port is not None and h.port.owner == owner_mark(spec)
    )
    return Expectation(have, (ours,))


def port_in_place(spec: VlanGatewaySpec, port: PortState | None) -> bool:
    if port is None or port.bridge != spec.bridge or port.tag != spec.vlan or port.trunks:
        return False
    return all(port.external_ids.get(k) == v for k, v in marks(spec).items())


def plan_ensure(spec: VlanGatewaySpec, have: GatewayHave) -> list[Step]:
    """Steps from `have` to `spec` (empty when in place; for shared, at least the user registration)."""
    check_ownership(spec, have)
    check_subnet(spec, have)
    steps: list[Step] = []
    if spec.shared:
        if have.port is not None:
            # under the lock: if another slice's delete removed it since the read, stop and re-plan
            steps.append(run(STILL_THERE, "ovs-vsctl", "port-to-br", spec.port))
        steps += shared.join(spec.port, spec, have.users)
    if not port_in_place(spec, have.port):
        from_bridge = have.port.bridge if have.port is not None else None
        argv = internal_port.add_argv(spec.bridge, spec.port, spec.vlan, marks(spec), from_bridge)
        steps.append(run("add port", *argv))
    if have.link is None or have.ipv6:
        steps.append(ipv6.off_step(spec.port))
    current = have.link.addresses if have.link else ()
    for addr in current:
        if addr != spec.address:
            steps.append(run(f"remove address {addr}", "ip", "addr", "del", addr, "dev", spec.port))
    if spec.address not in current:
        steps.append(run("add address", "ip", "addr", "add", spec.address, "dev", spec.port))
    if have.link is None or not have.link.up:
        steps.append(run("port up", "ip", "link", "set", "dev", spec.port, "up"))
    for name, rule in isolation_rules(spec).items():
        if name not in have.isolation:
            steps.append(bodies.add_rule(name, "filter", "FORWARD", rule, first=True))
    if [s.name for s in steps] == [STILL_THERE]:
        return []  # in place: nothing to assert
    return steps


def plan_delete(spec: VlanGatewaySpec, have: GatewayHave) -> list[Step]:
    """Non-shared: remove the port if this slice's.  Shared: unregister; the last user removes the port."""
    ours = have.port is not None and have.port.owner == owner_mark(spec)
    delete = ["ovs-vsctl", "--if-exists", "del-port", spec.port]
    if spec.shared:
        steps = [shared.leave(spec.port, spec), shared.last_user_guard(spec.port)]
        return [*steps, run("delete port", *delete), shared.forget(spec.port)] if ours else steps
    if not ours:
        return []
    unisolate = [
        bodies.remove_rule(f"remove {n}", "filter", "FORWARD", r) for n, r in isolation_rules(spec).items()
    ]
    return [run("delete port", *delete), *unisolate]


def observe(spec: VlanGatewaySpec, have: GatewayHave) -> tuple[dict[str, Any], list[str]]:
    port, link = have.port, have.link
    observed: dict[str, Any] = {
        "exists": port is not None,
        "tag": port.tag if port else None,
        "owner": port.owner if port else None,
        "addresses": list(link.addresses) if link else [],
        "up": bool(link and link.up),
        "ipv6": have.ipv6,
        "users": list(have.users),
        "isolation": sorted(have.isolation),
    }
    drift: list[str] = []
    if port is None:
        drift.append("port missing")
    else:
        if port.tag != spec.vlan:
            drift.append(f"tag {port.tag}, want {spec.vlan}")
        if port.owner != owner_mark(spec):
            drift.append(f"marked {port.owner}, want {owner_mark(spec)}")
    if link is None:
        drift.append("interface missing")
    else:
        if spec.address not in link.addresses:
            drift.append(f"address {spec.address} missing (has {', '.join(link.addresses) or 'none'})")
        elif len(link.addresses) > 1:
            drift.append(f"extra addresses: {', '.join(a for a in link.addresses if a != spec.address)}")
        if not link.up:
            drift.append("interface down")
        if have.ipv6:
            drift.append("IPv6 on")
    for name in isolation_rules(spec):
        if name not in have.isolation:
            drift.append(f"FORWARD rule {name!r} missing")
    if spec.shared and spec.owner not in have.users:
        drift.append(f"slice {spec.slice} not registered as a user")
    return observed, drift


def locked(spec: VlanGatewaySpec, _have: GatewayHave) -> bool:
    """Users are registered under the lock; another slice's delete may remove the shared gateway."""
    return spec.shared


def after(spec: VlanGatewaySpec, have: GatewayHave, _res: ScriptResult) -> GatewayHave:
    return GatewayHave(
        port=PortState(spec.port, spec.bridge, spec.vlan, marks(spec)),
        link=LinkState(spec.port, True, "internal", None, (spec.address,)),
        others=have.others,
        users=shared.joined(spec, have.users) if spec.shared else (),
        isolation=frozenset(isolation_rules(spec)),
    )


def foreign(spec: VlanGatewaySpec, have: GatewayHave) -> tuple[str, str | None] | None:
    if have.port is not None and have.port.owner != owner_mark(spec):
        return f"gateway {spec.port}", have.port.owner
    return None


KIND: Kind[VlanGatewaySpec, GatewayHave] = Kind(
    name="VlanGateway",
    spec_model=VlanGatewaySpec,
    identity=("slice", "host", "port", "vlan"),
    resource_id=resource_id,
    preflight=preflight,
    parse_have=parse_have,
    plan_ensure=plan_ensure,
    plan_delete=plan_delete,
    observe=observe,
    after=after,
    locked=locked,
    expect_create=expect_create,
    expect_delete=expect_delete,
    foreign=foreign,
)


class VlanGateway(HostResource, kind=KIND):
    """A VLAN's gateway port on the network node; see `VlanGatewaySpec` for the inputs."""


from providers.legacy import VlanGatewayProvider as VlanGatewayProvider  # noqa: E402  (a class path older state holds)

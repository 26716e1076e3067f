"""NatRule: MASQUERADE of a subnet out of the uplink plus the FORWARD rules it needs, on the network node.

Always shared: each slice registers as a user under the lock; rules are added only if absent
(`iptables -w -C`), each carries `-m comment --comment cloudrepo:<object>`, and only the last user's delete
removes them, so one slice's destroy never cuts another's internet.

ip_forward: turned on when needed.  If it was off, the value found is recorded once per host in
`/var/lib/cloudrepo/ip_forward.before`; when the last user of the last NAT object on the host leaves, the
recorded value is restored and the record removed.  If it was already on, nothing is recorded and it stays
on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers import bodies, hoststate, shared
from providers.kind import Kind
from providers.pipeline import HostResource
from providers.predict import Expectation
from transport.script import ScriptResult, Step, probe, sh
from vocabulary import naming
from vocabulary.specs import NatRuleSpec

TOOLS = ("iptables", "sysctl", "flock")
FORWARD_RECORD = f"{naming.STATE_ROOT}/ip_forward.before"

_FORWARD_ON = '[ -f "$1" ] || cat /proc/sys/net/ipv4/ip_forward >"$1"; sysctl -qw net.ipv4.ip_forward=1'
# restore only when no other NAT object on the host still has users
_FORWARD_RESTORE = (
    'for d in "$2"/nat-*/users; do [ "$d" = "$3" ] && continue; '
    '[ -d "$d" ] && [ -n "$(ls -A "$d")" ] && exit 0; done; '
    '[ -f "$1" ] || exit 0; v=$(cat "$1"); '
    'case "$v" in 0|1) sysctl -qw net.ipv4.ip_forward="$v";; esac; rm -f "$1"'
)


def object_name(spec: NatRuleSpec) -> str:
    """The shared object's name: registry directory and rule comment (`cloudrepo:<it>`). It names the
    uplink too: slices with different uplinks each have their own rules, and a slice that changes its
    uplink joins the new object before it leaves the old one."""
    return f"nat-{spec.subnet.replace('/', '-')}-{spec.uplink}"


def comment(spec: NatRuleSpec) -> str:
    return f"cloudrepo:{object_name(spec)}"


def resource_id(spec: NatRuleSpec) -> str:
    return f"{spec.host.name}/nat/{object_name(spec)}"


@dataclass(frozen=True)
class Rule:
    name: str
    table: str
    chain: str
    spec: tuple[str, ...]


def rules(spec: NatRuleSpec) -> list[Rule]:
    c = ("-m", "comment", "--comment", comment(spec))
    return [
        Rule(
            "masquerade", "nat", "POSTROUTING", ("-s", spec.subnet, "-o", spec.uplink, *c, "-j", "MASQUERADE")
        ),
        Rule(
            "forward out",
            "filter",
            "FORWARD",
            ("-i", spec.gateway_port, "-o", spec.uplink, *c, "-j", "ACCEPT"),
        ),
        Rule(
            "forward replies",
            "filter",
            "FORWARD",
            ("-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", *c, "-j", "ACCEPT"),
        ),
    ]


@dataclass(frozen=True)
class NatHave:
    present: frozenset[str]
    """Names of the rules found."""
    ip_forward: str
    users: tuple[str, ...]

    @property
    def gone(self) -> bool:
        return not self.present and not self.users


def preflight(spec: NatRuleSpec) -> list[Step]:
    steps = hoststate.readiness_steps(None, *TOOLS)
    for r in rules(spec):
        steps.append(probe(f"rule {r.name}", "iptables", "-w", "-t", r.table, "-C", r.chain, *r.spec))
    steps.append(probe("ip_forward", "cat", "/proc/sys/net/ipv4/ip_forward"))
    steps.append(shared.users_probe(object_name(spec)))
    return steps


def parse_have(spec: NatRuleSpec, res: ScriptResult) -> NatHave:
    present = frozenset(r.name for r in rules(spec) if res.status(f"rule {r.name}") == 0)
    return NatHave(present, res.out("ip_forward").strip(), tuple(shared.parse_users(res.out("users"))))


def plan_ensure(spec: NatRuleSpec, have: NatHave) -> list[Step]:
    """Register this slice; add the missing rules (re-checked under the lock); forwarding on."""
    steps: list[Step] = []
    steps += shared.join(object_name(spec), spec, have.users)
    for r in rules(spec):
        if r.name not in have.present:
            steps.append(bodies.add_rule(f"add {r.name}", r.table, r.chain, r.spec))
    if have.ip_forward != "1":
        steps.append(sh("enable forwarding", _FORWARD_ON, FORWARD_RECORD))
    return steps


def plan_delete(spec: NatRuleSpec) -> list[Step]:
    """Unregister; if no other slice uses it, remove the rules and restore forwarding."""
    obj = object_name(spec)
    steps = [shared.leave(obj, spec), shared.last_user_guard(obj)]
    steps += [bodies.remove_rule(f"delete {r.name}", r.table, r.chain, r.spec) for r in rules(spec)]
    steps.append(
        sh(
            "restore forwarding",
            _FORWARD_RESTORE,
            FORWARD_RECORD,
            f"{naming.STATE_ROOT}/shared",
            naming.shared_users_dir(obj),
        )
    )
    steps.append(shared.forget(obj))
    return steps


def observe(spec: NatRuleSpec, have: NatHave) -> tuple[dict[str, Any], list[str]]:
    observed: dict[str, Any] = {
        "rules": sorted(have.present),
        "ipForward": have.ip_forward,
        "users": list(have.users),
    }
    drift = [f"rule {r.name} missing" for r in rules(spec) if r.name not in have.present]
    if have.ip_forward != "1":
        drift.append("ip_forward is off")
    if spec.owner not in have.users:
        drift.append(f"slice {spec.slice} not registered as a user")
    return observed, drift


def after(spec: NatRuleSpec, have: NatHave, _res: ScriptResult) -> NatHave:
    """Every rule there (added unless present, re-checked under the lock), forwarding on, the slice a user."""
    return NatHave(frozenset(r.name for r in rules(spec)), "1", shared.joined(spec, have.users))


def expect_delete(spec: NatRuleSpec) -> Expectation[NatHave]:
    """No read: the locked plan leaves, and the last user's removes the rules (one round trip)."""
    return Expectation(NatHave(frozenset(), "", ()), (), locked=True)


KIND: Kind[NatRuleSpec, NatHave] = Kind(
    name="NatRule",
    spec_model=NatRuleSpec,
    identity=("slice", "host", "subnet", "gatewayPort", "uplink"),
    delete_before_replace=False,  # the rules are shared; the new ones go in before the old user leaves
    needs_bridge=False,
    replans=False,
    resource_id=resource_id,
    preflight=preflight,
    parse_have=parse_have,
    plan_ensure=plan_ensure,
    plan_delete=lambda spec, _have: plan_delete(spec),
    observe=observe,
    after=after,
    locked=lambda _spec, _have: True,
    expect_delete=expect_delete,
)


class NatRule(HostResource, kind=KIND):
    """Shared NAT for a subnet on the network node; see `NatRuleSpec` for the inputs."""


from providers.legacy import NatRuleProvider as NatRuleProvider  # noqa: E402  (a class path older state holds)

"""TapPort: a VM interface's TAP on a worker, on the bridge with its VLAN tag (parked: dead, see below).

want (TapPortSpec) / have (TapHave, from one read round trip) / commands (pure `plan_*` functions).

Joining a link VLAN (a create, or a tag change): first, on each other worker that had the VLAN
(`spec.join.hosts`), under that worker's lock, every port of the slice still tagged with the VLAN that is
not one of the link's TAPs is parked; then the TAP is tagged, after parking such strays on its own worker
in the same locked script (the read finds them). A tag change away from a VLAN runs under the lock too, so
a park never undoes a concurrent move.

One round trip (`providers.predict`): a create expects no TAP and no port of that name; an update expects the
slice's TAP, up, on the bridge (the port's VLAN, marks and protection are not guarded: the one OVSDB
transaction sets them all) and runs locked; a delete expects the slice's TAP and port. A TAP that joins a
link VLAN also expects no stray of the slice on it on its own worker, and none of these is tried when other
workers had the VLAN (their strays are parked first, in round trips of their own).

A parked TAP (on no link) passes no traffic at all: its port is on the parking VLAN, `protected`, and an
OpenFlow flow drops every frame that enters the bridge from it (`in_port=<its ofport> actions=drop`); while a
parked TAP is on a bridge, the bridge also drops every frame tagged with that parking VLAN (what arrives from
the fabric), so a parked guest neither sends nor receives, on any worker. The flows are marked by their
cookie: upper half `PORT_COOKIE` and the POSIX `cksum` of the TAP's name, or `VLAN_COOKIE` and the VLAN. A
TAP's drop is added before its port is retagged to the parking VLAN (a new TAP comes up only after it) and
removed after it is retagged to a link (after any move between VLANs too: a TAP joining the VLAN it leaves may
have parked it since the read); the VLAN's drop goes with the last parked TAP on the bridge (checked
again after the removal, so a concurrent park needs no lock). Flows live in ovs-vswitchd, not in OVSDB: one
lost (a restart, a hand edit) is drift for `read`, and `update` puts it back.

About 560 lines: the parking flows' shell functions and their reads are most of it; they belong to this
kind alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers import hoststate, ipv6, predict
from providers.hoststate import LinkState, PortState
from providers.kind import Kind
from providers.pipeline import HostResource
from providers.predict import Expect, Expectation
from transport.script import ScriptResult, Step, probe, run, sh
from vocabulary import naming
from vocabulary.errors import OwnershipConflict
from vocabulary.specs import Endpoint, JoinSpec, TapPortSpec

TOOLS = ("ip", "ovs-vsctl", "ovs-ofctl")
ALIAS_PREFIX = "cloudrepo:"
PARK_OTHERS = "park others on the vlan"
ON_VLAN = "on the vlan"
FLOWS = "flows"
DROP = "drop parked"
DROP_VLAN = "drop parking vlan"
GC = "forget unused vlan drops"
UNDROP = "undrop"
MARK_UP = "mark tap, up"

DROP_PRIORITY = 60000
"""Above the bridge's own NORMAL flow (priority 0) and any usual forwarding flow."""
PORT_COOKIE = 0xC1D00001
"""Upper half of the cookie of a parked TAP's drop flow (lower half: `cksum` of the TAP's name)."""
VLAN_COOKIE = 0xC1D00002
"""Upper half of the cookie of a bridge's drop of frames tagged with a parking VLAN (lower half: the VLAN)."""

# k TAP: the TAP's drop cookie; kv VLAN: the VLAN's drop cookie
_COOKIES = (
    f'k() {{ set -- $(printf %s "$1" | cksum); printf "0x%08x%08x" {PORT_COOKIE} "$1"; }}; '
    f'kv() {{ printf "0x%08x%08x" {VLAN_COOKIE} "$1"; }}; '
)
# used BRIDGE VLAN: a parked TAP is on it; drop BRIDGE TAP: the TAP's drop on its current ofport (and on no
# other); dropv BRIDGE VLAN: the VLAN's drop (added after the TAP is on the VLAN); gc BRIDGE: no VLAN drop
# that no parked TAP of the bridge needs (checked again after the removal: a TAP parked meanwhile, whose
# `dropv` came before, gets it back); undrop BRIDGE TAP: no drop of the TAP, then gc
_FLOW_FNS = _COOKIES + (
    'used() { for u in $(ovs-vsctl --bare --columns=name find port "tag=$2" protected=true '
    'external_ids:cloudrepo-kind=tap); do [ "$(ovs-vsctl port-to-br "$u")" = "$1" ] && return 0; '
    "done; return 1; }; "
    'drop() { c=$(k "$2"); o=$(ovs-vsctl get interface "$2" ofport) || return 1; '
    '[ "$o" -gt 0 ] 2>/dev/null || return 1; '
    f'ovs-ofctl add-flow "$1" "cookie=$c,priority={DROP_PRIORITY},in_port=$o,actions=drop" || return 1; '
    'for i in $(ovs-ofctl --no-names --no-stats dump-flows "$1" "cookie=$c/-1" '
    '| sed -n \'s/.*in_port=\\([0-9]*\\).*/\\1/p\'); do [ "$i" = "$o" ] || '
    f'ovs-ofctl --strict del-flows "$1" "cookie=$c/-1,priority={DROP_PRIORITY},in_port=$i" || return 1; '
    "done; }; "
    f'dropv() {{ ovs-ofctl add-flow "$1" "cookie=$(kv "$2"),priority={DROP_PRIORITY},dl_vlan=$2,'
    'actions=drop"; }; '
    f"brx() {{ {hoststate.BRIDGE_EXISTS}; }}; "
    'gc() { brx "$1" || return 0; '
    'for v in $(ovs-ofctl --no-names --no-stats dump-flows "$1" "cookie=$(kv 0)/0xffffffff00000000" '
    '| sed -n \'s/.*dl_vlan=\\([0-9]*\\).*/\\1/p\'); do used "$1" "$v" && continue; '
    'ovs-ofctl del-flows "$1" "cookie=$(kv "$v")/-1" || return 1; ! used "$1" "$v" || dropv "$1" "$v" '
    "|| return 1; done; }; "
    'undrop() { brx "$1" || return 0; ovs-ofctl del-flows "$1" "cookie=$(k "$2")/-1" '
    '|| return 1; gc "$1"; }; '
)
# $1 bridge, $2 TAP: its drop flow on its OpenFlow port, and on no other
_DROP = _FLOW_FNS + 'drop "$1" "$2"'
# $1 bridge, $2 parking VLAN: the bridge drops frames tagged with it
_DROP_VLAN = _FLOW_FNS + 'dropv "$1" "$2"'
# $1 bridge, $2 TAP: no drop flow of it, nor a VLAN drop no parked TAP needs
_UNDROP = _FLOW_FNS + 'undrop "$1" "$2"'
# $1 bridge: no VLAN drop no parked TAP needs
_GC = _FLOW_FNS + 'gc "$1"'
# $1 bridge, $2 TAP, $3 parking VLAN ("" when not parked): "ofport N" (empty: no such interface), a
# "drop N" per drop flow of the TAP (on OpenFlow port N), and "vlan" when the bridge drops the VLAN's frames
_READ_FLOWS = _COOKIES + (
    'printf "ofport %s\\n" "$(ovs-vsctl --if-exists get interface "$2" ofport 2>/dev/null)"; '
    'ovs-ofctl --no-names --no-stats dump-flows "$1" "cookie=$(k "$2")/-1" 2>/dev/null '
    "| sed -n 's/.*in_port=\\([0-9]*\\).*/drop \\1/p'; "
    'if [ -n "$3" ] && ovs-ofctl --no-names --no-stats dump-flows "$1" "cookie=$(kv "$3")/-1" 2>/dev/null '
    "| grep -q dl_vlan; then echo vlan; fi"
)

# $1 owner mark, $2 VLAN, $3 parking VLAN, then the TAPs that belong on the VLAN; prints each port it parked
# (each is dropped before it is retagged)
_PARK_OTHERS = _FLOW_FNS + (
    "s=$1; v=$2; p=$3; shift 3; "
    'ports=$(ovs-vsctl --bare --columns=name find port "tag=$v" "external_ids:' + naming.OWNER_KEY + '="$s"" '
    '"external_ids:cloudrepo-kind=tap") || exit 1; '
    'for port in $ports; do keep=0; for m in "$@"; do [ "$m" = "$port" ] && keep=1; done; '
    '[ "$keep" = 1 ] && continue; b=$(ovs-vsctl port-to-br "$port") || exit 1; '
    'drop "$b" "$port" || exit 1; ovs-vsctl set port "$port" "tag=$p" protected=true || exit 1; '
    'dropv "$b" "$p" || exit 1; '
    'printf "%s\n" "$port"; done'
)
# $1 owner mark, $2 VLAN, then the TAPs that belong on the VLAN; exit 0 when no other port of the slice is
# on it
_NO_STRAYS = (
    "s=$1; v=$2; shift 2; "
    'ports=$(ovs-vsctl --bare --columns=name find port "tag=$v" "external_ids:' + naming.OWNER_KEY + '="$s"" '
    '"external_ids:cloudrepo-kind=tap") || exit 1; '
    'for port in $ports; do keep=1; for m in "$@"; do [ "$m" = "$port" ] && keep=0; done; '
    '[ "$keep" = 0 ] || exit 1; done'
)
# $1 TAP, $2 its alias: a TAP device (IFF_TAP in tun_flags) carrying the alias
_TAP_OURS = (
    'ip link show dev "$1" >/dev/null 2>&1 || exit 1; d=/sys/class/net/$1; '
    '[ "$(cat "$d/ifalias")" = "$2" ] || exit 1; f=$(cat "$d/tun_flags") || exit 1; [ $(( f & 2 )) -ne 0 ]'
)
_DEVICE_UP = 'g=$(cat "/sys/class/net/$1/flags") || exit 1; [ $(( g & 1 )) -ne 0 ]'


def resource_id(spec: TapPortSpec) -> str:
    return f"{spec.host.name}/tap/{spec.name}"


def marks(spec: TapPortSpec) -> dict[str, str]:
    """The OVS external_ids that mark the port as this slice's."""
    return {
        naming.OWNER_KEY: spec.owner,
        "cloudrepo-vm": str(spec.vm),
        "cloudrepo-iface": spec.iface,
        "attached-mac": spec.mac,
        "cloudrepo-kind": "tap",
    }


def alias(spec: TapPortSpec) -> str:
    """The kernel ifalias that marks the TAP device itself (a TAP not on any bridge is still marked)."""
    return f"{ALIAS_PREFIX}{spec.owner}"


@dataclass(frozen=True)
class TapHave:
    link: LinkState | None
    port: PortState | None
    strays: tuple[str, ...] = ()
    """Ports of the slice on the VLAN this TAP joins that are not the link's (read only when it joins one)."""
    ofport: int | None = None
    """The TAP's OpenFlow port (None: not on a bridge)."""
    drops: tuple[int, ...] = ()
    """The OpenFlow ports that the TAP's drop flows (its cookie) match."""
    vlan_drop: bool = False
    """The bridge drops frames tagged with the parking VLAN (read only for a parked TAP)."""
    ipv6: bool = False
    """IPv6 is on on the TAP (`providers.ipv6`)."""

    @property
    def gone(self) -> bool:
        return self.link is None and self.port is None

    @property
    def dropped(self) -> bool:
        """Parked as it should be: a drop on its OpenFlow port (on no other) and the VLAN's drop."""
        return self.ofport is not None and self.drops == (self.ofport,) and self.vlan_drop


def on_vlan_probe(spec: TapPortSpec) -> Step:
    """The names of the slice's TAP ports tagged with `spec.vlan`."""
    return probe(
        ON_VLAN, "ovs-vsctl", "--bare", "--columns=name", "find", "port", f"tag={spec.vlan}",
        f'external_ids:{naming.OWNER_KEY}="{spec.owner}"', "external_ids:cloudrepo-kind=tap",
    )  # fmt: skip


def flows_probe(spec: TapPortSpec) -> Step:
    """The TAP's OpenFlow port, its drop flows, and (parked) whether the bridge drops the parking VLAN."""
    parking = str(spec.vlan) if spec.parked else ""
    return sh(FLOWS, _READ_FLOWS, spec.bridge, spec.name, parking, kind="probe")


def parse_flows(text: str) -> tuple[int | None, tuple[int, ...], bool]:
    """(ofport, the OpenFlow ports of the TAP's drops, the VLAN's drop) from `flows_probe`'s output."""
    ofport: int | None = None
    drops: list[int] = []
    vlan = False
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        if key == "ofport" and value.strip().lstrip("-").isdigit() and int(value) > 0:
            ofport = int(value)
        elif key == "drop" and value.strip().isdigit():
            drops.append(int(value))
        elif key == "vlan":
            vlan = True
    return ofport, tuple(sorted(drops)), vlan


def drop_step(spec: TapPortSpec) -> Step:
    """Drop every frame from the TAP (on its current OpenFlow port)."""
    return sh(DROP, _DROP, spec.bridge, spec.name)


def drop_vlan_step(spec: TapPortSpec) -> Step:
    """Drop every frame tagged with the parking VLAN (what arrives from the fabric)."""
    return sh(DROP_VLAN, _DROP_VLAN, spec.bridge, str(spec.vlan))


def gc_step(spec: TapPortSpec) -> Step:
    """No drop of a parking VLAN that no parked TAP of the bridge is on (a TAP moved off it)."""
    return sh(GC, _GC, spec.bridge)


def undrop_step(spec: TapPortSpec) -> Step:
    """No drop flow of the TAP; the parking VLAN's drop goes with the bridge's last parked TAP."""
    return sh(UNDROP, _UNDROP, spec.bridge, spec.name)


def preflight(spec: TapPortSpec) -> list[Step]:
    """One read round trip: tools, bridge, the TAP device, its OVS port and that port's bridge, its drop
    flows (and, for a link VLAN, who else of the slice is on it)."""
    steps = [
        *hoststate.readiness_steps(spec.bridge, *TOOLS),
        hoststate.link_probe("link", spec.name),
        ipv6.probe(spec.name),
        hoststate.port_probe("port", spec.name),
        hoststate.port_bridge_probe("port bridge", spec.name),
        flows_probe(spec),
    ]
    if spec.join is not None:
        steps.append(on_vlan_probe(spec))
    return steps


def parse_have(spec: TapPortSpec, res: ScriptResult) -> TapHave:
    members = set(spec.join.members) if spec.join is not None else set()
    strays = res.out(ON_VLAN).split() if res.ran(ON_VLAN) and res.status(ON_VLAN) == 0 else []
    ofport, drops, vlan = parse_flows(res.out(FLOWS)) if res.ran(FLOWS) else (None, (), False)
    return TapHave(
        link=hoststate.parse_link(res.out("link"), res.status("link")),
        port=hoststate.parse_port(res.out("port"), res.out("port bridge"), res.status("port bridge")),
        strays=tuple(sorted(n for n in strays if n not in members)),
        ofport=ofport,
        drops=drops,
        vlan_drop=vlan,
        ipv6=ipv6.parse_on(res),
    )


def owner(have: TapHave) -> tuple[bool, str | None]:
    """(found, its owner mark or None when unmarked)."""
    if have.port is not None:
        return True, have.port.owner
    if have.link is not None:
        a = have.link.alias or ""
        return True, a[len(ALIAS_PREFIX) :] if a.startswith(ALIAS_PREFIX) else None
    return False, None


def check_ownership(spec: TapPortSpec, have: TapHave) -> None:
    """Raise `OwnershipConflict` unless the TAP is absent or this slice's (its mark, or the bare name of a
    TAP made before slices had uids, which the ensure marks anew)."""
    found, who = owner(have)
    if not found:
        return
    what = f"TAP {spec.name}"
    if have.link is not None and have.link.kind != "tap":
        raise OwnershipConflict(
            spec.host.name, what, spec.owner, who, f"it is a {have.link.kind or 'plain'} device"
        )
    if not spec.adopts(who):
        raise OwnershipConflict(spec.host.name, what, spec.owner, who)


def ovs_in_place(spec: TapPortSpec, port: PortState | None) -> bool:
    if port is None or port.bridge != spec.bridge or port.tag != spec.vlan:
        return False
    if port.vlan_mode not in (None, "access") or port.trunks:
        return False
    if port.protected != spec.parked:
        return False
    return all(port.external_ids.get(k) == v for k, v in marks(spec).items())


def ovs_command(spec: TapPortSpec, port: PortState | None, *, wait: bool = True) -> list[str]:
    """One OVSDB transaction: add the port if missing AND (re)set tag, marks, protection on it.

    `wait=False` (`--no-wait`): the command returns once OVSDB holds the change, not after `ovs-vswitchd`
    applied it (a reconfiguration of the whole bridge, whose cost grows with its ports)."""
    argv = ["ovs-vsctl"] if wait else ["ovs-vsctl", "--no-wait"]
    if port is not None and port.bridge is not None and port.bridge != spec.bridge:
        argv += ["--if-exists", "del-port", port.bridge, spec.name, "--"]
    argv += ["--may-exist", "add-port", spec.bridge, spec.name, f"tag={spec.vlan}"]
    argv += ["--", "set", "port", spec.name, f"tag={spec.vlan}", "vlan_mode=access", "trunks=[]"]
    argv += [f'external_ids:{k}="{v}"' for k, v in marks(spec).items()]
    argv += [f"protected={'true' if spec.parked else 'false'}"]
    return argv


def plan_ensure(spec: TapPortSpec, have: TapHave) -> list[Step]:
    """The steps that bring the host from `have` to `spec` (empty when already in place); joining a link
    VLAN, the slice's strays on it on this worker are parked first.

    A parked TAP is dropped before its port is retagged (a new one: right after it is added, and it comes
    up only then); a TAP on a link is undropped after its port is retagged or moved."""
    check_ownership(spec, have)
    joins = joining(spec, have)
    steps: list[Step] = [park_others(spec, joins)] if joins is not None and have.strays else []
    link, port = have.link, have.port
    if link is None and port is not None:
        # the TAP was deleted under its OVS port: the bridge still holds the old device (by its ifindex),
        # so a TAP made again under the same name carries no traffic until the port is added afresh
        steps.append(run("detach stale port", "ovs-vsctl", "--if-exists", "del-port", spec.name))
        port = None
    if link is None:
        steps.append(run("create tap", "ip", "tuntap", "add", "mode", "tap", "name", spec.name))
    if link is None or have.ipv6:
        steps.append(ipv6.off_step(spec.name))
    mark = link is None or link.alias != alias(spec)
    # promiscuous as it comes up: ovs-vswitchd sets that flag when it opens a port, and a device that has it
    # already makes no further change for every ovs-vswitchd to react to (a pass over its whole bridge)
    promisc_up = ("promisc", "on", "up")
    down = link is None or not link.up
    up = [run("tap up", "ip", "link", "set", "dev", spec.name, *promisc_up)] if down else []
    if mark and up and not spec.parked:
        # one netlink request, so one change of the device that each ovs-vswitchd reacts to, not two
        steps.append(run(MARK_UP, "ip", "link", "set", "dev", spec.name, "alias", alias(spec), *promisc_up))
        up = []
    elif mark:
        steps.append(run("mark tap", "ip", "link", "set", "dev", spec.name, "alias", alias(spec)))
    # a new port of a TAP on a link: no later step needs ovs-vswitchd to have applied it (no OpenFlow port
    # is read, no drop is removed), so it does not wait for the bridge's reconfiguration
    fresh = port is None and not spec.parked
    attach = (
        [] if ovs_in_place(spec, port) else [run("attach port", *ovs_command(spec, port, wait=not fresh))]
    )
    if spec.parked:
        drop = [drop_step(spec)] if attach or not have.dropped else []
        kept = port is not None and port.bridge == spec.bridge  # the same OpenFlow port after the attach
        steps += [*drop, *attach] if kept else [*attach, *drop]
        moved = [gc_step(spec)] if attach and port is not None and port.tag != spec.vlan else []
        return steps + [drop_vlan_step(spec)] * len(drop) + moved + up
    # a port that was parked (or whose tag is not known): its drop and maybe its VLAN's go; so do those of a
    # port moved between VLANs: the read ran outside the lock, and a TAP joining the VLAN it leaves may have
    # parked it since (two links swapping ends in one `up`)
    parked_before = port is not None and (port.protected or port.tag is None)
    retagged = port is not None and port.tag != spec.vlan
    undrop = [undrop_step(spec)] if port is not None and (have.drops or parked_before or retagged) else []
    return steps + up + attach + undrop


def park_others(spec: TapPortSpec, join: JoinSpec) -> Step:
    """Park every TAP of the slice on `spec.vlan` that is not one of `join.members` (under the lock)."""
    return sh(PARK_OTHERS, _PARK_OTHERS, spec.owner, str(spec.vlan), str(join.parking_vlan), *join.members)


def retags(spec: TapPortSpec, have: TapHave) -> bool:
    """Whether the ensure changes the port's VLAN (or adds the port)."""
    return have.port is None or have.port.tag != spec.vlan


def plan_delete(spec: TapPortSpec, have: TapHave) -> list[Step]:
    """Remove the port and the TAP if they carry this slice's mark; nothing otherwise (already gone =
    success)."""
    found, who = owner(have)
    if not found or not spec.owns(who):
        return []
    steps: list[Step] = []
    if have.port is not None:
        argv = ["ovs-vsctl", "--if-exists", "del-port"]
        argv += [have.port.bridge, spec.name] if have.port.bridge else [spec.name]
        steps.append(run("detach port", *argv))
    if have.link is not None and have.link.kind == "tap":
        # `ip tuntap del` fails with EBUSY while a VM holds the TAP open; `ip link delete` does not
        steps.append(run("delete tap", "ip", "link", "delete", "dev", spec.name))
    steps.append(undrop_step(spec))
    return steps


def observe(spec: TapPortSpec, have: TapHave) -> tuple[dict[str, Any], list[str]]:
    """What is on the host, and how it differs from `spec`."""
    port, link = have.port, have.link
    observed: dict[str, Any] = {
        "exists": link is not None,
        "up": bool(link and link.up),
        "bridge": port.bridge if port else None,
        "tag": port.tag if port else None,
        "protected": port.protected if port else None,
        "dropped": have.dropped,
        "ipv6": have.ipv6,
        "owner": owner(have)[1],
    }
    drift: list[str] = []
    if link is None:
        drift.append("TAP device missing")
    elif not link.up:
        drift.append("TAP is down")
    if link is not None and have.ipv6:
        drift.append("IPv6 on")
    if port is None:
        drift.append("not on the bridge")
    else:
        if port.bridge != spec.bridge:
            drift.append(f"on bridge {port.bridge}, want {spec.bridge}")
        if port.tag != spec.vlan:
            drift.append(f"tag {port.tag if port.tag is not None else 'none (trunk)'}, want {spec.vlan}")
        if port.protected != spec.parked:
            drift.append(f"protected={str(port.protected).lower()}, want {str(spec.parked).lower()}")
        if port.trunks or port.vlan_mode not in (None, "access"):
            drift.append(f"vlan_mode {port.vlan_mode} trunks {list(port.trunks)}")
        bad = sorted(k for k, v in marks(spec).items() if port.external_ids.get(k) != v)
        if bad:
            drift.append(f"external_ids differ: {', '.join(bad)}")
    drift += flow_drift(spec, have)
    return observed, drift


def flow_drift(spec: TapPortSpec, have: TapHave) -> list[str]:
    """How the drop flows differ from the spec's: a parked TAP's are all there, a linked TAP has none."""
    drift: list[str] = []
    if not spec.parked:
        if have.drops:
            drift.append(f"drop flows on a TAP on a link (OpenFlow ports {list(have.drops)})")
        return drift
    if have.ofport is not None and have.ofport not in have.drops:
        drift.append(f"parked but not dropped: no drop flow on its OpenFlow port {have.ofport}")
    stale = [p for p in have.drops if p != have.ofport]
    if stale:
        drift.append(f"drop flows on other OpenFlow ports {stale}")
    if not have.vlan_drop:
        drift.append(f"the bridge does not drop frames tagged with the parking VLAN {spec.vlan}")
    return drift


def no_strays(spec: TapPortSpec, join: JoinSpec) -> Expect[TapHave]:
    step = sh("expect no strays", _NO_STRAYS, spec.owner, str(spec.vlan), *join.members, kind="guard")
    return Expect(step, lambda have: not have.strays)


def tap_ours(spec: TapPortSpec) -> Expect[TapHave]:
    def holds(have: TapHave) -> bool:
        return have.link is not None and have.link.kind == "tap" and have.link.alias == alias(spec)

    return Expect(sh("expect tap ours", _TAP_OURS, spec.name, alias(spec), kind="guard"), holds)


def tap_up(spec: TapPortSpec) -> Expect[TapHave]:
    step = sh("expect tap up", _DEVICE_UP, spec.name, kind="guard")
    return Expect(step, lambda have: bool(have.link and have.link.up))


def port_ours(spec: TapPortSpec) -> Expect[TapHave]:
    def holds(have: TapHave) -> bool:
        return have.port is not None and have.port.owner == spec.owner and have.port.bridge == spec.bridge

    return predict.port_ours(spec.name, spec.owner, spec.bridge, holds)


def joins_elsewhere(spec: TapPortSpec) -> bool:
    """Whether joining the VLAN first parks strays on other workers (one round trip is not enough)."""
    return spec.join is not None and any(h.name != spec.host.name for h in spec.join.hosts)


def expect_create(spec: TapPortSpec) -> Expectation[TapHave] | None:
    """No TAP and no port of that name (nor, joining a link VLAN, a stray of the slice on it)."""
    if joins_elsewhere(spec):
        return None
    expects: list[Expect[TapHave]] = [
        predict.ready_no_port(spec.bridge, TOOLS, spec.name, lambda have: have.port is None),
        predict.no_device(spec.name, lambda have: have.link is None),
    ]
    if spec.join is not None:
        expects.append(no_strays(spec, spec.join))
    return Expectation(TapHave(None, None), tuple(expects))


def expect_update(spec: TapPortSpec, old: TapPortSpec) -> Expectation[TapHave] | None:
    """The slice's TAP, up, its port on the bridge; its VLAN, marks and protection set anew (locked, as a
    move is)."""
    if joins_elsewhere(spec) or old.bridge != spec.bridge:
        return None
    expects: list[Expect[TapHave]] = [predict.ready(spec.bridge, *TOOLS), tap_ours(spec), tap_up(spec)]
    expects.append(Expect(ipv6.off_guard(spec.name), lambda have: not have.ipv6))
    expects.append(port_ours(spec))
    if spec.join is not None:
        expects.append(no_strays(spec, spec.join))
    have = TapHave(
        link=LinkState(spec.name, True, "tap", alias(spec)),
        port=PortState(spec.name, spec.bridge, None, {naming.OWNER_KEY: spec.owner}),
    )
    return Expectation(have, tuple(expects), locked=True)


def expect_delete(spec: TapPortSpec) -> Expectation[TapHave]:
    """The slice's TAP and its port on the bridge."""
    have = TapHave(
        link=LinkState(spec.name, True, "tap", alias(spec)),
        port=PortState(spec.name, spec.bridge, spec.vlan, marks(spec), spec.parked, "access"),
    )
    return Expectation(have, (tap_ours(spec), port_ours(spec)))


def after(spec: TapPortSpec, have: TapHave) -> TapHave:
    """The TAP once the plan ran (its OpenFlow port number is not read again: -1 when it was unknown)."""
    ofport = have.ofport if have.ofport is not None else -1
    return TapHave(
        link=LinkState(spec.name, True, "tap", alias(spec), have.link.addresses if have.link else ()),
        port=PortState(spec.name, spec.bridge, spec.vlan, marks(spec), spec.parked, "access"),
        ofport=ofport,
        drops=(ofport,) if spec.parked else (),
        vlan_drop=spec.parked,
    )


def locked(spec: TapPortSpec, have: TapHave) -> bool:
    """A move between VLANs, and parking strays on its own worker, run under the lock (a park never undoes a
    concurrent move)."""
    moves = have.port is not None and have.port.tag != spec.vlan
    return moves or (joining(spec, have) is not None and bool(have.strays))


def joining(spec: TapPortSpec, have: TapHave) -> JoinSpec | None:
    """The link VLAN the ensure joins (the TAP is added or retagged to it), or None."""
    return spec.join if retags(spec, have) else None


def first(spec: TapPortSpec, have: TapHave) -> list[tuple[Endpoint, list[Step]]]:
    """Joining a link VLAN: the slice's strays on it are parked first on each other worker that had it."""
    joins = joining(spec, have)
    if joins is None:
        return []
    return [(host, [park_others(spec, joins)]) for host in joins.hosts if host.name != spec.host.name]


def report(spec: TapPortSpec, ran: list[tuple[str, ScriptResult]]) -> dict[str, Any]:
    """`parkedOthers`: each port the ensure parked, as `host/port`."""
    parked = [
        f"{host}/{p}" for host, res in ran if res.ran(PARK_OTHERS) for p in res.out(PARK_OTHERS).split()
    ]
    return {"parkedOthers": parked}


def foreign(spec: TapPortSpec, have: TapHave) -> tuple[str, str | None] | None:
    found, who = owner(have)
    return (f"TAP {spec.name}", who) if found and not spec.owns(who) else None


KIND: Kind[TapPortSpec, TapHave] = Kind(
    name="TapPort",
    spec_model=TapPortSpec,
    identity=("slice", "host", "name"),
    not_diffed=("join",),
    replans=False,
    resource_id=resource_id,
    preflight=preflight,
    parse_have=parse_have,
    plan_ensure=plan_ensure,
    plan_delete=plan_delete,
    observe=observe,
    after=lambda spec, have, _res: after(spec, have),
    locked=locked,
    expect_create=expect_create,
    expect_update=expect_update,
    expect_delete=expect_delete,
    foreign=foreign,
    first=first,
    report=report,
)


class TapPort(HostResource, kind=KIND):
    """A VM interface's TAP on a worker; see `TapPortSpec` for the inputs."""


from providers.legacy import TapPortProvider as TapPortProvider  # noqa: E402  (a class path older state holds)

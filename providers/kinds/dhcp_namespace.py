"""DhcpNamespace: a VLAN's DHCP server on the network node.

Namespace `ns-dhcp-vlanN`, internal port `dhcp_vN` moved into it (`kinds.internal_port`), `.2/24`, `lo`
up, and a dnsmasq of its own (`kinds.dnsmasq`: no config file, no DNS, its own pid, lease and log files,
reservations in `hosts.d/<slice>` assembled into the `--dhcp-hostsfile` it reads, found, stopped and
reloaded (SIGHUP, only when that file changed) by pid, never by name). Shared (VLAN 400): users
registered under the lock, each slice's reservations in its own file, its addresses handed out by the node
(`providers.kinds.dhcp_addresses`); the last user's delete removes everything. Its options are one setting of
the node: a slice whose `dnsServers` differ from those the running server gives other slices is refused.
A link VLAN whose reservations moved to other MACs (a VLAN handed to another link) restarts its dnsmasq
with the stale leases dropped, since dnsmasq does not hand out a reserved address another MAC holds.
A server started before `--dhcp-hostsfile` (`--dhcp-hostsdir`, otherwise the same argv) is kept as it is
while its reservations do not change (an upgrade restarts nothing, and shows no drift); the first change
restarts it once with the new argv, its leases kept in the lease file it reads again.

One round trip (`providers.predict`) for a link VLAN's server: a create expects no state file,
namespace, port or device of its names; a delete expects the owner file to name the slice and the
namespace to exist. The shared server's decisions involve other slices: it reads first, then acts under the
lock.

Longer than the other resources (~420 lines) because its plan is one decision over four objects (namespace,
port, address, process) plus the shared registration; the parts that stand alone live in `dnsmasq`,
`internal_port` and `dhcp_addresses`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from providers import bodies, hoststate, ipv6, predict, shared
from providers.hoststate import LinkState, PortState
from providers.kind import Kind
from providers.kinds import dhcp_addresses, dnsmasq, internal_port
from providers.pipeline import HostResource
from providers.predict import Expect, Expectation
from transport.script import ScriptResult, Step, probe, run, sh
from vocabulary import naming
from vocabulary.errors import Conflict, OwnershipConflict
from vocabulary.specs import DhcpNamespaceSpec

TOOLS = ("ip", "ovs-vsctl", "dnsmasq", "flock")
OTHERS = "other reservations"
STILL_THERE = "namespace still there"
# $1 the namespace, then the state files: exit 0 when none of them exists
_NO_STATE = 'n=$1; shift; for f in "/run/netns/$n" "/var/run/netns/$n" "$@"; do [ ! -e "$f" ] || exit 1; done'
_OURS = (
    '[ "$(cat "$1/owner" 2>/dev/null)" = "$2" ] && { [ -e "/run/netns/$3" ] || [ -e "/var/run/netns/$3" ]; }'
)


def resource_id(spec: DhcpNamespaceSpec) -> str:
    return f"{spec.host.name}/dhcp/{spec.namespace}"


def owner_mark(spec: DhcpNamespaceSpec) -> str:
    return bodies.owner_mark(spec.shared, spec.owner)


def marks(spec: DhcpNamespaceSpec) -> dict[str, str]:
    return {naming.OWNER_KEY: owner_mark(spec), "cloudrepo-kind": "dhcp", "cloudrepo-vlan": str(spec.vlan)}


def hosts_text(spec: DhcpNamespaceSpec) -> str:
    """This slice's reservations: `mac,ip,hostname` lines."""
    return dhcp_addresses.hosts_text(spec.reservations)


@dataclass(frozen=True)
class DhcpHave:
    owner: str | None
    """Content of the state dir's `owner` file (None: no file)."""
    netns: bool
    port: PortState | None
    root_link: LinkState | None
    """The port's device while still in the root namespace."""
    ns_links: tuple[LinkState, ...] = ()
    pid: int | None = None
    cmdline: tuple[str, ...] = ()
    hosts: str | None = None
    legacy_hosts: str | None = None
    """The reservations file named by the bare slice, made before slices had uids (None: none)."""
    hostsfile: str | None = None
    """The assembled `--dhcp-hostsfile` (None: none)."""
    users: tuple[str, ...] = ()
    markers: tuple[str, str] = ("", "")
    others: tuple[tuple[str, str, str], ...] = ()
    """Other slices' reservations on a shared VLAN: (slice, mac, ip)."""
    leases: tuple[tuple[str, str], ...] = ()
    """(MAC, IP) of the lease file."""
    ipv6: bool = False
    """IPv6 is on on the port in the namespace (`providers.ipv6`)."""

    @property
    def gone(self) -> bool:
        return self.owner is None and not self.netns and self.port is None

    def ns_link(self, name: str) -> LinkState | None:
        return next((lk for lk in self.ns_links if lk.name == name), None)

    @property
    def alive(self) -> bool:
        """A process from the pid file whose cmdline names this VLAN's pid file and interface."""
        return self.pid is not None and all(m in self.cmdline for m in self.markers)


def preflight(spec: DhcpNamespaceSpec) -> list[Step]:
    d = dnsmasq.state_dir(spec)
    steps = [
        *hoststate.readiness_steps(spec.bridge, *TOOLS),
        hoststate.read_file_probe("owner", f"{d}/owner"),
        internal_port.netns_exists("netns", spec.namespace, probe=True),
        hoststate.port_probe("port", spec.port),
        hoststate.port_bridge_probe("port bridge", spec.port),
        hoststate.link_probe("root link", spec.port),
        probe("ns links", "ip", "-n", spec.namespace, "-d", "-j", "addr", "show"),
        ipv6.probe(spec.port, spec.namespace),
        dnsmasq.proc_probe(spec),
        hoststate.read_file_probe("hosts", dnsmasq.hosts_file(spec)),
        hoststate.read_file_probe("leases", dnsmasq.leases_file(spec)),
        hoststate.read_file_probe("hosts file", dnsmasq.assembled_file(spec)),
    ]
    legacy = dnsmasq.legacy_hosts_file(spec)
    if legacy is not None:
        steps.append(hoststate.read_file_probe("legacy hosts", legacy))
    if spec.shared:
        steps.append(shared.users_probe(spec.namespace))
        steps.append(dhcp_addresses.others_probe(f"{d}/hosts.d", spec.owner, adopted_name(spec)))
    return steps


def adopted_name(spec: DhcpNamespaceSpec) -> str | None:
    """The bare-name entry of the slice that a slice with a uid adopts (registry, reservations file)."""
    return spec.slice if spec.uid is not None else None


def resolve(spec: DhcpNamespaceSpec, have: DhcpHave) -> DhcpNamespaceSpec:
    """`spec` with a shared VLAN's addresses allocated (a link VLAN's are fixed by the plan)."""
    if not spec.shared:
        return spec
    own = dhcp_addresses.parse_hosts(have.hosts if have.hosts is not None else have.legacy_hosts)
    found = dhcp_addresses.allocate(spec, own, have.others, have.leases)
    return spec.model_copy(update={"reservations": found})


def reserved(spec: DhcpNamespaceSpec) -> dict[str, str | None]:
    """MAC -> IP of the (resolved) reservations."""
    return {r.mac: r.ip for r in spec.reservations}


def check_shared_options(spec: DhcpNamespaceSpec, have: DhcpHave) -> None:
    """A shared server serves one set of options: refuse a slice whose `dnsServers` differ from those the
    running server gives other slices (a restart would change them under those slices)."""
    others = sorted(naming.mark_slice(u) for u in set(have.users) - {spec.owner, spec.slice})
    want = dnsmasq.dns_option(dnsmasq.dnsmasq_args(spec))
    if spec.shared and have.alive and others and dnsmasq.dns_option(have.cmdline) != want:
        running = (dnsmasq.dns_option(have.cmdline) or dnsmasq.DNS_OPTION).removeprefix(
            dnsmasq.DNS_OPTION
        ) or "none"
        mine = (want or dnsmasq.DNS_OPTION).removeprefix(dnsmasq.DNS_OPTION) or "none"
        raise Conflict(
            spec.host.name,
            f"dnsServers {mine} of slice {spec.slice!r} differ from {running}, which the shared VLAN "
            f"{spec.vlan} DHCP server gives slice(s) {', '.join(repr(o) for o in others)}; the options of "
            f"VLAN {spec.vlan}'s DHCP are one setting of the network node: give every slice the same "
            "dnsServers; nothing changed",
        )


def parse_have(spec: DhcpNamespaceSpec, res: ScriptResult) -> DhcpHave:
    netns = res.status("netns") == 0
    pid, cmdline = dnsmasq.parse_proc(res.out("dnsmasq"))
    return DhcpHave(
        owner=res.out("owner").strip() if res.status("owner") == 0 else None,
        netns=netns,
        port=hoststate.parse_port(res.out("port"), res.out("port bridge"), res.status("port bridge")),
        root_link=hoststate.parse_link(res.out("root link"), res.status("root link")),
        ns_links=tuple(hoststate.parse_links(res.out("ns links")))
        if netns and res.status("ns links") == 0
        else (),
        pid=pid,
        cmdline=cmdline,
        hosts=res.out("hosts") if res.status("hosts") == 0 else None,
        hostsfile=res.out("hosts file") if res.ran("hosts file") and res.status("hosts file") == 0 else None,
        legacy_hosts=res.out("legacy hosts")
        if res.ran("legacy hosts") and res.status("legacy hosts") == 0
        else None,
        users=tuple(shared.parse_users(res.out("users"))) if res.ran("users") else (),
        markers=dnsmasq.proc_markers(spec),
        others=dhcp_addresses.parse_others(res.out("other reservations"))
        if res.ran("other reservations")
        else (),
        leases=dhcp_addresses.parse_leases(res.out("leases")) if res.status("leases") == 0 else (),
        ipv6=ipv6.parse_on(res),
    )


def check_ownership(spec: DhcpNamespaceSpec, have: DhcpHave) -> None:
    what = f"DHCP namespace {spec.namespace}"

    def accepted(mark: str | None) -> bool:
        return (spec.shared and mark == naming.SHARED_OWNER) or spec.adopts(mark)

    if have.owner is not None:
        if not accepted(have.owner):
            raise OwnershipConflict(spec.host.name, what, spec.owner, have.owner or None)
        return
    # no owner file: a leftover of this slice's own interrupted create is marked on the OVS port
    if have.port is not None and not accepted(have.port.owner):
        raise OwnershipConflict(spec.host.name, f"DHCP port {spec.port}", spec.owner, have.port.owner)
    if have.port is None and (have.netns or have.root_link is not None):
        raise OwnershipConflict(
            spec.host.name, what, spec.owner, None, "namespace or interface exists unmarked"
        )


def plan_ensure(spec: DhcpNamespaceSpec, have: DhcpHave) -> list[Step]:
    """Steps from `have` to `spec` (resolved: see `resolve`): empty when in place (shared: at least the
    user registration)."""
    check_ownership(spec, have)
    dhcp_addresses.check_reservations(spec, have.others)
    check_shared_options(spec, have)
    ns, port, d = spec.namespace, spec.port, dnsmasq.state_dir(spec)
    steps: list[Step] = []
    if spec.shared:
        if have.netns:
            steps.append(internal_port.netns_exists(STILL_THERE, ns))
        steps += shared.join(ns, spec, have.users)
    if have.owner != owner_mark(spec):
        steps.append(bodies.write_file("mark owner", f"{d}/owner", owner_mark(spec) + "\n"))
    if not have.netns:
        steps.append(run("add namespace", "ip", "netns", "add", ns))
    link_in_ns = have.ns_link(port)
    rewired = False
    if have.port is not None and link_in_ns is None and have.root_link is None:
        # an OVS record whose device vanished (e.g. the namespace was deleted): start the port afresh
        steps.append(run("remove stale port", "ovs-vsctl", "--if-exists", "del-port", port))
        steps.append(run("add port", *internal_port.add_argv(spec.bridge, port, spec.vlan, marks(spec))))
        rewired = True
    elif not internal_port.in_place(have.port, spec.bridge, spec.vlan, marks(spec)):
        steps.append(run("add port", *internal_port.add_argv(spec.bridge, port, spec.vlan, marks(spec))))
        rewired = have.port is None
    if link_in_ns is None:
        steps.append(internal_port.move_step(port, ns))
        rewired = True
    if link_in_ns is None or have.ipv6:
        steps.append(ipv6.off_step(port, ns))
    current = link_in_ns.addresses if link_in_ns else ()
    for addr in current:
        if addr != spec.address:
            steps.append(run(f"remove address {addr}", "ip", "-n", ns, "addr", "del", addr, "dev", port))
    if spec.address not in current:
        steps.append(run("add address", "ip", "-n", ns, "addr", "add", spec.address, "dev", port))
    if link_in_ns is None or not link_in_ns.up:
        steps.append(run("port up", "ip", "-n", ns, "link", "set", "dev", port, "up"))
    lo = have.ns_link("lo")
    if lo is None or not lo.up:
        steps.append(run("lo up", "ip", "-n", ns, "link", "set", "dev", "lo", "up"))
    hosts_changed = have.hosts != hosts_text(spec)
    if hosts_changed:
        if spec.shared:
            ips = [r.ip for r in spec.reservations if r.ip is not None]
            hosts_d = f"{d}/hosts.d"
            steps.append(dhcp_addresses.verify_free_step(hosts_d, spec.owner, ips, adopted_name(spec)))
        steps.append(dnsmasq.write_hosts_step(spec, hosts_text(spec)))
    legacy = dnsmasq.legacy_hosts_file(spec)
    if legacy is not None and have.legacy_hosts is not None:
        steps.append(run("adopt reservations", "rm", "-f", legacy))  # now in the file named by the mark
        hosts_changed = True
    want = tuple(dnsmasq.dnsmasq_args(spec))
    stale = [] if spec.shared else dhcp_addresses.stale_leases(spec, have.leases)
    kept = legacy_kept(spec, have)
    restart = not have.alive or (have.cmdline != want and not kept) or rewired
    restart = restart or bool(set(current) - {spec.address}) or (kept and hosts_changed)
    if hosts_changed or ((restart or bool(stale) or not kept) and hostsfile_stale(spec, have)):
        steps.append(dnsmasq.assemble_step(spec, reload=not (restart or stale)))
    if restart or stale:
        if have.pid is not None or have.alive:
            steps.append(dnsmasq.stop_step(spec))
        if stale:
            steps.append(dnsmasq.prune_step(spec, stale))
        steps.append(dnsmasq.start_step(spec))
    if [s.name for s in steps] == [STILL_THERE]:
        return []  # in place: nothing to assert
    return steps


def legacy_kept(spec: DhcpNamespaceSpec, have: DhcpHave) -> bool:
    """A running server of the argv before `--dhcp-hostsfile`: kept while its reservations do not change."""
    return have.alive and have.cmdline == tuple(dnsmasq.legacy_args(spec))


def hostsfile_stale(spec: DhcpNamespaceSpec, have: DhcpHave) -> bool:
    """The assembled file is missing, or (a link VLAN, one slice's file) differs from the reservations."""
    return have.hostsfile is None or (not spec.shared and have.hostsfile != hosts_text(spec))


def expect_create(spec: DhcpNamespaceSpec) -> Expectation[DhcpHave] | None:
    """A link VLAN's server: no state file (owner, pid, reservations, leases), namespace, OVS port or
    device of its names."""
    if spec.shared:
        return None

    def no_state(have: DhcpHave) -> bool:
        files = have.owner is None and have.pid is None and have.hosts is None and not have.leases
        files = files and have.hostsfile is None
        return files and not have.netns and not have.ns_links

    d = dnsmasq.state_dir(spec)
    files = (
        f"{d}/owner",
        dnsmasq.pid_file(spec),
        dnsmasq.hosts_file(spec),
        dnsmasq.leases_file(spec),
        dnsmasq.assembled_file(spec),
    )
    step = sh("expect no dhcp state", _NO_STATE, spec.namespace, *files, kind="guard")
    expects: tuple[Expect[DhcpHave], ...] = (
        predict.ready_no_port(spec.bridge, TOOLS, spec.port, lambda have: have.port is None),
        Expect(step, no_state),
        predict.no_device(spec.port, lambda have: have.root_link is None),
    )
    return Expectation(DhcpHave(None, False, None, None, markers=dnsmasq.proc_markers(spec)), expects)


def expect_delete(spec: DhcpNamespaceSpec) -> Expectation[DhcpHave] | None:
    """A link VLAN's server: the owner file names this slice and the namespace exists."""
    if spec.shared:
        return None
    step = sh(
        "expect dhcp ours", _OURS, dnsmasq.state_dir(spec), owner_mark(spec), spec.namespace, kind="guard"
    )
    have = DhcpHave(owner_mark(spec), True, None, None, markers=dnsmasq.proc_markers(spec))
    return Expectation(have, (Expect(step, lambda h: h.owner == owner_mark(spec) and h.netns),))


def after(spec: DhcpNamespaceSpec, have: DhcpHave, res: ScriptResult) -> DhcpHave:
    """The server once the plan ran (`res`: that script, ending with `dnsmasq.proc_probe`)."""
    pid, cmdline = dnsmasq.parse_proc(res.out("dnsmasq")) if res.ran("dnsmasq") else (have.pid, have.cmdline)
    return DhcpHave(
        owner=owner_mark(spec),
        netns=True,
        port=PortState(spec.port, spec.bridge, spec.vlan, marks(spec)),
        root_link=None,
        ns_links=(
            LinkState(spec.port, True, "internal", None, (spec.address,)),
            LinkState("lo", True, None, None),
        ),
        pid=pid,
        cmdline=cmdline,
        hosts=hosts_text(spec),
        hostsfile=have.hostsfile if spec.shared and have.hostsfile is not None else hosts_text(spec),
        users=shared.joined(spec, have.users) if spec.shared else (),
        markers=dnsmasq.proc_markers(spec),
    )


def plan_teardown(spec: DhcpNamespaceSpec, have: DhcpHave) -> list[Step]:
    steps = [dnsmasq.stop_step(spec), run("delete port", "ovs-vsctl", "--if-exists", "del-port", spec.port)]
    if have.netns:
        steps.append(run("delete namespace", "ip", "netns", "delete", spec.namespace))
    steps.append(run("remove state", "rm", "-rf", "--", dnsmasq.state_dir(spec)))
    return steps


def owned(spec: DhcpNamespaceSpec, have: DhcpHave) -> bool:
    if have.owner is not None:
        return have.owner == owner_mark(spec)
    return have.port is not None and have.port.owner == owner_mark(spec)


def plan_delete(spec: DhcpNamespaceSpec, have: DhcpHave) -> list[Step]:
    """Non-shared: tear down if this slice's.  Shared: drop this slice's reservations and registration;
    the last user tears down."""
    ours = owned(spec, have)
    if not spec.shared:
        return plan_teardown(spec, have) if ours else []
    steps = [shared.leave(spec.namespace, spec)]
    if have.hosts is not None:
        steps += [
            run("remove reservations", "rm", "-f", dnsmasq.hosts_file(spec)),
            dnsmasq.assemble_step(spec, reload=True),
        ]
    steps.append(shared.last_user_guard(spec.namespace))
    if ours:
        steps += [*plan_teardown(spec, have), shared.forget(spec.namespace)]
    return steps


def observe(spec: DhcpNamespaceSpec, have: DhcpHave) -> tuple[dict[str, Any], list[str]]:
    link = have.ns_link(spec.port)
    observed: dict[str, Any] = {
        "owner": have.owner,
        "namespace": have.netns,
        "tag": have.port.tag if have.port else None,
        "addresses": list(link.addresses) if link else [],
        "up": bool(link and link.up),
        "ipv6": have.ipv6,
        "dnsmasqAlive": have.alive,
        "dnsmasqPid": have.pid if have.alive else None,
        "users": list(have.users),
        "reserved": reserved(spec),
    }
    drift: list[str] = []
    if have.owner != owner_mark(spec):
        drift.append(f"owner mark {have.owner!r}, want {owner_mark(spec)!r}")
    if not have.netns:
        drift.append("namespace missing")
    if have.port is None:
        drift.append("port missing")
    elif have.port.tag != spec.vlan:
        drift.append(f"tag {have.port.tag}, want {spec.vlan}")
    if link is None:
        drift.append("port not in the namespace")
    else:
        if spec.address not in link.addresses:
            drift.append(f"address {spec.address} missing")
        if not link.up:
            drift.append("port down")
        if have.ipv6:
            drift.append("IPv6 on")
    if not have.alive:
        drift.append("dnsmasq not running")
    elif have.cmdline != tuple(dnsmasq.dnsmasq_args(spec)) and not legacy_kept(spec, have):
        drift.append("dnsmasq runs with other options")
    if have.hosts != hosts_text(spec):
        drift.append("reservations differ")
    elif hostsfile_stale(spec, have) and not legacy_kept(spec, have):
        drift.append("dnsmasq's hosts file differs from the reservations")
    if spec.shared and spec.owner not in have.users:
        drift.append(f"slice {spec.slice} not registered as a user")
    return observed, drift


def foreign(spec: DhcpNamespaceSpec, have: DhcpHave) -> tuple[str, str | None] | None:
    if have.gone or owned(spec, have):
        return None
    owner = have.owner if have.owner is not None else (have.port.owner if have.port else None)
    return f"DHCP namespace {spec.namespace}", owner


KIND: Kind[DhcpNamespaceSpec, DhcpHave] = Kind(
    name="DhcpNamespace",
    spec_model=DhcpNamespaceSpec,
    identity=("slice", "host", "namespace", "port", "vlan"),
    resource_id=resource_id,
    preflight=preflight,
    parse_have=parse_have,
    plan_ensure=plan_ensure,
    plan_delete=plan_delete,
    observe=observe,
    after=after,
    locked=lambda spec, _have: spec.shared,  # users registered under the lock
    contended=lambda _spec, exc: dhcp_addresses.taken_meanwhile(exc),  # slices joining VLAN 400 at once
    readback=lambda spec: [dnsmasq.proc_probe(spec)],  # the outputs show the server that runs
    expect_create=expect_create,
    expect_delete=expect_delete,
    foreign=foreign,
    resolve=lambda spec, have, _olds: resolve(spec, have),
)


class DhcpNamespace(HostResource, kind=KIND):
    """A VLAN's DHCP server on the network node; see `DhcpNamespaceSpec` for the inputs."""


from providers.legacy import DhcpNamespaceProvider as DhcpNamespaceProvider  # noqa: E402  (a class path older state holds)

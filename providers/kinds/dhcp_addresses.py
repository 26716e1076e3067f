"""Reservations of a DHCP server as data: the hosts file, the lease file, and the shared VLAN's addresses.

On a shared VLAN (400) every slice keeps its reservations in its own `hosts.d/<slice>` file, and the network
node hands out the addresses, under the lock: a MAC keeps the address its slice's file already gives it;
a new one takes the lowest address of the range that no other slice reserves, no lease of another MAC holds,
and this slice does not already use. So slices cannot collide, whatever their VM ids.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from transport.script import Step, sh
from vocabulary import naming
from vocabulary.errors import Conflict, StepFailed
from vocabulary.specs import DhcpNamespaceSpec, Reservation

# Constant sh programs; every variable part is a positional argument, never spliced into the text.
# $1 hosts.d, $2 this slice's file, $3 the bare-name file it adopts (or ""), then IPs: fails naming the
# slice whose reservations hold one of them
_VERIFY_FREE = (
    'd=$1; s=$2; l=$3; shift 3; cd "$d" 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] '
    '&& [ "$f" != "$s" ] && [ "$f" != "$l" ] || continue; for ip in "$@"; do if grep -qF ",$ip," "$f"; then '
    'echo "IP $ip on the shared VLAN was just reserved by slice ${f%%+*}" >&2; exit 1; fi; done; done'
)
# every other slice's reservations on a shared VLAN: "<file> mac,ip,hostname" lines ($2 this slice's file,
# $3 the bare-name file it adopts, or "")
_OTHERS = (
    'cd "$1" 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] && [ "$f" != "$2" ] && [ "$f" != "$3" ] '
    "|| continue; "
    'while IFS= read -r line; do printf "%s %s\\n" "$f" "$line"; done <"$f"; done; exit 0'
)


def hosts_text(reservations: Iterable[Reservation]) -> str:
    """A `--dhcp-hostsdir` file: `mac,ip,hostname` lines."""
    return "".join(f"{r.mac},{r.ip},{r.hostname}\n" for r in reservations)


def parse_hosts(text: str | None) -> dict[str, str]:
    """MAC -> IP of a hosts file (None: no file)."""
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        fields = line.split(",")
        if len(fields) >= 2:
            out[fields[0].lower()] = fields[1]
    return out


def parse_leases(text: str | None) -> tuple[tuple[str, str], ...]:
    """(MAC, IP) of each line of a dnsmasq lease file (`expiry mac ip hostname client-id`)."""
    out = []
    for line in (text or "").splitlines():
        fields = line.split()
        if len(fields) >= 3:
            out.append((fields[1].lower(), fields[2]))
    return tuple(out)


def stale_leases(spec: DhcpNamespaceSpec, leases: Iterable[tuple[str, str]]) -> list[str]:
    """MACs holding a lease on an address now reserved for another MAC (dnsmasq would not hand it out)."""
    wanted = {r.ip: r.mac for r in spec.reservations if r.ip is not None}
    return sorted({mac for mac, ip in leases if ip in wanted and wanted[ip] != mac})


def allocate(
    spec: DhcpNamespaceSpec,
    own: Mapping[str, str],
    others: Iterable[tuple[str, str, str]],
    leases: Iterable[tuple[str, str]],
) -> list[Reservation]:
    """`spec.reservations` with the shared VLAN's addresses filled in.

    `own`: MAC -> IP of this slice's hosts file; `others`: (slice, MAC, IP) of every other slice's;
    `leases`: (MAC, IP) of the lease file.
    """
    iface = ipaddress.IPv4Interface(spec.address)
    first, last = ipaddress.IPv4Address(spec.range_start), ipaddress.IPv4Address(spec.range_end)
    mine = {r.mac for r in spec.reservations}
    taken = {ip for _, _, ip in others} | {str(iface.ip), spec.router}
    taken |= {ip for mac, ip in leases if mac not in mine}

    def usable(ip: str | None) -> bool:
        try:
            return ip is not None and first <= ipaddress.IPv4Address(ip) <= last and ip not in taken
        except ValueError:
            return False

    got: dict[str, str] = {}
    for r in spec.reservations:
        ip = own.get(r.mac)
        if usable(ip) and ip not in got.values():
            got[r.mac] = ip  # type: ignore[assignment]
    free = (str(a) for a in range_of(first, last) if str(a) not in taken)
    used = set(got.values())
    out = []
    for r in spec.reservations:
        if r.mac not in got:
            ip = next((a for a in free if a not in used), None)
            if ip is None:
                raise Conflict(
                    spec.host.name,
                    f"VLAN {spec.vlan} has no free address left for {r.hostname} (slice {spec.slice!r}); "
                    "nothing changed",
                )
            got[r.mac] = ip
            used.add(ip)
        out.append(r.model_copy(update={"ip": got[r.mac]}))
    return out


def range_of(first: ipaddress.IPv4Address, last: ipaddress.IPv4Address) -> Iterable[ipaddress.IPv4Address]:
    a = first
    while a <= last:
        yield a
        a += 1


def others_probe(hosts_dir: str, own: str, adopted: str | None = None) -> Step:
    """Every other slice's reservations on a shared VLAN: `<file> mac,ip,hostname` lines (not the files
    `own` and `adopted`, the slice's own names)."""
    return sh("other reservations", _OTHERS, hosts_dir, own, adopted or "", kind="probe")


VERIFY_FREE = "verify addresses free"


def verify_free_step(hosts_dir: str, own: str, ips: list[str], adopted: str | None = None) -> Step:
    """Under the lock: fails, naming the file's slice, when another slice's file now holds one of `ips`
    (that slice committed since the read: the plan is read and made again, `taken_meanwhile`)."""
    return sh(VERIFY_FREE, _VERIFY_FREE, hosts_dir, own, adopted or "", *ips)


def taken_meanwhile(exc: StepFailed) -> bool:
    """Whether a locked script failed because another slice reserved one of its addresses since the read."""
    return exc.step == VERIFY_FREE


def parse_others(text: str) -> tuple[tuple[str, str, str], ...]:
    found = []
    for line in text.splitlines():
        file, _, entry = line.partition(" ")
        fields = entry.split(",")
        if len(fields) >= 2:
            found.append((naming.mark_slice(file), fields[0].lower(), fields[1]))
    return tuple(found)


def check_reservations(spec: DhcpNamespaceSpec, others: Iterable[tuple[str, str, str]]) -> None:
    """On a shared VLAN, refuse an IP or MAC that another slice has reserved, naming that slice."""
    for r in spec.reservations:
        for owner, mac, ip in others:
            if ip == r.ip or mac == r.mac:
                what = f"IP {r.ip}" if ip == r.ip else f"MAC {r.mac}"
                raise Conflict(
                    spec.host.name,
                    f"{what} of {r.hostname} (slice {spec.slice!r}) on VLAN {spec.vlan} is already reserved "
                    f"by slice {owner!r}; nothing changed",
                )

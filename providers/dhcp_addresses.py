"""Reservations of a DHCP server as data: the hosts file, the lease file, and the shared VLAN's addresses.

On a shared VLAN (400) every slice keeps its reservations in its own `hosts.d/<slice>` file, and the network
node hands out the addresses, under the lock: a MAC keeps the address its slice's file already gives it;
a new one takes the lowest address of the range that no other slice reserves, no lease of another MAC holds,
and this slice does not already use. So slices cannot collide, whatever their VM ids.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from .errors import Conflict
from .specs import DhcpNamespaceSpec, Reservation


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

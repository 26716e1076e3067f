"""One round trip per change: a plan made from the state a resource expects, run behind guards that check
that state on the host first.

A create expects its object absent, a delete expects it as this slice made it, an update expects it as the
previous inputs left it.  The script starts with the guards (`script.guard`): the first that does not hold
ends it before any change, and the provider then reads and plans as before (two round trips).  Each guard
is paired with the same condition on a parsed state (`Expect.holds`), so the unit tests can show, for any
state the guards let through, that the plan made from the expectation is the plan a read would have made.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from providers import hoststate
from transport.script import ScriptResult, Step, sh
from vocabulary import naming

H = TypeVar("H")

_TOOLS = 'for c in "$@"; do command -v "$c" >/dev/null 2>&1 || exit 1; done'
# the bridge by `find` (`hoststate.BRIDGE_EXISTS`), not `br-exists` (which loads every port and interface)
_READY = f'b=$1; shift; {_TOOLS}; set -- "$b"; {hoststate.BRIDGE_EXISTS}'
# one ovs-vsctl for both: it prints the bridge's name, then the port's uuid when there is such a port
_READY_NO_PORT = (
    f"b=$1; p=$2; shift 2; {_TOOLS}; "
    'o=$(ovs-vsctl --bare --columns=name find bridge "name=\\"$b\\"" -- --columns=_uuid find port '
    '"name=\\"$p\\"") || exit 1; [ "$o" = "$b" ]'
)
_NO_DEVICE = '! ip link show dev "$1" >/dev/null 2>&1'
# $3 empty: any bridge; else one ovs-vsctl prints the marked port's name, then its bridge (`port-to-br` fails
# when there is no such port)
_PORT_OURS = (
    'q() { p=$1; o=$2; shift 2; ovs-vsctl --bare -- --columns=name find port "name=\\"$p\\"" '
    '"external_ids:' + naming.OWNER_KEY + '=\\"$o\\"" "$@"; }; '
    'if [ -z "$3" ]; then n=$(q "$1" "$2") || exit 1; [ "$n" = "$1" ]; '
    'else n=$(q "$1" "$2" -- port-to-br "$1") || exit 1; [ "$n" = "$(printf \'%s\\n%s\' "$1" "$3")" ]; fi'
)
# $1 network address, $2 prefix length, $3 an interface to skip: exit 1 when another interface's IPv4
# address overlaps the network (one network inside the other: equal under the shorter prefix). `n` sets $r
# rather than printing it: no subshell per address, so a node with hundreds of gateways costs no process each
_SUBNET_FREE = (
    "n() { o=$IFS; IFS=.; set -- $1; IFS=$o; r=$(( ($1 << 24) | ($2 << 16) | ($3 << 8) | $4 )); }; "
    'n "$1"; w=$r; wl=$2; a=$(ip -o -4 addr show) || exit 1; '
    'printf "%s\\n" "$a" | { while read -r _ dev _ cidr _; do '
    '[ -n "$cidr" ] && [ "$dev" != "$3" ] || continue; l=${cidr#*/}; '
    'if [ "$l" -lt "$wl" ]; then p=$l; else p=$wl; fi; '
    "m=$(( p == 0 ? 0 : (0xffffffff << (32 - p)) & 0xffffffff )); "
    'n "${cidr%/*}"; [ $(( r & m )) -ne $(( w & m )) ] || exit 1; done; exit 0; }'
)


@dataclass(frozen=True)
class Expect(Generic[H]):
    """One condition of an expectation: `step` checks it on the host (a guard: exit 0 when it holds);
    `holds` is the same condition on a parsed state."""

    step: Step
    holds: Callable[[H], bool]


@dataclass(frozen=True)
class Expectation(Generic[H]):
    """The state a change expects to find, the checks that confirm it, and whether it runs locked."""

    have: H
    expects: tuple[Expect[H], ...]
    locked: bool = False

    def guards(self) -> list[Step]:
        return [e.step for e in self.expects]

    def holds(self, have: H) -> bool:
        """Whether the guards would let a host in state `have` through."""
        return all(e.holds(have) for e in self.expects)

    def missed(self, res: ScriptResult) -> bool:
        """Whether a guard stopped the script (the host is not as expected; nothing was changed)."""
        return res.stopped_by is not None and res.stopped_by in {e.step.name for e in self.expects}


def _always(_have: object) -> bool:
    return True


def ready(bridge: str, *tools: str) -> Expect[H]:
    """The tools and the bridge are there (what `hoststate.check_ready` reports when they are not)."""
    return Expect(sh("expect ready", _READY, bridge, *tools, kind="guard"), _always)


def ready_no_port(bridge: str, tools: tuple[str, ...], name: str, holds: Callable[[H], bool]) -> Expect[H]:
    """`ready` and `no_port` in one guard (one `ovs-vsctl`): the tools, the bridge, and no OVS port `name`."""
    step = sh(f"expect ready and no port {name}", _READY_NO_PORT, bridge, name, *tools, kind="guard")
    return Expect(step, holds)


def no_device(name: str, holds: Callable[[H], bool]) -> Expect[H]:
    """No network device `name` in the host's namespace."""
    return Expect(sh(f"expect no device {name}", _NO_DEVICE, name, kind="guard"), holds)


def port_ours(name: str, owner: str, bridge: str | None, holds: Callable[[H], bool]) -> Expect[H]:
    """OVS port `name` carries the owner mark `owner` (and is on `bridge`, when given)."""
    return Expect(sh(f"expect port {name} ours", _PORT_OURS, name, owner, bridge or "", kind="guard"), holds)


def subnet_free(address: str, skip: str, holds: Callable[[H], bool]) -> Expect[H]:
    """No interface but `skip` has an IPv4 address overlapping `address`'s network."""
    net = ipaddress.IPv4Interface(address).network
    step = sh(
        "expect subnet free", _SUBNET_FREE, str(net.network_address), str(net.prefixlen), skip, kind="guard"
    )
    return Expect(step, holds)

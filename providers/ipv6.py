"""IPv6 off on every host-side interface the program makes (TAPs, gateway and DHCP ports).

The slice's networks are IPv4 only. With IPv6 on, each such interface takes a link-local address when it
comes up: the host becomes reachable from the guests on that link over `fe80::` (around the IPv4 isolation
rules), and it sends its own neighbour and multicast-listener chatter into every VLAN, which the userspace
datapath turns into flows that each reconfiguration of the bridge revalidates. So IPv6 is turned off on the
interface before it comes up, read back with the rest of its state, and an interface where it is on again is
drift that `update` repairs. A kernel without IPv6 counts as off.
"""

from __future__ import annotations

from transport.script import ScriptResult, Step, sh

STEP = "no ipv6"
PROBE = "ipv6"

# $1 device, $2 namespace ("" for the host's own), $3 a constant program run there with the device's
# disable_ipv6 file as its $1
_THERE = (
    "f=/proc/sys/net/ipv6/conf/$1/disable_ipv6; n=$2; p=$3; "
    'if [ -n "$n" ]; then exec ip netns exec "$n" sh -c "$p" sh "$f"; fi; exec sh -c "$p" sh "$f"'
)
_WRITE = '[ ! -d /proc/sys/net/ipv6 ] || echo 1 >"$1"'
_READ = '[ -d /proc/sys/net/ipv6 ] || { echo 1; exit 0; }; cat "$1"'
_IS_OFF = '[ ! -d /proc/sys/net/ipv6 ] || [ ! -e "$1" ] || [ "$(cat "$1")" = 1 ]'


def off_step(dev: str, netns: str | None = None) -> Step:
    """Turn IPv6 off on `dev` (in `netns`, or the host's own namespace); run before the device comes up."""
    return sh(STEP, _THERE, dev, netns or "", _WRITE)


def probe(dev: str, netns: str | None = None) -> Step:
    """Prints 1 when IPv6 is off on `dev`, 0 when on; fails when there is no such device."""
    return sh(PROBE, _THERE, dev, netns or "", _READ, kind="probe")


def off_guard(dev: str, netns: str | None = None) -> Step:
    """A guard (`providers.predict`): exit 0 unless `dev` exists with IPv6 on (as `parse_on` reads it)."""
    return sh("expect ipv6 off", _THERE, dev, netns or "", _IS_OFF, kind="guard")


def parse_on(res: ScriptResult) -> bool:
    """Whether the probe found IPv6 on (a device it did not find, or a probe that did not run: not on)."""
    return res.ran(PROBE) and res.status(PROBE) == 0 and res.out(PROBE).strip() == "0"

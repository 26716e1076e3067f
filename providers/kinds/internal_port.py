"""Internal OVS ports of the network node (a gateway's, a DHCP server's) and the namespace a port moves into.

One OVSDB transaction adds the port if missing and (re)sets its type, tag, access mode and owner marks, so a
port is never left an untagged trunk; moving a port into a namespace is retried (OVS may still hold the new
device) and, when it keeps failing, the port is removed rather than left on the bridge.
"""

from __future__ import annotations

from collections.abc import Mapping

from providers.hoststate import PortState
from transport.script import Step, sh

_MOVE = (
    'i=0; until ip link set dev "$1" netns "$2" 2>/dev/null; do i=$((i+1)); '
    'if [ "$i" -ge 30 ]; then ovs-vsctl --if-exists del-port "$1"; '
    'echo "could not move $1 into $2; port removed" >&2; exit 1; fi; sleep 0.1; done'
)
_NETNS_EXISTS = '[ -e "/run/netns/$1" ] || [ -e "/var/run/netns/$1" ]'


def in_place(port: PortState | None, bridge: str, vlan: int, marks: Mapping[str, str]) -> bool:
    """Whether the port is on `bridge`, tagged `vlan`, no trunk, with every mark."""
    if port is None or port.bridge != bridge or port.tag != vlan or port.trunks:
        return False
    return all(port.external_ids.get(k) == v for k, v in marks.items())


def add_argv(
    bridge: str, name: str, vlan: int, marks: Mapping[str, str], from_bridge: str | None = None
) -> list[str]:
    """One transaction: (off `from_bridge`,) onto `bridge` as an internal port, tag, access mode, marks."""
    argv = ["ovs-vsctl"]
    if from_bridge not in (None, bridge):
        argv += ["--if-exists", "del-port", str(from_bridge), name, "--"]
    argv += ["--may-exist", "add-port", bridge, name, f"tag={vlan}"]
    argv += ["--", "set", "interface", name, "type=internal"]
    argv += ["--", "set", "port", name, f"tag={vlan}", "vlan_mode=access", "trunks=[]"]
    argv += [f'external_ids:{k}="{v}"' for k, v in marks.items()]
    return argv


def move_step(name: str, namespace: str) -> Step:
    return sh("move port into namespace", _MOVE, name, namespace)


def netns_exists(step_name: str, namespace: str, *, probe: bool = False) -> Step:
    return sh(step_name, _NETNS_EXISTS, namespace, kind="probe" if probe else "run")

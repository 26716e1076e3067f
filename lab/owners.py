"""Which slices have something on a testbed: OVS ports marked with a slice, and the hosts' state files.

A test run owns its testbed; before it starts it asks this module, and stops when a slice it did not make
is there (the demo's slice on the wrong testbed, or what a crashed run left).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vocabulary.naming import OWNER_KEY, SHARED_OWNER


def marked_ports(doc: dict[str, Any]) -> dict[str, list[str]]:
    """Slice -> `host: port NAME` for every OVS port a slice marked, in a scan (`python -m lab scan`)."""
    found: dict[str, list[str]] = {}
    for host, data in sorted(doc["hosts"].items()):
        for bridge in data["ovs"].values():
            for name, port in sorted(bridge["ports"].items()):
                owner = (port.get("external_ids") or {}).get(OWNER_KEY)
                if owner and owner != SHARED_OWNER:
                    found.setdefault(owner, []).append(f"{host}: port {name}")
    return found


def state_files(host: str, state_dir: Path) -> dict[str, list[str]]:
    """Slice -> `host: FILE` for the files a slice keeps under a host's state root: its pool claim, its
    registrations as a user of a shared object, the DHCP state it owns and its reservations."""
    found: dict[str, list[str]] = {}

    def add(owner: str, path: Path) -> None:
        if owner and owner != SHARED_OWNER:
            found.setdefault(owner, []).append(f"{host}: {path.relative_to(state_dir)}")

    for claim in sorted(state_dir.glob("pools/*")):
        add(claim.name, claim)
    for user in sorted(state_dir.glob("shared/*/users/*")):
        add(user.name, user)
    for owner_file in sorted(state_dir.glob("dhcp/*/owner")):
        add(owner_file.read_text().strip(), owner_file)
    for hosts_file in sorted(state_dir.glob("dhcp/*/hosts.d/*")):
        add(hosts_file.name, hosts_file)
    return found


def slices(doc: dict[str, Any], inventory: dict[str, Any]) -> dict[str, list[str]]:
    """Every slice with something on the testbed (ports in the scan `doc`, files in the hosts' state)."""
    found = marked_ports(doc)
    for host, entry in sorted(inventory["hosts"].items()):
        for owner, where in state_files(host, Path(entry["stateDir"])).items():
            found.setdefault(owner, []).extend(where)
    return found

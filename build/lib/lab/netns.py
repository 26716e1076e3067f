"""Network namespaces and links of the testbed, as seen from the root namespace."""

from __future__ import annotations

import contextlib
import json
import os

from lab.common import NETNS_RUN, run


def list_netns() -> list[str]:
    try:
        return sorted(os.listdir(NETNS_RUN))
    except FileNotFoundError:
        return []


def exists(ns: str) -> bool:
    return os.path.exists(os.path.join(NETNS_RUN, ns))


def ensure(ns: str) -> bool:
    """Create namespace ``ns`` (lo up, ip_forward off) unless it exists; True when created."""
    if exists(ns):
        return False
    run(["ip", "netns", "add", ns])
    run(["ip", "-n", ns, "link", "set", "lo", "up"])
    run(["ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=0"])
    return True


def delete(ns: str) -> None:
    run(["ip", "netns", "del", ns], check=False)
    path = os.path.join(NETNS_RUN, ns)
    if os.path.exists(path):
        run(["umount", "-l", path], check=False)
        with contextlib.suppress(OSError):
            os.unlink(path)


def links(ns: str) -> dict[str, dict[str, object]]:
    proc = run(["ip", "-n", ns, "-j", "-d", "link", "show"], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return {}
    return {entry["ifname"]: entry for entry in json.loads(proc.stdout)}


def link_exists(ns: str, name: str) -> bool:
    return run(["ip", "-n", ns, "link", "show", "dev", name], check=False).returncode == 0


def ensure_veth(ns_a: str, name_a: str, ns_b: str, name_b: str) -> bool:
    """A veth pair with one end in each namespace (created in place: never touches the root namespace)."""
    if link_exists(ns_a, name_a) and link_exists(ns_b, name_b):
        return False
    for ns, name in ((ns_a, name_a), (ns_b, name_b)):
        if link_exists(ns, name):
            run(["ip", "-n", ns, "link", "del", name])
    run(["ip", "link", "add", name_a, "netns", ns_a, "type", "veth", "peer", "name", name_b, "netns", ns_b])
    return True


def ensure_up(ns: str, name: str) -> None:
    run(["ip", "-n", ns, "link", "set", "dev", name, "up"])


def ensure_address(ns: str, name: str, cidr: str) -> None:
    run(["ip", "-n", ns, "addr", "replace", cidr, "dev", name])


def delete_link(ns: str, name: str) -> None:
    run(["ip", "-n", ns, "link", "del", name], check=False)

"""Bringing the whole testbed up and down, its inventory and status.

About 390 lines: `up` and `down` are each other's inverse (every object `up` makes, `down` removes, in
reverse), so they stay in one module, with the inventory both read.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lab import fabric, netns, ovs, sshd
from lab.common import (
    BRIDGE,
    DEFAULT_WORKERS,
    INTERNET_BODY,
    INTERNET_GATEWAY,
    INTERNET_WEB_ADDRESS,
    INTERNET_WEB_PORT,
    NETNS_RUN,
    NETWORK_HOST,
    OVS_RUN,
    STATE_ROOT,
    TRUNK_IFACE,
    UPLINK_ADDRESS,
    UPLINK_CIDR,
    UPLINK_IFACE,
    LabError,
    host_names,
    host_ns,
    host_paths,
    is_mountpoint,
    lab_dir,
    mounted_anywhere,
    run,
    settings,
    ssh_port,
    write_if_changed,
)
from lab.procs import (
    path_inode,
    pidfile_process,
    pids_in_namespaces,
    processes_viewing,
    sshd_running,
    terminate,
)

REQUIRED_TOOLS = (
    "ip",
    "ovsdb-server",
    "ovs-vswitchd",
    "ovs-vsctl",
    "ovsdb-tool",
    "socat",
    "nc",
    "unshare",
    "nsenter",
    "ssh-keygen",
    "dhclient",
    "ethtool",
    "iptables-save",
    "sysctl",
    "mountpoint",
)


def missing_tools() -> list[str]:
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if not os.path.exists(sshd.SSHD):
        missing.append(sshd.SSHD)
    return missing


def check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise LabError("the testbed needs root (network namespaces, OVS, sshd)")
    missing = missing_tools()
    if missing:
        raise LabError("missing tools: " + ", ".join(missing))
    if not os.path.exists("/dev/net/tun"):
        raise LabError("/dev/net/tun is missing")


@contextmanager
def locked() -> Iterator[None]:
    """Serialise up/down/vm operations of concurrent callers."""
    lab_dir().mkdir(parents=True, exist_ok=True)
    with open(lab_dir() / "lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def inventory_path() -> Path:
    return lab_dir() / "inventory.json"


def read_inventory() -> dict[str, Any] | None:
    try:
        data: dict[str, Any] = json.loads(inventory_path().read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return data


def build_inventory(hosts: list[str]) -> dict[str, Any]:
    lab = settings()
    d = lab.dir
    return {
        "projectLabDir": str(d),
        "user": "root",
        "privateKeyPath": str(sshd.client_key()),
        "knownHostsPath": str(sshd.known_hosts()),
        "bridge": BRIDGE,
        "stateRoot": STATE_ROOT,
        "fabric": {"namespace": lab.fabric_ns, "bridge": fabric.FABRIC_BRIDGE},
        "hosts": {
            host: {
                "role": "network" if host == NETWORK_HOST else "worker",
                "namespace": host_ns(host),
                "address": "127.0.0.1",
                "port": ssh_port(host),
                "trunk": TRUNK_IFACE,
                "uplink": UPLINK_IFACE if host == NETWORK_HOST else None,
                "dir": str(host_paths(host).root),
                "stateDir": str(host_paths(host).state),
                "ovsDir": str(host_paths(host).ovs),
                "ovsDb": ovs.db_socket(host_paths(host)),
            }
            for host in hosts
        },
        "workers": [h for h in hosts if h != NETWORK_HOST],
        "internet": {
            "namespace": lab.internet_ns,
            "uplinkCidr": UPLINK_CIDR,
            "networkNodeUplinkAddress": UPLINK_ADDRESS,
            "gateway": INTERNET_GATEWAY,
            "address": INTERNET_WEB_ADDRESS,
            "port": INTERNET_WEB_PORT,
            "url": f"http://{INTERNET_WEB_ADDRESS}:{INTERNET_WEB_PORT}/",
            "whoamiUrl": f"http://{INTERNET_WEB_ADDRESS}:{INTERNET_WEB_PORT}/whoami",
            "body": INTERNET_BODY,
            "requestLog": str(fabric.internet_dir() / "requests.log"),
        },
        "vmsDir": str(d / "vms"),
    }


def existing_workers() -> list[str]:
    found = []
    prefix = settings().prefix
    for ns in netns.list_netns():
        name = ns[len(prefix) :]
        if ns.startswith(prefix + "worker") and name[len("worker") :].isdigit():
            found.append(name)
    return sorted(found, key=lambda n: int(n[len("worker") :]))


OWNERS_DIR = Path("/run/cloudrepo-lab")


def _owner_file() -> Path:
    return OWNERS_DIR / f"{settings().prefix}owner"


def _check_owner() -> None:
    """Refuse to touch this prefix's namespaces when another testbed directory made them (same names,
    other dir)."""
    lab = settings()
    owner = _owner_file()
    theirs = owner.read_text().strip() if owner.exists() else ""
    if theirs and theirs != str(lab.dir) and any(ns.startswith(lab.prefix) for ns in netns.list_netns()):
        raise LabError(
            f"the {lab.prefix}* namespaces belong to the testbed of {theirs}: take it down there "
            f"(CLOUDREPO_LAB_DIR={theirs} python -m lab down) or choose another CLOUDREPO_LAB_PREFIX"
        )


def _claim_owner() -> None:
    OWNERS_DIR.mkdir(parents=True, exist_ok=True)
    write_if_changed(_owner_file(), f"{lab_dir()}\n")


def _release_owner() -> None:
    owner = _owner_file()
    if owner.exists() and owner.read_text().strip() == str(lab_dir()):
        owner.unlink()
    with contextlib.suppress(OSError):
        OWNERS_DIR.rmdir()  # only when empty


def up(workers: int = DEFAULT_WORKERS) -> dict[str, Any]:
    check_prerequisites()
    if workers < 1:
        raise LabError("--workers must be at least 1")
    with locked():
        _check_owner()
        _claim_owner()
        hosts = host_names(workers)
        # Workers beyond the requested count (from an earlier, bigger `up`) are taken down.
        for extra in existing_workers():
            if extra not in hosts:
                _down_host(extra)
        _note_root_changes()
        client_pub = sshd.ensure_client_key()
        fabric.ensure_fabric()
        known = []
        for host in hosts:
            created = netns.ensure(host_ns(host))
            paths = host_paths(host)
            if created:
                # A fresh namespace: whatever the previous incarnation left in its dirs is stale.
                for stale in (paths.ovs, paths.netns, paths.state):
                    shutil.rmtree(stale, ignore_errors=True)
            fabric.ensure_trunk(host)
            ovs.start(paths)
            key = sshd.ensure_host_key(paths)
            sshd.start(paths, client_pub)
            fabric.ensure_forward(paths, ssh_port(host))
            known.append(f"[127.0.0.1]:{ssh_port(host)} {key}")
        fabric.ensure_internet()
        write_if_changed(sshd.known_hosts(), "\n".join(known) + "\n")
        inventory = build_inventory(hosts)
        write_if_changed(inventory_path(), json.dumps(inventory, indent=2, sort_keys=True) + "\n")
        for host in hosts:
            sshd.wait_banner(ssh_port(host))
        return inventory


SSHD_RUN = "/run/sshd"
ROOT_DIRS = (NETNS_RUN, OVS_RUN, STATE_ROOT, SSHD_RUN)


def _note_root_changes() -> None:
    """Remember what of the root's file system the testbed is about to create, so `down` can undo it:
    the mount points of the hosts' bind mounts and iproute2's /run/netns mount."""
    marker = lab_dir() / "root-changes.json"
    try:
        notes = json.loads(marker.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        notes = {"dirs": [], "netnsMount": False}
    for d in ROOT_DIRS:
        if not os.path.isdir(d) and d not in notes["dirs"]:
            notes["dirs"].append(d)
        os.makedirs(d, exist_ok=True)
    if not is_mountpoint(NETNS_RUN) and not netns.list_netns():
        notes["netnsMount"] = True
    write_if_changed(marker, json.dumps(notes, sort_keys=True) + "\n")


def _undo_root_changes() -> None:
    marker = lab_dir() / "root-changes.json"
    try:
        notes = json.loads(marker.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return
    if notes.get("netnsMount") and is_mountpoint(NETNS_RUN) and not netns.list_netns():
        run(["umount", NETNS_RUN], check=False)
    for d in notes.get("dirs", []):
        if mounted_anywhere(d):
            continue  # another testbed's hosts (or anyone) still mount on it: removing it would detach them
        if d == SSHD_RUN and sshd_running():
            continue  # another testbed's sshd (or the system's) would refuse every new login without it
        with contextlib.suppress(OSError):
            os.rmdir(d)  # only when empty
    marker.unlink(missing_ok=True)


def _host_processes(host: str) -> list[int]:
    """Every process of a host: those whose /run/netns is the host's own directory (its sshd and all it
    started, even through `ip netns exec`), and those in the host's network namespace or in a namespace
    the host created over SSH. Identity by mount and namespace, never by process name."""
    paths = host_paths(host)
    net: set[int] = set()
    ino = path_inode(f"/run/netns/{host_ns(host)}")
    if ino is not None and netns.exists(host_ns(host)):
        net.add(ino)
    members = processes_viewing(paths.netns, NETNS_RUN)
    for member in members:
        view_dir = Path(f"/proc/{member}/root{NETNS_RUN}")
        try:
            names = os.listdir(view_dir)
        except OSError:
            continue
        for name in names:
            inode = path_inode(view_dir / name)
            if inode is not None:
                net.add(inode)
        break
    return sorted(set(members) | set(pids_in_namespaces(net, set())))


def _down_host(host: str) -> None:
    paths = host_paths(host)
    pids = _host_processes(host)
    fabric.stop_forward(paths)
    sshd.stop(paths)
    ovs.stop(paths)
    terminate(pids)
    netns.delete(host_ns(host))
    fabric_ns = settings().fabric_ns
    if netns.link_exists(fabric_ns, fabric.fabric_port(host)):
        netns.delete_link(fabric_ns, fabric.fabric_port(host))
    for stale in (paths.ovs, paths.netns, paths.state):
        shutil.rmtree(stale, ignore_errors=True)
    for f in (paths.sshd_pid, paths.forward_pid, paths.init_pid):
        f.unlink(missing_ok=True)


def known_hosts_on_disk() -> list[str]:
    hosts_dir = lab_dir() / "hosts"
    try:
        return sorted(p.name for p in hosts_dir.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []


def down() -> None:
    """Remove everything `up` (and the guests, and whatever ran inside the hosts) made."""
    if os.geteuid() != 0:
        raise LabError("the testbed needs root")
    from lab import guest

    lab = settings()
    with locked():
        _check_owner()
        for name in guest.known_guests():
            guest.stop(name, locked_already=True)
        lab_ns = [ns for ns in netns.list_netns() if ns.startswith(lab.prefix)]
        hosts = set(known_hosts_on_disk())
        hosts.update(ns[len(lab.prefix) :] for ns in lab_ns if ns not in (lab.fabric_ns, lab.internet_ns))
        for host in sorted(hosts):
            _down_host(host)
        fabric.stop_internet()
        # Anything left in a testbed namespace (lab-* and guest vm-*) is ours: end it by pid.
        net = set()
        for ns in netns.list_netns():
            if lab.owns_ns(ns):
                ino = path_inode(f"/run/netns/{ns}")
                if ino is not None:
                    net.add(ino)
        terminate(pids_in_namespaces(net, set()))
        for ns in netns.list_netns():
            if lab.owns_ns(ns):
                netns.delete(ns)
        inventory_path().unlink(missing_ok=True)
        _undo_root_changes()
        _release_owner()


def status() -> tuple[bool, list[str]]:
    inventory = read_inventory()
    lines = []
    if inventory is None:
        leftovers = [ns for ns in netns.list_netns() if ns.startswith(settings().prefix)]
        if leftovers:
            return False, ["testbed: DOWN (partial leftovers: " + ", ".join(leftovers) + "; run `down`)"]
        return False, ["testbed: DOWN"]
    healthy = True
    for host, info in sorted(inventory["hosts"].items(), key=lambda kv: kv[1]["port"]):
        paths = host_paths(host)
        parts = {
            "netns": netns.exists(host_ns(host)),
            # (a host started before anchor processes existed has no init.pid: not a fault)
            "init": sshd.init_pid(paths) is not None or not paths.init_pid.exists(),
            "ovs": ovs.running(paths),
            "sshd": sshd.sshd_pid(paths) is not None,
            "forward": pidfile_process(paths.forward_pid, "socat") is not None,
        }
        ok = all(parts.values())
        healthy = healthy and ok
        detail = " ".join(f"{k}={'ok' if v else 'MISSING'}" for k, v in parts.items())
        lines.append(f"  {host:<10} 127.0.0.1:{info['port']}  {detail}")
    web = pidfile_process(fabric.internet_dir() / "httpd.pid", "lab.httpd") is not None
    healthy = healthy and web and netns.exists(settings().fabric_ns)
    lines.append(f"  internet   {inventory['internet']['url']}  httpd={'ok' if web else 'MISSING'}")
    from lab import guest

    guests = guest.known_guests()
    if guests:
        lines.append("  guests: " + ", ".join(guests))
    head = "testbed: UP" if healthy else "testbed: DEGRADED (run `up` to repair or `down`)"
    return healthy, [head, *lines]

"""Guests without QEMU: a namespace per guest, a veth per interface, socat bridging the worker's TAP.

``socat INTERFACE:<veth host end> TUN,tun-name=<TAP>,tun-type=tap,iff-no-pi,iff-up`` runs in the worker's
namespace and attaches to the persistent TAP exactly as QEMU would (``-netdev tap,ifname=...``). The veth's
host end carries no address of the worker (IPv6 off on it too), so on the guest's link only the guest is
seen, as with QEMU.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

from lab import netns
from lab.common import LabError, host_ns, lab_dir, run, settings
from lab.procs import path_inode, pidfile_process, pids_in_namespaces, spawn_daemon, stop_pidfile, terminate

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,11}$")
IFACE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")
MAC_RE = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")
DHCP_TIMEOUT = 20

DHCLIENT_SCRIPT = """#!/bin/sh
# Minimal dhclient-script for testbed guests: sets the address and a default route, and never touches
# /etc/resolv.conf or any other file of the machine.
case "$reason" in
  PREINIT)
    ip link set dev "$interface" up ;;
  BOUND|RENEW|REBIND|REBOOT)
    if [ -n "$old_ip_address" ] && [ "$old_ip_address" != "$new_ip_address" ]; then
      ip -4 addr flush dev "$interface"
    fi
    ip link set dev "$interface" up
    ip -4 addr replace "$new_ip_address/$new_subnet_mask" dev "$interface"
    for router in $new_routers; do
      ip -4 route show default | grep -q . || ip -4 route add default via "$router" dev "$interface"
      break
    done ;;
  EXPIRE|FAIL|RELEASE|STOP)
    ip -4 addr flush dev "$interface" ;;
esac
exit 0
"""


def guest_ns(name: str) -> str:
    return settings().guest_ns(name)


def vms_dir() -> Path:
    return lab_dir() / "vms"


def guest_dir(name: str) -> Path:
    return vms_dir() / name


def known_guests() -> list[str]:
    names: set[str] = set()
    if vms_dir().is_dir():
        names.update(p.name for p in vms_dir().iterdir() if p.is_dir())
    prefix = settings().vm_prefix
    names.update(ns[len(prefix) :] for ns in netns.list_netns() if ns.startswith(prefix))
    return sorted(names)


def host_end(name: str, iface: str) -> str:
    digest = hashlib.sha1(f"{name}/{iface}".encode(), usedforsecurity=False).hexdigest()[:10]
    return f"vh{digest}"


def _iface_record(name: str, iface: str) -> Path:
    return guest_dir(name) / f"{iface}.json"


def interfaces(name: str) -> dict[str, dict[str, Any]]:
    result = {}
    d = guest_dir(name)
    if d.is_dir():
        for rec in sorted(d.glob("*.json")):
            result[rec.stem] = json.loads(rec.read_text())
    return result


def start(name: str, host: str, tap: str, iface: str = "eth1", mac: str | None = None) -> dict[str, Any]:
    if not NAME_RE.match(name):
        raise LabError(f"guest name {name!r}: use up to 12 letters, digits, '_', '.', '-'")
    if not IFACE_RE.match(iface):
        raise LabError(f"interface name {iface!r} is not a valid Linux interface name")
    if mac is not None and not MAC_RE.match(mac):
        raise LabError(f"--mac {mac!r} is not a MAC address")
    worker_ns = host_ns(host)
    if not netns.exists(worker_ns):
        raise LabError(f"host {host!r} is not up (no namespace {worker_ns})")
    if not netns.link_exists(worker_ns, tap):
        raise LabError(f"{host} has no interface {tap!r}: create the TAP first (ip tuntap add ...)")
    existing = interfaces(name)
    if iface in existing:
        if existing[iface]["host"] != host or existing[iface]["tap"] != tap:
            where = f"{existing[iface]['host']}/{existing[iface]['tap']}"
            raise LabError(f"guest {name} already has {iface} (on {where})")
    else:
        for other, rec in existing.items():
            if rec["host"] != host:
                raise LabError(f"guest {name} lives on {rec['host']} ({other}); cannot add {iface} on {host}")
    d = guest_dir(name)
    d.mkdir(parents=True, exist_ok=True)
    ns = guest_ns(name)
    netns.ensure(ns)
    hend = host_end(name, iface)
    if not (netns.link_exists(ns, iface) and netns.link_exists(worker_ns, hend)):
        netns.ensure_veth(ns, iface, worker_ns, hend)
    if mac:
        run(["ip", "-n", ns, "link", "set", "dev", iface, "address", mac])
    # the host end is plumbing a QEMU guest does not have: no address of the worker on the guest's link
    # (IPv6 off before it comes up, as on the program's TAPs)
    off = 'f=/proc/sys/net/ipv6/conf/$1/disable_ipv6; [ ! -e "$f" ] || echo 1 >"$f"'
    run(["ip", "netns", "exec", worker_ns, "sh", "-c", off, "sh", hend])
    run(["ip", "-n", worker_ns, "link", "set", "dev", hend, "up", "promisc", "on"])
    run(["ip", "-n", ns, "link", "set", "dev", iface, "up"])
    # The userspace datapath does not fill in TCP checksums: the guest computes them itself.
    run(["ip", "netns", "exec", ns, "ethtool", "-K", iface, "tx", "off"])
    socat_pid = d / f"{iface}.socat.pid"
    if pidfile_process(socat_pid, "socat") is None:
        spawn_daemon(
            [
                "ip",
                "netns",
                "exec",
                worker_ns,
                "socat",
                f"INTERFACE:{hend}",
                f"TUN,tun-name={tap},tun-type=tap,iff-no-pi,iff-up",
            ],
            socat_pid,
            log=d / f"{iface}.socat.log",
        )
    guest_mac = json.loads(run(["ip", "-n", ns, "-j", "link", "show", "dev", iface]).stdout)[0]["address"]
    record = {
        "name": name,
        "namespace": ns,
        "host": host,
        "tap": tap,
        "iface": iface,
        "hostEnd": hend,
        "mac": guest_mac,
    }
    _iface_record(name, iface).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return record


def dhcp(name: str, iface: str = "eth1", timeout: int = DHCP_TIMEOUT) -> str:
    ns = guest_ns(name)
    if not netns.exists(ns) or iface not in interfaces(name):
        raise LabError(f"guest {name} has no interface {iface}; run `vm start` first")
    d = guest_dir(name)
    script = vms_dir() / "dhclient-script"
    if not script.exists() or script.read_text() != DHCLIENT_SCRIPT:
        script.write_text(DHCLIENT_SCRIPT)
    script.chmod(0o755)
    conf = vms_dir() / "dhclient.conf"
    conf.write_text(f"timeout {timeout};\nretry 60;\ninitial-interval 1;\n")
    pidfile = d / f"{iface}.dhclient.pid"
    stop_pidfile(pidfile, "dhclient")
    argv = [
        "ip",
        "netns",
        "exec",
        ns,
        "dhclient",
        "-4",
        "-1",
        "-v",
        "-cf",
        str(conf),
        "-sf",
        str(script),
        "-pf",
        str(pidfile),
        "-lf",
        str(d / f"{iface}.leases"),
        iface,
    ]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout + 10, check=False)
    except subprocess.TimeoutExpired as exc:
        stop_pidfile(pidfile, "dhclient")
        raise LabError(f"{name}/{iface}: no DHCP lease within {timeout}s") from exc
    (d / f"{iface}.dhclient.log").write_text(proc.stdout + proc.stderr)
    address = address_of(name, iface)
    if proc.returncode != 0 or address is None:
        stop_pidfile(pidfile, "dhclient")
        raise LabError(
            f"{name}/{iface}: no DHCP lease within {timeout}s (dhclient exit {proc.returncode}; "
            f"log {d / (iface + '.dhclient.log')})"
        )
    return address


def address_of(name: str, iface: str) -> str | None:
    proc = run(["ip", "-n", guest_ns(name), "-j", "-4", "addr", "show", "dev", iface], check=False)
    if proc.returncode != 0 or not proc.stdout.strip():
        return None
    for entry in json.loads(proc.stdout):
        for addr in entry.get("addr_info", []):
            if addr.get("family") == "inet":
                return str(addr["local"])
    return None


def exec_argv(name: str, command: list[str]) -> list[str]:
    ns = guest_ns(name)
    if not netns.exists(ns):
        raise LabError(f"guest {name} is not running")
    return ["ip", "netns", "exec", ns, *command]


def stop(name: str, locked_already: bool = False) -> None:
    del locked_already  # guests are independent files; kept for symmetry with the caller
    d = guest_dir(name)
    if d.is_dir():
        for pidfile in sorted(d.glob("*.dhclient.pid")):
            stop_pidfile(pidfile, "dhclient")
        for pidfile in sorted(d.glob("*.socat.pid")):
            stop_pidfile(pidfile, "socat")
    ns = guest_ns(name)
    if netns.exists(ns):
        ino = path_inode(f"/run/netns/{ns}")
        if ino is not None:
            terminate(pids_in_namespaces({ino}, set()))
    for rec in interfaces(name).values():
        worker_ns = host_ns(rec["host"])
        if netns.exists(worker_ns) and netns.link_exists(worker_ns, rec["hostEnd"]):
            netns.delete_link(worker_ns, rec["hostEnd"])
    netns.delete(ns)
    if d.is_dir():
        for child in d.iterdir():
            child.unlink()
        d.rmdir()

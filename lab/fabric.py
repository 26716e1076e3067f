"""The wiring between simulated hosts: the trunk fabric, the uplink to the internet host, its web server,
and the loopback forwards that make each host's sshd reachable from the root namespace."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

from lab import netns
from lab.common import (
    FABRIC_BRIDGE,
    INTERNET_GATEWAY,
    INTERNET_IFACE,
    INTERNET_WEB_ADDRESS,
    INTERNET_WEB_PORT,
    NETWORK_HOST,
    PROJECT_ROOT,
    TRUNK_IFACE,
    UPLINK_ADDRESS,
    UPLINK_CIDR,
    UPLINK_IFACE,
    HostPaths,
    LabError,
    host_ns,
    lab_dir,
    run,
    settings,
)
from lab.procs import pidfile_process, spawn_daemon, stop_pidfile

PREFIXLEN = UPLINK_CIDR.split("/")[1]


def fabric_port(host: str) -> str:
    return f"f-{host}"[:15]


def ensure_fabric() -> None:
    fabric = settings().fabric_ns
    netns.ensure(fabric)
    if not netns.link_exists(fabric, FABRIC_BRIDGE):
        run(["ip", "-n", fabric, "link", "add", FABRIC_BRIDGE, "type", "bridge", "stp_state", "0"])
    netns.ensure_up(fabric, FABRIC_BRIDGE)


def ensure_trunk(host: str) -> None:
    """Host end ``ens4`` (added to br-int untagged = trunk), fabric end on the fabric bridge."""
    port, fabric = fabric_port(host), settings().fabric_ns
    netns.ensure_veth(host_ns(host), TRUNK_IFACE, fabric, port)
    run(["ip", "-n", fabric, "link", "set", "dev", port, "master", FABRIC_BRIDGE])
    netns.ensure_up(fabric, port)
    netns.ensure_up(host_ns(host), TRUNK_IFACE)


def ensure_internet() -> None:
    """The internet host behind the network node's uplink ens3, with a web server one hop further."""
    internet = settings().internet_ns
    netns.ensure(internet)
    net = host_ns(NETWORK_HOST)
    netns.ensure_veth(net, UPLINK_IFACE, internet, INTERNET_IFACE)
    netns.ensure_address(net, UPLINK_IFACE, f"{UPLINK_ADDRESS}/{PREFIXLEN}")
    netns.ensure_address(internet, INTERNET_IFACE, f"{INTERNET_GATEWAY}/{PREFIXLEN}")
    netns.ensure_address(internet, "lo", f"{INTERNET_WEB_ADDRESS}/32")
    netns.ensure_up(net, UPLINK_IFACE)
    netns.ensure_up(internet, INTERNET_IFACE)
    run(["ip", "-n", net, "route", "replace", "default", "via", INTERNET_GATEWAY, "dev", UPLINK_IFACE])
    pidfile = internet_dir() / "httpd.pid"
    if pidfile_process(pidfile, "lab.httpd") is None:
        log = internet_dir() / "requests.log"
        spawn_daemon(
            [
                "ip",
                "netns",
                "exec",
                internet,
                sys.executable,
                "-m",
                "lab.httpd",
                "--bind",
                INTERNET_WEB_ADDRESS,
                "--port",
                str(INTERNET_WEB_PORT),
                "--log",
                str(log),
            ],
            pidfile,
            log=internet_dir() / "httpd.out",
            cwd=PROJECT_ROOT,
        )


def stop_internet() -> None:
    stop_pidfile(internet_dir() / "httpd.pid", "lab.httpd")


def internet_dir() -> Path:
    d = lab_dir() / "internet"
    d.mkdir(parents=True, exist_ok=True)
    return d


def port_busy(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def ensure_forward(paths: HostPaths, port: int) -> None:
    """socat on 127.0.0.1:port in the root namespace -> nc to the host's sshd inside its namespace."""
    if pidfile_process(paths.forward_pid, "socat") is not None:
        return
    if port_busy(port):
        raise LabError(f"127.0.0.1:{port} is already in use by a process that is not the testbed's")
    spawn_daemon(
        [
            "socat",
            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
            f"EXEC:ip netns exec {host_ns(paths.name)} nc 127.0.0.1 22",
        ],
        paths.forward_pid,
    )


def stop_forward(paths: HostPaths) -> None:
    stop_pidfile(paths.forward_pid, "socat", group=True)

"""Baselines that do the same host work as a slice's `pulumi up` / `pulumi destroy`, with the seed's commands.

(a) floor: one prepared script per host, sent over ONE SSH connection per host (paramiko), hosts in parallel.
(b) one OpenSSH `ssh` process per command, in sequence: how the original orchestrator worked.

Create = the seed's commands (`/work/shared/seed`): per TAP `ip tuntap add`, `ip link set up`,
`ovs-vsctl --may-exist add-port ... tag=N`; per VLAN the gateway port (3 commands) and the DHCP namespace
(6 commands, dnsmasq as in the seed); for the internet VLAN 400 the same plus ip_forward and 3 iptables rules.
Deviations, the same for (a) and (b), so that teardown can be exact: parked eth0 TAPs get tag 4094 (as the
program does; the seed left them untagged), and dnsmasq gets `--pid-file` and `--dhcp-leasefile` under
`/tmp/cloudrepo-bench-<testbed prefix>/` (the seed had neither, and leaked both the process and a shared lease
file).
Teardown (the seed has none that is correct): each create command that makes something has the command that
undoes it (`SeedObject`/`Step`), run in reverse order: per TAP `del-port` + `ip link delete`; per VLAN kill
dnsmasq by its pid file, `del-port` the DHCP port, delete the namespace, `del-port` the gateway port;
`iptables -D` the NAT rules and restore ip_forward to the value it had. The same facts give (c) its
`remote.Command` resources (`bench/command_plan.py`).
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import paramiko

from bench.topology import BRIDGE, INTERNET_VLAN, SliceSpec, Tap
from lab.common import lab_dir, settings, ssh_port

NETWORK = "network"
SUDO = "sudo"
RUNDIR_OBJECT = "rundir"


def rundir() -> str:
    """dnsmasq's files: the hosts share the machine's /tmp, so one directory per testbed (its namespace
    prefix), never another testbed's, which its own teardown removes."""
    return f"/tmp/cloudrepo-bench-{settings().prefix.rstrip('-')}"


def _subnet(vlan: int) -> tuple[str, str, str, str]:
    """(gateway, dhcp server, range start, range end) of a VLAN's subnet, as the seed derives them."""
    base = "10.60.7" if vlan == INTERNET_VLAN else f"192.168.{vlan % 256}"
    return f"{base}.1", f"{base}.2", f"{base}.10", f"{base}.250"


@dataclass(frozen=True)
class Step:
    """One seed command and the teardown command that undoes it (None: it goes with its object)."""

    create: str
    undo: str | None = None


@dataclass(frozen=True)
class SeedObject:
    """One host object of the seed (a TAP, a gateway port, a DHCP namespace, NAT): its commands in order.

    `needs`: objects that must exist first (the DHCP namespace's dnsmasq writes into the run directory).
    """

    host: str
    name: str
    steps: tuple[Step, ...]
    needs: tuple[str, ...] = ()


def tap_object(tap: Tap) -> SeedObject:
    return SeedObject(
        tap.worker,
        tap.name,
        (
            Step(f"{SUDO} ip tuntap add mode tap name {tap.name}", f"{SUDO} ip link delete dev {tap.name}"),
            Step(f"{SUDO} ip link set dev {tap.name} up"),
            Step(
                f"{SUDO} ovs-vsctl --may-exist add-port {BRIDGE} {tap.name} tag={tap.vlan}",
                f"{SUDO} ovs-vsctl --if-exists del-port {BRIDGE} {tap.name}",
            ),
        ),
    )


def gateway_object(vlan: int) -> SeedObject:
    """The seed's gateway port of a VLAN (3 commands)."""
    gw, gwp = _subnet(vlan)[0], f"gw_vlan{vlan}"
    return SeedObject(
        NETWORK,
        gwp,
        (
            Step(
                f"{SUDO} ovs-vsctl --may-exist add-port {BRIDGE} {gwp} tag={vlan}"
                f" -- set interface {gwp} type=internal",
                f"{SUDO} ovs-vsctl --if-exists del-port {BRIDGE} {gwp}",
            ),
            Step(f"{SUDO} ip addr add {gw}/24 dev {gwp}"),
            Step(f"{SUDO} ip link set dev {gwp} up"),
        ),
    )


def dhcp_object(vlan: int) -> SeedObject:
    """The seed's DHCP namespace of a VLAN (6 commands, dnsmasq as in the seed + pid and lease files)."""
    gw, dhcp, first, last = _subnet(vlan)
    ns, port, files = f"ns-dhcp-vlan{vlan}", f"dhcp_v{vlan}", f"{rundir()}/dnsmasq_vlan{vlan}"
    return SeedObject(
        NETWORK,
        ns,
        (
            Step(f"{SUDO} ip netns add {ns}", f"{SUDO} ip netns delete {ns}"),
            Step(
                f"{SUDO} ovs-vsctl --may-exist add-port {BRIDGE} {port} tag={vlan}"
                f" -- set interface {port} type=internal",
                f"{SUDO} ovs-vsctl --if-exists del-port {BRIDGE} {port}",
            ),
            Step(f"{SUDO} ip link set {port} netns {ns}"),
            Step(f"{SUDO} ip netns exec {ns} ip addr add {dhcp}/24 dev {port}"),
            Step(f"{SUDO} ip netns exec {ns} ip link set dev {port} up"),
            Step(
                f"{SUDO} ip netns exec {ns} dnsmasq --interface={port} --bind-interfaces"
                f" --dhcp-range={first},{last},24h --dhcp-option=3,{gw} --dhcp-option=6,8.8.8.8 --log-dhcp"
                f" --log-facility={files}.log --pid-file={files}.pid --dhcp-leasefile={files}.leases",
                f"{SUDO} kill $(cat {files}.pid)",
            ),
        ),
        needs=(RUNDIR_OBJECT,),
    )


NAT_RULES = (
    "-t nat {op} POSTROUTING -s 10.60.7.0/24 -o ens3 -j MASQUERADE",
    "{op} FORWARD -i gw_vlan400 -o ens3 -j ACCEPT",
    "{op} FORWARD -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
)


def nat_object(ip_forward_before: str) -> SeedObject:
    """ip_forward on (back to its old value on teardown) and the seed's 3 iptables rules."""
    forward = Step(
        f"{SUDO} sysctl -w net.ipv4.ip_forward=1", f"{SUDO} sysctl -w net.ipv4.ip_forward={ip_forward_before}"
    )
    rules = tuple(
        Step(f"{SUDO} iptables " + r.format(op="-A"), f"{SUDO} iptables " + r.format(op="-D"))
        for r in NAT_RULES
    )
    return SeedObject(NETWORK, "nat", (forward, *rules))


def seed_objects(specs: list[SliceSpec], ip_forward_before: str) -> list[SeedObject]:
    """Every object of the slices, in the order the original orchestrator made them (TAPs, then the node)."""
    objects = [tap_object(tap) for spec in specs for tap in spec.taps()]
    run = rundir()
    objects.append(SeedObject(NETWORK, RUNDIR_OBJECT, (Step(f"mkdir -p {run}", f"rm -rf {run}"),)))
    vlans = [vlan for spec in specs for vlan in spec.link_vlans()]
    if any(spec.has_internet for spec in specs):
        vlans.append(INTERNET_VLAN)
    for vlan in vlans:
        objects += [gateway_object(vlan), dhcp_object(vlan)]
    if INTERNET_VLAN in vlans:
        objects.append(nat_object(ip_forward_before))
    return objects


@dataclass
class HostWork:
    """Per host, the create commands in the seed's order and the teardown commands (their undos, reversed)."""

    create: dict[str, list[str]] = field(default_factory=dict)
    teardown: dict[str, list[str]] = field(default_factory=dict)

    def count(self, which: str) -> int:
        return sum(len(v) for v in getattr(self, which).values())


def host_work(specs: list[SliceSpec], ip_forward_before: str) -> HostWork:
    work = HostWork()
    for obj in seed_objects(specs, ip_forward_before):
        work.create.setdefault(obj.host, []).extend(s.create for s in obj.steps)
        work.teardown.setdefault(obj.host, []).extend(s.undo for s in obj.steps if s.undo is not None)
    for cmds in work.teardown.values():
        cmds.reverse()
    return work


# ---- (a) floor: one script per host over one paramiko connection, hosts in parallel ----------------------


def _paramiko_client(port: int) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    client.load_host_keys(str(lab_dir() / "known_hosts"))
    client.set_missing_host_key_policy(paramiko.RejectPolicy())
    client.connect(
        "127.0.0.1",
        port=port,
        username="root",
        key_filename=str(lab_dir() / "id_ed25519"),
        allow_agent=False,
        look_for_keys=False,
        timeout=10,
    )
    return client


def _run_script(host: str, commands: list[str], errors: list[str], strict: bool = True) -> None:
    """Script of the commands on stdin of `sh -s`: one connection, one channel. Strict: `set -e` and a
    failure is an error; otherwise every command runs and none fails the script (best-effort cleanup)."""
    client = _paramiko_client(ssh_port(host))
    try:
        stdin, stdout, stderr = client.exec_command("sh -s")
        stdin.write(("set -e\n" if strict else "") + "\n".join(commands) + "\n")
        stdin.channel.shutdown_write()
        status = stdout.channel.recv_exit_status()
        if strict and status != 0:
            errors.append(f"{host}: exit {status}: {stderr.read().decode(errors='replace').strip()}")
    finally:
        client.close()


@dataclass
class BaselineRun:
    seconds: float
    connections: int
    commands: int

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "ssh_connections_opened": self.connections,
            "ssh_commands_run": self.commands,
        }


class BaselineFailed(RuntimeError):
    pass


def floor(per_host: dict[str, list[str]], strict: bool = True) -> BaselineRun:
    """(a): every host's commands as one script over one connection, all hosts at once."""
    errors: list[str] = []
    started = time.monotonic()
    threads = [
        threading.Thread(target=_run_script, args=(host, cmds, errors, strict))
        for host, cmds in per_host.items()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    seconds = time.monotonic() - started
    if errors:
        raise BaselineFailed("floor: " + "; ".join(errors))
    return BaselineRun(seconds, len(per_host), len(per_host))


# ---- (b) one ssh process per command, in sequence ----------------------------------------------------------


def ssh_argv(host: str, command: str) -> list[str]:
    return [
        "ssh",
        "-i",
        str(lab_dir() / "id_ed25519"),
        "-o",
        f"UserKnownHostsFile={lab_dir() / 'known_hosts'}",
        "-o",
        "BatchMode=yes",
        "-p",
        str(ssh_port(host)),
        "root@127.0.0.1",
        command,
    ]


def per_command(per_host: dict[str, list[str]], order: list[str]) -> BaselineRun:
    """Every command its own `ssh`, one after the other (workers' TAPs first, then the network node)."""
    started = time.monotonic()
    n = 0
    for host in order:
        for command in per_host.get(host, []):
            r = subprocess.run(ssh_argv(host, command), capture_output=True, text=True, check=False)
            n += 1
            if r.returncode != 0:
                raise BaselineFailed(f"(b) {host}: `{command}` exit {r.returncode}: {r.stderr.strip()}")
    return BaselineRun(time.monotonic() - started, n, n)


def remote_value(host: str, command: str) -> str:
    r = subprocess.run(ssh_argv(host, command), capture_output=True, text=True, check=True)
    return r.stdout.strip()

"""One sshd per simulated host, in the host's namespace and in a private mount namespace.

Inside that mount namespace ``/run/openvswitch`` is the host's OVS directory, ``/var/lib/cloudrepo`` the
host's state root and ``/run/netns`` the host's own namespace directory, so commands typed over SSH act
on that host only, exactly as on a real machine.
"""

from __future__ import annotations

import os
import shlex
import socket
import time
from pathlib import Path

from lab.common import (
    NETNS_RUN,
    OVS_RUN,
    STATE_ROOT,
    HostPaths,
    LabError,
    host_ns,
    lab_dir,
    run,
    write_if_changed,
)
from lab.procs import ns_inode, pidfile_process, processes_viewing, spawn_daemon, stop_pidfile

SSHD = "/usr/sbin/sshd"


def client_key() -> Path:
    return lab_dir() / "id_ed25519"


def known_hosts() -> Path:
    return lab_dir() / "known_hosts"


def ensure_client_key() -> str:
    key = client_key()
    if not key.exists() or not key.with_suffix(".pub").exists():
        key.unlink(missing_ok=True)
        key.with_suffix(".pub").unlink(missing_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "cloudrepo-lab", "-f", str(key)])
    key.chmod(0o600)
    return key.with_suffix(".pub").read_text().strip()


def ensure_host_key(paths: HostPaths) -> str:
    key = paths.host_key
    pub = Path(str(key) + ".pub")
    if not key.exists() or not pub.exists():
        key.unlink(missing_ok=True)
        pub.unlink(missing_ok=True)
        paths.root.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"lab-{paths.name}", "-f", str(key)])
    key.chmod(0o600)
    parts = pub.read_text().split()
    return f"{parts[0]} {parts[1]}"


def config_text(paths: HostPaths) -> str:
    return "\n".join(
        [
            f"# sshd of testbed host {paths.name} (namespace {host_ns(paths.name)})",
            "ListenAddress 127.0.0.1:22",
            f"HostKey {paths.host_key}",
            f"PidFile {paths.sshd_pid}",
            f"AuthorizedKeysFile {paths.authorized_keys}",
            "PermitRootLogin prohibit-password",
            "PubkeyAuthentication yes",
            "AuthenticationMethods publickey",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            "UsePAM no",
            "StrictModes no",
            "PrintMotd no",
            "UseDNS no",
            "MaxStartups 100:30:200",
            "MaxSessions 100",
            "X11Forwarding no",
            # A network node's sshd is the guests' ProxyJump (`cloudrepo ssh`): channels to port 22 only;
            # no remote forwards, sockets, tunnels or agents.
            "AllowTcpForwarding local",
            "PermitOpen *:22",
            "PermitListen none",
            "GatewayPorts no",
            "AllowStreamLocalForwarding no",
            "AllowAgentForwarding no",
            "PermitTunnel no",
            "Subsystem sftp internal-sftp",
            "",
        ]
    )


def sshd_pid(paths: HostPaths) -> int | None:
    return pidfile_process(paths.sshd_pid, "sshd")


def init_pid(paths: HostPaths) -> int | None:
    """The host's anchor process: it holds the host's mount namespace (like a machine's init), so the
    host's mounts and the namespaces it created outlive a restart of its sshd."""
    pid = pidfile_process(paths.init_pid, "sleep")
    if pid is None:
        return None
    try:
        view = os.stat(f"/proc/{pid}/root{NETNS_RUN}")
        own = os.stat(paths.netns)
    except OSError:
        return None
    return pid if (view.st_dev, view.st_ino) == (own.st_dev, own.st_ino) else None


def ensure_init(paths: HostPaths) -> int:
    pid = init_pid(paths)
    if pid is not None:
        return pid
    stop_pidfile(paths.init_pid, "sleep")
    for sub in (paths.state, paths.netns, paths.ovs):
        sub.mkdir(parents=True, exist_ok=True)
    paths.state.chmod(0o755)
    for mountpoint in (OVS_RUN, STATE_ROOT, NETNS_RUN, "/run/sshd"):
        os.makedirs(mountpoint, exist_ok=True)
    # A new mount namespace means a "rebooted" host: namespace files of the previous one are stale
    # (unless a process of the previous one still sees them).
    if not processes_viewing(paths.netns):
        for stale in paths.netns.iterdir():
            stale.unlink()
    # In the private mount namespace: drop the root's /run/netns (so the root's namespaces are neither
    # visible nor pinned), then bind the host's own directories.
    script = " && ".join(
        [
            f"{{ ! mountpoint -q {NETNS_RUN} || umount -l {NETNS_RUN}; }}",
            f"mount --bind {shlex.quote(str(paths.netns))} {NETNS_RUN}",
            f"mount --bind {shlex.quote(str(paths.ovs))} {OVS_RUN}",
            f"mount --bind {shlex.quote(str(paths.state))} {STATE_ROOT}",
            "exec sleep infinity",
        ]
    )
    argv = ["ip", "netns", "exec", host_ns(paths.name), "unshare", "-m", "--propagation", "private"]
    spawn_daemon([*argv, "sh", "-c", script], paths.init_pid, log=paths.root / "init.log")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pid = init_pid(paths)
        if pid is not None:
            return pid
        time.sleep(0.02)
    raise LabError(f"{paths.name}: the host's mount namespace was not set up; see {paths.root / 'init.log'}")


def start(paths: HostPaths, client_pub: str) -> None:
    """Start the host's sshd (if not running) inside the host's network and mount namespaces."""
    write_if_changed(paths.authorized_keys, client_pub + "\n", 0o600)
    changed = write_if_changed(paths.sshd_config, config_text(paths), 0o600)
    pid = sshd_pid(paths)
    if pid is not None and not changed and init_pid(paths) is None and processes_viewing(paths.netns):
        return  # a host started before anchor processes existed: left as it is until `down`
    init = ensure_init(paths)
    if pid is not None and not changed and ns_inode(pid, "mnt") == ns_inode(init, "mnt"):
        return
    if pid is not None:
        stop_pidfile(paths.sshd_pid, "sshd")
    paths.sshd_pid.unlink(missing_ok=True)
    run(
        [
            "nsenter",
            "-t",
            str(init),
            "-m",
            "-n",
            SSHD,
            "-f",
            str(paths.sshd_config),
            "-E",
            str(paths.sshd_log),
        ]
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if sshd_pid(paths) is not None:
            return
        time.sleep(0.05)
    raise LabError(f"{paths.name}: sshd did not start; see {paths.sshd_log}")


def stop(paths: HostPaths) -> None:
    stop_pidfile(paths.sshd_pid, "sshd")
    stop_pidfile(paths.init_pid, "sleep")


def wait_banner(port: int, timeout: float = 15.0) -> None:
    """Wait until an SSH banner arrives on 127.0.0.1:port (through the loopback forward)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=3) as sock:
                sock.settimeout(3)
                banner = sock.recv(64)
                if banner.startswith(b"SSH-"):
                    return
                last = repr(banner)
        except OSError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise LabError(f"no SSH banner on 127.0.0.1:{port}: {last}")

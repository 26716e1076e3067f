"""Paths, the topology constants and small subprocess helpers shared by the testbed modules."""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lab import PROJECT_ROOT


def lab_dir() -> Path:
    """The testbed's working directory (``.lab`` in the project root; env CLOUDREPO_LAB_DIR overrides)."""
    override = os.environ.get("CLOUDREPO_LAB_DIR")
    return Path(override).resolve() if override else PROJECT_ROOT / ".lab"


# Names and addresses (198.18.0.0/15 is reserved for benchmarking: never routed on the Internet).
# A second, independent testbed can run beside the default one (e.g. to test the testbed itself while
# the default one is in use): CLOUDREPO_LAB_DIR, CLOUDREPO_LAB_PREFIX (e.g. "lb2-"),
# CLOUDREPO_LAB_VM_PREFIX (e.g. "vb2-") and CLOUDREPO_LAB_PORT (e.g. 2300). The defaults are the
# fixed endpoints of docs/design.md.
NS_PREFIX = os.environ.get("CLOUDREPO_LAB_PREFIX", "lab-")
VM_NS_PREFIX = os.environ.get("CLOUDREPO_LAB_VM_PREFIX", "vm-")
FABRIC_NS = NS_PREFIX + "fabric"
INTERNET_NS = NS_PREFIX + "internet"
NETWORK_HOST = "network"
FABRIC_BRIDGE = "br-fabric"
BRIDGE = "br-int"
TRUNK_IFACE = "ens4"
UPLINK_IFACE = "ens3"
INTERNET_IFACE = "eth0"
UPLINK_CIDR = "198.18.0.0/24"
UPLINK_ADDRESS = "198.18.0.2"  # the network node's ens3: NAT source
INTERNET_GATEWAY = "198.18.0.1"  # the internet host's end of the uplink
INTERNET_WEB_ADDRESS = "198.19.0.80"  # the web server, one routed hop behind the uplink
INTERNET_WEB_PORT = 80
INTERNET_BODY = "cloudrepo-lab-internet: hello from the internet host\n"
SSH_BASE_PORT = int(os.environ.get("CLOUDREPO_LAB_PORT", "2200"))
STATE_ROOT = "/var/lib/cloudrepo"
OVS_RUN = "/run/openvswitch"
NETNS_RUN = "/run/netns"
DEFAULT_WORKERS = 2


def host_ns(host: str) -> str:
    return NS_PREFIX + host


def worker_name(index: int) -> str:
    return f"worker{index}"


def ssh_port(host: str) -> int:
    if host == NETWORK_HOST:
        return SSH_BASE_PORT
    if host.startswith("worker") and host[len("worker") :].isdigit():
        return SSH_BASE_PORT + int(host[len("worker") :])
    raise ValueError(f"not a testbed host: {host!r}")


def host_names(workers: int) -> list[str]:
    return [NETWORK_HOST] + [worker_name(i) for i in range(1, workers + 1)]


@dataclass(frozen=True)
class HostPaths:
    """Everything one simulated host keeps under ``.lab/hosts/<host>/``."""

    name: str
    root: Path

    @property
    def ovs(self) -> Path:
        return self.root / "ovs"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def netns(self) -> Path:
        return self.root / "netns"

    @property
    def sshd_config(self) -> Path:
        return self.root / "sshd_config"

    @property
    def sshd_pid(self) -> Path:
        return self.root / "sshd.pid"

    @property
    def init_pid(self) -> Path:
        return self.root / "init.pid"

    @property
    def sshd_log(self) -> Path:
        return self.root / "sshd.log"

    @property
    def host_key(self) -> Path:
        return self.root / "ssh_host_ed25519_key"

    @property
    def authorized_keys(self) -> Path:
        return self.root / "authorized_keys"

    @property
    def forward_pid(self) -> Path:
        return self.root / "forward.pid"


def host_paths(host: str) -> HostPaths:
    return HostPaths(host, lab_dir() / "hosts" / host)


class LabError(RuntimeError):
    """A testbed operation failed; the message says what and why."""


def run(
    argv: list[str],
    *,
    check: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    full_env = None
    if env:
        full_env = dict(os.environ)
        full_env.update(env)
    proc = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        input=input_text,
        check=False,
    )
    if check and proc.returncode != 0:
        raise LabError(
            f"command failed ({proc.returncode}): {shlex.join(argv)}\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    return proc


def out(argv: list[str], *, check: bool = True, timeout: float = 60) -> str:
    return run(argv, check=check, timeout=timeout).stdout


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def write_if_changed(path: Path, text: str, mode: int = 0o644) -> bool:
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.chmod(mode)
    tmp.replace(path)
    return True


def is_mountpoint(path: str, pid: str = "self") -> bool:
    """True when something is mounted on ``path`` in the mount namespace of ``pid`` (bind mounts included)."""
    target = os.path.realpath(path)
    try:
        with open(f"/proc/{pid}/mountinfo") as fh:
            return any(line.split()[4] == target for line in fh)
    except OSError:
        return False


def mounted_anywhere(path: str) -> bool:
    """True when ``path`` is a mount point in any process's mount namespace. Removing such a directory
    would detach those mounts (Linux does so for mount points of other namespaces): another testbed's
    hosts would lose their OVS, state or netns directories."""
    seen: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            ns = os.stat(f"/proc/{entry}/ns/mnt").st_ino
        except OSError:
            continue
        if ns in seen:
            continue
        seen.add(ns)
        if is_mountpoint(path, entry):
            return True
    return False

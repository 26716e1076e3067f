"""Paths, the topology constants and small subprocess helpers shared by the testbed modules."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from lab import PROJECT_ROOT


class LabError(RuntimeError):
    """A testbed operation failed; the message says what and why."""


# Names and addresses (198.18.0.0/15 is reserved for benchmarking: never routed on the Internet).
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
STATE_ROOT = "/var/lib/cloudrepo"
OVS_RUN = "/run/openvswitch"
NETNS_RUN = "/run/netns"
DEFAULT_WORKERS = 2

# Which testbed a process drives: a second, independent testbed can run beside the default one (e.g. a test
# run while the demo is up). The defaults are the fixed endpoints of docs/design.md.
DIR_VAR = "CLOUDREPO_LAB_DIR"
PREFIX_VAR = "CLOUDREPO_LAB_PREFIX"
VM_PREFIX_VAR = "CLOUDREPO_LAB_VM_PREFIX"
PORT_VAR = "CLOUDREPO_LAB_PORT"
DEFAULT_PREFIX = "lab-"
DEFAULT_VM_PREFIX = "vm-"
DEFAULT_PORT = 2200
PREFIX_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,31}")


@dataclass(frozen=True)
class LabSettings:
    """One testbed's place on the machine: its directory, the prefixes of its host and guest namespaces
    (every namespace with one of them is the testbed's: `down` removes it) and its first SSH port."""

    dir: Path
    prefix: str
    vm_prefix: str
    base_port: int

    @property
    def fabric_ns(self) -> str:
        return self.prefix + "fabric"

    @property
    def internet_ns(self) -> str:
        return self.prefix + "internet"

    def host_ns(self, host: str) -> str:
        return self.prefix + host

    def guest_ns(self, name: str) -> str:
        return self.vm_prefix + name

    def owns_ns(self, ns: str) -> bool:
        """True for a namespace of this testbed (a host's, the fabric, the internet host or a guest's)."""
        return ns.startswith((self.prefix, self.vm_prefix))

    def ssh_port(self, host: str) -> int:
        """The loopback port that reaches HOST's sshd: the base port for the network node, +N for workerN."""
        if host == NETWORK_HOST:
            return self.base_port
        index = host[len("worker") :]
        if not (host.startswith("worker") and index.isdigit()):
            raise ValueError(f"not a testbed host: {host!r}")
        port = self.base_port + int(index)
        if port > 65535:
            raise LabError(f"{host}'s SSH port {port} ({PORT_VAR}={self.base_port} + {index}) exceeds 65535")
        return port

    def host_paths(self, host: str) -> HostPaths:
        return HostPaths(host, self.dir / "hosts" / host)


def settings(environ: Mapping[str, str] | None = None) -> LabSettings:
    """The testbed this process drives, read from CLOUDREPO_LAB_* at each call (never cached: the variables
    in force when a function runs decide, not those at import); LabError names a bad variable and value."""
    env = os.environ if environ is None else environ
    problems = []
    prefixes = {}
    for var, default in ((PREFIX_VAR, DEFAULT_PREFIX), (VM_PREFIX_VAR, DEFAULT_VM_PREFIX)):
        prefixes[var] = value = env.get(var, default)
        if not PREFIX_RE.fullmatch(value):
            problems.append(f"{var}={value!r} is not a namespace prefix (1-32 of A-Z a-z 0-9 _ . -)")
    prefix, vm_prefix = prefixes[PREFIX_VAR], prefixes[VM_PREFIX_VAR]
    if not problems and (prefix.startswith(vm_prefix) or vm_prefix.startswith(prefix)):
        problems.append(
            f"{PREFIX_VAR}={prefix!r} and {VM_PREFIX_VAR}={vm_prefix!r} overlap: one starts with the other, "
            "so host and guest namespaces could not be told apart"
        )
    raw_port = env.get(PORT_VAR, str(DEFAULT_PORT))
    port = int(raw_port) if raw_port.isascii() and raw_port.isdigit() else 0
    if not 1 <= port <= 65535:
        problems.append(f"{PORT_VAR}={raw_port!r} is not a TCP port (1-65535)")
    if problems:
        raise LabError("; ".join(problems))
    override = env.get(DIR_VAR)
    lab = Path(override).resolve() if override else PROJECT_ROOT / ".lab"
    return LabSettings(dir=lab, prefix=prefix, vm_prefix=vm_prefix, base_port=port)


def lab_dir() -> Path:
    """The testbed's working directory (``.lab`` in the project root; CLOUDREPO_LAB_DIR moves it)."""
    return settings().dir


def host_ns(host: str) -> str:
    return settings().host_ns(host)


def worker_name(index: int) -> str:
    return f"worker{index}"


def ssh_port(host: str) -> int:
    return settings().ssh_port(host)


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
    return settings().host_paths(host)


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

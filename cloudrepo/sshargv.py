"""OpenSSH to a guest through the network node: the client config file and the argv (pure).

The config is a file of its own (`ssh -F`), which OpenSSH also hands to the ProxyJump's ssh, so both hops
read only what is written here (never `~/.ssh/config`): the jump verifies the network node against the hosts'
known_hosts with the hosts' key, the guest hop verifies the guest against the slice's known_hosts only.
Every file the config names is a fixed name in one private directory (`Files`): symlinks to the operator's
files or a 0600 copy of the secret key, so no path of the operator's is ever written into the config or
into the ProxyJump command line that OpenSSH builds from it. The values written are checked by the
vocabulary's rules (`cloudrepo/access.py`) and again here: a host, user or port that could be read as
anything but itself is refused.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cloudrepo.access import GuestAccess, JumpHost
from transport.script import command_line

JUMP = "cloudrepo-jump"
GUEST = "cloudrepo-guest"
"""The config's two host aliases: the destination OpenSSH gets is always one of these fixed words."""
SAFE_DIR = re.compile(r"^/[A-Za-z0-9/._+-]*$")
"""A directory OpenSSH may name unquoted (it pastes `-F FILE` into the ProxyJump's command line)."""
_WORD = re.compile(r"^[A-Za-z0-9._-]+$")
_HOST = re.compile(r"^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$")
_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")


@dataclass(frozen=True)
class Files:
    """The private directory of one run and the fixed names in it."""

    root: Path

    def __post_init__(self) -> None:
        if not SAFE_DIR.fullmatch(str(self.root)):
            raise ValueError(f"{self.root!r}: not a directory OpenSSH can be given unquoted")

    def config(self, vm: int) -> Path:
        """The config of the connection to VM `vm` (the other files are shared by the run's connections)."""
        return self.root / f"ssh_config.{int(vm)}"

    @property
    def hosts_known(self) -> Path:
        return self.root / "hosts_known_hosts"

    @property
    def hosts_key(self) -> Path:
        return self.root / "hosts_key"

    @property
    def guests_known(self) -> Path:
        return self.root / "guests_known_hosts"

    @property
    def identity(self) -> Path:
        return self.root / "identity"


def _value(text: str, rule: re.Pattern[str], what: str) -> str:
    if not rule.fullmatch(text):
        raise ValueError(f"{what} {text!r} cannot be written into an OpenSSH config")
    return text


def config_text(jump: JumpHost, guest: GuestAccess, files: Files, *, identity: bool, batch: bool) -> str:
    """The `ssh -F` file: the network node as `JUMP`, the guest as `GUEST` behind it. `identity`: the
    guest hop uses only `files.identity` (`-i`), else the user's usual identities (default files, agent);
    `batch`: never prompt (`cloudrepo exec`)."""
    host = _value(jump.host, _HOST, "network node host")
    user = _value(jump.user, _USER, "SSH user")
    guest_user = _value(guest.user, _USER, "cloud-init user")
    address = _value(guest.address, _HOST, "guest address")
    timeout = int(jump.connect_timeout)
    common = [
        "  StrictHostKeyChecking yes",
        "  GlobalKnownHostsFile /dev/null",
        "  UpdateHostKeys no",
        "  CheckHostIP no",
        "  ForwardAgent no",
        "  ForwardX11 no",
        "  ClearAllForwardings yes",
        "  PermitLocalCommand no",
        "  ControlMaster no",
        "  ControlPath none",
        f"  ConnectTimeout {timeout}",
    ]
    lines = [
        "# written by cloudrepo for one connection; removed after it",
        f"Host {JUMP}",
        f"  HostName {host}",
        f"  Port {int(jump.port)}",
        f"  User {user}",
        f"  IdentityFile {files.hosts_key}",
        "  IdentitiesOnly yes",
        "  IdentityAgent none",
        f"  UserKnownHostsFile {files.hosts_known}",
        "  BatchMode yes",
        "  ProxyCommand none",
        "  ProxyJump none",
        *common,
        f"Host {GUEST}",
        f"  HostName {address}",
        f"  Port {22}",
        f"  User {guest_user}",
        f"  ProxyJump {JUMP}",
        f"  UserKnownHostsFile {files.guests_known}",
        *([f"  IdentityFile {files.identity}", "  IdentitiesOnly yes"] if identity else []),
        *(["  BatchMode yes"] if batch else []),
        "  PasswordAuthentication no",
        "  KbdInteractiveAuthentication no",
        *common,
    ]
    return "\n".join(lines) + "\n"


def ssh_argv(files: Files, vm: int, command: Sequence[str], *, ssh: str = "ssh") -> list[str]:
    """`ssh -F CONFIG -- GUEST [COMMAND]`: the destination is the fixed alias, after `--`, so nothing after
    it is an option; the command reaches the guest's shell as one line that gives back exactly `command`
    (quoted by `transport.script.command_line`)."""
    argv = [ssh, "-F", str(files.config(vm)), "--", GUEST]
    return [*argv, command_line(command)] if command else argv

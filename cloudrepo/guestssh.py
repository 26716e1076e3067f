"""`cloudrepo ssh` and `cloudrepo exec`: OpenSSH into a slice's guests through the network node.

The facts come from the slice's outputs and stack config (`cloudrepo/access.py`), the client config and
argv from `cloudrepo/sshargv.py`; this module does the I/O: the slice's known_hosts under
`.cloudrepo/<slice>/` of the project (0600), a private directory per run (0700, removed after it) with the
hosts' key when it is the secret `cloudrepo:sshPrivateKey` (a 0600 file, never an argument), and the ssh
processes (an argv each, never a shell).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cloudrepo import stackfile
from cloudrepo.access import (
    AccessError,
    GuestAccess,
    JumpHost,
    deployed_vms,
    guest_access,
    guest_vms,
    jump_host,
    known_hosts_text,
)
from cloudrepo.engine import SliceError
from cloudrepo.sshargv import SAFE_DIR, Files, config_text, ssh_argv
from vocabulary.errors import ConfigError
from vocabulary.shown import shown_path
from vocabulary.ssh_input import SSH_KEY_SECRET

STATE_DIR = ".cloudrepo"
"""The project's per-slice state of the command (`.cloudrepo/<slice>/known_hosts`)."""
EXEC_PARALLEL = 8
"""Guests `cloudrepo exec` talks to at once."""
SSH_STATUS = 255
"""OpenSSH's own exit status (it could not connect, authenticate or verify a host key)."""
TIMED_OUT = 124

SecretKey = Callable[[], "str | None"]
"""The stack's `sshPrivateKey` secret, decrypted by the engine (`engine.Slices.secret`)."""


def slice_known_hosts(project: Path, name: str) -> Path:
    return project / STATE_DIR / name / "known_hosts"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` as a 0600 file (a temporary file renamed over it), its directories 0700."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


@dataclass(frozen=True)
class Target:
    """What one run needs: the slice's guests asked for, the jump host, the pinned keys."""

    guests: list[GuestAccess]
    jump: JumpHost
    known_hosts: Path
    secret_key: str | None


def _ssh_binary() -> str:
    found = shutil.which("ssh")
    if found is None:
        raise SliceError("the OpenSSH client `ssh` is not on PATH (Debian: apt-get install openssh-client)")
    return found


def target(
    outputs: Mapping[str, Any], project: Path, name: str, vms: Sequence[int], secret_key: SecretKey
) -> Target:
    """The guests `vms` of slice `name` (every guest with cloud-init when empty) and how to reach them;
    writes the slice's known_hosts (every guest's every address, pinned to its host key) on the way."""
    try:
        deployed_vms(outputs, name)
        wanted = list(vms) or guest_vms(outputs)
        if not wanted:
            raise AccessError(f"slice {name!r} has no VM with cloud-init: nothing to log in to")
        guests = [guest_access(outputs, name, vm) for vm in wanted]
        pinned = []
        for vm in guest_vms(outputs):
            try:
                pinned.append(guest_access(outputs, name, vm))
            except AccessError:
                continue
    except AccessError as exc:
        raise SliceError(str(exc)) from None
    path = stackfile.stack_file(project, name)
    if not path.exists():
        raise SliceError(f"no stack config file for slice {name!r} in this checkout ({path} is missing)")
    config = stackfile.config_of(stackfile.read(path))
    try:
        jump = jump_host(config, project)
    except ConfigError as exc:
        raise SliceError(f"{path.name}: {exc}") from None
    for what, file in (("knownHostsPath", jump.known_hosts), ("privateKeyPath", jump.key_path)):
        if file is not None and not file.is_file():
            raise SliceError(f"{path.name}: cloudrepo:ssh.{what} {shown_path(file)} is not a file")
    secret = None
    if jump.key_path is None:
        secret = secret_key()
        if secret is None or not secret.strip():
            raise SliceError(f"{path.name}: the secret {SSH_KEY_SECRET} could not be read")
    known = slice_known_hosts(project, name)
    write_private(known, known_hosts_text(pinned))
    return Target(guests=guests, jump=jump, known_hosts=known, secret_key=secret)


def _private_dir() -> Path:
    """A new 0700 directory whose path OpenSSH may take unquoted (`SAFE_DIR`): under $TMPDIR when its
    path is plain, else under /tmp."""
    base = tempfile.gettempdir()
    root = tempfile.mkdtemp(prefix="cloudrepo-ssh-", dir=base if SAFE_DIR.fullmatch(base) else "/tmp")
    return Path(root)


@contextmanager
def session(run: Target, identity: Path | None, *, batch: bool) -> Iterator[Files]:
    """The run's private directory: the hosts' known_hosts, the hosts' key (a link to the key file, or the
    secret written 0600), the slice's known_hosts, the `-i` key (links) and one config per guest; all
    removed when the run ends, whatever happened."""
    files = Files(_private_dir())
    try:
        files.hosts_known.symlink_to(run.jump.known_hosts)
        if run.secret_key is not None:
            text = run.secret_key if run.secret_key.endswith("\n") else run.secret_key + "\n"
            write_private(files.hosts_key, text)
        else:
            assert run.jump.key_path is not None
            files.hosts_key.symlink_to(run.jump.key_path)
        files.guests_known.symlink_to(run.known_hosts.absolute())
        if identity is not None:
            files.identity.symlink_to(identity.absolute())
        for guest in run.guests:
            text = config_text(run.jump, guest, files, identity=identity is not None, batch=batch)
            write_private(files.config(guest.vm), text)
        yield files
    finally:
        shutil.rmtree(files.root, ignore_errors=True)


def identity_file(text: str | None) -> Path | None:
    """`-i KEY` as a path to an existing file (`~` expanded), or None."""
    if text is None:
        return None
    path = Path(text).expanduser()
    if not path.is_file():
        raise SliceError(f"-i {shown_path(text)}: not a file (give the private key OpenSSH should use)")
    return path


def status(code: int) -> int:
    """A process's exit status as a shell gives it (128+N when signal N ended it)."""
    return 128 - code if code < 0 else code


def ssh(
    outputs: Mapping[str, Any],
    project: Path,
    name: str,
    vm: int,
    identity: str | None,
    command: Sequence[str],
    secret_key: SecretKey,
) -> int:
    """`cloudrepo ssh`: OpenSSH on this terminal; the exit status is ssh's (the command's, or 255)."""
    key = identity_file(identity)
    run = target(outputs, project, name, [vm], secret_key)
    binary = _ssh_binary()
    with session(run, key, batch=False) as files:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # ^C is the guest's (ssh gets it too)
        try:
            return status(subprocess.run(ssh_argv(files, vm, command, ssh=binary), check=False).returncode)
        finally:
            signal.signal(signal.SIGINT, previous)


@dataclass(frozen=True)
class ExecResult:
    vm: int
    exit: int
    stdout: str
    stderr: str


def exec_all(
    outputs: Mapping[str, Any],
    project: Path,
    name: str,
    vms: Sequence[int],
    identity: str | None,
    command: Sequence[str],
    secret_key: SecretKey,
    timeout: float,
) -> list[ExecResult]:
    """`cloudrepo exec`: `command` on each guest (`EXEC_PARALLEL` at once, each within `timeout` s), no
    prompts; the results in VM order."""
    key = identity_file(identity)
    run = target(outputs, project, name, sorted(set(vms)), secret_key)
    binary = _ssh_binary()

    def one(files: Files, guest: GuestAccess) -> ExecResult:
        argv = ssh_argv(files, guest.vm, command, ssh=binary)
        try:
            done = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired as exc:
            out = (exc.stdout or b"").decode("utf-8", "replace")
            return ExecResult(guest.vm, TIMED_OUT, out, f"cloudrepo: timed out after {timeout:g} s\n")
        return ExecResult(
            guest.vm,
            status(done.returncode),
            done.stdout.decode("utf-8", "replace"),
            done.stderr.decode("utf-8", "replace"),
        )

    with session(run, key, batch=True) as files, ThreadPoolExecutor(EXEC_PARALLEL) as pool:
        return list(pool.map(lambda g: one(files, g), run.guests))

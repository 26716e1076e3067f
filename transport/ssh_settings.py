"""`cloudrepo:ssh` and `cloudrepo:sshPrivateKey`: the one parser of how the providers log in to the hosts.

The program checks the stack config with it at `pulumi preview` (`components/config.py`, every problem at
once, before any host is touched); each provider process builds its `Settings` from the same model in
`configure()`, then reads the key and known_hosts files.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paramiko
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, ValidationError

from vocabulary import naming
from vocabulary.errors import ConfigError
from vocabulary.shown import looks_like_pasted_key, shown, shown_path

SSH_CONFIG_KEY = "cloudrepo:ssh"
SSH_KEY_SECRET = "cloudrepo:sshPrivateKey"  # noqa: S105 (a config key name)
USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
"""A POSIX login name (useradd's default NAME_REGEX)."""
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_COMMAND_TIMEOUT = 120.0
MAX_KEY_FILE = 64 * 1024
"""Bytes of the largest private key or known_hosts file read (an RSA-16384 PEM is about 12 KiB)."""


class SshInput(BaseModel):
    """`cloudrepo:ssh`: how the providers reach the hosts (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    user: StrictStr
    private_key_path: StrictStr | None = Field(default=None, alias="privateKeyPath")
    """A private key file; or the secret `cloudrepo:sshPrivateKey`."""
    known_hosts_path: StrictStr = Field(alias="knownHostsPath")
    """Required: host keys are always verified against this file."""
    sudo: StrictBool = False
    """Privileged commands run as `sudo -n ...`."""
    connect_timeout: float = Field(default=DEFAULT_CONNECT_TIMEOUT, alias="connectTimeout", gt=0)
    """Seconds to connect, exchange banners and authenticate (each of up to 4 attempts)."""
    command_timeout: float = Field(default=DEFAULT_COMMAND_TIMEOUT, alias="commandTimeout", gt=0)
    """Seconds one remote script (one round trip) may run."""


def input_problems(ssh_in: SshInput, has_secret: bool) -> list[str]:
    """What is wrong with a well-typed `cloudrepo:ssh` (with or without the key secret), each named."""
    where = SSH_CONFIG_KEY
    problems = []
    if not USER_RE.fullmatch(ssh_in.user):
        problems.append(
            f"{where}.user: {shown(ssh_in.user)} is not a login name "
            "(lower-case letters, digits, '_' and '-', starting with a letter or '_')"
        )
    if ssh_in.private_key_path is None and not has_secret:
        problems.append(
            f"{where}: no SSH key configured: set ssh.privateKeyPath or the secret "
            f"{SSH_KEY_SECRET} (pulumi config set --secret {SSH_KEY_SECRET} < KEY)"
        )
    paths = (("privateKeyPath", ssh_in.private_key_path), ("knownHostsPath", ssh_in.known_hosts_path))
    for field, path in paths:
        if path is not None and looks_like_pasted_key(path):
            lines = path.count("\n") + 1
            size = f"{lines} line{'s' if lines > 1 else ''}, {len(path)} characters"
            problems.append(
                f"{where}.{field}: looks like a private key, not a path ({size}; not shown): put the key in "
                f"a file, or in the secret {SSH_KEY_SECRET}"
            )
        elif path is not None and (not path or "\0" in path):
            problems.append(f"{where}.{field}: not a usable file path, got {shown(path)}")
    return problems


def parse_input(raw: Any, has_secret: bool) -> SshInput:
    """The `cloudrepo:ssh` value (an object, or its JSON text as the engine sends it) as `SshInput`; raises
    `ConfigError` listing every problem."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"stack config {SSH_CONFIG_KEY} is not a JSON object: {exc}") from None
    try:
        ssh_in = SshInput.model_validate(raw)
    except ValidationError as exc:
        found = [_problem(e) for e in exc.errors(include_url=False)]
        raise ConfigError("; ".join(found)) from None
    problems = input_problems(ssh_in, has_secret)
    if problems:
        raise ConfigError("; ".join(problems))
    return ssh_in


def _problem(err: Any) -> str:
    path = ".".join([SSH_CONFIG_KEY, *map(str, err["loc"])])
    if err["type"] == "missing":
        return f"{path}: required"
    if err["type"] == "extra_forbidden":
        known = ", ".join(f.alias or n for n, f in SshInput.model_fields.items())
        return f"{path}: unknown key (known: {known})"
    return f"{path}: {err['msg']}, got {shown(err['input'])}"


@dataclass(frozen=True)
class Settings:
    """How to log in: from the stack config in `configure()`.  Never pickled, never logged."""

    user: str
    pkey: paramiko.PKey
    known_hosts: Path
    sudo: bool = False
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT
    command_timeout: float = DEFAULT_COMMAND_TIMEOUT
    connect_attempts: int = 4
    keepalive: int = 15
    lock_file: str = naming.LOCK_FILE
    """The hosts' lock (`flock`) of locked scripts (tests point it elsewhere)."""

    def __repr__(self) -> str:  # keep the key out of any traceback or log line
        return f"Settings(user={self.user!r}, known_hosts={str(self.known_hosts)!r}, sudo={self.sudo})"


class ConfigLike(Protocol):
    def get(self, key: str) -> Any: ...


def _resolve(path: str, base: Path) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else (base / p)


def load_key(pem: str, where: str) -> paramiko.PKey:
    """The private key in `pem` (Ed25519, ECDSA or RSA, unencrypted)."""
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(pem))
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(f"{cls.__name__}: {exc}")
    raise ConfigError(f"{where} is not a usable unencrypted private key ({'; '.join(errors)})")


def _read_text_file(path: Path, where: str) -> str:
    """The text of a small regular file (a key or known_hosts), or a `ConfigError` saying why not."""
    try:
        if not path.is_file():
            raise ConfigError(f"{where}: not a regular file")
        if path.stat().st_size > MAX_KEY_FILE:
            raise ConfigError(f"{where}: over {MAX_KEY_FILE} bytes, not a key or known_hosts file")
        return path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{where}: {exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: not a text file (binary content)") from None


def settings_from_config(config: ConfigLike | Mapping[str, Any], base: Path | None = None) -> Settings:
    """`Settings` from the stack config the engine sends (full keys like `cloudrepo:ssh`); relative paths
    resolve against `base` (the provider's working directory: the project)."""
    base = base or Path.cwd()
    raw = config.get(SSH_CONFIG_KEY)
    if raw is None:
        raise ConfigError(
            f"stack config {SSH_CONFIG_KEY} is not set (user, knownHostsPath, privateKeyPath, sudo)"
        )
    pem = config.get(SSH_KEY_SECRET)
    ssh_in = parse_input(raw, bool(pem))
    known_hosts = _resolve(ssh_in.known_hosts_path, base)
    where = f"{SSH_CONFIG_KEY}.knownHostsPath {shown_path(known_hosts)}"
    _read_text_file(known_hosts, where)
    try:
        paramiko.HostKeys(str(known_hosts))
    except (paramiko.SSHException, paramiko.hostkeys.InvalidHostKey, ValueError) as exc:
        raise ConfigError(f"{where}: not a known_hosts file ({type(exc).__name__})") from None
    if pem:
        pkey = load_key(str(pem), f"secret {SSH_KEY_SECRET}")
    else:
        assert ssh_in.private_key_path is not None  # input_problems saw to it
        key_path = _resolve(ssh_in.private_key_path, base)
        where = f"{SSH_CONFIG_KEY}.privateKeyPath {shown_path(key_path)}"
        pkey = load_key(_read_text_file(key_path, where), where)
    return Settings(
        user=ssh_in.user,
        pkey=pkey,
        known_hosts=known_hosts,
        sudo=ssh_in.sudo,
        connect_timeout=ssh_in.connect_timeout,
        command_timeout=ssh_in.command_timeout,
    )


def fingerprint(key: paramiko.PKey) -> str:
    """The key's fingerprint as OpenSSH shows it (`ssh-keygen -l`): `SHA256:` and unpadded base64."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key.asbytes()).digest()).decode().rstrip("=")

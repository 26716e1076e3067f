"""How the providers log in to the hosts: `Settings` from `cloudrepo:ssh` and `cloudrepo:sshPrivateKey`.

The input model and its problems are `vocabulary.ssh_input` (the program checks the same model at
`pulumi preview`); each provider process builds its `Settings` from it in `configure()`, then reads the
key and known_hosts files here.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import paramiko

from vocabulary import naming
from vocabulary.errors import ConfigError
from vocabulary.shown import shown_path
from vocabulary.ssh_input import (
    DEFAULT_COMMAND_TIMEOUT,
    DEFAULT_CONNECT_TIMEOUT,
    SSH_CONFIG_KEY,
    SSH_KEY_SECRET,
    parse_input,
)

MAX_KEY_FILE = 64 * 1024
"""Bytes of the largest private key or known_hosts file read (an RSA-16384 PEM is about 12 KiB)."""


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

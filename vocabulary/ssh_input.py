"""`cloudrepo:ssh` and `cloudrepo:sshPrivateKey` as input: the model and its problems, no I/O.

The program checks the stack config with it at `pulumi preview` (`components/config.py`, every problem at
once, before any host is touched); each provider process parses the same model (`parse_input`) before
`transport.ssh_settings` reads the key and known_hosts files.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from vocabulary.errors import ConfigError
from vocabulary.problems import validate_input
from vocabulary.shown import looks_like_pasted_key, shown
from vocabulary.values import LoginName

SSH_CONFIG_KEY = "cloudrepo:ssh"
SSH_KEY_SECRET = "cloudrepo:sshPrivateKey"  # noqa: S105 (a config key name)
DEFAULT_CONNECT_TIMEOUT = 10.0
DEFAULT_COMMAND_TIMEOUT = 120.0


class SshInput(BaseModel):
    """`cloudrepo:ssh`: how the providers reach the hosts (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=False)

    user: LoginName
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
    `ConfigError` listing every problem, worded as at `pulumi preview` (`vocabulary.problems`)."""
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"stack config {SSH_CONFIG_KEY} is not a JSON object: {exc}") from None
    found: list[str] = []
    ssh_in = validate_input(SshInput, raw, SSH_CONFIG_KEY, found)
    if ssh_in is None:
        raise ConfigError("; ".join(found))
    problems = input_problems(ssh_in, has_secret)
    if problems:
        raise ConfigError("; ".join(problems))
    return ssh_in

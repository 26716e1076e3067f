"""How the command reaches a slice's worker: the stack's own cloud settings (`cloudrepo:workers`,
`cloudrepo:ssh`, `cloudrepo:sshPrivateKey`), the same ones the providers log in with.

The slice's stack config file in the checkout holds them (the backend alone does not); the key secret is
decrypted through the engine. Host keys are verified against `ssh.knownHostsPath` only
(`transport.ssh_pool`).
"""

from __future__ import annotations

from typing import Any, Protocol

import paramiko

from cloudrepo import stackfile
from cloudrepo.engine import SliceError
from components.inputs import NetworkNodeInput, WorkerInput
from components.model import NAMESPACE
from transport import ssh_pool
from transport.ssh_settings import Settings, settings_from_config
from vocabulary.errors import CloudrepoError
from vocabulary.problems import validate_input
from vocabulary.shown import shown
from vocabulary.ssh_input import SSH_CONFIG_KEY, SSH_KEY_SECRET
from vocabulary.values import Endpoint

WORKERS_KEY = f"{NAMESPACE}:workers"
NETWORK_KEY = f"{NAMESPACE}:networkNode"


class SecretSource(Protocol):
    """What this needs of `engine.Slices`."""

    @property
    def project(self) -> Any: ...

    def secret(self, name: str, key: str) -> str | None: ...


def worker_login(slices: SecretSource, name: str, worker: str) -> tuple[Endpoint, Settings]:
    """The endpoint of `worker` and the SSH settings of slice `name`, from its stack config file."""
    return _login(slices, name, worker)


def network_login(slices: SecretSource, name: str) -> tuple[Endpoint, Settings]:
    """The network node's endpoint and the SSH settings of slice `name`, from its stack config file."""
    return _login(slices, name, None)


def _login(slices: SecretSource, name: str, worker: str | None) -> tuple[Endpoint, Settings]:
    path = stackfile.stack_file(slices.project, name)
    if not path.exists():
        raise SliceError(
            f"slice {name!r}: {path.name} is not in this checkout; the worker's host and the SSH settings "
            "are there (pass --project DIR, the checkout that deploys it)"
        )
    config = stackfile.config_of(stackfile.read(path))
    kind: type[NetworkNodeInput] | type[WorkerInput]
    if worker is None:
        key, entry, kind, host_name = NETWORK_KEY, config.get(NETWORK_KEY), NetworkNodeInput, "network"
        if entry is None:
            raise SliceError(f"{path.name}: no {NETWORK_KEY}")
    else:
        workers = config.get(WORKERS_KEY)
        entry = workers.get(worker) if isinstance(workers, dict) else None
        if entry is None:
            raise SliceError(f"{path.name}: {WORKERS_KEY} has no worker {shown(worker)}")
        key, kind, host_name = f"{WORKERS_KEY}.{worker}", WorkerInput, worker
    problems: list[str] = []
    found = validate_input(kind, entry, key, problems)
    if found is None:
        raise SliceError(f"{path.name}: " + "; ".join(problems))
    stored = config.get(SSH_KEY_SECRET)
    pem = slices.secret(name, SSH_KEY_SECRET) if isinstance(stored, dict) else stored
    try:
        login = settings_from_config(
            {SSH_CONFIG_KEY: config.get(SSH_CONFIG_KEY), SSH_KEY_SECRET: pem}, slices.project
        )
    except CloudrepoError as exc:
        raise SliceError(f"{path.name}: {exc}") from None
    return Endpoint(name=host_name, address=found.host, port=found.port), login


def connect(ep: Endpoint, login: Settings) -> paramiko.SSHClient:
    """A connection to the host of its own (host key verified); `SliceError` saying why not."""
    try:
        return ssh_pool.connect(ep, login)
    except CloudrepoError as exc:
        raise SliceError(str(exc)) from None

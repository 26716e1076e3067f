"""The SSH layer: stack-config credentials, a per-host connection pool, host-key checks, one script per call.

Lives only in the provider process (module state, never pickled).  The pool is shared by the gRPC threads
that serve calls concurrently; a paramiko transport carries several channels at once, so one connection
per host serves every resource on it.  On it, up to `MAX_RUNNERS` long-lived remote shells (`runner.py`,
started on demand, each serving one call at a time) run the scripts: the login shell and its rc files
start once per runner, not once per round trip.
"""

from __future__ import annotations

import atexit
import io
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import paramiko

from . import runner as runner_mod
from . import script as script_mod
from .errors import (
    CloudrepoError,
    CommandTimeout,
    ConfigError,
    HostKeyError,
    HostUnreachable,
    LockTimeout,
    SshError,
)
from .naming import LOCK_FILE, LOCK_HOLDER_FILE, LOCK_TIMEOUT_STATUS
from .script import ScriptResult, Step
from .specs import Endpoint

LOCK_WAIT_SECONDS = 60
"""How long a locked script waits for the host's lock (`flock -w`)."""

# paramiko logs every failed connection attempt with its traceback (ERROR, "Exception (client): ..."); with no
# handler anywhere, Python prints it to the provider's stderr and the engine shows each line as a message
# of the stack (hundreds for one host down). The errors raised here already name the host and the cause.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

SSH_CONFIG_KEY = "cloudrepo:ssh"
SSH_KEY_SECRET = "cloudrepo:sshPrivateKey"  # noqa: S105 (a config key name)
STATS_ENV = "CLOUDREPO_SSH_STATS"


@dataclass(frozen=True)
class Settings:
    """How to log in: from the stack config in `configure()`.  Never pickled, never logged."""

    user: str
    pkey: paramiko.PKey
    known_hosts: Path
    sudo: bool = False
    connect_timeout: float = 10.0
    command_timeout: float = 120.0
    connect_attempts: int = 4
    keepalive: int = 15

    def __repr__(self) -> str:  # keep the key out of any traceback or log line
        return f"Settings(user={self.user!r}, known_hosts={str(self.known_hosts)!r}, sudo={self.sudo})"


class _ConfigLike(Protocol):
    def get(self, key: str) -> Any: ...


def _resolve(path: str, base: Path) -> Path:
    p = Path(os.path.expanduser(path))
    return p if p.is_absolute() else (base / p)


def _load_key(pem: str, where: str) -> paramiko.PKey:
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key(io.StringIO(pem))
        except (paramiko.SSHException, ValueError) as exc:
            errors.append(f"{cls.__name__}: {exc}")
    raise ConfigError(f"{where} is not a usable unencrypted private key ({'; '.join(errors)})")


def settings_from_config(config: _ConfigLike | Mapping[str, Any], base: Path | None = None) -> Settings:
    """Build `Settings` from the stack config the engine sends (full keys like `cloudrepo:ssh`)."""
    base = base or Path.cwd()
    raw = config.get(SSH_CONFIG_KEY)
    if raw is None:
        raise ConfigError(
            f"stack config {SSH_CONFIG_KEY} is not set (user, knownHostsPath, privateKeyPath, sudo)"
        )
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"stack config {SSH_CONFIG_KEY} is not a JSON object: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"stack config {SSH_CONFIG_KEY} must be an object, not {type(raw).__name__}")
    user = raw.get("user")
    if not isinstance(user, str) or not user:
        raise ConfigError(f"{SSH_CONFIG_KEY}.user is required")
    kh = raw.get("knownHostsPath")
    if not isinstance(kh, str) or not kh:
        raise ConfigError(f"{SSH_CONFIG_KEY}.knownHostsPath is required: host keys are always verified")
    known_hosts = _resolve(kh, base)
    if not known_hosts.is_file():
        raise ConfigError(f"{SSH_CONFIG_KEY}.knownHostsPath {str(known_hosts)!r} is not a file")
    pem = config.get(SSH_KEY_SECRET)
    if pem:
        pkey = _load_key(str(pem), f"secret {SSH_KEY_SECRET}")
    else:
        kp = raw.get("privateKeyPath")
        if not isinstance(kp, str) or not kp:
            raise ConfigError(f"set {SSH_CONFIG_KEY}.privateKeyPath or the secret {SSH_KEY_SECRET}")
        key_path = _resolve(kp, base)
        try:
            text = key_path.read_text()
        except OSError as exc:
            raise ConfigError(f"{SSH_CONFIG_KEY}.privateKeyPath {str(key_path)!r}: {exc.strerror}") from None
        pkey = _load_key(text, f"{SSH_CONFIG_KEY}.privateKeyPath {str(key_path)!r}")
    sudo = raw.get("sudo", False)
    if not isinstance(sudo, bool):
        raise ConfigError(f"{SSH_CONFIG_KEY}.sudo must be true or false")
    extra: dict[str, Any] = {}
    for key, attr in (("connectTimeout", "connect_timeout"), ("commandTimeout", "command_timeout")):
        if key in raw:
            extra[attr] = float(raw[key])
    return Settings(user=user, pkey=pkey, known_hosts=known_hosts, sudo=sudo, **extra)


# ---- process state --------------------------------------------------------------------------------------

_settings: Settings | None = None
_settings_lock = threading.Lock()


def configure(config: _ConfigLike | Mapping[str, Any], base: Path | None = None) -> None:
    """Install the credentials for this process (called from every provider's `configure`)."""
    global _settings
    new = settings_from_config(config, base)
    with _settings_lock:
        if _settings is not None and (
            _settings.user != new.user
            or _settings.known_hosts != new.known_hosts
            or _settings.sudo != new.sudo
        ):
            close_all()
        _settings = new


def settings() -> Settings:
    if _settings is None:
        raise ConfigError("the provider was not configured: no SSH settings (cloudrepo:ssh)")
    return _settings


class _Stats:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.connections_opened = 0
        self.connect_attempts = 0
        self.commands_run = 0
        self.sessions_opened = 0
        self.command_seconds = 0.0

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {
                "pid": os.getpid(),
                "connections_opened": self.connections_opened,
                "connect_attempts": self.connect_attempts,
                "commands_run": self.commands_run,
                "sessions_opened": self.sessions_opened,
                "command_seconds": round(self.command_seconds, 4),
            }


STATS = _Stats()


def stats() -> dict[str, Any]:
    """Counters of this process: SSH connections opened, remote commands (scripts, i.e. round trips) run,
    sessions (remote runners) started."""
    return STATS.snapshot()


def reset_stats() -> None:
    with STATS.lock:
        STATS.connections_opened = STATS.connect_attempts = STATS.commands_run = STATS.sessions_opened = 0
        STATS.command_seconds = 0.0


_dump_lock = threading.Lock()


def dump_stats() -> None:
    """Write the counters as JSON to $CLOUDREPO_SSH_STATS (`{pid}` in it is replaced), atomically.

    Called from every thread that ran a command: one writer at a time (a shared temporary file would be
    renamed away under another thread), and a counter file that cannot be written never fails the operation.
    """
    target = os.environ.get(STATS_ENV)
    if not target:
        return
    path = Path(target.replace("{pid}", str(os.getpid())))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with _dump_lock:
        try:
            tmp.write_text(json.dumps(stats()) + "\n")
            tmp.replace(path)
        except OSError:
            pass


def _dump_at_exit() -> None:
    st = stats()
    if st["connections_opened"] or st["commands_run"] or st["connect_attempts"] or st["sessions_opened"]:
        dump_stats()  # processes that never used SSH (e.g. the program itself) leave no file


atexit.register(_dump_at_exit)


MAX_RUNNERS = 4
"""Remote runners per host at most (the provider serves up to 4 calls at once); more callers wait."""


@dataclass
class _Slot:
    lock: threading.Lock
    client: paramiko.SSHClient | None = None
    cond: threading.Condition | None = None  # on `lock`: a runner came back
    idle: list[runner_mod.Runner] = field(default_factory=list)
    busy: int = 0  # runners handed out or being started

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)


_pool: dict[tuple[str, int, str], _Slot] = {}
_pool_lock = threading.Lock()


def _connect(ep: Endpoint, s: Settings) -> paramiko.SSHClient:
    delay = 0.25
    last: Exception | None = None
    for attempt in range(1, s.connect_attempts + 1):
        with STATS.lock:
            STATS.connect_attempts += 1
        client = paramiko.SSHClient()
        client.load_host_keys(str(s.known_hosts))  # only this file; never the user's or the system's
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                hostname=ep.address,
                port=ep.port,
                username=s.user,
                pkey=s.pkey,
                timeout=s.connect_timeout,
                banner_timeout=s.connect_timeout,
                auth_timeout=s.connect_timeout,
                allow_agent=False,
                look_for_keys=False,
            )
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyError(
                ep.name,
                f"host key of {ep.address}:{ep.port} CHANGED: got {exc.key.get_name()} "
                f"{exc.key.get_fingerprint().hex()}, {s.known_hosts} has another; refusing to connect",
            ) from None
        except paramiko.AuthenticationException as exc:
            client.close()
            raise HostUnreachable(
                ep.name, f"authentication as {s.user!r} to {ep.address}:{ep.port} failed: {exc}"
            ) from None
        except paramiko.SSHException as exc:
            client.close()
            if "not found in known_hosts" in str(exc):
                raise HostKeyError(
                    ep.name,
                    f"host key of {ep.address}:{ep.port} is UNKNOWN: not in {s.known_hosts}; "
                    "refusing to connect",
                ) from None
            last = exc
        except (OSError, EOFError) as exc:  # refused, reset, timeout (socket.timeout is an OSError)
            client.close()
            last = exc
        else:
            transport = client.get_transport()
            if transport is not None:
                transport.set_keepalive(s.keepalive)
            with STATS.lock:
                STATS.connections_opened += 1
            return client
        if attempt < s.connect_attempts:
            time.sleep(delay)
            delay *= 2
    raise HostUnreachable(
        ep.name, f"cannot connect to {ep.address}:{ep.port} after {s.connect_attempts} attempts: {last}"
    )


def _client(ep: Endpoint, s: Settings) -> paramiko.SSHClient:
    key = (ep.address, ep.port, s.user)
    with _pool_lock:
        slot = _pool.setdefault(key, _Slot(threading.Lock()))
    with slot.lock:
        c = slot.client
        if c is not None:
            t = c.get_transport()
            if t is not None and t.is_active():
                return c
            c.close()
            slot.client = None
        slot.client = _connect(ep, s)
        return slot.client


def _drop(ep: Endpoint, s: Settings, client: paramiko.SSHClient) -> None:
    key = (ep.address, ep.port, s.user)
    with _pool_lock:
        slot = _pool.get(key)
    if slot is None:
        return
    with slot.lock:
        if slot.client is client:
            slot.client = None
    client.close()


def close_all() -> None:
    """Close every pooled connection and runner (tests; reconfiguration)."""
    with _pool_lock:
        slots = list(_pool.values())
        _pool.clear()
    for slot in slots:
        with slot.lock:
            for r in slot.idle:
                r.close()
            slot.idle.clear()
            if slot.client is not None:
                slot.client.close()
                slot.client = None


def _slot(ep: Endpoint, s: Settings) -> _Slot:
    with _pool_lock:
        return _pool.setdefault((ep.address, ep.port, s.user), _Slot(threading.Lock()))


def _acquire(ep: Endpoint, s: Settings, timeout: float) -> tuple[_Slot, runner_mod.Runner]:
    """A live runner of this host for one call: an idle one, else a new one (at most MAX_RUNNERS)."""
    slot = _slot(ep, s)
    assert slot.cond is not None
    with slot.cond:
        while True:
            while slot.idle:
                r = slot.idle.pop()  # the most recently used: the others may stay idle
                if r.client is slot.client and r.alive():
                    slot.busy += 1
                    return slot, r
                r.close()
            if slot.busy < MAX_RUNNERS:
                slot.busy += 1
                break
            slot.cond.wait()
    try:
        client = _client(ep, s)
        with STATS.lock:
            STATS.sessions_opened += 1
        try:
            return slot, runner_mod.Runner.start(client, runner_mod.command(s.sudo), timeout)
        except runner_mod.Stale:
            _drop(ep, s, client)
            raise
    except BaseException:
        _release(slot, None)
        raise


def _release(slot: _Slot, r: runner_mod.Runner | None, keep: bool = False) -> None:
    assert slot.cond is not None
    with slot.cond:
        slot.busy -= 1
        if r is not None:
            if keep and r.client is slot.client:
                slot.idle.append(r)
            else:
                r.close()
        slot.cond.notify()


def remote_command(s: Settings, locked: bool) -> str:
    """What each round trip runs, as a one-shot command: sh reading the script from stdin (under sudo, under
    flock).  The runner (`runner.py`) runs the script the same way; this names it in messages."""
    if locked:
        # the lock file's directory must exist before flock can open it
        inner = "mkdir -p /var/lib/cloudrepo && exec flock -E 75 -w 60 /var/lib/cloudrepo/lock sh -s"
        cmd = f"sh -c '{inner}'"
    else:
        cmd = "sh -s"
    return f"sudo -n {cmd}" if s.sudo else cmd


def _last_step(stdout: str) -> int | None:
    """Index of the last step the script began (from its marker lines)."""
    idx = stdout.rfind(":begin:")
    if idx < 0:
        return None
    num = stdout[idx + 7 :].split("\n", 1)[0]
    return int(num) if num.isdigit() else None


def run_script(
    endpoint: Endpoint,
    steps: Sequence[Step],
    *,
    locked: bool = False,
    timeout: float | None = None,
    holder: str | None = None,
) -> ScriptResult:
    """Run `steps` on `endpoint` as ONE script (one round trip, on a pooled runner) and parse the result.

    `locked=True` runs the whole script under `flock /var/lib/cloudrepo/lock`.  Raises `StepFailed` for the
    first failing `run` step, `HostKeyError` / `HostUnreachable` before anything runs.
    """
    if not steps:
        return ScriptResult()
    if locked and holder is not None:
        steps = [script_mod.sh(NOTE_HOLDER, 'printf "%s\\n" "$2" >"$1"', LOCK_HOLDER_FILE, holder), *steps]
    s = settings()
    text = script_mod.render(steps)
    data = text.encode()
    command = remote_command(s, locked)
    limit = timeout or s.command_timeout
    started = time.monotonic()
    for attempt in (1, 2):
        try:
            slot, r = _acquire(endpoint, s, limit)
        except runner_mod.Stale as exc:
            # a pooled connection that died between calls: nothing ran, so reconnect once
            if attempt == 2:
                raise HostUnreachable(
                    endpoint.name, f"cannot open a session on {endpoint.address}:{endpoint.port}: {exc}"
                ) from None
            continue
        except runner_mod.StartFailed as exc:
            sudo = "sudo -n " if s.sudo else ""
            raise SshError(
                endpoint.name, f"cannot start the remote runner ({sudo}sh -c ...): {exc}"
            ) from None
        except runner_mod.Timeout:
            raise CommandTimeout(endpoint.name, "(before the first step)", limit) from None
        keep = False
        try:
            status, out_b, err_b = r.call(data, LOCK_WAIT_SECONDS if locked else 0, limit)
            keep = True
            break
        except runner_mod.Timeout as exc:
            # the runner is still busy with the script: dropped (never reused with a half-read frame)
            i = _last_step(exc.stdout.decode(errors="replace"))
            name = steps[i].name if i is not None and i < len(steps) else "(before the first step)"
            raise CommandTimeout(endpoint.name, name, limit) from None
        except runner_mod.Stale as exc:
            # the runner or its connection ended between calls: nothing ran, so start a new one once
            if not r.alive():
                _drop_if_dead(endpoint, s, r.client)
            if attempt == 2:
                raise HostUnreachable(
                    endpoint.name, f"cannot run a script on {endpoint.address}:{endpoint.port}: {exc}"
                ) from None
        except runner_mod.Lost as exc:
            # the runner or the connection died while the script ran: its effect is unknown, do not re-run
            _drop_if_dead(endpoint, s, r.client)
            raise HostUnreachable(
                endpoint.name, f"lost the connection to {endpoint.address}:{endpoint.port} mid-script: {exc}"
            ) from None
        finally:
            _release(slot, r, keep)
    with STATS.lock:
        STATS.commands_run += 1
        STATS.command_seconds += time.monotonic() - started
    if os.environ.get(STATS_ENV):
        dump_stats()
    out, err = out_b.decode(errors="replace"), err_b.decode(errors="replace")
    if locked and status == LOCK_TIMEOUT_STATUS and "@@" not in out:
        raise LockTimeout(endpoint.name, LOCK_FILE, LOCK_WAIT_SECONDS, _lock_holder(endpoint))
    if status != 0 and "@@" not in out:
        raise SshError(
            endpoint.name, f"remote command {command!r} exited {status}: {err.strip() or '(no stderr)'}"
        )
    return script_mod.parse(endpoint.name, steps, text, status, out, err)


NOTE_HOLDER = "note lock holder"


def _lock_holder(endpoint: Endpoint) -> str | None:
    """The slice that last took the host's lock (best effort: None when it cannot be read)."""
    read = script_mod.sh("holder", '[ -f "$1" ] || exit 1; cat "$1"', LOCK_HOLDER_FILE, kind="probe")
    try:
        res = run_script(endpoint, [read])
    except CloudrepoError:
        return None
    return (res.out("holder").strip() or None) if res.status("holder") == 0 else None


def _drop_if_dead(ep: Endpoint, s: Settings, client: paramiko.SSHClient) -> None:
    """Drop the pooled connection if its transport is gone (a runner alone ending keeps it)."""
    t = client.get_transport()
    if t is None or not t.is_active():
        _drop(ep, s, client)

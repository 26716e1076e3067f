"""One SSH connection per host, shared by the provider's threads, and up to `MAX_RUNNERS` runners on it.

A paramiko transport carries several channels at once, so one connection per host serves every resource on
it; each runner (`runner.py`, started on demand) serves one call at a time.  Host keys are checked against
the configured known_hosts file only (never the user's or the system's); connecting retries with backoff.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import paramiko

from transport import runner as runner_mod
from transport.ssh_settings import Settings, fingerprint
from transport.ssh_stats import STATS
from vocabulary.errors import HostKeyError, HostUnreachable
from vocabulary.specs import Endpoint

# paramiko logs every failed connection attempt with its traceback (ERROR, "Exception (client): ..."); with no
# handler anywhere, Python prints it to the provider's stderr and the engine shows each line as a message
# of the stack (hundreds for one host down). The errors raised here already name the host and the cause.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

RUNNERS_ENV = "CLOUDREPO_SSH_MAX_RUNNERS"


def _max_runners(default: int = 4) -> int:
    """`default`, or $CLOUDREPO_SSH_MAX_RUNNERS (1..64) for experiments (`bench/profile.py`)."""
    raw = os.environ.get(RUNNERS_ENV, "")
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 64 else default


MAX_RUNNERS = _max_runners()
"""Remote runners per host at most (the provider serves up to 4 calls at once); more callers wait."""


@dataclass
class Slot:
    """One host's connection and runners."""

    lock: threading.Lock
    client: paramiko.SSHClient | None = None
    cond: threading.Condition = field(init=False)  # on `lock`: a runner came back
    idle: list[runner_mod.Runner] = field(default_factory=list)
    busy: int = 0  # runners handed out or being started

    def __post_init__(self) -> None:
        self.cond = threading.Condition(self.lock)


_pool: dict[tuple[str, int, str], Slot] = {}
_pool_lock = threading.Lock()


def _connect(ep: Endpoint, s: Settings) -> paramiko.SSHClient:
    delay = 0.25
    last: Exception | None = None
    for attempt in range(1, s.connect_attempts + 1):
        STATS.add(connect_attempts=1)
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
            got, want = exc.key, exc.expected_key
            raise HostKeyError(
                ep.name,
                f"host key of {ep.address}:{ep.port} CHANGED: got {got.get_name()} {fingerprint(got)}, "
                f"{s.known_hosts} has {want.get_name()} {fingerprint(want)}; refusing to connect",
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
            STATS.add(connections_opened=1)
            return client
        if attempt < s.connect_attempts:
            time.sleep(delay)
            delay *= 2
    raise HostUnreachable(
        ep.name, f"cannot connect to {ep.address}:{ep.port} after {s.connect_attempts} attempts: {last}"
    )


def _slot(ep: Endpoint, s: Settings) -> Slot:
    with _pool_lock:
        return _pool.setdefault((ep.address, ep.port, s.user), Slot(threading.Lock()))


def _client(ep: Endpoint, s: Settings) -> paramiko.SSHClient:
    slot = _slot(ep, s)
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
    with _pool_lock:
        slot = _pool.get((ep.address, ep.port, s.user))
    if slot is None:
        return
    with slot.lock:
        if slot.client is client:
            slot.client = None
    client.close()


def drop_if_dead(ep: Endpoint, s: Settings, client: paramiko.SSHClient) -> None:
    """Drop the pooled connection if its transport is gone (a runner alone ending keeps it)."""
    t = client.get_transport()
    if t is None or not t.is_active():
        _drop(ep, s, client)


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


def acquire(ep: Endpoint, s: Settings, timeout: float) -> tuple[Slot, runner_mod.Runner]:
    """A live runner of this host for one call: an idle one, else a new one (at most MAX_RUNNERS)."""
    slot = _slot(ep, s)
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
        STATS.add(sessions_opened=1)
        try:
            return slot, runner_mod.Runner.start(client, runner_mod.command(s.sudo, s.lock_file), timeout)
        except runner_mod.Stale:
            _drop(ep, s, client)
            raise
    except BaseException:
        release(slot, None)
        raise


def release(slot: Slot, r: runner_mod.Runner | None, keep: bool = False) -> None:
    """Give the runner back (`keep`: idle for the next call; else closed)."""
    with slot.cond:
        slot.busy -= 1
        if r is not None:
            if keep and r.client is slot.client:
                slot.idle.append(r)
            else:
                r.close()
        slot.cond.notify()


def open_client(ep: Endpoint, s: Settings) -> paramiko.SSHClient:
    """A connection of its own (not pooled; the caller closes it): a stream that outlives one call."""
    return _connect(ep, s)

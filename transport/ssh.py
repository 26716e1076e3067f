"""The SSH layer's entry points: `configure()` from the stack config, and `run_script(endpoint, steps)`.

Lives only in the provider process (module state, never pickled).  The parts: `ssh_settings` (the one parser
of `cloudrepo:ssh`), `ssh_pool` (a connection per host and its runners), `runner` (a long-lived remote
shell that runs one script per round trip), `script` (steps to sh text and back), `ssh_stats` (counters).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from transport import runner as runner_mod
from transport import script as script_mod
from transport import ssh_pool
from transport.script import ScriptResult, Step
from transport.ssh_pool import close_all
from transport.ssh_settings import ConfigLike, Settings, settings_from_config
from transport.ssh_stats import (
    STATS,
    STATS_ENV,
    dump_stats,
    record_round_trip,
    reset_stats,
    stats,
    timing_enabled,
)
from vocabulary.errors import (
    CloudrepoError,
    CommandTimeout,
    ConfigError,
    HostUnreachable,
    LockTimeout,
    SshError,
)
from vocabulary.naming import LOCK_TIMEOUT_STATUS
from vocabulary.specs import Endpoint

__all__ = ["close_all", "configure", "reset_stats", "run_script", "settings", "stats"]

LOCK_WAIT_SECONDS = 60
"""How long a locked script waits for the host's lock (`flock -w`)."""
NOTE_HOLDER = "note lock holder"
_NOTE = (
    'printf "%s\\n" "$2" >"$1"; t=$(date +%s%N); a=${CLOUDREPO_LOCK_ASKED:-x}; '
    'case "$t$a" in *[!0-9]*) ;; *) echo $((t - a)) ;; esac'
)
"""Note the slice beside the lock, then print how long the lock took, in ns (nothing on a host whose `date`
has no `%N`)."""

_settings: Settings | None = None
_settings_lock = threading.Lock()


def configure(config: ConfigLike | Mapping[str, Any], base: Path | None = None) -> None:
    """Install the credentials for this process (called from every provider's `configure`)."""
    install(settings_from_config(config, base))


def install(new: Settings) -> None:
    """Use `new` from now on; pooled connections made with other credentials are closed."""
    global _settings
    with _settings_lock:
        if _settings is not None and (
            _settings.user != new.user
            or _settings.known_hosts != new.known_hosts
            or _settings.sudo != new.sudo
            or _settings.lock_file != new.lock_file
        ):
            close_all()
        _settings = new


def settings() -> Settings:
    if _settings is None:
        raise ConfigError("the provider was not configured: no SSH settings (cloudrepo:ssh)")
    return _settings


def _last_step(stdout: str) -> int | None:
    """Index of the last step the script began (from its marker lines)."""
    idx = stdout.rfind(":begin:")
    if idx < 0:
        return None
    num = stdout[idx + 7 :].split("\n", 1)[0]
    return int(num) if num.isdigit() else None


def holder_file(s: Settings) -> str:
    """Where a locked script notes its slice: beside the lock file (`naming.LOCK_HOLDER_FILE` on hosts)."""
    return f"{s.lock_file}.holder"


def run_script(
    endpoint: Endpoint,
    steps: Sequence[Step],
    *,
    locked: bool = False,
    timeout: float | None = None,
    holder: str | None = None,
) -> ScriptResult:
    """Run `steps` on `endpoint` as ONE script (one round trip, on a pooled runner) and parse the result.

    `locked=True` runs the whole script under `flock` of the hosts' lock file (`naming.LOCK_FILE`), first
    noting `holder` (the slice) beside it.  Raises `StepFailed` for the first failing `run` step,
    `HostKeyError` / `HostUnreachable` before anything runs, `LockTimeout` when the lock stays taken.
    """
    if not steps:
        return ScriptResult()
    s = settings()
    if locked and holder is not None:
        steps = [script_mod.sh(NOTE_HOLDER, _NOTE, holder_file(s), holder), *steps]
    timed = timing_enabled()
    text = script_mod.render(steps, stamps=timed)
    data = text.encode()
    limit = timeout or s.command_timeout
    started, wall = time.monotonic(), time.time()
    for attempt in (1, 2):
        try:
            slot, r = ssh_pool.acquire(endpoint, s, limit)
            in_hand = time.time()
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
                ssh_pool.drop_if_dead(endpoint, s, r.client)
            if attempt == 2:
                raise HostUnreachable(
                    endpoint.name, f"cannot run a script on {endpoint.address}:{endpoint.port}: {exc}"
                ) from None
        except runner_mod.Lost as exc:
            # the runner or the connection died while the script ran: its effect is unknown, do not re-run
            ssh_pool.drop_if_dead(endpoint, s, r.client)
            raise HostUnreachable(
                endpoint.name, f"lost the connection to {endpoint.address}:{endpoint.port} mid-script: {exc}"
            ) from None
        finally:
            ssh_pool.release(slot, r, keep)
    out, err = out_b.decode(errors="replace"), err_b.decode(errors="replace")
    wait = lock_wait(script_mod.step_output(text, out, 0) or "") if locked and holder is not None else 0.0
    if locked and status == LOCK_TIMEOUT_STATUS and "@@" not in out:
        wait = float(LOCK_WAIT_SECONDS)  # it waited the whole time (raised below)
    STATS.add(
        commands_run=1,
        command_seconds=time.monotonic() - started,
        lock_waits=int(locked),
        lock_wait_seconds=wait,
    )
    waited.add(wait)
    if os.environ.get(STATS_ENV):
        dump_stats()
    if timed:
        record_round_trip(
            host=endpoint.name,
            start=wall,
            runner=in_hand,
            end=time.time(),
            host_span=script_mod.host_span(text, out),
            locked=locked,
            steps=len(steps),
            read=all(st.kind != "run" for st in steps),
            status=status,
            attempt=attempt,
            bytes_out=len(data),
            bytes_in=len(out_b) + len(err_b),
            lock_wait=round(wait, 6),
        )
    if locked and status == LOCK_TIMEOUT_STATUS and "@@" not in out:
        raise LockTimeout(endpoint.name, s.lock_file, LOCK_WAIT_SECONDS, lock_holder(endpoint, s))
    if status != 0 and "@@" not in out:
        what = f"under flock {s.lock_file}" if locked else "in the runner"
        detail = err.strip() or "(no stderr)"
        raise SshError(endpoint.name, f"the script ({what}) exited {status} before its first step: {detail}")
    result = script_mod.parse(endpoint.name, steps, text, status, out, err)
    result.lock_wait = wait
    return result


def lock_wait(noted: str) -> float:
    """Seconds from the holder note's output (ns); 0 when the host could not tell."""
    text = noted.strip()
    return int(text) / 1e9 if text.isdigit() else 0.0


class Waited(threading.local):
    """The lock wait of the scripts this thread ran since its last `take()`: the engine serves each
    resource call on one thread, so the pipeline reads a call's own wait from here."""

    seconds = 0.0

    def add(self, seconds: float) -> None:
        self.seconds += seconds

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds


waited = Waited()


def lock_holder(endpoint: Endpoint, s: Settings) -> str | None:
    """The slice that last took the host's lock (best effort: None when it cannot be read)."""
    read = script_mod.sh("holder", '[ -f "$1" ] || exit 1; cat "$1"', holder_file(s), kind="probe")
    try:
        res = run_script(endpoint, [read])
    except CloudrepoError:
        return None
    return (res.out("holder").strip() or None) if res.status("holder") == 0 else None

"""`cloudrepo check`'s I/O: the probes of `cloudrepo.checkplan` run in the guests, through a path a user
has on a real cloud, then judged.

Per guest (`checkplan.via`): a guest with cloud-init through `cloudrepo exec`'s SSH path
(`cloudrepo.guestssh`), any other through its serial console over SSH to its worker (`cloudrepo.console`'s
attach script: the console's one lock is taken, so a check and `cloudrepo console` exclude each other).
`run` takes any `Shell` (the testbed's `lab.slicecheck` passes its own), runs each guest's probes in
order and the guests in parallel, and tries the failing checks again until `wait` seconds have passed
(a guest that is still booting, a lease still coming).
"""

from __future__ import annotations

import secrets
import select
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import paramiko

from cloudrepo import console, guestssh, hostaccess
from cloudrepo.checkplan import Outcome, Planned, Probe, Row, judge, probes, via
from cloudrepo.engine import SliceError
from vocabulary import naming, serialframe
from vocabulary.ssh_input import SSH_KEY_SECRET

Shell = Callable[[Probe, float], Outcome]
"""Runs a probe in its guest within a timeout (seconds); never raises for the guest's own failures."""
PROBE_TIMEOUT = 30.0
PARALLEL = 8
RETRY_PAUSE = 2.0


def run(
    planned: Sequence[Planned],
    shell: Shell,
    path_of: Callable[[int], str],
    wait: float = 0.0,
    timeout: float = PROBE_TIMEOUT,
) -> list[Row]:
    """The rows of `planned`, in order; the failing ones run again until they pass or `wait` is over."""
    deadline = time.monotonic() + wait
    rows: dict[int, Row] = {}
    todo = list(range(len(planned)))
    while True:
        batch = [planned[i] for i in todo]
        results = _run_probes(probes(batch), shell, timeout)
        for i in todo:
            rows[i] = judge(planned[i], results, path_of(planned[i].vm))
        todo = [i for i in todo if not rows[i].ok and planned[i].probe is not None]
        if not todo or time.monotonic() + RETRY_PAUSE >= deadline:
            return [rows[i] for i in range(len(planned))]
        time.sleep(RETRY_PAUSE)


def _run_probes(by_vm: Mapping[int, list[Probe]], shell: Shell, timeout: float) -> dict[Probe, Outcome]:
    def one_guest(items: list[Probe]) -> list[tuple[Probe, Outcome]]:
        return [(p, shell(p, timeout)) for p in items]

    out: dict[Probe, Outcome] = {}
    with ThreadPoolExecutor(PARALLEL) as pool:
        for pairs in pool.map(one_guest, by_vm.values()):
            out.update(pairs)
    return out


class CloudShell:
    """The shells of one deployed slice as `cloudrepo` reaches them: SSH for cloud-init guests, the serial
    console (over SSH to the worker, its lock taken) for the others. One worker connection each, kept
    for the run; `close` ends them."""

    def __init__(
        self,
        slices: Any,
        name: str,
        outputs: Mapping[str, Any],
        identity: str | None = None,
    ) -> None:
        self.slices, self.name, self.outputs = slices, name, outputs
        self.identity = identity
        self._clients: dict[str, tuple[paramiko.SSHClient, bool]] = {}
        self._lock = threading.Lock()

    def path(self, vm: int) -> str:
        return via(self.outputs, vm)

    def __call__(self, probe: Probe, timeout: float) -> Outcome:
        try:
            if via(self.outputs, probe.vm) == "ssh":
                return self._ssh(probe, timeout)
            return self._console(probe, timeout)
        except SliceError as exc:
            return Outcome(None, error=str(exc))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            return Outcome(None, error=f"the SSH session failed: {exc or type(exc).__name__}")

    def _ssh(self, probe: Probe, timeout: float) -> Outcome:
        (r,) = guestssh.exec_all(
            self.outputs, Path(self.slices.project), self.name, [probe.vm], self.identity, list(probe.argv),
            lambda: self.slices.secret(self.name, SSH_KEY_SECRET), timeout,
        )  # fmt: skip
        if r.exit in (guestssh.SSH_STATUS, guestssh.TIMED_OUT):
            return Outcome(None, r.stdout, f"ssh to VM {probe.vm}: {' '.join(r.stderr.split())[-200:]}")
        return Outcome(r.exit, r.stdout + r.stderr)

    def _client(self, worker: str) -> tuple[paramiko.SSHClient, bool]:
        with self._lock:
            if worker not in self._clients:
                endpoint, login = hostaccess.worker_login(self.slices, self.name, worker)
                self._clients[worker] = (hostaccess.connect(endpoint, login), login.sudo)
            return self._clients[worker]

    def _console(self, probe: Probe, timeout: float) -> Outcome:
        t = console.target(self.name, probe.vm, self.outputs)
        client, sudo = self._client(t.worker)
        holder = naming.console_holder(console.who("cloudrepo check"), datetime.now(UTC))
        chan = console.open_script(client, console.attach_argv(t.vm, holder), sudo)
        try:
            if console.wait_attached(chan, timeout) is None:
                _, err, status = console.drain(chan)
                return Outcome(None, error=console.refusal(t, status, err.decode(errors="replace")))
            return _typed(chan, list(probe.argv), timeout, f"VM {t.vm} on {t.worker}")
        finally:
            console.hang_up(chan)

    def close(self) -> None:
        for client, _ in self._clients.values():
            client.close()


def _typed(chan: paramiko.Channel, argv: list[str], timeout: float, where: str) -> Outcome:
    """Type `argv` at the shell behind an attached console channel; its status and output."""
    nonce = secrets.token_hex(8)
    chan.sendall(serialframe.INTERRUPT)
    time.sleep(0.2)
    chan.sendall(serialframe.line(argv, nonce).encode())
    buf = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if chan.recv_ready():
            chunk = chan.recv(65536)
            if not chunk:
                break
            buf += chunk.decode(errors="replace").replace("\r", "")
            done = serialframe.answer(buf, nonce)
            if done is not None:
                return Outcome(*done)
        elif chan.exit_status_ready() or chan.closed:
            break
        else:
            select.select([chan], [], [], 0.2)
    else:
        return Outcome(None, error=f"no answer from the shell of {where} within {timeout:g}s")
    return Outcome(None, error=f"the console of {where} closed (the VM stopped?)")

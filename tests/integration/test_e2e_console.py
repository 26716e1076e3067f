"""`cloudrepo console` on the testbed, on a real QEMU guest of a slice deployed by the real engine, driven as
a person drives it: in a tmux session (send-keys, capture-pane). It attaches over SSH to the worker (the
stack's own settings, the key a secret, sudo), a command typed at the guest's shell answers, a second
client (another `cloudrepo console`, `lab.console` as the slice checks use it) is refused naming the holder,
Ctrl-] detaches with exit 0 and the VM keeps running; `--log` shows what was typed and its answer; an
unknown VM, a VM without `launch`, a stopped VM and an unknown slice are clear refusals; restarted, the VM's
log of the boot before is kept beside the new one."""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from lab import console as lab_console
from lab.common import LabError, host_paths
from lab.procs import alive
from lab.vms import console_of
from tests.integration.clikit import Checkout
from tests.integration.e2ekit import guest_launch, qemu_tcg, wall_time
from tests.integration.slicekit import SliceStack

pytestmark = pytest.mark.integration

FAULT_STACKS = ["env", "PYTHONFAULTHANDLER=1"]
"""The prefix of a pane's command: SIGABRT prints the stacks of all its threads (`Tmux.ended`)."""

SLICE = "e2e-console"
POOL = 360
VM = 7501
VMS: list[dict[str, Any]] = [
    {"id": VM, "worker": "worker1", "dataInterfaces": 0, "launch": guest_launch()},
    {"id": 7502, "worker": "worker2", "dataInterfaces": 0},
]


class Tmux:
    """A tmux server of the test's own (its socket in the test's directory), panes kept when they exit."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.sock = str(root / "tmux.sock")
        self.conf = root / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\nset -g history-limit 5000\n")
        self.env = env

    def __call__(self, *args: str) -> str:
        done = subprocess.run(
            ["tmux", "-S", self.sock, "-f", str(self.conf), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return done.stdout

    def screen(self, pane: str) -> str:
        return self("capture-pane", "-p", "-J", "-S", "-200", "-t", pane)

    def wait_for(self, pane: str, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen(pane)
            if text in screen:
                return screen
            time.sleep(0.3)
        raise AssertionError(f"{text!r} not on the screen within {timeout}s:\n{self.screen(pane)}")

    def dead(self, pane: str, timeout: float = 30) -> int:
        """The exit status of the pane's process once it has exited.

        tmux 3.3a can miss the SIGCHLD of a pane's process: the pane reads as dead (its terminal closed) with
        no status, the process a zombie it never reaps. Told again (SIGCHLD to the server), it reaps it
        and records the status."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            fmt = "#{pane_dead}:#{pane_dead_status}:#{pane_dead_signal}"
            dead, status, killed = self("list-panes", "-t", pane, "-F", fmt).strip().split(":")
            assert not killed, f"the pane's process was killed by signal {killed}"
            if dead == "1" and status:
                return int(status)
            if dead == "1":
                os.kill(int(self("display-message", "-p", "#{pid}")), signal.SIGCHLD)
            time.sleep(0.2)
        raise AssertionError(f"the pane's process still runs after {timeout}s:\n{self.screen(pane)}")

    def ended(self, pane: str, timeout: float, what: str) -> int:
        """`dead`, or a failure showing the processes on the pane's terminal and every thread's stack of its
        Python ones (started under `FAULT_STACKS`: SIGABRT prints them) when the pane still runs after
        `timeout` (`what` happened before)."""
        try:
            return self.dead(pane, timeout)
        except AssertionError as still_running:
            tty = self("display-message", "-p", "-t", pane, "#{pane_tty}").strip()
            ps = ["ps", "-o", "pid,ppid,stat,wchan:20,etime,args", "-t", tty.removeprefix("/dev/")]
            listing = subprocess.run(ps, capture_output=True, text=True, check=False).stdout
            for line in listing.splitlines()[1:]:
                pid, _ppid, _stat, _wchan, _etime, command = line.split(None, 5)
                if "python" in command.split()[0]:
                    os.kill(int(pid), signal.SIGABRT)
            try:
                stacks = self.wait_for(pane, "most recent call", 10)
            except AssertionError:
                stacks = "(no stack printed)"
            raise AssertionError(
                f"still running {timeout} s after {what}; on {tty}:\n{listing}\n{stacks}"
            ) from still_running

    def kill(self) -> None:
        subprocess.run(["tmux", "-S", self.sock, "kill-server"], capture_output=True, check=False)


@pytest.fixture
def tmux_factory(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], Tmux]]:
    made: list[Tmux] = []

    def make(env: dict[str, str]) -> Tmux:
        made.append(Tmux(tmp_path, env))
        return made[-1]

    yield make
    for t in made:
        t.kill()


def qemu_pid(stack: SliceStack) -> int:
    pidfile = host_paths("worker1").state / f"vms/{VM}/qemu.pid"
    return int(pidfile.read_text().strip())


def test_console_attaches_answers_detaches_and_refuses_a_second_client(
    slice_stack: Callable[..., SliceStack],
    slice_backend: Path,
    tmux_factory: Callable[[dict[str, str]], Tmux],
    testbed: Any,
) -> None:
    with wall_time("console: tmux attach, second client, detach, log"):
        stack = slice_stack(SLICE, POOL, VMS, [], secret_key=True, extra=qemu_tcg())
        stack.up()
        outputs = stack.outputs()
        sock = console_of(outputs["vms"], str(VM))
        lab_console.wait_ready(sock, timeout=120)
        op = Checkout(stack.cli.project_dir, {"PULUMI_BACKEND_URL": f"file://{slice_backend}"})
        pid = qemu_pid(stack)
        run_console(op, tmux_factory(op.env()), sock)
        assert alive(pid) and qemu_pid(stack) == pid, "the VM did not keep running"
        assert lab_console.run(sock, ["echo", "still", "here"]).stdout.strip() == "still here"

        log = op.ok("console", SLICE, str(VM), "--log", "--lines", "200")
        assert re.search(r"(^|\s)cr-42-ok$", log, re.M), log  # the answer (after the shell's prompt)
        assert "\r" not in log and "\x1b" not in log
        assert len(op.ok("console", SLICE, str(VM), "--log", "--lines", "1").splitlines()) == 1
        refusals(op, stack, pid)
        rotation(stack, op, sock)


def run_console(op: Checkout, tmux: Tmux, sock: Path) -> None:
    argv = [*FAULT_STACKS, *op.script, "--project", str(op.project), "console", SLICE, str(VM)]
    tmux("new-session", "-d", "-s", "con", "-x", "150", "-y", "40", "-c", str(op.project), shlex.join(argv))
    tmux.wait_for("con", f"Connected to vm {VM} on worker1. Escape: Ctrl-]")
    tmux("send-keys", "-t", "con", "echo cr-$((6*7))-ok", "Enter")
    tmux.wait_for("con", "\ncr-42-ok")  # the guest's shell computed it: the typed line reached it

    # a second client while the first is attached: refused at once, naming the holder and since when
    second = op.run("console", SLICE, str(VM), timeout=120)
    assert second.returncode == 1, (second.stdout, second.stderr)
    said = second.stderr.strip()
    assert f"console of vm {VM} is in use by cloudrepo console of " in said, said
    assert " since " in said and said.endswith(" UTC"), said
    assert "Traceback" not in second.stderr
    with pytest.raises(LabError, match=r"is in use by cloudrepo console of .* since "):
        lab_console.run(sock, ["true"], timeout=2)

    tmux("send-keys", "-t", "con", "C-]")
    assert tmux.ended("con", 30, "Ctrl-]") == 0
    screen = tmux.screen("con")
    assert f"Detached from vm {VM} (escape Ctrl-]); it keeps running." in screen, screen


def refusals(op: Checkout, stack: SliceStack, pid: int) -> None:
    """Each refusal: exit 1 and its reason, no traceback."""
    cases = [
        (("console", SLICE, "7999"), f"slice '{SLICE}' has no VM 7999 (its VMs: {VM}, 7502)"),
        (("console", SLICE, "7502"), "VM 7502 of slice 'e2e-console' is not launched"),
        (("console", "no-such-slice", str(VM)), "no slice 'no-such-slice' in the backend"),
    ]
    for args, reason in cases:
        result = op.run(*args, timeout=120)
        assert result.returncode == 1 and reason in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr
    os.kill(pid, 9)
    deadline = time.monotonic() + 10
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    stopped = op.run("console", SLICE, str(VM), timeout=120)
    assert stopped.returncode == 1, (stopped.stdout, stopped.stderr)
    assert f"VM {VM} of slice '{SLICE}' is not running on worker1" in stopped.stderr
    # the log of the boot that ended stays readable
    assert "cr-42-ok" in op.ok("console", SLICE, str(VM), "--log")


def rotation(stack: SliceStack, op: Checkout, sock: Path) -> None:
    """`up` starts the stopped VM again: the boot before's log is kept as console.log.1, the new boot's
    log (root's alone) is what `--log` shows."""
    stack.up()
    lab_console.wait_ready(sock, timeout=120)
    d = host_paths("worker1").state / f"vms/{VM}"
    assert "cr-42-ok" in (d / "console.log.1").read_text(errors="replace")
    for name in ("console.log", "console.log.1", "console.sock.lock"):
        st = os.stat(d / name)
        assert st.st_mode & 0o777 == 0o600 and st.st_uid == 0, (name, oct(st.st_mode))
    assert "cr-42-ok" not in op.ok("console", SLICE, str(VM), "--log", "--lines", "1000")

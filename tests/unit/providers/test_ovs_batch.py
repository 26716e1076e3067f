"""The host's group commit of OVS changes (`providers.ovs_batch`), its sh program run here against a stand-in
`ovs-vsctl` that logs each call (the real one: `tests/functional/test_ovs_batch_functional.py`)."""

from __future__ import annotations

import fcntl
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers import ovs_batch

FAKE = """#!/bin/sh
# one line per call: its arguments; a change naming a port "bad-*" fails the whole transaction
printf '%s\\n' "$*" >> "$OVS_LOG"
sleep 0.02
case " $* " in *" bad-"*) echo "ovs-vsctl: no port named bad" >&2; exit 1;; esac
exit 0
"""


@dataclass
class Host:
    spool: Path
    log: Path
    env: dict[str, str]

    def start(self, port: str, *, wait: bool = True) -> subprocess.Popen[str]:
        """A script committing one port's change (as `ovs_batch.step` renders it) in the background."""
        step = ovs_batch.step("attach port", ["--may-exist", "add-port", "br-int", port], wait=wait)
        argv = [*step.argv[:4], str(self.spool), *step.argv[5:]]  # the spool of this test, not the host's
        return subprocess.Popen(argv, env=self.env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    def calls(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@pytest.fixture
def host(tmp_path: Path) -> Iterator[Host]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "ovs-vsctl"
    fake.write_text(FAKE)
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OVS_LOG": str(tmp_path / "calls")}
    yield Host(tmp_path / "spool", tmp_path / "calls", env)


def groups(call: str) -> list[str]:
    """The command groups of a logged call, its mode apart."""
    out: list[list[str]] = [[]]
    for word in call.split():
        if word == "--":
            out.append([])
        elif word != "--no-wait":
            out[-1].append(word)
    return [" ".join(g) for g in out if g]


def ended(procs: list[subprocess.Popen[str]]) -> list[tuple[int, str]]:
    return [(p.wait(timeout=60), p.communicate()[1]) for p in procs]


def test_changes_queued_while_another_commits_go_in_one_transaction(host: Host) -> None:
    host.spool.mkdir(mode=0o700)
    with open(host.spool / "lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a commit in progress
        procs = [host.start(f"tap{i}", wait=i != 2) for i in range(6)]
        deadline = time.monotonic() + 30
        while len(list(host.spool.glob("*.req"))) < 6:
            assert time.monotonic() < deadline, sorted(host.spool.iterdir())
            time.sleep(0.01)
        fcntl.flock(lock, fcntl.LOCK_UN)
    assert ended(procs) == [(0, "")] * 6
    (call,) = host.calls()
    # one transaction, every change its own command group; it waits since some change does
    assert not call.startswith("--no-wait"), call
    assert sorted(groups(call)) == sorted(f"--may-exist add-port br-int tap{i}" for i in range(6))
    assert sorted(p.name for p in host.spool.iterdir()) == ["lock"]  # nothing left in the queue


def test_a_change_alone_keeps_its_mode(host: Host) -> None:
    assert ended([host.start("tap0", wait=False)]) == [(0, "")]
    assert host.calls() == ["--no-wait -- --may-exist add-port br-int tap0"]


@settings(max_examples=15, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=8))
def test_every_script_gets_its_own_status_and_error(
    tmp_path_factory: pytest.TempPathFactory, bad: list[bool]
) -> None:
    base = tmp_path_factory.mktemp("batch")
    bin_dir = base / "bin"
    bin_dir.mkdir()
    (bin_dir / "ovs-vsctl").write_text(FAKE)
    (bin_dir / "ovs-vsctl").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "OVS_LOG": str(base / "calls")}
    host = Host(base / "spool", base / "calls", env)
    ports = [f"bad-{i}" if b else f"tap{i}" for i, b in enumerate(bad)]
    results = ended([host.start(p) for p in ports])
    for port, (status, err) in zip(ports, results, strict=True):
        if port.startswith("bad-"):
            assert (status, err) == (1, "ovs-vsctl: no port named bad\n"), port
        else:
            assert (status, err) == (0, ""), port
    calls = host.calls()
    done = [c for c in calls if "bad-" not in c]
    for port in ports:
        if not port.startswith("bad-"):
            # committed in a transaction that succeeded, and in no more than one
            assert sum(f"--may-exist add-port br-int {port}" in groups(c) for c in done) == 1, (port, calls)
    assert len(done) <= len(ports)
    assert sorted(p.name for p in host.spool.iterdir()) == ["lock"]


def test_a_change_is_refused_with_a_mode_or_a_line_break_in_it() -> None:
    with pytest.raises(ValueError, match="its mode apart"):
        ovs_batch.step("attach port", ["--no-wait", "add-port", "br-int", "t"])
    with pytest.raises(ValueError, match="line break"):
        ovs_batch.step("attach port", ["add-port", "br-int", "t\nx"])

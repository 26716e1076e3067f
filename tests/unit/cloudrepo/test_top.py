"""`cloudrepo top`: the sampler body run here by a local `sh` on real processes whose pid files are laid
out as a worker's (`<dir>/<vm>/qemu.pid`): found by the pid file and only when the process's argv holds
that path, its RSS as /proc says and its CPU % from the ticks between the two reads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloudrepo import top
from transport.interrupt import first_interrupt

BUSY = "import sys, time\nend = time.time() + 30\nwhile time.time() < end: pass"
IDLE = "import sys, time\ntime.sleep(30)"


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[dict[int, subprocess.Popen[bytes]]]:
    started: dict[int, subprocess.Popen[bytes]] = {}
    for vm, code, holds_path in ((1, BUSY, True), (2, IDLE, True), (3, IDLE, False)):
        d = tmp_path / str(vm)
        d.mkdir()
        pid_file = d / "qemu.pid"
        argv = [sys.executable, "-c", code, *([str(pid_file)] if holds_path else ["other"])]
        p = subprocess.Popen(argv)
        pid_file.write_text(f"{p.pid}\n")
        started[vm] = p
    (tmp_path / "4").mkdir()  # no pid file
    yield started
    for p in started.values():
        p.kill()
        p.wait()


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(pid)


def test_sample_of_real_processes(tmp_path: Path, procs: dict[int, subprocess.Popen[bytes]]) -> None:
    argv = top.sample_argv([1, 2, 3, 4])
    argv[4] = str(tmp_path)
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=30).stdout
    rows = {r.vm: r for r in top.parse_sample("worker1", out)}
    assert set(rows) == {1, 2, 3, 4}
    assert rows[1].pid == procs[1].pid and rows[2].pid == procs[2].pid
    assert not rows[3].running and not rows[4].running  # argv without the pid file's path; no pid file
    assert rows[1].cpu_pct is not None and rows[1].cpu_pct > 20, rows[1]
    assert rows[2].cpu_pct is not None and rows[2].cpu_pct < 5, rows[2]
    for vm in (1, 2):
        got = rows[vm].rss_mb
        assert got is not None and abs(got - rss_mb(procs[vm].pid)) < 2
    doc = top.as_json(list(rows.values()))
    assert {d["vm"]: d["running"] for d in doc} == {1: True, 2: True, 3: False, 4: False}
    text = top.table("s1", list(rows.values()), "12:00:00")
    assert text.splitlines()[3].split()[0] == "1"  # the busiest first
    assert "not running" in text


def test_launched_vms_by_worker() -> None:
    outputs = {
        "vms": {
            "7": {"worker": "w2", "console": "/x"},
            "3": {"worker": "w1", "console": "/y"},
            "4": {"worker": "w1"},
            "x": {"worker": "w1", "console": "/z"},
        }
    }
    assert top.launched(outputs) == {"w1": [3], "w2": [7]}


def test_bad_usage_is_exit_2_before_any_login(capsys: pytest.CaptureFixture[str]) -> None:
    from cloudrepo import cli

    assert cli.main(["top", "s1", "--json"]) == cli.USAGE
    assert "--json goes with --once" in capsys.readouterr().err
    for argv in (["top", "s1", "--interval", "-1"], ["top", "s1", "--interval", "nan"], ["top", "../x"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 2, argv


def test_the_first_ctrl_c_ends_the_loop_between_samples_and_the_second_interrupts() -> None:
    """`top`'s loop: a first SIGINT only sets the stop event (no exception inside an SSH call), a second one
    raises KeyboardInterrupt, and the handler before the block is back after it."""
    before = signal.getsignal(signal.SIGINT)
    with first_interrupt() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.wait(5)
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)
    assert signal.getsignal(signal.SIGINT) is before

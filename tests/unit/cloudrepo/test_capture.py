"""`cloudrepo capture`: LINK resolved from the outputs (endpoints in either order, one endpoint, the VLAN),
`--count` and `--filter` checked, and the remote program run here with a stand-in tcpdump: the filter
reaches it as one argument whatever it holds, and closing the stream ends it."""

from __future__ import annotations

import argparse
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cloudrepo import capture
from cloudrepo.cli import main
from tests.fuzzkit import hostile_text
from transport import capture as stream

OUTPUTS: dict[str, Any] = {
    "links": [
        {"endpoints": ["1002.eth1", "1003.eth1"], "vlan": 120},
        {"endpoints": ["1002.eth2", "1004.eth1"], "vlan": 121},
    ],
    "vms": {
        vm: {"worker": worker, "interfaces": {f"eth{i}": {"tap": f"tap_{vm}_eth{i}"} for i in range(3)}}
        for vm, worker in (("1002", "worker1"), ("1003", "worker2"), ("1004", "worker2"))
    },
}


@pytest.mark.parametrize(
    ("link", "worker", "tap"),
    [
        ("1002.eth1--1003.eth1", "worker1", "tap_1002_eth1"),
        ("1003.eth1 -- 1002.eth1", "worker1", "tap_1002_eth1"),
        ("1002.eth2,1004.eth1", "worker1", "tap_1002_eth2"),
        ("120", "worker1", "tap_1002_eth1"),
        ("1004.eth1", "worker2", "tap_1004_eth1"),
    ],
)
def test_a_link_by_its_endpoints_one_end_or_its_vlan(link: str, worker: str, tap: str) -> None:
    found = capture.target("dev", OUTPUTS, link)
    assert (found.worker, found.tap) == (worker, tap)
    assert found.label.endswith("(VLAN 120)") or found.label.endswith("(VLAN 121)")


@given(hostile_text())
def test_any_other_link_is_refused_naming_the_links(link: str) -> None:
    try:
        found = capture.target("dev", OUTPUTS, link)
    except capture.CaptureError as exc:
        assert "1002.eth1--1003.eth1 (VLAN 120), 1002.eth2--1004.eth1 (VLAN 121)" in str(exc)
        return
    assert found.tap in {"tap_1002_eth1", "tap_1002_eth2", "tap_1004_eth1", "tap_1003_eth1"}


@given(hostile_text())
def test_a_filter_is_printable_ascii_or_refused_with_its_value(text: str) -> None:
    try:
        assert capture.bpf_filter(text) == text
    except argparse.ArgumentTypeError as exc:
        assert "a filter is printable ASCII text" in str(exc)
        return
    assert text.isascii() and text.isprintable() and "\n" not in text and 0 < len(text) <= 1024


@pytest.mark.parametrize(
    "argv", [["--count", "0"], ["--count", "-1"], ["--count", "x"], ["--filter", "a\nb"]]
)
def test_bad_count_or_filter_is_bad_usage(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["capture", "dev", "120", *argv])
    assert info.value.code == 2
    assert "argument --" in capsys.readouterr().err


def fake_tcpdump(tmp: Path) -> Path:
    """A tcpdump that writes its arguments (one per line, NUL-terminated) and its pid, then waits."""
    bin_dir = tmp / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "tcpdump").write_text(
        '#!/bin/sh\nprintf "%s\\0" "$@" > "$ARGS"\necho $$ > "$PIDFILE"\nprintf PCAP\nexec sleep 30\n'
    )
    (bin_dir / "tcpdump").chmod(0o755)
    return bin_dir


def run_program(tmp: Path, tap: str, count: int, bpf: str) -> tuple[list[str], bytes, int]:
    """The remote program on this machine: its stdin closed once tcpdump started, as a stopped capture
    does; returns tcpdump's arguments, what came out and whether tcpdump is gone."""
    bin_dir = fake_tcpdump(tmp)
    args, pidfile = tmp / "args", tmp / "pid"
    for f in (args, pidfile):
        f.unlink(missing_ok=True)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ARGS": str(args),
        "PIDFILE": str(pidfile),
    }
    proc = subprocess.Popen(
        ["sh", "-c", stream.PROGRAM, "sh"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(f"{tap}\n{count}\n{bpf}\n".encode())
    proc.stdin.flush()
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.stdin.close()  # the client stops
    out = proc.stdout.read()
    proc.wait(timeout=10)
    pid = int(pidfile.read_text())
    gone = not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text().lower()
    return args.read_bytes().decode().split("\0")[:-1], out, gone


@settings(max_examples=25, deadline=None)
@given(st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=200))
def test_the_filter_reaches_tcpdump_as_one_argument_and_stopping_ends_it(
    tmp_path_factory: pytest.TempPathFactory, bpf: str
) -> None:
    tmp = tmp_path_factory.mktemp("capture")
    args, out, gone = run_program(tmp, "tap_1002_eth1", 5, bpf)
    assert args == ["-U", "--immediate-mode", "-w", "-", "-i", "tap_1002_eth1", "-c", "5", "--", bpf]
    assert out == b"PCAP"
    assert gone


def test_no_count_and_no_filter_capture_everything(tmp_path: Path) -> None:
    args, _, gone = run_program(tmp_path, "tap_7_eth1", 0, "")
    assert args == ["-U", "--immediate-mode", "-w", "-", "-i", "tap_7_eth1"] and gone


def test_a_capture_that_ends_by_itself_ends_the_program(tmp_path: Path) -> None:
    """tcpdump done (its count reached) while the client still holds stdin open, and a parent (as `sudo`
    is) holds stdout: the program exits with tcpdump's status, so the stream ends."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "tcpdump").write_text("#!/bin/sh\nprintf PCAP\nexit 3\n")
    (bin_dir / "tcpdump").chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    proc = subprocess.Popen(
        ["sh", "-c", 'sh -c "$1" sh; echo " status $?"', "sh", stream.PROGRAM],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(b"tap_1_eth1\n2\nicmp\n")
    proc.stdin.flush()  # and kept open
    assert proc.stdout.read() == b"PCAP status 3\n"
    proc.stdin.close()
    assert proc.wait(timeout=10) == 0


def test_the_remote_command_is_a_constant() -> None:
    """Nothing a caller gives is in the command the login shell parses."""
    assert stream.command(False) == stream.command(False) and "$filter" in stream.command(False)
    assert stream.command(True).startswith("sudo -n sh -c ")

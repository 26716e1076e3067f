"""`PulumiCLI` starts the engine with SIGINT at its default, whatever its caller ignores."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab.pulumi_cli import PulumiCLI

SIGINT_BIT = 1 << (signal.SIGINT - 1)


def ignored_mask(text: str) -> int:
    line = next(x for x in text.splitlines() if x.startswith("SigIgn:"))
    return int(line.split()[1], 16)


@pytest.fixture
def caller_ignores_sigint() -> Iterator[None]:
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> PulumiCLI:
    # the engine replaced by a command that shows the signals it ignores
    monkeypatch.setattr(PulumiCLI, "argv", lambda _self, *_a: ["sh", "-c", "cat /proc/self/status"])
    return PulumiCLI(tmp_path, "s")


@pytest.mark.usefixtures("caller_ignores_sigint")
def test_run_and_popen_reset_an_ignored_sigint(cli: PulumiCLI) -> None:
    assert ignored_mask(Path("/proc/self/status").read_text()) & SIGINT_BIT  # the caller's, as nohup makes it
    assert not ignored_mask(cli.run("preview").stdout) & SIGINT_BIT
    proc = cli.popen("preview")
    out, _ = proc.communicate(timeout=30)
    assert not ignored_mask(out) & SIGINT_BIT

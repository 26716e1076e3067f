"""`PulumiCLI` starts the engine with SIGINT at its default, whatever its caller ignores, and repairs a
checkpoint a killed engine left unreadable."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from lab import PROJECT_ROOT
from lab.pulumi_cli import PulumiCLI, pulumi_binary

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


@pytest.fixture
def yaml_stack(tmp_path: Path) -> PulumiCLI:
    """A real engine, a stack updated twice on a file backend (a program of one output)."""
    if pulumi_binary() is None:
        pytest.skip("pulumi not installed (make setup)")
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        f"name: p\nruntime:\n  name: python\n  options:\n    virtualenv: {PROJECT_ROOT / '.venv'}\n"
    )
    (project / "__main__.py").write_text('import pulumi\n\npulumi.export("answer", 42)\n')
    cli = PulumiCLI(project, "s", backend_dir=tmp_path / "backend")
    cli.init()
    cli.run("up", "--yes", "--skip-preview")
    cli.run("up", "--yes", "--skip-preview", "--refresh")  # a second write: the backup exists too
    return cli


@pytest.mark.parametrize("cut", ["", '{"md5":'])
def test_an_attributes_file_cut_short_by_a_kill_is_repaired(yaml_stack: PulumiCLI, cut: str) -> None:
    path = yaml_stack.checkpoint_file()
    assert path is not None
    attrs = path.with_name(path.name + ".attrs")
    attrs.write_text(cut)  # the engine killed after it opened the attributes file, before the rename
    assert "failed to load checkpoint" in yaml_stack.run("stack", "export", check=False).stderr
    assert yaml_stack.recover_checkpoint()
    assert yaml_stack.outputs() == {"answer": 42}
    assert not yaml_stack.recover_checkpoint()  # readable: nothing to repair


def test_a_checkpoint_cut_short_is_replaced_by_the_backup(yaml_stack: PulumiCLI) -> None:
    path = yaml_stack.checkpoint_file()
    assert path is not None
    path.write_text(path.read_text()[:40])
    assert yaml_stack.recover_checkpoint()
    assert yaml_stack.outputs() == {"answer": 42}

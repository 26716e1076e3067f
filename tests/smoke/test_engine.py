"""The real engine end to end, offline: CLI, language host, dynamic-provider shim, the command plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from lab.pulumi_cli import PulumiCLI, pulumi_binary
from tests.integration.slicekit import failure, resource_counts

PROGRAM = Path(__file__).parent / "program"

pytestmark = pytest.mark.skipif(pulumi_binary() is None, reason="run `make setup` to build the toolchain")


@pytest.fixture
def smoke_stack(tmp_path: Path):
    cli = PulumiCLI(project_dir=PROGRAM, backend_dir=tmp_path / "state", stack="smoke")
    cli.init()
    yield cli
    cli.remove()


def test_version_is_pinned() -> None:
    cli = PulumiCLI(project_dir=PROGRAM, backend_dir=Path("/nonexistent"), stack="x")
    assert cli.run("version").stdout.strip() == "v3.259.0"


def test_preview_up_destroy_with_a_dynamic_resource(smoke_stack: PulumiCLI, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    smoke_stack.run("config", "set", "path", str(marker))

    preview = smoke_stack.run("preview", "--non-interactive", "--diff")
    assert resource_counts(preview.stdout) == {"to create": 3}
    assert not marker.exists(), "preview must not create anything"

    smoke_stack.run("up", "--yes", "--non-interactive", "--skip-preview")
    assert marker.read_text() == "cloudrepo smoke"
    assert smoke_stack.outputs() == {"path": str(marker), "hello": "cloudrepo smoke command"}

    again = smoke_stack.run("preview", "--non-interactive", "--expect-no-changes")
    assert resource_counts(again.stdout) == {"unchanged": 3}

    smoke_stack.run("destroy", "--yes", "--non-interactive", "--skip-preview")
    assert not marker.exists()


def test_the_command_plugin_is_installed_offline() -> None:
    cli = PulumiCLI(project_dir=PROGRAM, backend_dir=Path("/nonexistent"), stack="x")
    listed = cli.run("plugin", "ls").stdout
    assert any(line.split()[:3] == ["command", "resource", "1.2.1"] for line in listed.splitlines()), listed


def test_a_stack_without_config_reaches_the_program(smoke_stack: PulumiCLI) -> None:
    text = failure(smoke_stack.run("preview", "--non-interactive", check=False))
    diagnostics = text.split("Diagnostics:", 1)[1].split("Resources:", 1)[0]
    assert [line.strip() for line in diagnostics.splitlines() if "error:" in line] == [
        "error: Missing required configuration variable 'cloudrepo-smoke:path'",
        "error: an unhandled error occurred: Program exited with non-zero exit code: 1",
    ], text

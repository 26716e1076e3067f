"""Helpers of the upgrade scenarios: an earlier commit's program taken from the repository's history, a
stack's project pointed at one program or another, the steps the engine plans."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from lab import PROJECT_ROOT
from lab.pulumi_cli import PROGRAM_PARTS
from tests.integration.slicekit import SliceStack


def program_at(commit: str, parts: tuple[str, ...], root: Path) -> Path:
    """The program's `parts` as they were at `commit`, extracted into `root` with `git archive`; the test is
    skipped when this clone's history does not hold the commit."""
    archive = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "archive", commit, *parts],
        capture_output=True,
        check=False,
    )
    if archive.returncode != 0:
        pytest.skip(f"commit {commit} is not in this clone's history: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root


def use_code(stack: SliceStack, root: Path) -> None:
    """Point the stack's project at the program in `root` (the parts it has)."""
    for name in PROGRAM_PARTS:
        link = stack.cli.project_dir / name
        link.unlink(missing_ok=True)
        if (root / name).exists():
            link.symlink_to(root / name)


def ops(stack: SliceStack) -> dict[str, str]:
    """`pulumi preview --json`: each resource's step (name -> op)."""
    doc = json.loads(stack.cli.run("preview", "--json", "--non-interactive").stdout)
    return {step["urn"].rsplit("::", 1)[-1]: step["op"] for step in doc["steps"]}

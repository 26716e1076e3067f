"""Slices as real stacks: a throwaway project directory, stack config written from Python, the real CLI."""

from __future__ import annotations

import json
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lab.common import lab_dir
from lab.pulumi_cli import PulumiCLI

PULUMI_ERROR = 1
"""`pulumi`'s exit status when the program, a resource or the backend refused (ExitCodeError)."""
PULUMI_CHANGES = 7
"""`pulumi`'s exit status when `--expect-no-changes` met a change (ExitNoChanges)."""


def failure(result: subprocess.CompletedProcess[str], status: int = PULUMI_ERROR) -> str:
    """The output of a `pulumi` run that must have ended with exit status `status`; any other status fails
    (the caller then checks the message: what refused, not merely that something did)."""
    text = result.stdout + result.stderr
    assert result.returncode == status, f"expected exit status {status}, got {result.returncode}:\n{text}"
    return text


def resource_counts(text: str) -> dict[str, int]:
    """The last `Resources:` summary of a pulumi run: {"unchanged": 12}, {"to update": 1, "unchanged": 2}."""
    assert "Resources:" in text, f"no `Resources:` summary in:\n{text}"
    counts: dict[str, int] = {}
    for line in text.rsplit("Resources:", 1)[1].splitlines()[1:]:
        found = re.fullmatch(r"\s+(?:[-+~]+\s*)?(\d+) (\S.*?)\s*", line)
        if not found:
            break
        counts[found.group(2)] = int(found.group(1))
    return counts


def lab_config(workers: int | None = None, *, secret_key: bool = False) -> dict[str, Any]:
    """Stack config that reaches the testbed's hosts, read from its inventory (`python -m lab up`)."""
    inventory = json.loads((lab_dir() / "inventory.json").read_text())
    hosts = inventory["hosts"]
    names = inventory["workers"] if workers is None else inventory["workers"][:workers]
    ssh: dict[str, Any] = {"user": "root", "knownHostsPath": inventory["knownHostsPath"], "sudo": True}
    if not secret_key:
        ssh["privateKeyPath"] = inventory["privateKeyPath"]
    network = hosts["network"]
    return {
        "cloudrepo:networkNode": {"host": network["address"], "port": network["port"], "uplink": "ens3"},
        "cloudrepo:workers": {w: {"host": hosts[w]["address"], "port": hosts[w]["port"]} for w in names},
        "cloudrepo:ssh": ssh,
    }


def slice_section(
    pool_start: int, vms: list[dict[str, Any]], links: list[Any], name: str | None = None
) -> dict[str, Any]:
    section: dict[str, Any] = {"vlanPool": {"start": pool_start}, "vms": vms, "links": links}
    if name:
        section["name"] = name
    return {"cloudrepo:slice": section}


@dataclass
class SliceStack:
    """One slice = one stack of the program, driven through the real `pulumi` CLI."""

    cli: PulumiCLI

    @property
    def config_file(self) -> Path:
        return self.cli.project_dir / f"Pulumi.{self.cli.stack}.yaml"

    def write_config(self, config: dict[str, Any], secrets: dict[str, str] | None = None) -> None:
        """Replace the stack's config; the encryption salt is kept and `secrets` are set with --secret."""
        old = self.config_file.read_text() if self.config_file.exists() else ""
        doc: dict[str, Any] = {}
        salt = re.search(r"^encryptionsalt:\s*(\S+)", old, re.M)
        if salt:
            doc["encryptionsalt"] = salt.group(1)
        doc["config"] = config
        self.config_file.write_text(json.dumps(doc, indent=2) + "\n")
        for key, value in (secrets or {}).items():
            self.cli.run("config", "set", "--secret", key, input=value)

    def preview(self, *flags: str) -> str:
        return self.cli.run("preview", "--non-interactive", "--diff", *flags).stdout

    def up(self, *flags: str) -> str:
        return self.cli.run("up", "--yes", "--non-interactive", "--skip-preview", *flags).stdout

    def refresh(self, *flags: str) -> str:
        return self.cli.run("refresh", "--yes", "--non-interactive", "--skip-preview", *flags).stdout

    def destroy(self, *flags: str) -> str:
        return self.cli.run("destroy", "--yes", "--non-interactive", "--skip-preview", *flags).stdout

    def outputs(self) -> dict[str, Any]:
        return self.cli.outputs()


def planned_steps(stack: SliceStack) -> list[tuple[str, str, str]]:
    """`pulumi preview --json` as (op, type, name) for every step that is not "same"."""
    doc = json.loads(stack.cli.run("preview", "--json", "--non-interactive").stdout)
    steps = []
    for step in doc["steps"]:
        if step["op"] == "same":
            continue
        _, _, qualified_type, name = step["urn"].split("::", 3)
        steps.append((step["op"], qualified_type.rsplit("$", 1)[-1], name))
    return sorted(steps)

"""The `cloudrepo` command run as operators run it: a process per verb, a checkout (project directory) and a
backend each, the real engine underneath."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lab import PROJECT_ROOT
from lab.pulumi_cli import LAB_PASSPHRASE, PULUMI_HOME, TOOLCHAIN_BIN, PulumiCLI, make_project
from tests.integration.slicekit import lab_config


@dataclass
class Checkout:
    """One operator's checkout: a project directory and the backend it logs into."""

    project: Path
    backend_env: dict[str, str]
    script: list[str] = field(default_factory=lambda: [sys.executable, "-m", "cloudrepo"])

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "AWS_"))}
        env.update(
            PATH=f"{TOOLCHAIN_BIN}:{PROJECT_ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
            PULUMI_HOME=str(PULUMI_HOME),
            PULUMI_CONFIG_PASSPHRASE=LAB_PASSPHRASE,
            **self.backend_env,
        )
        return env

    def run(self, *args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.script, "--project", str(self.project), *args],
            cwd=self.project,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str, timeout: float = 900) -> str:
        """Run a verb that must succeed (exit 0); its stdout."""
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, (
            f"cloudrepo {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        )
        return result.stdout

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*self.script, "--project", str(self.project), *args],
            cwd=self.project,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def stack_file(self, name: str) -> Path:
        return self.project / f"Pulumi.{name}.yaml"

    def cleanup(self, *names: str) -> None:
        """Destroy and remove the slices, whatever state a failed test left them in."""
        for name in names:
            self.run("destroy", name, "--yes", "--rm")


def checkout(root: Path, backend_env: dict[str, str]) -> Checkout:
    return Checkout(project=make_project(root), backend_env=backend_env)


def cloud_file(root: Path, backend_dir: Path, extra: dict[str, Any] | None = None) -> Path:
    """The testbed's cloud settings (and `extra` ones) in a stack config file whose SSH key is a secret (as
    an operator's `Pulumi.dev.yaml` would hold it), made with the real engine so the secret is really
    encrypted."""
    project = make_project(root / "cloud-src")
    cli = PulumiCLI(project_dir=project, backend_dir=backend_dir, stack="cloudsrc")
    cli.init()
    config: dict[str, Any] = {**lab_config(secret_key=True), **(extra or {})}
    path = project / "Pulumi.cloudsrc.yaml"
    doc = yaml.safe_load(path.read_text()) or {}
    doc["config"] = config
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    key = Path(lab_config()["cloudrepo:ssh"]["privateKeyPath"]).read_text()
    cli.run("config", "set", "--secret", "cloudrepo:sshPrivateKey", input=key)
    assert "secure:" in path.read_text()
    return path

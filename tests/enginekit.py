"""Run the real `pulumi` CLI from tests: a private file backend per test, no downloads, output kept."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOOLCHAIN_BIN = ROOT / ".toolchain" / "bin"
PULUMI_HOME = ROOT / ".toolchain" / "home"


def pulumi_binary() -> Path | None:
    """The project's pulumi, or None when `make setup` has not run."""
    candidate = TOOLCHAIN_BIN / "pulumi"
    return candidate if candidate.exists() else None


class PulumiFailed(AssertionError):
    """A pulumi command exited non-zero; carries its output."""


@dataclass
class PulumiCLI:
    """One project directory and one stack on a file backend of its own."""

    project_dir: Path
    backend_dir: Path
    stack: str
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            PATH=f"{TOOLCHAIN_BIN}:{ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
            PULUMI_HOME=str(PULUMI_HOME),
            PULUMI_BACKEND_URL=f"file://{self.backend_dir}",
            PULUMI_SKIP_UPDATE_CHECK="true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
            PULUMI_CONFIG_PASSPHRASE=env.get("PULUMI_CONFIG_PASSPHRASE", "cloudrepo-lab-only"),
            PULUMI_SKIP_CONFIRMATIONS="true",
        )
        env.update(self.extra_env)
        return env

    def run(
        self, *args: str, check: bool = True, timeout: float = 900, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `pulumi ARGS --stack STACK` (where the command takes a stack) and return the result."""
        self.backend_dir.mkdir(parents=True, exist_ok=True)
        cmd = [str(TOOLCHAIN_BIN / "pulumi"), *args]
        if args and args[0] not in {"version", "login", "plugin"} and "--stack" not in args:
            cmd += ["--stack", self.stack]
        result = subprocess.run(
            cmd,
            cwd=self.project_dir,
            env=self.env(),
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise PulumiFailed(
                f"`pulumi {' '.join(args)}` exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
        return result

    def popen(self, *args: str) -> subprocess.Popen[str]:
        """Start `pulumi ARGS --stack STACK` without waiting (output to pipes)."""
        self.backend_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [str(TOOLCHAIN_BIN / "pulumi"), *args, "--stack", self.stack],
            cwd=self.project_dir,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def init(self) -> None:
        self.run("stack", "init", "--non-interactive")

    def outputs(self) -> dict[str, object]:
        return json.loads(self.run("stack", "output", "--json", "--show-secrets").stdout)

    def export_state(self) -> str:
        return self.run("stack", "export").stdout

    def remove(self) -> None:
        self.run("stack", "rm", "--yes", "--force", check=False)
        shutil.rmtree(self.backend_dir, ignore_errors=True)

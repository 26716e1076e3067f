"""The project's `pulumi` CLI, run from Python (tests, benchmarks, the slice check): one stack of one project.

The toolchain `make setup` builds (`.toolchain/bin`), its own PULUMI_HOME, no update checks or plugin
downloads, and a file backend: the one given, else $PULUMI_BACKEND_URL, else `.pulumi-state` (as
`scripts/activate` sets it). The lab's passphrase applies unless PULUMI_CONFIG_PASSPHRASE is set.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lab import PROJECT_ROOT

TOOLCHAIN_BIN = PROJECT_ROOT / ".toolchain" / "bin"
PULUMI_HOME = PROJECT_ROOT / ".toolchain" / "home"
LAB_PASSPHRASE = "cloudrepo-lab-only"  # noqa: S105 (the lab's file backend only; see scripts/activate)
NO_STACK = {"version", "login", "plugin"}
"""Commands that take no --stack."""
DEFAULT_SIGINT = ("env", "--default-signal=INT")
"""The engine is started with SIGINT at its default, as from a terminal: it stops its language host with
SIGINT and waits ~5 s before killing it, so one that inherited an ignored SIGINT (a caller started with
`nohup`, or by `&` in a script) adds ~5 s to every command that runs the program."""


def pulumi_binary() -> Path | None:
    """The project's pulumi, or None when `make setup` has not run."""
    candidate = TOOLCHAIN_BIN / "pulumi"
    return candidate if candidate.exists() else None


class PulumiFailed(RuntimeError):
    """A pulumi command exited non-zero; the message carries its output."""


PROGRAM_PARTS = ("__main__.py", "vocabulary", "transport", "providers", "components")
"""What the engine runs: the program and the packages it imports (a project directory links them)."""


def make_project(dst: Path) -> Path:
    """A project directory that runs this repository's program (code linked, not copied)."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "Pulumi.yaml").write_text(
        f"name: cloudrepo\nruntime:\n  name: python\n  options:\n    virtualenv: {PROJECT_ROOT / '.venv'}\n"
    )
    for name in PROGRAM_PARTS:
        link = dst / name
        if not link.exists():
            link.symlink_to(PROJECT_ROOT / name)
    return dst


@dataclass
class PulumiCLI:
    """One project directory and one stack on a file backend (`backend_dir`, or the environment's)."""

    project_dir: Path
    stack: str
    backend_dir: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)

    def env(self, **extra: str) -> dict[str, str]:
        env = dict(os.environ)
        backend = (
            f"file://{self.backend_dir}"
            if self.backend_dir is not None
            else env.get("PULUMI_BACKEND_URL", f"file://{PROJECT_ROOT / '.pulumi-state'}")
        )
        env.update(
            PATH=f"{TOOLCHAIN_BIN}:{PROJECT_ROOT / '.venv' / 'bin'}:{env.get('PATH', '')}",
            PULUMI_HOME=str(PULUMI_HOME),
            PULUMI_BACKEND_URL=backend,
            PULUMI_SKIP_UPDATE_CHECK="true",
            PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true",
            PULUMI_CONFIG_PASSPHRASE=env.get("PULUMI_CONFIG_PASSPHRASE", LAB_PASSPHRASE),
            PULUMI_SKIP_CONFIRMATIONS="true",
        )
        env.update(self.extra_env)
        env.update(extra)
        return env

    def argv(self, *args: str) -> list[str]:
        """`pulumi ARGS --stack STACK` (where the command takes a stack)."""
        cmd = [str(TOOLCHAIN_BIN / "pulumi"), *args]
        if args and args[0] not in NO_STACK and "--stack" not in args:
            cmd += ["--stack", self.stack]
        return cmd

    def run(
        self,
        *args: str,
        check: bool = True,
        timeout: float = 900,
        input: str | None = None,
        env: dict[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run `pulumi ARGS` to the end; `PulumiFailed` (with its output) when it fails and `check`."""
        if self.backend_dir is not None:
            self.backend_dir.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [*DEFAULT_SIGINT, *self.argv(*args)],
            cwd=self.project_dir,
            env=self.env(**(env or {})),
            capture_output=True,
            text=True,
            input=input,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise PulumiFailed(
                f"`pulumi {' '.join(args)}` on stack {self.stack} exited {result.returncode}\n"
                f"--- stdout ---\n{result.stdout}\n--- stderr ---\n{result.stderr}"
            )
        return result

    def popen(
        self, *args: str, env: dict[str, str] | None = None, new_session: bool = False
    ) -> subprocess.Popen[str]:
        """Start `pulumi ARGS` without waiting (stdout and stderr to one pipe); with `new_session`, in a
        process group of its own (the engine, language host, program and providers), to kill as a crash
        would."""
        if self.backend_dir is not None:
            self.backend_dir.mkdir(parents=True, exist_ok=True)
        return subprocess.Popen(
            [*DEFAULT_SIGINT, *self.argv(*args)],
            cwd=self.project_dir,
            env=self.env(**(env or {})),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=new_session,
        )

    def init(self) -> None:
        self.run("stack", "init", "--non-interactive")

    def outputs(self) -> dict[str, Any]:
        return dict(json.loads(self.run("stack", "output", "--json", "--show-secrets").stdout))

    def export_state(self) -> str:
        return self.run("stack", "export").stdout

    def pending_operations(self) -> list[dict[str, Any]]:
        exported = self.run("stack", "export", check=False)
        if exported.returncode != 0:
            return []
        return list(json.loads(exported.stdout).get("deployment", {}).get("pending_operations") or [])

    def checkpoint_file(self) -> Path | None:
        """The stack's checkpoint on a file backend given by `backend_dir` (None otherwise)."""
        if self.backend_dir is None:
            return None
        return self.backend_dir / ".pulumi" / "stacks" / self.project_name() / f"{self.stack}.json"

    def project_name(self) -> str:
        text = (self.project_dir / "Pulumi.yaml").read_text()
        return next(ln.split(":", 1)[1].strip() for ln in text.splitlines() if ln.startswith("name:"))

    def recover_checkpoint(self) -> bool:
        """An engine killed while it wrote the checkpoint can leave the file backend's attributes file
        (`<stack>.json.attrs`, written in place before the new checkpoint is renamed over the old one) empty:
        "failed to load checkpoint: EOF", though the checkpoint is the last complete one. Remove unreadable
        attributes files (the backend reads a checkpoint without one), as an operator would; if it is still
        unreadable, put the backend's backup of the previous checkpoint (`.json.bak`) back. True when the
        checkpoint was unreadable and something was repaired."""
        path = self.checkpoint_file()
        if path is None or self.run("stack", "export", check=False).returncode == 0:
            return False
        backup = path.with_suffix(".json.bak")
        for data in (path, backup):
            attrs = data.with_name(data.name + ".attrs")
            if attrs.is_file() and not readable_json(attrs):
                attrs.unlink()
        if self.run("stack", "export", check=False).returncode != 0 and backup.is_file():
            shutil.copyfile(backup, path)
            path.with_name(path.name + ".attrs").unlink(missing_ok=True)
        return True

    def destroy_all(self) -> subprocess.CompletedProcess[str]:
        """Destroy whatever the stack holds, even after a crash; the last destroy's result.

        A killed engine leaves a lock and pending creates whose objects are on the hosts: release the lock,
        let `up` adopt those objects (creates adopt what the slice owns), then destroy; if that fails,
        clear the pending creates and destroy again.
        """
        self.run("cancel", "--yes", check=False)
        self.recover_checkpoint()
        if self.pending_operations():
            self.run("up", "--yes", "--non-interactive", "--skip-preview", check=False)
        result = self.run("destroy", "--yes", "--non-interactive", "--skip-preview", check=False)
        if result.returncode != 0:
            self.run("refresh", "--yes", "--non-interactive", "--clear-pending-creates", check=False)
            result = self.run("destroy", "--yes", "--non-interactive", "--skip-preview", check=False)
        return result

    def remove(self) -> None:
        """Remove the stack from its backend."""
        self.run("stack", "rm", "--yes", "--force", check=False)


def readable_json(path: Path) -> bool:
    """Whether the file holds a whole JSON document."""
    try:
        json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    return True

"""The slices' stacks through Pulumi's Automation API: one LocalWorkspace on the project directory.

The environment defaults are those of `scripts/activate` (the project's toolchain and virtualenv, a file
backend under the repository unless PULUMI_BACKEND_URL says otherwise); nothing is set that the caller set.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from pulumi import automation as auto

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
TOOLCHAIN = ROOT / ".toolchain"
PROJECT_FILE = "Pulumi.yaml"


class SliceError(RuntimeError):
    """A command failed for a reason the operator can act on; the message says which."""


def environment_defaults() -> dict[str, str]:
    """Variables `scripts/activate` sets, for those the caller has not set."""
    path = os.environ.get("PATH", "")
    wanted = {
        "PULUMI_HOME": str(TOOLCHAIN / "home"),
        "PULUMI_BACKEND_URL": f"file://{ROOT / '.pulumi-state'}",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        "PATH": f"{TOOLCHAIN / 'bin'}:{ROOT / '.venv' / 'bin'}:{path}",
    }
    return {k: v for k, v in wanted.items() if k == "PATH" or k not in os.environ}


def apply_environment() -> None:
    os.environ.update(environment_defaults())
    url = os.environ["PULUMI_BACKEND_URL"]
    if url.startswith("file://"):
        Path(url.removeprefix("file://")).expanduser().mkdir(parents=True, exist_ok=True)


def pulumi_command() -> auto.PulumiCommand:
    """The project's engine (`make setup`) when it is built, else `pulumi` on PATH."""
    if (TOOLCHAIN / "bin" / "pulumi").exists():
        return auto.PulumiCommand(root=str(TOOLCHAIN), skip_version_check=True)
    return auto.PulumiCommand(skip_version_check=True)


def is_lock_conflict(exc: BaseException) -> bool:
    return isinstance(exc, auto.ConcurrentUpdateError) or "currently locked by" in str(exc)


ATTEMPTS = 4
"""How many times an engine command on a stack (a run or a read) is started while another run of the stack
writes its checkpoint."""
UNREADABLE = "failed to load checkpoint"
"""The engine's words for a checkpoint it met half written: the file backend writes the checkpoint's
attributes file in place, so a run of the same stack that starts at that moment (and reads the checkpoint
before it asks for the lock) fails at once, having applied nothing."""


def met_a_checkpoint_being_written(exc: BaseException) -> bool:
    return UNREADABLE in str(exc)


def while_written(command: Callable[[], T]) -> T:
    """`command` (an engine command on a stack), started again when it met the checkpoint half written by
    another run of the stack (it failed at once, having applied nothing); any other failure is raised."""
    for attempt in range(1, ATTEMPTS):
        try:
            return command()
        except auto.CommandError as exc:
            if not met_a_checkpoint_being_written(exc):
                raise
            time.sleep(0.25 * attempt)
    return command()


def command_failure(exc: auto.CommandError) -> str:
    """The engine's own error lines (stdout was streamed already)."""
    text = str(exc)
    stderr = text.split(" stderr: ", 1)[1] if " stderr: " in text else text
    lines = [line for line in stderr.splitlines() if line.strip()]
    return "\n".join(lines[-20:]) or text


@dataclass
class Update:
    """The last update of a stack, from its history."""

    kind: str
    result: str
    end: datetime | None


class Slices:
    """The stacks of the project at `project` (a directory with Pulumi.yaml) in the current backend."""

    def __init__(self, project: Path) -> None:
        if not (project / PROJECT_FILE).exists():
            raise SliceError(f"{project}: no {PROJECT_FILE} (pass --project DIR, the cloudrepo checkout)")
        self.project = project
        self.ws = auto.LocalWorkspace(work_dir=str(project), pulumi_command=pulumi_command())

    def names(self) -> list[str]:
        return sorted(s.name for s in self.ws.list_stacks())

    def exists(self, name: str) -> bool:
        return name in self.names()

    def create(self, name: str) -> auto.Stack:
        try:
            return auto.Stack.create(name, self.ws)
        except auto.StackAlreadyExistsError as exc:
            raise SliceError(f"slice {name!r} already exists in the backend") from exc

    def stack(self, name: str) -> auto.Stack:
        try:
            return auto.Stack.select(name, self.ws)
        except auto.StackNotFoundError as exc:
            raise SliceError(f"no slice {name!r} in the backend (cloudrepo list shows them)") from exc

    def outputs(self, name: str) -> dict[str, Any]:
        """The stack's last outputs as plain values (`{}` before its first deploy)."""
        try:
            return {k: v.value for k, v in while_written(lambda: self.ws.stack_outputs(name)).items()}
        except auto.StackNotFoundError as exc:
            raise SliceError(f"no slice {name!r} in the backend (cloudrepo list shows them)") from exc

    def last_update(self, name: str) -> Update | None:
        stack = self.stack(name)
        history = while_written(lambda: stack.history(page_size=1))
        if not history:
            return None
        h = history[0]
        return Update(kind=str(h.kind), result=str(h.result), end=h.end_time)

    def set_secret(self, name: str, key: str, value: str) -> None:
        """Encrypt `value` into the stack config as the secret `key`. The value goes to the engine on its
        stdin (`pulumi config set --secret KEY`, read raw), never on a command line, which every user of
        the machine can read in the process list (the Automation API's `set_config` passes it there)."""
        env = {**os.environ, **({"PULUMI_HOME": self.ws.pulumi_home} if self.ws.pulumi_home else {})}
        env.update(self.ws.env_vars)
        argv = [self.ws.pulumi_command.command, "--non-interactive", "config", "set", "--secret", "--raw"]
        result = subprocess.run(
            [*argv, "--stack", name, "--", key],
            input=value,
            cwd=self.project,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            lines = [line for line in result.stderr.splitlines() if line.strip()][-20:]
            raise SliceError(f"slice {name!r}: setting the secret {key} failed:\n" + "\n".join(lines))

    def secret(self, name: str, key: str) -> str | None:
        """The decrypted value of the stack's config `key` (None when it is not set); read from the
        engine's stdout, never put on a command line."""
        try:
            return self.ws.get_config(name, key).value
        except auto.CommandError as exc:
            if "configuration key" in str(exc) and "not found" in str(exc):
                return None
            raise SliceError(f"slice {name!r}: cannot read {key}:\n{command_failure(exc)}") from exc

    def remove(self, name: str) -> None:
        self.ws.remove_stack(name)

    def run(self, verb: str, name: str, out: Callable[[str], None]) -> Any:
        """`preview`, `up` or `destroy` on the stack, the engine's progress streamed to `out`. A run that met
        the checkpoint half written by another run of the stack is started again (it applied nothing), so
        it reaches that run's lock and says so."""
        try:
            return while_written(lambda: self._run_once(verb, name, out))
        except auto.CommandError as exc:
            if is_lock_conflict(exc):
                raise SliceError(
                    f"slice {name!r} is locked: another deploy or destroy of it is running (the backend "
                    "holds its lock); nothing was applied by this one. Try again when it has finished."
                ) from exc
            raise SliceError(f"{verb} of slice {name!r} failed:\n{command_failure(exc)}") from exc

    def _run_once(self, verb: str, name: str, out: Callable[[str], None]) -> Any:
        stack = self.stack(name)
        if verb == "preview":
            return stack.preview(on_output=out, diff=False, suppress_outputs=True)
        if verb == "up":
            return stack.up(on_output=out, suppress_outputs=True)
        return stack.destroy(on_output=out)


def decrypt_config(path: Path) -> dict[str, auto.ConfigValue]:
    """Every config value of a stack config file, secrets decrypted (with this environment's passphrase or
    secrets provider): the file is opened as a stack of a throwaway project on a throwaway file backend."""
    with tempfile.TemporaryDirectory(prefix="cloudrepo-cloud-") as tmp:
        work = Path(tmp)
        (work / PROJECT_FILE).write_text("name: cloudrepo\nruntime: python\n")
        (work / "Pulumi.source.yaml").write_text(path.read_text())
        ws = auto.LocalWorkspace(
            work_dir=str(work),
            pulumi_command=pulumi_command(),
            env_vars={"PULUMI_BACKEND_URL": f"file://{work / 'state'}"},
        )
        (work / "state").mkdir()
        try:
            auto.Stack.create("source", ws)
            return dict(ws.get_all_config("source"))
        except auto.CommandError as exc:
            raise SliceError(f"{path}: cannot read its secrets:\n{command_failure(exc)}") from exc

"""An in-memory stand-in for `cloudrepo.engine.Slices` (the command's one door to the engine), for the
command's tests without an engine: stacks in a dict, stack files written as `pulumi stack init` does."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from pulumi import automation as auto

from cloudrepo import stackfile
from cloudrepo.engine import PROJECT_FILE, SliceError

ENGINE_ERROR = "error: could not read the backend: the bucket is unreachable"


def engine_error() -> auto.CommandError:
    return auto.CommandError(auto.CommandResult(stdout="", stderr=f"{ENGINE_ERROR}\n", code=255))


class FakeSlices:
    """The backend of every `FakeSlices` of one test: stack name -> outputs."""

    backend: ClassVar[dict[str, dict[str, Any]]] = {}
    secrets: ClassVar[dict[tuple[str, str], str]] = {}
    broken: ClassVar[bool] = False
    """Every engine call fails (as with an unreachable backend)."""

    def __init__(self, project: Path) -> None:
        if not (project / PROJECT_FILE).exists():
            raise SliceError(f"{project}: no {PROJECT_FILE} (pass --project DIR, the cloudrepo checkout)")
        self.project = project

    def _engine(self) -> None:
        if self.broken:
            raise engine_error()

    def names(self) -> list[str]:
        self._engine()
        return sorted(self.backend)

    def exists(self, name: str) -> bool:
        return name in self.names()

    def create(self, name: str) -> None:
        self._engine()
        self.backend[name] = {}
        stackfile.write(stackfile.stack_file(self.project, name), {"encryptionsalt": "v1:fake"})

    def outputs(self, name: str) -> dict[str, Any]:
        self._engine()
        if name not in self.backend:
            raise SliceError(f"no slice {name!r} in the backend (cloudrepo list shows them)")
        return self.backend[name]

    def last_update(self, name: str) -> None:
        self._engine()

    def set_secret(self, name: str, key: str, value: str) -> None:
        self._engine()
        self.secrets[(name, key)] = value

    def secret(self, name: str, key: str) -> str | None:
        self._engine()
        return self.secrets.get((name, key))

    def remove(self, name: str) -> None:
        self._engine()
        self.backend.pop(name, None)
        stackfile.stack_file(self.project, name).unlink(missing_ok=True)

    def run(self, verb: str, name: str, out: Callable[[str], None]) -> None:
        self.outputs(name)
        out(f"{verb} {name}: nothing to do")

"""(c) pulumi-command: the seed's commands as `remote.Command` resources (`bench/command_program`), run by the
real CLI like the program's stacks and measured the same way (`bench.engine.run_measured`).

The project directory is made at run time: `Pulumi.yaml` (project `bench-c`, the project's virtualenv, and
the command plugin v1.2.1 by path: the one installed in PULUMI_HOME, else the build `scripts/install-pulumi`
caches in ~/.cache/cloudrepo/command-1.2.1-*/), the program and the `bench` and `lab` packages linked.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.engine import PHASE_ARGS, Phase, run_measured
from bench.topology import ROOT, SliceSpec
from lab.pulumi_cli import PULUMI_HOME, PulumiCLI

PROJECT = "bench-c"
COMMAND_VERSION = "1.2.1"
PLUGIN = "pulumi-resource-command"
PHASES = ("up", "preview", "refresh", "destroy")
TIMEOUT = 3600.0
"""Per phase: 1,814 Commands (5 slices) took over 15 minutes to create on 2 busy cores."""


def command_plugin_dir() -> Path:
    """The directory holding the command plugin's binary."""
    cache = Path(os.environ.get("CLOUDREPO_CACHE", Path.home() / ".cache" / "cloudrepo"))
    candidates = [
        PULUMI_HOME / "plugins" / f"resource-command-v{COMMAND_VERSION}",
        *sorted(cache.glob(f"command-{COMMAND_VERSION}-*")),
    ]
    for d in candidates:
        if (d / PLUGIN).is_file():
            return d
    raise FileNotFoundError(f"no {PLUGIN} {COMMAND_VERSION} in {', '.join(map(str, candidates))}")


def project_yaml(plugin_dir: Path) -> str:
    venv = ROOT / ".venv"
    return (
        f"name: {PROJECT}\n"
        f"runtime:\n  name: python\n  options:\n    virtualenv: {venv}\n"
        f"plugins:\n  providers:\n    - name: command\n      version: {COMMAND_VERSION}\n"
        f"      path: {plugin_dir}\n"
    )


def make_project(dst: Path) -> Path:
    """A project directory that runs `bench/command_program` (code linked, not copied)."""
    dst.mkdir(parents=True, exist_ok=True)
    (dst / "Pulumi.yaml").write_text(project_yaml(command_plugin_dir()))
    links = {"__main__.py": ROOT / "bench" / "command_program" / "__main__.py", "bench": ROOT / "bench"}
    links["lab"] = ROOT / "lab"
    for name, target in links.items():
        if not (dst / name).exists():
            (dst / name).symlink_to(target)
    return dst


def slice_fields(spec: SliceSpec) -> dict[str, Any]:
    """The fields that make a `SliceSpec` again in the (c) program (`topology.from_fields`)."""
    keep = ("name", "links", "pool_start", "first_vm", "workers", "pairs")
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(spec).items() if k in keep}


@dataclass
class CommandStack:
    """One stack of the (c) program holding the commands of `specs` (all slices in one stack)."""

    name: str
    specs: list[SliceSpec]
    ip_forward: str
    workdir: Path
    backend: Path
    log: list[str] = field(default_factory=list)

    @property
    def project(self) -> Path:
        return self.workdir / f"project-c-{self.name}"

    @property
    def cli(self) -> PulumiCLI:
        return PulumiCLI(self.project, self.name, self.backend)

    def init(self) -> None:
        make_project(self.project)
        self.cli.init()
        config = {
            f"{PROJECT}:slices": [slice_fields(s) for s in self.specs],
            f"{PROJECT}:ipForward": self.ip_forward,
        }
        (self.project / f"Pulumi.{self.name}.yaml").write_text(
            json.dumps({"config": config}, indent=2) + "\n"
        )

    def phase(self, name: str) -> Phase:
        """`up`, `preview` (no-op), `refresh` or `destroy`, at the engine's default parallelism."""
        args = list(PHASE_ARGS[name])
        run = run_measured(self.cli, args, PLUGIN.encode(), timeout=TIMEOUT)
        self.log.append(f"$ pulumi {' '.join(args)}\n{run.out}")
        if failed := run.failure(self.name):
            raise failed
        return run.phase(name)

    def cleanup(self) -> None:
        """Best effort: destroy what is left (after a failure) and remove the stack. The caller removes
        from the hosts whatever a failed destroy leaves (`bench.baselines.floor` of the teardown)."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.cli.run(
                "destroy", "--yes", "--non-interactive", "--skip-preview", check=False, timeout=TIMEOUT
            )
        self.cli.remove()


def measure(stack: CommandStack) -> dict[str, Any]:
    """(c)'s phases, one after another; the JSON of each."""
    return {ph: stack.phase(ph).as_json() for ph in PHASES}

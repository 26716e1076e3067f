"""Launched guests (QEMU, started by the slice) as the testbed sees them: their console sockets.

A worker's `/var/lib/cloudrepo` is the host's own directory `.lab/hosts/<worker>/state` (lab.sshd), so a
console path that the stack reports on the worker is reachable from the root namespace.
"""

from __future__ import annotations

import json
from pathlib import Path, PurePosixPath
from typing import Any

from lab import PROJECT_ROOT, console
from lab.common import STATE_ROOT, LabError, host_paths
from lab.pulumi_cli import PulumiCLI


def stack_outputs(stack: str) -> dict[str, Any]:
    """`pulumi stack output --json` of a stack of this checkout."""
    out = PulumiCLI(PROJECT_ROOT, stack).run("stack", "output", "--json", check=False)
    if out.returncode != 0:
        raise LabError(f"cannot read the outputs of stack {stack}: {out.stderr.strip()}")
    return dict(json.loads(out.stdout))


def console_on_disk(worker: str, remote: str) -> Path:
    """The root namespace's path of a console socket that lives at `remote` on testbed host `worker`."""
    rel = PurePosixPath(remote).relative_to(STATE_ROOT)
    if ".." in rel.parts:
        raise LabError(f"console path {remote!r} leaves {STATE_ROOT}")
    return host_paths(worker).state / rel


def console_of(vms: dict[str, Any], vm: str) -> Path:
    """The console socket of a launched VM of the stack's `vms` output."""
    spec = vms.get(str(vm))
    if spec is None:
        raise LabError(f"the stack has no VM {vm} (VMs: {', '.join(sorted(vms)) or 'none'})")
    if not spec.get("console"):
        raise LabError(f"VM {vm} is not launched (no `launch` in its config)")
    return console_on_disk(spec["worker"], spec["console"])


def exec_in(vms: dict[str, Any], vm: str, argv: list[str], timeout: float = 30) -> console.Result:
    return console.run(console_of(vms, vm), argv, timeout)

"""From the raw stack config to the slice's plan: the one path `pulumi preview` (`__main__.py`) and the
`cloudrepo` command (`cloudrepo.stackfile.check`) both take.

`prepare(raw, stack, previous_outputs)` is pure but for reading and hashing the VMs' boot files: the config
(with the launches), the VLAN allocation against the stack's last outputs (its memory), the plan and the
VMs' launch plan. Any problem of the first raises one `ConfigError` listing every problem; the allocation
and the plan run only on a valid config and raise theirs the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.allocation import allocate_vlans
from components.config import load_config
from components.model import SliceConfig
from components.outputs import Deployed
from components.plan import SlicePlan, build_plan
from components.vms import ImageCopy, VmLaunch, launch_plan


@dataclass(frozen=True)
class Prepared:
    """A slice ready to be built: what the program instantiates and the command checks."""

    config: SliceConfig
    deployed: Deployed
    """What the stack's last outputs say is deployed (VLANs of links, workers of VLANs)."""
    plan: SlicePlan
    copies: tuple[ImageCopy, ...]
    """Each boot file once per worker."""
    vms: tuple[VmLaunch, ...]
    """Each launched VM's QEMU spec and what it waits for."""


def prepare(
    raw: Mapping[str, str], stack: str, previous_outputs: Mapping[str, Any], base: Path | None = None
) -> Prepared:
    """The prepared slice of `stack` from its raw config (as the engine hands it to the program) and its
    last outputs; boot files relative to `base` (the project directory, default the working directory)."""
    config = load_config(raw, stack, base)
    deployed = Deployed.from_outputs(previous_outputs)
    plan = build_plan(config, allocate_vlans(config.links, config.pool, deployed.vlans))
    copies, vms = launch_plan(plan)
    return Prepared(config, deployed, plan, tuple(copies), tuple(vms))

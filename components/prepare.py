"""From the raw stack config to the slice's plan: the one path `pulumi preview` (`__main__.py`) and the
`cloudrepo` command (`cloudrepo.stackfile.check`) both take.

`prepare(raw, stack, previous_outputs)` is pure but for reading and hashing the VMs' boot files: the config
(with the launches), the VLAN allocation against the stack's last outputs (its memory), the plan and the
VMs' launch plan. Any problem of the first raises one `ConfigError` listing every problem; the allocation
and the plan run only on a valid config and raise theirs the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from components.allocation import allocate_vlans
from components.config import load_config
from components.model import NAMESPACE, SliceConfig
from components.outputs import Deployed
from components.placement import AUTO, Capacity, Demand, place
from components.plan import SlicePlan, build_plan
from components.resources import claimed
from components.vms import ImageCopy, VmLaunch, launch_plan

ClaimsRead = tuple[Mapping[str, tuple[int, int]], Mapping[int, str], Mapping[str, tuple[int, int]]]
"""What the workers say: worker -> (vCPUs, MiB) the other slices' claims hold there, VM id -> the worker
holding this slice's claim of it, and worker -> (CPUs, MiB) its host reports (`nproc`, `MemTotal`)."""

WorkerClaims = Callable[[SliceConfig], ClaimsRead]
"""Reads the workers (at preview). The command's checks pass none."""

Shares = dict[str, list[tuple[int, int, int]]]
"""Worker -> (VM id, vCPUs, MiB) the slice claims there (`components.resources.claimed`)."""

Reserve = Callable[[SliceConfig, Callable[[ClaimsRead], tuple[SliceConfig, Shares]]], SliceConfig]
"""At `up`: holds the workers' locks, reads them, calls the choice (the pure placement, with what it
claims), writes those claims as pending claims, releases; returns the choice
(`providers.reservation.reserve`)."""

UNKNOWN = Capacity(1 << 30, 1 << 40)
"""An undeclared worker's capacity for the command's checks, which read no host: the program decides."""


def placed(
    config: SliceConfig,
    deployed: Deployed,
    claims: WorkerClaims | None = None,
    reserve: Reserve | None = None,
) -> SliceConfig:
    """The config with every `auto` VM on the worker `components.placement.place` chooses (`placed_with`):
    with what `reserve` reads under the workers' locks and reserves (at `up`), else with what `claims`
    reads (preview), else with no read (the command's checks)."""
    if not any(vm.worker == AUTO for vm in config.vms):
        return config
    if reserve is not None:

        def choose(read: ClaimsRead) -> tuple[SliceConfig, Shares]:
            chosen = placed_with(config, deployed, read)
            return chosen, claimed(chosen)

        return reserve(config, choose)
    return placed_with(config, deployed, claims(config) if claims is not None else None)


def placed_with(config: SliceConfig, deployed: Deployed, read: ClaimsRead | None) -> SliceConfig:
    """The config placed (pure): its launches too, and the capacities it placed with (declared, else as the
    host reported them): the other slices' claims come off them; a VM keeps the worker the last outputs
    record, else the one its claim is on (an `up` that failed part-way wrote no outputs). `read` None: no
    host read, an undeclared worker counts as `UNKNOWN`."""
    others, mine, reported = read if read is not None else ({}, {}, {})
    known = dict(config.capacities)
    for worker, (cpus, mem) in reported.items():
        if worker in config.workers and worker not in known:
            known[worker] = Capacity(cpus, mem)
    candidates = known if read is not None else {w: known.get(w, UNKNOWN) for w in config.workers}
    paths = {vm.id: f"{NAMESPACE}:slice.vms[{i}]" for i, vm in enumerate(config.vms)}
    demands = []
    for vm in config.vms:
        launch = config.launches.get(vm.id)
        cpus, mem = (launch.cpus, launch.memory_mb) if launch is not None else (0, 0)
        demands.append(Demand(vm.id, cpus, mem, vm.worker, paths[vm.id]))
    previous = {**mine, **deployed.workers}
    chosen = place(demands, candidates, list(config.workers), previous, others)
    vms = tuple(
        vm.model_copy(update={"worker": chosen[vm.id], "auto": True}) if vm.worker == AUTO else vm
        for vm in config.vms
    )
    launches = {i: replace(la, worker=chosen[i]) for i, la in config.launches.items()}
    return config.model_copy(update={"vms": vms, "launches": launches, "capacities": known})


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
    raw: Mapping[str, str],
    stack: str,
    previous_outputs: Mapping[str, Any],
    base: Path | None = None,
    claims: WorkerClaims | None = None,
    reserve: Reserve | None = None,
) -> Prepared:
    """The prepared slice of `stack` from its raw config (as the engine hands it to the program) and its
    last outputs; boot files relative to `base` (the project directory, default the working directory);
    `claims`: reads the workers' claims for `worker: auto` (preview); `reserve`: places under the workers'
    locks and reserves the choice (`up`)."""
    deployed = Deployed.from_outputs(previous_outputs)
    config = placed(load_config(raw, stack, base), deployed, claims, reserve)
    plan = build_plan(config, allocate_vlans(config.links, config.pool, deployed.vlans))
    copies, vms = launch_plan(plan)
    return Prepared(config, deployed, plan, tuple(copies), tuple(vms))

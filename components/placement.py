"""Where VMs with `worker: auto` run: a pure function of the VMs' demands, the workers' declared capacities
and the workers the last run chose (the placement memory, kept in the stack outputs like the VLANs).

Order of precedence: a named worker is taken as written; an `auto` VM the last run placed keeps that worker
while it is still in `cloudrepo:workers`; every other `auto` VM, the largest first (memory, then vCPUs, then
id), goes to the worker with the most free memory that fits its vCPUs and memory (ties: more free vCPUs,
then the worker name). Candidates: the workers whose capacity is known (declared, else as the host reported
it to the program's read). A VM that fits nowhere, or a worker whose VMs exceed its capacity, is a problem
naming the numbers. See docs/design.md, "Placement".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from vocabulary.errors import ConfigError
from vocabulary.naming import NAMESPACE

AUTO = "auto"
"""The `worker` value that lets the program choose."""


@dataclass(frozen=True)
class Capacity:
    """What a worker offers to the slices' VMs (`cloudrepo:workers.NAME.capacity`)."""

    cpus: int
    memory_mb: int

    def shown(self) -> str:
        return f"{self.cpus} vCPUs, {self.memory_mb} MiB"


@dataclass(frozen=True)
class Demand:
    """One VM: what it needs (0 and 0 without a launch) and its worker as written (`AUTO` to choose)."""

    vm: int
    cpus: int
    memory_mb: int
    worker: str
    where: str = ""
    """The VM's key path (`cloudrepo:slice.vms[3]`), for messages."""

    @property
    def auto(self) -> bool:
        return self.worker == AUTO

    def shown(self) -> str:
        return f"{self.cpus} vCPUs and {self.memory_mb} MiB"


def _free(cap: Capacity, used: tuple[int, int]) -> tuple[int, int]:
    return cap.cpus - used[0], cap.memory_mb - used[1]


def place(
    demands: Sequence[Demand],
    capacities: Mapping[str, Capacity],
    workers: Sequence[str],
    previous: Mapping[int, str] | None = None,
    held: Mapping[str, tuple[int, int]] | None = None,
) -> dict[int, str]:
    """VM id -> worker for every VM of `demands`, ordered like them; raises `ConfigError` with every problem.

    `capacities`: the known ones (the candidates of `auto`); `workers`: every worker of the config;
    `previous`: VM id -> the worker the last run gave it (kept for an `auto` VM while that worker exists);
    `held`: worker -> (vCPUs, MiB) other slices' claims hold there.
    """
    previous, held = previous or {}, held or {}
    problems: list[str] = []
    result: dict[int, str] = {}
    used: dict[str, tuple[int, int]] = {w: held.get(w, (0, 0)) for w in workers}
    on: dict[str, list[Demand]] = {w: [] for w in workers}

    def take(d: Demand, worker: str) -> None:
        result[d.vm] = worker
        c, m = used.get(worker, (0, 0))
        used[worker] = (c + d.cpus, m + d.memory_mb)
        on.setdefault(worker, []).append(d)

    for d in demands:
        if not d.auto:
            take(d, d.worker)
        elif previous.get(d.vm) in used:
            take(d, previous[d.vm])
    for worker, cap in sorted(capacities.items()):
        cpus, mem = used.get(worker, (0, 0))
        if (cpus > cap.cpus or mem > cap.memory_mb) and on.get(worker):
            listed = ", ".join(f"{d.vm} ({d.cpus}/{d.memory_mb})" for d in on[worker])
            problems.append(
                f"{NAMESPACE}:workers.{worker}.capacity: the VMs on {worker} need {cpus} vCPUs and "
                f"{mem} MiB{_others(held, worker)}, over its capacity of {cap.shown()} "
                f"(VM (vCPUs/MiB): {listed})"
            )
    fresh = sorted((d for d in demands if d.auto and d.vm not in result),
                   key=lambda d: (-d.memory_mb, -d.cpus, d.vm))  # fmt: skip
    for d in fresh:
        fits = [
            (free, w)
            for w, cap in capacities.items()
            if w in used
            for free in (_free(cap, used[w]),)
            if free[0] >= d.cpus and free[1] >= d.memory_mb
        ]
        if not fits:
            problems.append(no_fit(d, capacities, used, workers, held))
            continue
        best = min(fits, key=lambda fw: (-fw[0][1], -fw[0][0], fw[1]))
        take(d, best[1])
    if problems:
        raise ConfigError(problems)
    return {d.vm: result[d.vm] for d in demands}


def _others(held: Mapping[str, tuple[int, int]], worker: str) -> str:
    cpus, mem = held.get(worker, (0, 0))
    return f" with what other slices hold there ({cpus} vCPUs, {mem} MiB)" if cpus or mem else ""


def no_fit(
    d: Demand,
    capacities: Mapping[str, Capacity],
    used: Mapping[str, tuple[int, int]],
    workers: Sequence[str],
    held: Mapping[str, tuple[int, int]],
) -> str:
    """The problem of an `auto` VM that fits on no worker: what it needs and what each worker has free."""
    parts = []
    for w in sorted(workers):
        cap = capacities.get(w)
        if cap is None:
            parts.append(
                f"{w}: capacity neither declared ({NAMESPACE}:workers.{w}.capacity) nor read from the host, "
                "not a candidate"
            )
        else:
            cpus, mem = _free(cap, used.get(w, (0, 0)))
            hc, hm = held.get(w, (0, 0))
            others = f", other slices hold {hc} vCPUs and {hm} MiB" if hc or hm else ""
            parts.append(f"{w}: {cpus} vCPUs and {mem} MiB free of {cap.shown()}{others}")
    at = f"{d.where}.worker" if d.where else f"{NAMESPACE}:slice.vms"
    return f"{at}: VM {d.vm} (auto) needs {d.shown()}; no worker has that free ({'; '.join(parts)})"

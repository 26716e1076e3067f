"""The placement of `worker: auto` at `up`, taken where the truth is: under the workers' locks.

`reserve` holds the lock of every worker of the slice (`transport.hold`: one fixed order for every slice,
from any backend), reads each one's claims (`worker_claim.read_worker`), lets the caller choose (the pure
placement, `components.prepare`), writes what the choice claims as pending claims
(`worker_claim.pending_text`, marked with the slice's stack) and releases the locks, all before any
resource of the `up` runs. A second slice's reservation waits for the first's locks and then sees its
pending claims, so two slices deployed at once both place within what is free and both `up`s succeed.
Each VM's `WorkerClaim` then takes its pending claim over (under the lock, as any claim). See
docs/design.md, "Placement".

`changes` (pure) is what a reservation writes and removes on one worker: the slice's own pending claims
it no longer wants go, so do pending claims past their lease (`worker_claim.PENDING_LEASE_SECONDS`, any
stack's: an `up` that ended before its claims were taken over); a claim already taken over by a
`WorkerClaim` is left to it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import pulumi

from providers import bodies
from providers.kinds.worker_claim import (
    REMOVE_PENDING,
    Read,
    VmClaim,
    WorkerRead,
    pending_text,
    read_worker,
    summarize,
)
from transport import hold, ssh
from transport.script import Step, sh
from vocabulary import naming
from vocabulary.errors import CloudrepoError
from vocabulary.specs import Endpoint

T = TypeVar("T")


Share = tuple[int, int, int]
"""What one VM of the slice claims on its worker: (VM id, vCPUs, MiB)."""

Choose = Callable[[Read], tuple[T, Mapping[str, Sequence[Share]]]]
"""The caller's choice from the workers' reads: its result and worker -> the shares it claims there."""


class ReservationFailed(CloudrepoError, pulumi.RunError):
    """The workers could not be locked or read at `up`: nothing was placed and no resource ran."""


def changes(
    read: WorkerRead, slice_name: str, stack: str, wanted: Sequence[Share]
) -> tuple[list[VmClaim], list[tuple[str, str]]]:
    """(pending claims to remove, (claim file, text) to write) on one worker for the slice's `wanted`
    shares."""
    by_file = {c.file: c for c in read.have.claims}
    want = {naming.claim_file(slice_name, s[0]).rpartition("/")[2]: s for s in wanted}
    remove = [
        c
        for c in read.have.claims
        if c.expired(read.have.now)
        or (c.pending and c.slice == slice_name and c.stack == stack and c.file not in want)
    ]
    now = read.have.now or 0
    write = []
    for file, s in sorted(want.items()):
        have = by_file.get(file)
        if have is None or have.expired(read.have.now) or (have.pending and have.stack == stack):
            write.append((file, pending_text(s[1], s[2], stack, now)))
    written = {f for f, _ in write}
    return [c for c in remove if c.file not in written], write


def steps(remove: Sequence[VmClaim], write: Sequence[tuple[str, str]]) -> list[Step]:
    """The round trip that applies `changes` (run while the reservation holds the worker's lock)."""
    out = [
        sh("remove pending claim", REMOVE_PENDING, f"{naming.CLAIMS_DIR}/{c.file}", c.stack or "")
        for c in remove
    ]
    for f, text in write:
        out.append(bodies.write_file("write pending claim", f"{naming.CLAIMS_DIR}/{f}", text))
    return out


def reserve(
    raw: Mapping[str, Any], slice_name: str, stack: str, workers: Mapping[str, Endpoint], choose: Choose[T]
) -> T:
    """Hold every worker's lock, read the claims, `choose`, write its shares as pending claims, release;
    returns the choice. Raises `ReservationFailed` when a worker cannot be locked or read (nothing written),
    and whatever `choose` raises (a VM that fits nowhere: nothing written)."""
    if not workers:
        return choose(({}, {}, {}))[0]
    ssh.configure(raw)
    try:
        try:
            hosts: dict[tuple[str, int], list[str]] = {}  # each host once, whatever names it has
            for name, ep in sorted(workers.items()):
                hosts.setdefault((ep.address, ep.port), []).append(name)
            with hold.held(list(workers.values()), slice_name):
                read = {names[0]: read_worker(workers[names[0]]) for names in hosts.values()}
                reads = {name: read[names[0]] for names in hosts.values() for name in names}
                result, shares = choose(summarize(reads, slice_name))
                for names in hosts.values():
                    wanted = [s for name in names for s in shares.get(name, ())]
                    remove, write = changes(read[names[0]], slice_name, stack, wanted)
                    if remove or write:
                        ssh.run_script(workers[names[0]], steps(remove, write))
        except CloudrepoError as exc:
            if isinstance(exc, pulumi.RunError):
                raise
            raise ReservationFailed(
                f"the placement of `worker: auto` at `up` could not lock and read the workers: {exc}; "
                "nothing else ran"
            ) from None
    finally:
        ssh.close_all()
    return result

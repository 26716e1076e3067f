"""PendingClaims: the pending claims a slice's `up` reserved on one worker, removed with the slice.

The program writes a slice's pending claims under the workers' locks at `up`, before any resource runs
(`providers.reservation`); each VM's `WorkerClaim` takes its own over. This resource (one per worker the
slice's launched VMs claim a share of, in a slice with `worker: auto` VMs) makes nothing; its delete removes,
under the worker's lock, every pending claim its stack left there for the slice: at `destroy`, also those
of an `up` that stopped before its `WorkerClaim`s were made (the pool claim waits for this resource, so it
is in the state before anything of that `up` can fail). Deletes run after an `up`'s creates, and a worker
leaves the slice's set only when the choice reserved nothing there, so a delete never takes a claim the
current `up` still wants. A pending claim taken over meanwhile (it has a uid) is never removed: the sh body
checks it again.
"""

from __future__ import annotations

from typing import Any

from providers.kind import Kind
from providers.kinds import worker_claim
from providers.kinds.worker_claim import ClaimsHave, VmClaim
from providers.pipeline import HostResource
from transport.script import ScriptResult, Step, sh
from vocabulary import naming
from vocabulary.specs import PendingClaimsSpec


def resource_id(spec: PendingClaimsSpec) -> str:
    return f"{spec.host.name}/pending/{spec.slice}"


def left(spec: PendingClaimsSpec, have: ClaimsHave) -> tuple[VmClaim, ...]:
    """The slice's pending claims its stack reserved on the worker."""
    return tuple(c for c in have.claims if c.pending and c.slice == spec.slice and c.stack == spec.stack)


def plan_ensure(_spec: PendingClaimsSpec, _have: ClaimsHave) -> list[Step]:
    """Nothing to make: the program wrote the pending claims under the lock."""
    return []


def plan_delete(spec: PendingClaimsSpec, have: ClaimsHave) -> list[Step]:
    return [
        sh("remove pending claim", worker_claim.REMOVE_PENDING, f"{naming.CLAIMS_DIR}/{c.file}", spec.stack)
        for c in left(spec, have)
    ]


def observe(spec: PendingClaimsSpec, have: ClaimsHave) -> tuple[dict[str, Any], list[str]]:
    return {"pending": [c.vm for c in left(spec, have)]}, []


def after(_spec: PendingClaimsSpec, have: ClaimsHave, _res: ScriptResult) -> ClaimsHave:
    return have


KIND: Kind[PendingClaimsSpec, ClaimsHave] = Kind(
    name="PendingClaims",
    spec_model=PendingClaimsSpec,
    identity=("slice", "host"),
    needs_bridge=False,
    resource_id=resource_id,
    preflight=lambda _spec: worker_claim.preflight(None),
    parse_have=lambda _spec, res: worker_claim.parse_have(None, res),
    plan_ensure=plan_ensure,
    plan_delete=plan_delete,
    observe=observe,
    after=after,
    gone=lambda _spec, _have: False,
    locked=lambda _spec, _have: True,
)


class PendingClaims(HostResource, kind=KIND):
    """A slice's pending claims on a worker; see `PendingClaimsSpec`."""

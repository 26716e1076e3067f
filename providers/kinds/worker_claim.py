"""WorkerClaim: a launched VM's share of its worker (vCPUs, memory), claimed on the worker under its lock.

`/var/lib/cloudrepo/claims/<slice>@<vm>` holds `cpus memoryMb uid stack`. A claim is refused, before any
change and naming the numbers, when the worker's other claims (every slice's, from any backend) plus this
VM exceed the worker's capacity: checked from the read and again in sh under the lock, so two slices
deployed at once never overbook a worker. The VM's `QemuVm` waits for its claim; the claim is removed
(by its own uid only) when the VM is.

A pending claim (`cpus memoryMb pending stack time`) is one the program reserved at `up` under the worker's
lock before any resource ran (`providers.reservation`): it counts like any claim; the VM's `WorkerClaim`
takes it over (rewrites it with its uid, under the lock); the slice's own are replaced by its next `up`;
the slice's `PendingClaims` on the worker removes, when deleted, those its stack left
(`providers.kinds.pending_claims`); one past its lease counts for nothing.

The capacity is the declared one (`cloudrepo:workers.NAME.capacity`), else what the host reported to the
program's read (`read_claims`): the numbers `components.placement` chose the worker with.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import pulumi

from providers import bodies
from providers.kind import Kind
from providers.pipeline import HostResource
from transport import ssh
from transport.script import ScriptResult, Step, sh
from vocabulary import naming
from vocabulary.errors import CloudrepoError, Conflict, StepFailed
from vocabulary.specs import Endpoint, WorkerClaimSpec

VERIFY = "verify capacity"

# every claim file: "<file> <cpus> <memoryMb> <uid> <stack>"
_LIST = (
    'cd "$1" 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] || continue; '
    'case "$f" in .*) continue;; esac; printf "%s %s\\n" "$f" "$(head -n 1 "$f")"; done'
)
# $1 dir, $2 this claim's file name, $3 cpus, $4 memory, $5 capacity cpus, $6 capacity memory, $7 the
# pending claims' lease: fails, with the numbers, when the other claims (but pending claims past their
# lease) and this one exceed the capacity
_VERIFY = (
    "d=$1; me=$2; c=$3; m=$4; cc=$5; cm=$6; lease=$7; now=$(date +%s); tc=0; tm=0; n=0; "
    'cd "$d" 2>/dev/null || exit 0; '
    'for f in *; do [ -f "$f" ] || continue; case "$f" in .*) continue;; esac; '
    '[ "$f" = "$me" ] && continue; read -r a b u k t <"$f" || continue; '
    'if [ "$u" = pending ]; then case $t in ""|*[!0-9]*) t=0;; esac; '
    '[ $((t + lease)) -lt "$now" ] && continue; fi; '
    "tc=$((tc + a)); tm=$((tm + b)); n=$((n + 1)); done; "
    'if [ $((tc + c)) -gt "$cc" ] || [ $((tm + m)) -gt "$cm" ]; then '
    'echo "it needs $c vCPUs and $m MiB; the $n claims on the worker hold $tc vCPUs and $tm MiB of its '
    'capacity of $cc vCPUs, $cm MiB (free: $((cc - tc)) vCPUs, $((cm - tm)) MiB)" >&2; exit 1; fi'
)
# $1 claim file, $2 uid, $3 stack: removes the claim only when it is that uid's, or a pending claim that
# stack reserved
_REMOVE = (
    '[ -f "$1" ] || exit 0; read -r c m u k t <"$1"; '
    '[ "$u" = "$2" ] || { [ "$u" = pending ] && [ "$k" = "$3" ]; } || exit 0; rm -f "$1"'
)
# $1 claim file, $2 stack: removes it only while it is a pending claim that stack reserved
REMOVE_PENDING = (
    '[ -f "$1" ] || exit 0; read -r c m u k t <"$1"; [ "$u" = pending ] && [ "$k" = "$2" ] || exit 0; '
    'rm -f "$1"'
)
PENDING = "pending"
"""The uid field of a claim reserved at `up` and not yet taken over by its `WorkerClaim`."""
PENDING_LEASE_SECONDS = 600
"""How long a pending claim counts as an `up` in progress: a reservation removes older ones (an `up` that
ended before its claims were taken over and was never run again)."""


def resource_id(spec: WorkerClaimSpec) -> str:
    return f"{spec.host.name}/claim/{spec.slice}@{spec.vm}"


@dataclass(frozen=True)
class VmClaim:
    slice: str
    vm: int
    cpus: int
    memory_mb: int
    file: str
    uid: str | None = None
    stack: str | None = None
    pending: bool = False
    """Reserved at `up` by `stack` (`providers.reservation`), not yet taken over by its `WorkerClaim`."""
    written: int | None = None
    """When a pending claim was written (the worker's clock, seconds since the epoch)."""

    def expired(self, now: int | None) -> bool:
        """A pending claim older than the lease (never, when the worker's time is not known)."""
        return self.pending and now is not None and (self.written or 0) + PENDING_LEASE_SECONDS < now


@dataclass(frozen=True)
class ClaimsHave:
    claims: tuple[VmClaim, ...]
    now: int | None = None
    """The worker's clock at the read (seconds since the epoch), for the pending claims' lease."""

    def of(self, spec: WorkerClaimSpec) -> VmClaim | None:
        """The claim file of this slice's VM, whatever uid holds it."""
        file = claim_name(spec)
        return next((c for c in self.claims if c.file == file), None)

    def others(self, spec: WorkerClaimSpec) -> tuple[VmClaim, ...]:
        file = claim_name(spec)
        return tuple(c for c in self.claims if c.file != file)

    def live(self) -> tuple[VmClaim, ...]:
        """The claims that count: all but the pending claims past their lease."""
        return tuple(c for c in self.claims if not c.expired(self.now))


def claim_name(spec: WorkerClaimSpec) -> str:
    return naming.claim_file(spec.slice, spec.vm).rpartition("/")[2]


def parse_claims(text: str) -> tuple[VmClaim, ...]:
    """The `_LIST` lines `<slice>@<vm> cpus memoryMb uid stack` (`... pending stack time`: a pending
    claim); malformed lines are skipped."""
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3 or not parts[1].isdigit() or not parts[2].isdigit():
            continue
        name, _, vm = parts[0].rpartition("@")
        if not name or not vm.isdigit():
            continue
        uid = parts[3] if len(parts) > 3 and naming.SAFE_UID.fullmatch(parts[3]) else None
        stack = parts[4] if len(parts) > 4 and parts[4] != "-" else None
        pending = len(parts) > 3 and parts[3] == PENDING
        written = int(parts[5]) if pending and len(parts) > 5 and parts[5].isdigit() else None
        out.append(
            VmClaim(name, int(vm), int(parts[1]), int(parts[2]), parts[0], uid, stack, pending, written)
        )
    return tuple(sorted(out, key=lambda c: (c.slice, c.vm)))


def totals(claims: Iterable[VmClaim]) -> tuple[int, int]:
    listed = list(claims)
    return sum(c.cpus for c in listed), sum(c.memory_mb for c in listed)


def preflight(_spec: WorkerClaimSpec | None) -> list[Step]:
    return [sh("claims", _LIST, naming.CLAIMS_DIR, kind="probe"), sh("now", "date +%s", kind="probe")]


def parse_have(_spec: WorkerClaimSpec | None, res: ScriptResult) -> ClaimsHave:
    now = res.out("now").strip()
    return ClaimsHave(parse_claims(res.out("claims")), int(now) if now.isdigit() else None)


def over(spec: WorkerClaimSpec, have: ClaimsHave) -> str | None:
    """Why the claim does not fit on the worker (the numbers, and which slices hold what), or None. Pending
    claims past their lease do not count (nor in the sh check)."""
    others = tuple(c for c in have.others(spec) if not c.expired(have.now))
    cpus, mem = totals(others)
    if cpus + spec.cpus <= spec.capacity_cpus and mem + spec.memory_mb <= spec.capacity_memory_mb:
        return None
    by_slice: dict[str, list[VmClaim]] = {}
    for c in others:
        by_slice.setdefault(c.slice, []).append(c)
    held = "; ".join(
        f"slice {s!r}: VMs {', '.join(str(c.vm) for c in cs)} ({totals(cs)[0]} vCPUs, {totals(cs)[1]} MiB)"
        for s, cs in sorted(by_slice.items())
    )
    return (
        f"VM {spec.vm} of slice {spec.slice!r} needs {spec.cpus} vCPUs and {spec.memory_mb} MiB; the claims "
        f"on the worker hold {cpus} vCPUs and {mem} MiB of its capacity of {spec.capacity_cpus} vCPUs, "
        f"{spec.capacity_memory_mb} MiB (free: {spec.capacity_cpus - cpus} vCPUs, "
        f"{spec.capacity_memory_mb - mem} MiB; {held or 'no other claims'}); nothing changed"
    )


def claim_text(spec: WorkerClaimSpec) -> str:
    return f"{spec.cpus} {spec.memory_mb} {spec.uid or '-'} {spec.stack or '-'}\n"


def verify_step(spec: WorkerClaimSpec) -> Step:
    """The check under the lock: the other claims plus this one within the capacity."""
    nums = (spec.cpus, spec.memory_mb, spec.capacity_cpus, spec.capacity_memory_mb, PENDING_LEASE_SECONDS)
    args = [str(v) for v in nums]
    return sh(VERIFY, _VERIFY, naming.CLAIMS_DIR, claim_name(spec), *args)


def pending_text(cpus: int, memory_mb: int, stack: str, now: int) -> str:
    """A pending claim (`providers.reservation`): no uid yet, the stack that reserved it and when."""
    return f"{cpus} {memory_mb} {PENDING} {stack} {now}\n"


def plan_ensure(spec: WorkerClaimSpec, have: ClaimsHave) -> list[Step]:
    """Refuse a claim held by another uid or one over the capacity; write it unless it is in place (a
    pending claim is taken over: rewritten with the uid, checked again under the lock)."""
    mine = have.of(spec)
    if mine is not None and not mine.pending and mine.uid != spec.uid:
        raise Conflict(
            spec.host.name,
            f"VM {spec.vm} of slice {spec.slice!r} is claimed on this worker by stack "
            f"{mine.stack or 'unknown'!r} (uid {mine.uid}); nothing changed",
        )
    if (why := over(spec, have)) is not None:
        raise Conflict(spec.host.name, why)
    if mine is not None and (mine.cpus, mine.memory_mb, mine.stack, mine.pending) == (
        spec.cpus,
        spec.memory_mb,
        spec.stack,
        False,
    ):
        return []
    return [
        verify_step(spec),
        bodies.write_file("write claim", naming.claim_file(spec.slice, spec.vm), claim_text(spec)),
    ]


def plan_delete(spec: WorkerClaimSpec, have: ClaimsHave) -> list[Step]:
    """Remove the VM's claim when it is this uid's, or still pending from its stack's reservation."""
    mine = have.of(spec)
    if mine is None:
        return []
    if not (mine.uid == spec.uid and not mine.pending) and not (mine.pending and mine.stack == spec.stack):
        return []
    return [
        sh("remove claim", _REMOVE, f"{naming.CLAIMS_DIR}/{mine.file}", spec.uid or "-", spec.stack or "-")
    ]


def observe(spec: WorkerClaimSpec, have: ClaimsHave) -> tuple[dict[str, Any], list[str]]:
    mine = have.of(spec)
    ours = mine if mine is not None and mine.uid == spec.uid else None
    cpus, mem = totals(have.claims)
    observed = {
        "claim": [ours.cpus, ours.memory_mb] if ours else None,
        "workerClaims": {"cpus": cpus, "memoryMb": mem, "count": len(have.claims)},
    }
    drift = []
    if ours is None:
        drift.append("claim missing")
    elif (ours.cpus, ours.memory_mb) != (spec.cpus, spec.memory_mb):
        drift.append(f"claim is {ours.cpus} vCPUs, {ours.memory_mb} MiB; want {spec.cpus}, {spec.memory_mb}")
    return observed, drift


def after(spec: WorkerClaimSpec, have: ClaimsHave, _res: ScriptResult) -> ClaimsHave:
    mine = VmClaim(spec.slice, spec.vm, spec.cpus, spec.memory_mb, claim_name(spec), spec.uid, spec.stack)
    return ClaimsHave((*have.others(spec), mine), have.now)


def refused(spec: WorkerClaimSpec, exc: StepFailed) -> Conflict | None:
    """The check under the lock found the worker full: report it as the refusal it is."""
    if exc.step != VERIFY:
        return None
    return Conflict(
        spec.host.name,
        f"VM {spec.vm} of slice {spec.slice!r} does not fit: {exc.stderr.strip()}; nothing changed",
    )


KIND: Kind[WorkerClaimSpec, ClaimsHave] = Kind(
    name="WorkerClaim",
    spec_model=WorkerClaimSpec,
    identity=("slice", "host", "vm"),
    replans=False,
    needs_bridge=False,
    resource_id=resource_id,
    preflight=preflight,
    parse_have=parse_have,
    plan_ensure=plan_ensure,
    plan_delete=plan_delete,
    observe=observe,
    after=after,
    gone=lambda spec, have: (m := have.of(spec)) is None or m.uid != spec.uid,
    locked=lambda _spec, _have: True,
    refused=refused,
)


class WorkerClaim(HostResource, kind=KIND):
    """A launched VM's share of its worker; see `WorkerClaimSpec` for the inputs."""


HOST_CAPACITY = "nproc; awk '/^MemTotal:/ {print int($2 / 1024)}' /proc/meminfo"
"""The host's CPUs and memory (MiB), one per line: an undeclared worker's capacity."""

Read = tuple[dict[str, tuple[int, int]], dict[int, str], dict[str, tuple[int, int]]]
"""What the workers say (the shape of `components.prepare.ClaimsRead`): worker -> (vCPUs, MiB) the other
slices' claims hold there, VM id -> the worker this slice's claim of it is on, worker -> (CPUs, MiB) its
host reports."""


@dataclass(frozen=True)
class WorkerRead:
    """One worker's claims (with its clock) and its host's CPUs and memory."""

    have: ClaimsHave
    reported: tuple[int, int] | None


def read_worker(ep: Endpoint) -> WorkerRead:
    """One read round trip: the claims (the kind's preflight), `HOST_CAPACITY` and the time."""
    steps = [*preflight(None), sh("host", HOST_CAPACITY, kind="probe")]
    res = ssh.run_script(ep, steps)
    host = res.out("host").split()
    reported = (
        (int(host[0]), int(host[1]))
        if len(host) == 2 and all(x.isdigit() and int(x) > 0 for x in host)
        else None
    )
    return WorkerRead(parse_have(None, res), reported)


def summarize(reads: Mapping[str, WorkerRead], slice_name: str) -> Read:
    """The placement's view of the workers' reads: the other slices' live claims per worker, this slice's
    VMs' workers (its own claims, taken over or pending), and what the hosts report."""
    others: dict[str, tuple[int, int]] = {}
    mine: dict[int, str] = {}
    reported: dict[str, tuple[int, int]] = {}
    for name, r in sorted(reads.items()):
        live = r.have.live()
        others[name] = totals(c for c in live if c.slice != slice_name)
        mine.update({c.vm: name for c in live if c.slice == slice_name})
        if r.reported is not None:
            reported[name] = r.reported
    return others, mine, reported


def read_claims(raw: Mapping[str, Any], slice_name: str, workers: Mapping[str, Endpoint]) -> Read:
    """What the workers say, for `worker: auto` at preview (`summarize`). One read round trip per worker.
    A worker that cannot be read counts as holding none and reporting nothing, with a warning: at `up` the
    reservation (`providers.reservation`) reads it again under its lock."""
    if not workers:
        return {}, {}, {}
    ssh.configure(raw)
    reads = {}
    try:
        for name, ep in sorted(workers.items()):
            try:
                reads[name] = read_worker(ep)
            except CloudrepoError as exc:
                pulumi.log.warn(f"{name}: its claims could not be read ({exc}); placing as if it had none")
    finally:
        ssh.close_all()
    return summarize(reads, slice_name)

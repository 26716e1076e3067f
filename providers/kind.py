"""A resource kind, declared as one record: its spec, how to read its host, the pure plans from want/have,
what it observes, and the few optional hooks one kind needs. `providers.pipeline.HostProvider` runs every
kind through the same steps from this record; no kind subclasses it or overrides any of its steps.

Every hook is a pure function (or returns steps: argument vectors, never shell text to parse again); the
pipeline owns all I/O. The defaults below are what a kind that does not set a hook gets.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from providers.predict import Expectation
from transport.script import ScriptResult, Step
from vocabulary import specs
from vocabulary.errors import CloudrepoError, StepFailed
from vocabulary.specs import Endpoint

S = TypeVar("S", bound=specs.HostSpec)
H = TypeVar("H")

Observed = tuple[dict[str, Any], list[str]]
"""What the host has, as outputs, and how it differs from the spec (`drift`)."""


def _says_gone(_spec: Any, have: Any) -> bool:
    return bool(have.gone)


def _never(_spec: Any, _have: Any) -> bool:
    return False


def _nothing(_spec: Any) -> list[Step]:
    return []


def _no_expectation(*_args: Any) -> None:
    return None


def _not_foreign(_spec: Any, _have: Any) -> None:
    return None


def _as_given(spec: Any, _have: Any, _olds: Any) -> Any:
    return spec


def _no_scripts(_spec: Any, _have: Any) -> list[tuple[Endpoint, list[Step]]]:
    return []


def _no_report(_spec: Any, _ran: Any) -> dict[str, Any]:
    return {}


def _not_contended(_spec: Any, _exc: StepFailed) -> bool:
    return False


def _not_refused(_spec: Any, _exc: StepFailed) -> None:
    return None


@dataclass(frozen=True)
class Kind(Generic[S, H]):
    """One resource kind. `S` is its spec (the validated inputs), `H` what one read finds on the host
    (a frozen dataclass with a `gone` property, unless the kind sets `gone`)."""

    name: str
    """The registry key (`providers.kinds.KINDS`) and the Pulumi type name (`dynamic:<name>`): never
    renamed, the state's URNs and provider objects refer to it."""
    spec_model: type[S]
    """The pydantic model of the inputs (`check` validates with it)."""
    identity: tuple[str, ...]
    """Input keys whose change replaces the resource (`host` means `host.name`)."""
    resource_id: Callable[[S], str]
    """The resource's id: `{host.name}/{kind}/{object}`."""
    preflight: Callable[[S], list[Step]]
    """The steps of the one read round trip (tools and bridge first, `hoststate.readiness_steps`, when the
    kind needs them; then the object)."""
    parse_have: Callable[[S, ScriptResult], H]
    """The host's state from the preflight's result."""
    plan_ensure: Callable[[S, H], list[Step]]
    """The steps from what the host has to the spec; raises on another slice's object; empty in place."""
    plan_delete: Callable[[S, H], list[Step]]
    """The steps that remove this slice's object (or its use of a shared one); none when gone."""
    observe: Callable[[S, H], Observed]
    """What the host has, as outputs, and how it differs from the spec (`drift`)."""
    after: Callable[[S, H, ScriptResult], H]
    """The host once `plan_ensure`'s steps ran on `have` (the result: that script's, readback included),
    without a read. May raise when the result shows the change did not take (QemuVm: QEMU exited)."""

    delete_before_replace: bool = True
    """Kernel/OVS names would collide, so the old object goes first (False: a shared object, whose new
    user joins before the old one leaves)."""
    needs_bridge: bool = True
    """The preflight's readiness check includes the bridge (`hoststate.check_ready`)."""
    not_diffed: tuple[str, ...] = ()
    """Input keys that only say how to apply a change: a change of them alone is no change."""
    secret_inputs: tuple[str, ...] = ()
    """Input keys the resource hands to the engine as secrets (encrypted in the state; their outputs
    too): CloudSeed's documents, which carry the slice's `userData`."""
    replans: bool = True
    """A locked plan whose step failed is read and planned again, once: its read ran outside the lock, so
    another slice may have made or removed the shared object since (two slices' first `up` at once).
    False: the kind's locked plan re-checks under the lock by itself (a failure is final)."""
    contended: Callable[[S, StepFailed], bool] = _not_contended
    """Whether a locked step failed because another slice committed a change to the shared object since the
    read (DhcpNamespace: an address it chose on VLAN 400 was just reserved by another slice). Such a plan
    is read and planned again until it commits (`pipeline.CONTENDED_ATTEMPTS` at most): every such
    failure follows another slice's commit, so the retries end when the slices that raced it are done."""

    gone: Callable[[S, H], bool] = _says_gone
    """Whether the read found no object of this slice (`read` drops it; a failed create undoes itself)."""
    locked: Callable[[S, H], bool] = _never
    """Whether a change from `have` runs under the hosts' lock (objects slices share, a TAP that moves
    between VLANs). On the one-round-trip path `have` is the expected state."""
    readback: Callable[[S], list[Step]] = _nothing
    """Probes appended to the ensure script (what `after` needs from the host)."""
    expect_create: Callable[[S], Expectation[H] | None] = _no_expectation
    """What a create expects to find (its object absent), when one round trip can make it
    (`providers.predict`)."""
    expect_update: Callable[[S, S], Expectation[H] | None] = _no_expectation
    """What an update from the old inputs (second argument) expects to find, when one round trip can apply
    it."""
    expect_delete: Callable[[S], Expectation[H] | None] = _no_expectation
    """What a delete expects to find, when one round trip can do it (an expectation without guards: the
    delete never reads, its plan checks by itself)."""
    foreign: Callable[[S, H], tuple[str, str | None] | None] = _not_foreign
    """(what, its owner mark) when a delete finds the object another slice's or unmarked: left in place,
    with a warning."""
    resolve: Callable[[S, H, dict[str, Any] | None], S] = _as_given
    """The spec the plan, `after` and `observe` work with, from the inputs, the read and (update) the old
    outputs: DhcpNamespace allocates a shared VLAN's addresses from the read; PoolClaim carries over what an
    update keeps (the adoption of a claim made before uids, a parking VLAN given up). The outputs always
    show the inputs as given. A `Conflict` raised here at `read` only means: observe the spec as given."""
    first: Callable[[S, H], list[tuple[Endpoint, list[Step]]]] = _no_scripts
    """Scripts an ensure runs before its plan, each in its own round trip under its host's lock (TapPort:
    joining a VLAN parks the slice's strays on the other workers that had it)."""
    report: Callable[[S, list[tuple[str, ScriptResult]]], dict[str, Any]] = _no_report
    """What the outputs' `observed` adds from the scripts an ensure ran, as (host name, result), the plan's
    script last (TapPort: `parkedOthers`)."""
    refused: Callable[[S, StepFailed], CloudrepoError | None] = _not_refused
    """The error to report for a step that failed because the host refused the change under the lock
    (PoolClaim: another slice's claim met), or None (the step failure itself)."""
    diff_check: Callable[[S, H], bool] | None = None
    """When set, a diff in which no input changed reads the host (one round trip) and is a change unless
    this holds (QemuVm: a VM that died is restarted by `up` without a refresh first). An unreachable host
    leaves the diff as it is, with a warning."""

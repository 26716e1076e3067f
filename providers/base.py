"""What every cloudrepo dynamic provider shares: configure, check, an explicit diff, create/read/update/delete
around each kind's pure plans, and the Resource base."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any, ClassVar, Generic, TypeVar

import pulumi
import pydantic
from pulumi.dynamic import (
    CheckFailure,
    CheckResult,
    ConfigureRequest,
    CreateResult,
    DiffResult,
    ReadResult,
    ResourceProvider,
    UpdateResult,
)
from pulumi.output import Unknown

from providers import hoststate
from providers.predict import Expectation
from transport import ssh
from transport.script import ScriptResult, Step
from vocabulary import naming, specs
from vocabulary.errors import CloudrepoError, StepFailed

PROVIDER_KEY = "__provider"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime.rpc.UNKNOWN (preview placeholder)
OUTPUT_KEYS = ("drift", "observed")
"""Outputs added to the inputs: `drift` (what `read` found different) and `observed` (the host's state)."""

S = TypeVar("S", bound=specs.HostSpec)
H = TypeVar("H")
log = logging.getLogger("cloudrepo")


def warn_foreign(host: str, what: str, mine: str, owner: str | None) -> None:
    """A delete found the object owned by someone else: say so (it is left in place)."""
    held = naming.describe_mark(owner) if owner else "no slice (unmarked)"
    log.warning(
        "%s: %s belongs to %s, not to %s: left in place", host, what, held, naming.describe_mark(mine)
    )


def _has_unknown(value: Any) -> bool:
    """Whether a preview's value is not known yet: the dynamic-provider server passes unknowns to
    `check`/`diff` as `pulumi.output.Unknown` (the wire form is the `UNKNOWN` string)."""
    if isinstance(value, Unknown):
        return True
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, dict):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return False


def input_part(props: dict[str, Any]) -> dict[str, Any]:
    """`props` without the provider blob and the output-only keys."""
    return {k: v for k, v in props.items() if k != PROVIDER_KEY and k not in OUTPUT_KEYS}


class HostProvider(ResourceProvider, Generic[S, H]):
    """A provider whose resource lives on one host reached over SSH.

    Holds no state: credentials and connections live in `transport.ssh` (the provider process), so the
    pickled object is just a reference to this class.  Each kind gives its pure parts (usually its module's
    functions, as `staticmethod`s): `resource_id`, `preflight` (one read round trip), `parse_have`,
    `plan_ensure`, `plan_delete`, `observe`, and `after` (the host once the plan ran); the create, read,
    update and delete around them, and the re-plan of a shared object raced by another slice, live here.
    A kind that can say what a change will find (`expect_create`, `expect_update`, `expect_delete`, see
    `providers.predict`) has it made in one round trip; otherwise, or when the host is not as expected, a
    read comes first.
    """

    spec_model: ClassVar[type[specs.HostSpec]]
    identity: ClassVar[tuple[str, ...]] = ()
    """Input keys whose change replaces the resource (`host` means `host.name`)."""
    delete_before_replace: ClassVar[bool] = True
    """Kernel/OVS names would collide, so the old object goes first."""
    needs_bridge: ClassVar[bool] = True
    """The preflight checks the bridge too (`hoststate.check_ready`)."""

    resource_id: Callable[[Any], str]
    """The resource's id: `{host.name}/{kind}/{object}`."""
    preflight: Callable[[Any], list[Step]]
    """The steps of the one read round trip (tools, bridge, the object)."""
    plan_ensure: Callable[[Any, Any], list[Step]]
    """The steps from what the host has to the spec (raises on another slice's object)."""
    plan_delete: Callable[[Any, Any], list[Step]]
    """The steps that remove this slice's object (or its use of a shared one); none when gone."""
    observe: Callable[[Any, Any], tuple[dict[str, Any], list[str]]]
    """What the host has, as outputs, and how it differs from the spec (`drift`)."""
    not_diffed: ClassVar[tuple[str, ...]] = ()
    """Input keys that only say how to apply a change: a change of them alone is no change."""

    def configure(self, req: ConfigureRequest) -> None:
        """Read the SSH settings from the stack config into the provider process."""
        ssh.configure(req.config)

    def spec(self, props: dict[str, Any]) -> S:
        """The validated spec of `props` (inputs, or outputs that carry the inputs)."""
        return self.spec_model.model_validate(input_part(props))  # type: ignore[return-value]

    def parse_have(self, spec: S, res: ScriptResult) -> H:
        """The host's state from the preflight's result."""
        raise NotImplementedError

    def after(self, spec: S, have: H, res: ScriptResult) -> H:
        """The host's state once `plan_ensure`'s steps ran (`res`: that script's result), without a read."""
        raise NotImplementedError

    def locked(self, spec: S) -> bool:
        """Whether changes run under the hosts' lock (objects that slices share)."""
        return False

    def readback(self, spec: S) -> list[Step]:
        """Probes appended to the ensure script (what `after` needs from the host)."""
        return []

    def expect_create(self, spec: S) -> Expectation[H] | None:
        """What a create expects to find (its object absent), when one round trip can make it."""
        return None

    def expect_update(self, spec: S, old: S) -> Expectation[H] | None:
        """What an update from the `old` inputs expects to find, when one round trip can apply it."""
        return None

    def expect_delete(self, spec: S) -> Expectation[H] | None:
        """What a delete expects to find (the object as this slice made it), when one round trip can do it."""
        return None

    def _gone(self, spec: S, have: H) -> bool:
        return bool(getattr(have, "gone"))  # noqa: B009 (every kind's state says so)

    def _have(self, spec: S) -> H:
        """The one read round trip; `HostNotReady` when a tool or the bridge is missing."""
        res = ssh.run_script(spec.host, self.preflight(spec))
        if res.ran("tools"):
            hoststate.check_ready(spec.host.name, res, spec.bridge if self.needs_bridge else None)
        return self.parse_have(spec, res)

    def _observe(self, spec: S, have: H) -> tuple[dict[str, Any], list[str]]:
        return self.observe(spec, have)

    def _apply(self, spec: S) -> tuple[H, list[Step], ScriptResult]:
        """Read, plan and run the plan: (what was there, the steps run, their result).

        A locked plan is made from a read outside the lock, so another slice may have made or removed the
        shared object since (two slices' first `up` at once): a failed step re-reads and re-plans, once.
        """
        for attempt in (1, 2):
            have = self._have(spec)
            steps = self.plan_ensure(spec, have)
            if not steps:
                return have, steps, ScriptResult()
            try:
                res = ssh.run_script(
                    spec.host, [*steps, *self.readback(spec)], locked=self.locked(spec), holder=spec.slice
                )
            except StepFailed as exc:
                if not self.locked(spec) or attempt == 2:
                    exc.fresh = self._gone(spec, have)
                    raise
                continue
            return have, steps, res
        raise AssertionError("unreachable")

    def _outputs(self, spec: S, have: H, steps: list[Step], res: ScriptResult) -> dict[str, Any]:
        """The outputs once `steps` ran on a host that had `have`."""
        observed, drift = self.observe(spec, self.after(spec, have, res))
        observed["adopted"] = not self._gone(spec, have)
        observed["changed"] = [s.name for s in steps]
        return outputs(spec, observed, drift)

    def _ensure(self, spec: S) -> dict[str, Any]:
        have, steps, res = self._apply(spec)
        return self._outputs(spec, have, steps, res)

    def _expected(self, spec: S, expected: Expectation[H] | None) -> dict[str, Any] | None:
        """The plan for the expected state, behind its guards, in one round trip: the outputs, or None
        when a guard found the host otherwise (nothing changed; the caller reads and plans)."""
        if expected is None:
            return None
        steps = self.plan_ensure(spec, expected.have)
        try:
            res = self._run_expected(spec, expected, [*steps, *self.readback(spec)])
        except StepFailed as exc:
            exc.fresh = self._gone(spec, expected.have)
            raise
        if expected.missed(res):
            return None
        return self._outputs(spec, expected.have, steps, res)

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Create the object, or adopt this slice's own; another slice's or an unmarked one is refused."""
        spec = self.spec(props)
        try:
            out = self._expected(spec, self.expect_create(spec))
            return CreateResult(self.resource_id(spec), out if out is not None else self._ensure(spec))
        except StepFailed as exc:
            if exc.fresh:
                self._undo_create(spec)
            raise

    def _undo_create(self, spec: S) -> None:
        """A create that found its object absent failed part-way: remove what it made (best effort), so
        a failed `up` followed by `destroy` leaves nothing (the engine records no failed create)."""
        try:
            have = self._have(spec)
            if self.foreign(spec, have) is None:
                steps = self.plan_delete(spec, have)
                ssh.run_script(spec.host, steps, locked=self.locked(spec), holder=spec.slice)
        except CloudrepoError as exc:
            log.warning("%s: what the failed create of %s made is left: %s", spec.host.name, spec.slice, exc)

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The object as it is on the host: gone -> empty id; differences listed in `drift`."""
        spec = self.spec(props)
        have = self._have(spec)
        if self._gone(spec, have):
            return ReadResult("", {})
        observed, drift = self._observe(spec, have)
        return ReadResult(id_, outputs(spec, observed, drift))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Bring the object to the new inputs in place (the same plan as create, from what is there)."""
        spec = self.spec(news)
        expected = None
        if not olds.get("drift"):
            with contextlib.suppress(pydantic.ValidationError):  # older inputs: read first
                expected = self.expect_update(spec, self.spec(olds))
        out = self._expected(spec, expected)
        return UpdateResult(out if out is not None else self._ensure(spec))

    def foreign(self, spec: S, have: H) -> tuple[str, str | None] | None:
        """(what, its owner) when a delete finds the object another slice's or unmarked; else None."""
        return None

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Remove this slice's object (or its use of a shared one); already gone is fine; another slice's
        is left in place, with a warning."""
        spec = self.spec(props)
        if self._deleted_as_expected(spec):
            return
        have = self._have(spec)
        found = self.foreign(spec, have)
        if found is not None:
            warn_foreign(spec.host.name, found[0], spec.owner, found[1])
        ssh.run_script(spec.host, self.plan_delete(spec, have), locked=self.locked(spec), holder=spec.slice)

    def _deleted_as_expected(self, spec: S) -> bool:
        """The delete of the expected state, behind its guards, in one round trip; False when a guard found
        the host otherwise (nothing changed; the caller reads and plans)."""
        expected = self.expect_delete(spec)
        if expected is None:
            return False
        res = self._run_expected(spec, expected, self.plan_delete(spec, expected.have))
        return not expected.missed(res)

    def _run_expected(self, spec: S, expected: Expectation[H], steps: list[Step]) -> ScriptResult:
        locked = expected.locked or self.locked(spec)
        return ssh.run_script(spec.host, [*expected.guards(), *steps], locked=locked, holder=spec.slice)

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Validate the inputs with the pydantic spec; report every problem at once."""
        inputs = input_part(news)
        found = specs.problems(self.spec_model, inputs)
        if _has_unknown(inputs):
            # preview with values not yet known: check only what is known
            found = [(p, r) for p, r in found if not _has_unknown(_at(inputs, p))]
            return CheckResult(news, [CheckFailure(p, r) for p, r in found])
        if found:
            return CheckResult(news, [CheckFailure(p, r) for p, r in found])
        normalized = self.spec_model.model_validate(inputs).inputs()
        out = dict(news)
        out.update(normalized)
        return CheckResult(out, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Identity fields replace; everything else updates in place; drift found by `read` updates too."""
        old_in, new_in = input_part(olds), input_part(news)
        changed: list[str] = []
        replaces: list[str] = []
        for key in sorted(set(old_in) | set(new_in)):
            a, b = old_in.get(key), new_in.get(key)
            if a == b or key in self.not_diffed:
                continue
            changed.append(key)
            if key == "host" and "host" in self.identity:
                same_name = isinstance(a, dict) and isinstance(b, dict) and a.get("name") == b.get("name")
                if _has_unknown(b) or not same_name:
                    replaces.append(key)
            elif key in self.identity:
                replaces.append(key)
        if olds.get("drift"):
            changed.append("drift")
        stables = sorted(k for k in new_in if k not in changed)
        return DiffResult(
            changes=bool(changed),
            replaces=replaces,
            stables=stables,
            delete_before_replace=self.delete_before_replace if replaces else False,
        )


def _at(tree: dict[str, Any], path: str) -> Any:
    node: Any = tree
    for part in path.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return None
    return node


def outputs(spec: specs.HostSpec, observed: dict[str, Any], drift: list[str] | None = None) -> dict[str, Any]:
    """The resource's outputs: its inputs, the observed host state and the drift list."""
    out = spec.inputs()
    out["observed"] = observed
    out["drift"] = list(drift or [])
    return out


class HostResource(pulumi.dynamic.Resource):
    """Base of the cloudrepo resources: inputs are `spec.inputs()`, plus the output placeholders."""

    drift: pulumi.Output[list[str]]
    """What the last `read` (refresh) found different from the inputs; empty after create/update."""
    observed: pulumi.Output[dict[str, Any]]
    """The state found on the host."""

    def __init__(
        self,
        provider: ResourceProvider,
        resource_name: str,
        spec: specs.HostSpec,
        opts: pulumi.ResourceOptions | None = None,
        uid: pulumi.Input[str] | None = None,
    ) -> None:
        """`uid`: the slice's uid (`providers.kinds.identity`), an output of another resource, so it is set
        here rather than in `spec`; it overrides `spec.uid`."""
        props: dict[str, Any] = spec.inputs()
        if uid is not None:
            props["uid"] = uid
        props.update({k: None for k in OUTPUT_KEYS})
        super().__init__(provider, resource_name, props, opts)

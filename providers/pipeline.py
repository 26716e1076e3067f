"""The resource pipeline: ONE closed provider, `HostProvider`, runs every kind (`providers.kind.Kind`)
through check, diff, create, read, update and delete; no kind subclasses it or overrides any step.

Create and update: the kind's expectation, when it has one, behind its guards, in one round trip
(`providers.predict`); otherwise, or when a guard finds the host otherwise, read -> resolve -> plan ->
run (retried once when a locked plan's read raced another slice). Read: read -> observe. Delete: the
expectation, or read -> plan_delete (another slice's object left, with a warning). A create that found its
object absent and failed part-way undoes what it made.

About 390 lines: the engine's six calls, written once for every kind, the diff of inputs, and the one
resource class the kinds' resources are made from.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, ClassVar

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
from providers.kind import Kind
from providers.lock_report import reporting
from providers.predict import Expectation
from transport import ssh
from transport.script import ScriptResult, Step
from vocabulary import naming, specs
from vocabulary.errors import CloudrepoError, Conflict, OwnershipConflict, SshError, StepFailed

PROVIDER_KEY = "__provider"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # pulumi.runtime.rpc.UNKNOWN (preview placeholder)
OUTPUT_KEYS = ("drift", "observed")
"""Outputs added to the inputs: `drift` (what `read` found different) and `observed` (the host's state)."""
CONTENDED_ATTEMPTS = 32
"""How many times a locked plan is read and planned when its step keeps failing because another slice
committed first (`Kind.contended`): each failure is another slice's commit, and a network node carries
about 13 slices (the addressing's limit), so a plan raced by all of them at once still commits."""

log = logging.getLogger("cloudrepo")
AnyKind = Kind[Any, Any]


def warn_foreign(host: str, what: str, mine: str, owner: str | None) -> None:
    """A delete found the object owned by someone else: say so (it is left in place)."""
    held = naming.describe_mark(owner) if owner else "no slice (unmarked)"
    log.warning(
        "%s: %s belongs to %s, not to %s: left in place", host, what, held, naming.describe_mark(mine)
    )


def has_unknown(value: Any) -> bool:
    """Whether a preview's value is not known yet: the dynamic-provider server passes unknowns to
    `check`/`diff` as `pulumi.output.Unknown` (the wire form is the `UNKNOWN` string)."""
    if isinstance(value, Unknown):
        return True
    if isinstance(value, str):
        return value == UNKNOWN
    if isinstance(value, dict):
        return any(has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(has_unknown(v) for v in value)
    return False


def input_part(props: dict[str, Any]) -> dict[str, Any]:
    """`props` without the provider blob and the output-only keys."""
    return {k: v for k, v in props.items() if k != PROVIDER_KEY and k not in OUTPUT_KEYS}


def record(name: str) -> AnyKind:
    """The registered kind `name` (`providers.kinds.KINDS`), looked up when a provider runs: the registry
    imports every kind module, and each of those imports this one."""
    from providers.kinds import KINDS

    return KINDS[name]


class HostProvider(ResourceProvider):
    """THE stable entry point of every host resource: the state refers to this class by its module path.

    The engine stores each resource's provider object in its `__provider` input and output, pickled by dill
    as a reference to `providers.pipeline.HostProvider` plus the instance's one attribute, the kind's name
    (a str; credentials and connections live in `transport.ssh`, in the provider process). Every later
    `refresh`, `up` and `destroy` of that state unpickles it, with whatever code is then checked out, before
    it runs anything: so this module path, this class name and the meaning of `kind` (the registry key,
    `providers.kinds.KINDS`, which is also the Pulumi type name) must never move or change, or every
    deployed slice becomes unmanageable. Kinds are added, changed and moved freely behind the name.
    The paths the state referred to before this entry point (`providers.tap_port.TapPortProvider`, ...)
    stay importable: `providers.legacy`.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind

    @property
    def record(self) -> AnyKind:
        return record(self.kind)

    def configure(self, req: ConfigureRequest) -> None:
        """Read the SSH settings from the stack config into the provider process."""
        ssh.configure(req.config)

    def spec(self, props: dict[str, Any]) -> Any:
        """The validated spec of `props` (inputs, or outputs that carry the inputs)."""
        return self.record.spec_model.model_validate(input_part(props))

    # ---- the steps, written once --------------------------------------------------------------------

    def _read(self, kind: AnyKind, spec: Any) -> Any:
        """The one read round trip; `HostNotReady` when a tool or the bridge is missing."""
        res = ssh.run_script(spec.host, kind.preflight(spec))
        if res.ran("tools"):
            hoststate.check_ready(spec.host.name, res, spec.bridge if kind.needs_bridge else None)
        return kind.parse_have(spec, res)

    def _observed(
        self,
        kind: AnyKind,
        spec: Any,
        work: Any,
        have: Any,
        steps: list[Step],
        res: ScriptResult,
        ran: list[tuple[str, ScriptResult]],
    ) -> dict[str, Any]:
        """The outputs once `steps` ran on a host that had `have` (`res`: their script's result; `ran`: every
        script of the change, as (host name, result)): the inputs as given, what `work` observes after the
        plan, and its drift."""
        observed, drift = kind.observe(work, kind.after(work, have, res))
        observed["adopted"] = not kind.gone(work, have)
        observed["changed"] = [s.name for s in steps]
        observed.update(kind.report(work, ran))
        return outputs(spec, observed, drift)

    def _run(self, kind: AnyKind, work: Any, steps: list[Step], locked: bool) -> ScriptResult:
        try:
            return ssh.run_script(work.host, steps, locked=locked, holder=work.slice)
        except StepFailed as exc:
            refused = kind.refused(work, exc)
            if refused is not None:
                raise refused from None
            raise

    def _ensure(self, kind: AnyKind, spec: Any, olds: dict[str, Any] | None) -> dict[str, Any]:
        """Read, resolve, plan and run the plan; the outputs.

        The read of a shared object is made outside the lock, so it may catch another slice's locked change
        half-way (its port made but not yet seen, or its device seen before its port): a plan of a locked
        object that refuses what it read, or whose step fails, reads and plans again, once (`replans`), and
        again while its step fails because another slice committed first (`contended`)."""
        attempt = 0
        while True:
            attempt += 1
            have = self._read(kind, spec)
            work = kind.resolve(spec, have, olds)
            locked = kind.locked(work, have)
            try:
                steps = kind.plan_ensure(work, have)
            except (OwnershipConflict, Conflict):
                if not (locked and kind.replans) or attempt >= 2:
                    raise
                continue
            ran: list[tuple[str, ScriptResult]] = []
            res = ScriptResult()
            try:
                for host, first in kind.first(work, have):
                    ran.append((host.name, ssh.run_script(host, first, locked=True, holder=work.slice)))
                if steps:
                    res = self._run(kind, work, [*steps, *kind.readback(work)], locked)
                    ran.append((work.host.name, res))
            except StepFailed as exc:
                if not self._again(kind, work, locked, attempt, exc):
                    exc.fresh = kind.gone(work, have)
                    raise
                continue
            return self._observed(kind, spec, work, have, steps, res, ran)

    @staticmethod
    def _again(kind: AnyKind, work: Any, locked: bool, attempt: int, exc: StepFailed) -> bool:
        """Whether a locked plan whose step failed is read and planned again: once, or while another slice
        keeps committing first (`Kind.contended`)."""
        if not (locked and kind.replans):
            return False
        return attempt < 2 or (kind.contended(work, exc) and attempt < CONTENDED_ATTEMPTS)

    def _expected(
        self, kind: AnyKind, spec: Any, expected: Expectation[Any] | None, olds: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """The plan for the expected state, behind its guards, in one round trip: the outputs, or None
        when a guard found the host otherwise (nothing changed; the caller reads and plans)."""
        if expected is None:
            return None
        work = kind.resolve(spec, expected.have, olds)
        steps = kind.plan_ensure(work, expected.have)
        try:
            res = self._run_expected(kind, work, expected, [*steps, *kind.readback(work)])
        except StepFailed as exc:
            exc.fresh = kind.gone(work, expected.have)
            raise
        if expected.missed(res):
            return None
        return self._observed(kind, spec, work, expected.have, steps, res, [(work.host.name, res)])

    def _run_expected(
        self, kind: AnyKind, spec: Any, expected: Expectation[Any], steps: list[Step]
    ) -> ScriptResult:
        locked = expected.locked or kind.locked(spec, expected.have)
        return self._run(kind, spec, [*expected.guards(), *steps], locked)

    def _undo_create(self, kind: AnyKind, spec: Any) -> None:
        """A create that found its object absent failed part-way: remove what it made (best effort), so
        a failed `up` followed by `destroy` leaves nothing (the engine records no failed create)."""
        try:
            have = self._read(kind, spec)
            if kind.foreign(spec, have) is None:
                steps = kind.plan_delete(spec, have)
                ssh.run_script(spec.host, steps, locked=kind.locked(spec, have), holder=spec.slice)
        except CloudrepoError as exc:
            log.warning("%s: what the failed create of %s made is left: %s", spec.host.name, spec.slice, exc)

    # ---- the engine's calls -------------------------------------------------------------------------

    def create(self, props: dict[str, Any]) -> CreateResult:
        """Create the object, or adopt this slice's own; another slice's or an unmarked one is refused."""
        kind = self.record
        spec = self.spec(props)
        with reporting(spec.host.name, kind.resource_id(spec)):
            return self._create(kind, spec)

    def _create(self, kind: AnyKind, spec: Any) -> CreateResult:
        try:
            out = self._expected(kind, spec, kind.expect_create(spec), None)
            return CreateResult(
                kind.resource_id(spec), out if out is not None else self._ensure(kind, spec, None)
            )
        except StepFailed as exc:
            if exc.fresh:
                self._undo_create(kind, spec)
            raise

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        """The object as it is on the host: gone -> empty id; differences listed in `drift`."""
        kind = self.record
        spec = self.spec(props)
        have = self._read(kind, spec)
        if kind.gone(spec, have):
            return ReadResult("", {})
        try:
            work = kind.resolve(spec, have, None)
        except Conflict:
            work = spec  # nothing left to resolve with: report what is there
        observed, drift = kind.observe(work, have)
        return ReadResult(id_, outputs(spec, observed, drift))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """Bring the object to the new inputs in place (the same plan as create, from what is there)."""
        kind = self.record
        spec = self.spec(news)
        expected = None
        if not olds.get("drift"):
            with contextlib.suppress(pydantic.ValidationError):  # older inputs: read first
                expected = kind.expect_update(spec, self.spec(olds))
        with reporting(spec.host.name, kind.resource_id(spec)):
            out = self._expected(kind, spec, expected, olds)
            return UpdateResult(out if out is not None else self._ensure(kind, spec, olds))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Remove this slice's object (or its use of a shared one); already gone is fine; another slice's
        is left in place, with a warning."""
        kind = self.record
        spec = self.spec(props)
        with reporting(spec.host.name, kind.resource_id(spec)):
            self._delete(kind, spec)

    def _delete(self, kind: AnyKind, spec: Any) -> None:
        expected = kind.expect_delete(spec)
        if expected is not None:
            res = self._run_expected(kind, spec, expected, kind.plan_delete(spec, expected.have))
            if not expected.missed(res):
                return
        have = self._read(kind, spec)
        found = kind.foreign(spec, have)
        if found is not None:
            warn_foreign(spec.host.name, found[0], spec.owner, found[1])
        ssh.run_script(
            spec.host, kind.plan_delete(spec, have), locked=kind.locked(spec, have), holder=spec.slice
        )

    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> CheckResult:
        """Validate the inputs with the pydantic spec; report every problem at once."""
        model = self.record.spec_model
        inputs = input_part(news)
        found = specs.problems(model, inputs)
        if has_unknown(inputs):
            # preview with values not yet known: check only what is known
            found = [(p, r) for p, r in found if not has_unknown(_at(inputs, p))]
            return CheckResult(news, [CheckFailure(p, r) for p, r in found])
        if found:
            return CheckResult(news, [CheckFailure(p, r) for p, r in found])
        out = dict(news)
        out.update(model.model_validate(inputs).inputs())
        return CheckResult(out, [])

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        """Identity fields replace; everything else updates in place; drift found by `read` updates too;
        with the kind's `diff_check`, a host that no longer holds is a change."""
        kind = self.record
        result = input_diff(kind, olds, news)
        if kind.diff_check is None or result.changes or has_unknown(input_part(news)):
            return result
        spec = self.spec(news)
        try:
            have = self._read(kind, spec)
        except SshError as exc:
            log.warning("%s: %s: cannot check the host: %s", spec.host.name, kind.resource_id(spec), exc)
            return result
        if kind.diff_check(spec, have):
            return result
        return DiffResult(changes=True, replaces=[], stables=[], delete_before_replace=False)


def input_diff(kind: AnyKind, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
    """The diff of the inputs alone (and of the drift a `read` recorded)."""
    old_in, new_in = input_part(olds), input_part(news)
    changed: list[str] = []
    replaces: list[str] = []
    for key in sorted(set(old_in) | set(new_in)):
        a, b = old_in.get(key), new_in.get(key)
        if a == b or key in kind.not_diffed:
            continue
        changed.append(key)
        if key == "host" and "host" in kind.identity:
            same_name = isinstance(a, dict) and isinstance(b, dict) and a.get("name") == b.get("name")
            if has_unknown(b) or not same_name:
                replaces.append(key)
        elif key in kind.identity:
            replaces.append(key)
    if olds.get("drift"):
        changed.append("drift")
    stables = sorted(k for k in new_in if k not in changed)
    return DiffResult(
        changes=bool(changed),
        replaces=replaces,
        stables=stables,
        delete_before_replace=kind.delete_before_replace if replaces else False,
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
    """The resource class of a kind, made one way: `class TapPort(HostResource, kind=TAP_PORT)`. Its
    Pulumi type is `dynamic:<kind.name>` (the URNs of deployed slices depend on it); its inputs are
    `spec.inputs()`, plus the output placeholders; its provider is `HostProvider(kind.name)`."""

    kind_name: ClassVar[str]
    secret_inputs: ClassVar[tuple[str, ...]] = ()
    drift: pulumi.Output[list[str]]
    """What the last `read` (refresh) found different from the inputs; empty after create/update."""
    observed: pulumi.Output[dict[str, Any]]
    """The state found on the host."""

    def __init_subclass__(cls, kind: AnyKind | None = None, **kwargs: Any) -> None:
        if kind is not None:
            cls.kind_name = kind.name
            cls.secret_inputs = kind.secret_inputs
            kwargs["name"] = kind.name
        super().__init_subclass__(**kwargs)

    def __init__(
        self,
        resource_name: str,
        spec: specs.HostSpec,
        opts: pulumi.ResourceOptions | None = None,
        uid: pulumi.Input[str] | None = None,
    ) -> None:
        """`uid`: the slice's uid (`providers.identity`), an output of another resource, so it is set
        here rather than in `spec`; it overrides `spec.uid`."""
        props: dict[str, Any] = spec.inputs()
        if uid is not None:
            props["uid"] = uid
        secret = self.secret_inputs
        for key in secret:
            props[key] = pulumi.Output.secret(props[key])
        if secret:
            also = pulumi.ResourceOptions(additional_secret_outputs=list(secret))
            opts = pulumi.ResourceOptions.merge(opts, also)
        props.update({k: None for k in OUTPUT_KEYS})
        super().__init__(HostProvider(self.kind_name), resource_name, props, opts)

"""PoolClaim: a slice's VLAN range claimed on a network node, under the lock.

`/var/lib/cloudrepo/pools/<slice>` holds `start end`.  A range overlapping another slice's claim is refused
with a message naming that slice and its range (checked from the read, and again under the lock).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from . import bodies, naming, ssh
from .base import HostProvider, HostResource, outputs
from .errors import Conflict, StepFailed
from .script import ScriptResult, Step, run, sh
from .specs import PoolClaimSpec

POOLS_DIR = f"{naming.STATE_ROOT}/pools"
VERIFY = "verify no overlap"

_LIST = (
    'cd "$1" 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] || continue; '
    'case "$f" in .*) continue;; esac; printf "%s %s\\n" "$f" "$(head -n 1 "$f")"; done'
)
_VERIFY = (
    'cd "$1" 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] && [ "$f" != "$2" ] || continue; '
    'read -r s e <"$f" || continue; '
    'if [ "$s" -le "$4" ] && [ "$3" -le "$e" ]; then '
    'echo "VLANs $3-$4 overlap slice $f (claims $s-$e)" >&2; exit 1; fi; done'
)


def resource_id(spec: PoolClaimSpec) -> str:
    return f"{spec.host.name}/pool/{spec.slice}"


@dataclass(frozen=True)
class Claim:
    slice: str
    start: int
    end: int


@dataclass(frozen=True)
class PoolHave:
    claims: tuple[Claim, ...]

    def of(self, slice_name: str) -> Claim | None:
        return next((c for c in self.claims if c.slice == slice_name), None)


def preflight(spec: PoolClaimSpec) -> list[Step]:
    return [sh("claims", _LIST, POOLS_DIR, kind="probe")]


def parse_claims(text: str) -> tuple[Claim, ...]:
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            out.append(Claim(parts[0], int(parts[1]), int(parts[2])))
    return tuple(sorted(out, key=lambda c: (c.start, c.slice)))


def parse_have(res: ScriptResult) -> PoolHave:
    return PoolHave(parse_claims(res.out("claims")))


def overlap(spec: PoolClaimSpec, have: PoolHave) -> Claim | None:
    return next(
        (c for c in have.claims if c.slice != spec.slice and c.start <= spec.end and spec.start <= c.end),
        None,
    )


def plan_ensure(spec: PoolClaimSpec, have: PoolHave) -> list[Step]:
    """Refuse an overlap; write the claim unless it is already there (re-verified under the lock)."""
    other = overlap(spec, have)
    if other is not None:
        raise Conflict(
            spec.host.name,
            f"VLANs {spec.start}-{spec.end} of slice {spec.slice!r} overlap slice {other.slice!r} "
            f"(claims {other.start}-{other.end}); nothing changed",
        )
    mine = have.of(spec.slice)
    if mine is not None and (mine.start, mine.end) == (spec.start, spec.end):
        return []
    return [
        sh(VERIFY, _VERIFY, POOLS_DIR, spec.slice, str(spec.start), str(spec.end)),
        bodies.write_file("write claim", naming.pool_file(spec.slice), f"{spec.start} {spec.end}\n"),
    ]


def plan_delete(spec: PoolClaimSpec, have: PoolHave) -> list[Step]:
    if have.of(spec.slice) is None:
        return []
    return [run("remove claim", "rm", "-f", naming.pool_file(spec.slice))]


def observe(spec: PoolClaimSpec, have: PoolHave) -> tuple[dict[str, Any], list[str]]:
    mine = have.of(spec.slice)
    observed = {
        "claim": [mine.start, mine.end] if mine else None,
        "others": {c.slice: [c.start, c.end] for c in have.claims if c.slice != spec.slice},
    }
    drift = []
    if mine is None:
        drift.append("claim missing")
    elif (mine.start, mine.end) != (spec.start, spec.end):
        drift.append(f"claim is {mine.start}-{mine.end}, want {spec.start}-{spec.end}")
    return observed, drift


class PoolClaimProvider(HostProvider[PoolClaimSpec, PoolHave]):
    """VLAN range claim on the network node."""

    spec_model = PoolClaimSpec
    identity = ("slice", "host")

    def _have(self, spec: PoolClaimSpec) -> PoolHave:
        return parse_have(ssh.run_script(spec.host, preflight(spec)))

    def _ensure(self, spec: PoolClaimSpec) -> dict[str, Any]:
        have = self._have(spec)
        steps = plan_ensure(spec, have)
        try:
            ssh.run_script(spec.host, steps, locked=True)
        except StepFailed as exc:
            if exc.step == VERIFY:
                raise Conflict(spec.host.name, f"{exc.stderr.strip()}; nothing changed") from None
            raise
        others = tuple(c for c in have.claims if c.slice != spec.slice)
        observed, _ = observe(spec, PoolHave((*others, Claim(spec.slice, spec.start, spec.end))))
        observed["adopted"] = have.of(spec.slice) is not None
        observed["changed"] = [s.name for s in steps]
        return outputs(spec, observed)

    def resource_id(self, spec: PoolClaimSpec) -> str:
        return resource_id(spec)

    def _observe(self, spec: PoolClaimSpec, have: PoolHave) -> tuple[dict[str, Any], list[str]]:
        return observe(spec, have)

    def _gone(self, spec: PoolClaimSpec, have: PoolHave) -> bool:
        return have.of(spec.slice) is None

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Drop this slice's claim; already gone is fine."""
        spec = self.spec(props)
        have = self._have(spec)
        ssh.run_script(spec.host, plan_delete(spec, have), locked=True)


class PoolClaim(HostResource, name="PoolClaim"):
    """A slice's VLAN range on the network node; see `PoolClaimSpec` for the inputs."""

    def __init__(
        self, resource_name: str, spec: PoolClaimSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(PoolClaimProvider(), resource_name, spec, opts)

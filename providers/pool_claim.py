"""PoolClaim: a slice's VLAN range claimed on a network node, under the lock.

`/var/lib/cloudrepo/pools/<slice>@<start>` holds `start end`; a slice holds two claims while its pool moves
(the new one is made before the old one goes). Two slices' claims may not meet: not the same VLAN, and not
the same `VLAN % 256` either, since that is the link subnet's third octet (`192.168.{vlan % 256}.0/24`).
A clash is refused with a message naming both slices and both ranges, checked from the read and again
under the lock. Every other resource of the slice depends on its claim.

The claim also records the slice's parking VLAN (a line `parking <vlan>`): no slice's parking VLAN may lie in
another slice's pool, checked both ways (a parking VLAN inside a claimed pool; a pool that holds a claimed
parking VLAN). Only the VLAN itself counts, not `VLAN % 256`: a parked port has no address and no subnet.
Slices may share a parking VLAN (parked ports pass no traffic at all, see `providers.tap_port`). An update
that changes the parking VLAN records the old one too (its TAPs leave it only later in the same `up`); the
claim forgets it the next time it is written (`refresh` reports it as drift, the next `up` writes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pydantic
from pulumi.dynamic import UpdateResult

from . import bodies, naming, ssh
from .base import HostProvider, HostResource, outputs
from .errors import Conflict, StepFailed
from .script import ScriptResult, Step, run, sh
from .specs import PoolClaimSpec

VERIFY = "verify no clash"
SUBNET_OCTETS = 256
"""VLANs that are equal modulo this give the same link subnet."""

# every claim file: "<file> <start> <end>", then "<file> parking <vlan>" for each parking VLAN it records
_LIST = (
    'cd "$1" 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] || continue; '
    'case "$f" in .*) continue;; esac; printf "%s %s\\n" "$f" "$(head -n 1 "$f")"; '
    'for p in $(sed -n "s/^parking //p" "$f"); do printf "%s parking %s\\n" "$f" "$p"; done; done'
)
# $1 dir, $2 slice, $3 start, $4 end, then the slice's parking VLANs: fails naming the first other slice
# whose claim meets start..end, whose pool holds one of the parking VLANs, or whose parking VLAN is in
# start..end
_VERIFY = (
    'd=$1; n=$2; a=$3; b=$4; shift 4; cd "$d" 2>/dev/null || exit 0; for f in *; do [ -f "$f" ] || continue; '
    'o=${f%@*}; [ "$o" != "$n" ] || continue; read -r s e <"$f" || continue; '
    'for p in "$@"; do if [ "$p" -ge "$s" ] && [ "$p" -le "$e" ]; then '
    "echo \"parking VLAN $p of slice '$n' is in the pool of slice '$o' (claims $s-$e)\" >&2; exit 1; fi; "
    "done; "
    'for q in $(sed -n "s/^parking //p" "$f"); do if [ "$q" -ge "$a" ] && [ "$q" -le "$b" ]; then '
    "echo \"VLANs $a-$b of slice '$n' hold VLAN $q, the parking VLAN of slice '$o' (claims $s-$e)\" >&2; "
    "exit 1; fi; done; v=$a; "
    'while [ "$v" -le "$b" ]; do w=$s; while [ "$w" -le "$e" ]; do '
    "if [ $((v % 256)) -eq $((w % 256)) ]; then "
    "echo \"VLANs $a-$b of slice '$n' meet slice '$o' "
    '(claims $s-$e: VLAN $w, subnet 192.168.$((w % 256)).0/24)" >&2; '
    "exit 1; fi; w=$((w+1)); done; v=$((v+1)); done; done"
)


def resource_id(spec: PoolClaimSpec) -> str:
    return f"{spec.host.name}/pool/{spec.slice}@{spec.start}"


@dataclass(frozen=True)
class Claim:
    slice: str
    start: int
    end: int
    file: str
    """The file name under the pools directory."""
    parking: tuple[int, ...] = ()
    """The slice's parking VLANs (none: a claim made before parking VLANs were recorded)."""


@dataclass(frozen=True)
class PoolHave:
    claims: tuple[Claim, ...]

    def of(self, slice_name: str, start: int) -> Claim | None:
        return next((c for c in self.claims if c.slice == slice_name and c.start == start), None)


def meet(a_start: int, a_end: int, b_start: int, b_end: int) -> int | None:
    """A VLAN of b_start..b_end equal to one of a_start..a_end modulo 256 (same VLAN or subnet), or None."""
    residues = {v % SUBNET_OCTETS for v in range(a_start, a_end + 1)}
    return next((w for w in range(b_start, b_end + 1) if w % SUBNET_OCTETS in residues), None)


def preflight(_spec: PoolClaimSpec) -> list[Step]:
    return [sh("claims", _LIST, naming.POOLS_DIR, kind="probe")]


def parse_claims(text: str) -> tuple[Claim, ...]:
    out = []
    parking: dict[str, list[int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "parking" and parts[2].isdigit():
            parking.setdefault(parts[0], []).append(int(parts[2]))
        elif len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
            name = parts[0].rpartition("@")[0] or parts[0]  # "<slice>@<start>", or an older "<slice>"
            out.append(Claim(name, int(parts[1]), int(parts[2]), parts[0]))
    out = [Claim(c.slice, c.start, c.end, c.file, tuple(sorted(set(parking.get(c.file, []))))) for c in out]
    return tuple(sorted(out, key=lambda c: (c.start, c.slice)))


def parse_have(res: ScriptResult) -> PoolHave:
    return PoolHave(parse_claims(res.out("claims")))


def clash_message(spec: PoolClaimSpec, other: Claim, vlan: int) -> str:
    same = "VLAN" if spec.start <= vlan <= spec.end else "subnet"
    return (
        f"VLANs {spec.start}-{spec.end} of slice {spec.slice!r} meet slice {other.slice!r} "
        f"(claims {other.start}-{other.end}: the same {same} as its VLAN {vlan}, "
        f"subnet 192.168.{vlan % SUBNET_OCTETS}.0/24); choose another vlanPool.start; nothing changed"
    )


def parking_clash(spec: PoolClaimSpec, other: Claim, keep: tuple[int, ...] = ()) -> str | None:
    """Why the claim is refused because of a parking VLAN (its own, or one it `keep`s, in `other`'s pool; or
    `other`'s in its pool), or None."""
    for mine in parking_vlans(spec, keep):
        if other.start <= mine <= other.end:
            return (
                f"parking VLAN {mine} of slice {spec.slice!r} is in the pool of slice {other.slice!r} "
                f"(claims {other.start}-{other.end}): its parked TAPs would sit on that slice's VLAN; "
                "choose another parkingVlan; nothing changed"
            )
    for theirs in other.parking:
        if spec.start <= theirs <= spec.end:
            return (
                f"VLANs {spec.start}-{spec.end} of slice {spec.slice!r} hold VLAN {theirs}, the parking VLAN "
                f"of slice {other.slice!r} (claims {other.start}-{other.end}); choose another "
                "vlanPool.start; nothing changed"
            )
    return None


def parking_vlans(spec: PoolClaimSpec, keep: tuple[int, ...] = ()) -> tuple[int, ...]:
    """The parking VLANs the claim records: the spec's, and those an update keeps until its TAPs left them."""
    own = (spec.parking_vlan,) if spec.parking_vlan is not None else ()
    return tuple(sorted({*own, *keep}))


def clash(spec: PoolClaimSpec, have: PoolHave, keep: tuple[int, ...] = ()) -> str | None:
    """Why the claim is refused (another slice's claim meets it or its parking VLANs), or None."""
    for c in have.claims:
        if c.slice == spec.slice:
            continue
        if (vlan := meet(spec.start, spec.end, c.start, c.end)) is not None:
            return clash_message(spec, c, vlan)
        if (why := parking_clash(spec, c, keep)) is not None:
            return why
    return None


def claim_text(spec: PoolClaimSpec, keep: tuple[int, ...] = ()) -> str:
    """The claim file: `start end`, then a line per parking VLAN."""
    return f"{spec.start} {spec.end}\n" + "".join(f"parking {p}\n" for p in parking_vlans(spec, keep))


def plan_ensure(spec: PoolClaimSpec, have: PoolHave, keep: tuple[int, ...] = ()) -> list[Step]:
    """Refuse a clash; write the claim unless it is already there (re-verified under the lock). `keep`: the
    parking VLANs an update gives up, recorded until the claim is next written."""
    why = clash(spec, have, keep)
    if why is not None:
        raise Conflict(spec.host.name, why)
    mine = have.of(spec.slice, spec.start)
    parking = parking_vlans(spec, keep)
    if mine is not None and mine.end == spec.end and mine.parking == parking:
        return []
    return [
        sh(VERIFY, _VERIFY, naming.POOLS_DIR, spec.slice, str(spec.start), str(spec.end), *map(str, parking)),
        bodies.write_file("write claim", naming.pool_file(spec.slice, spec.start), claim_text(spec, keep)),
    ]


def plan_delete(spec: PoolClaimSpec, have: PoolHave) -> list[Step]:
    mine = have.of(spec.slice, spec.start)
    if mine is None:
        return []
    return [run("remove claim", "rm", "-f", f"{naming.POOLS_DIR}/{mine.file}")]


def observe(spec: PoolClaimSpec, have: PoolHave) -> tuple[dict[str, Any], list[str]]:
    mine = have.of(spec.slice, spec.start)
    observed = {
        "claim": [mine.start, mine.end] if mine else None,
        "parkingVlan": list(mine.parking) if mine else None,
        "others": {f"{c.slice}@{c.start}": [c.start, c.end] for c in have.claims if c.slice != spec.slice},
    }
    drift = []
    if mine is None:
        drift.append("claim missing")
    elif mine.end != spec.end:
        drift.append(f"claim is {mine.start}-{mine.end}, want {spec.start}-{spec.end}")
    elif mine.parking != parking_vlans(spec):
        drift.append(f"claim records parking VLANs {list(mine.parking)}, want {list(parking_vlans(spec))}")
    return observed, drift


class PoolClaimProvider(HostProvider[PoolClaimSpec, PoolHave]):
    """VLAN range claim on the network node."""

    spec_model = PoolClaimSpec
    identity = ("slice", "host", "start")

    def _have(self, spec: PoolClaimSpec) -> PoolHave:
        return parse_have(ssh.run_script(spec.host, preflight(spec)))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        """As every resource's; a parking VLAN given up stays recorded (its TAPs leave it later on)."""
        spec = self.spec(news)
        try:
            old = self.spec(olds).parking_vlan
        except pydantic.ValidationError:
            old = None
        keep = (old,) if old is not None and old != spec.parking_vlan else ()
        return UpdateResult(self._ensure(spec, keep))

    def _ensure(self, spec: PoolClaimSpec, keep: tuple[int, ...] = ()) -> dict[str, Any]:
        have = self._have(spec)
        steps = plan_ensure(spec, have, keep)
        try:
            ssh.run_script(spec.host, steps, locked=True, holder=spec.slice)
        except StepFailed as exc:
            if exc.step == VERIFY:
                raise Conflict(spec.host.name, f"{exc.stderr.strip()}; nothing changed") from None
            raise
        mine = Claim(
            spec.slice,
            spec.start,
            spec.end,
            naming.pool_file(spec.slice, spec.start).rpartition("/")[2],
            parking_vlans(spec, keep),
        )
        rest = tuple(c for c in have.claims if (c.slice, c.start) != (spec.slice, spec.start))
        observed, _ = observe(spec, PoolHave((*rest, mine)))
        observed["adopted"] = have.of(spec.slice, spec.start) is not None
        observed["changed"] = [s.name for s in steps]
        return outputs(spec, observed)

    def resource_id(self, spec: PoolClaimSpec) -> str:
        return resource_id(spec)

    def _observe(self, spec: PoolClaimSpec, have: PoolHave) -> tuple[dict[str, Any], list[str]]:
        return observe(spec, have)

    def _gone(self, spec: PoolClaimSpec, have: PoolHave) -> bool:
        return have.of(spec.slice, spec.start) is None

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        """Drop this claim of the slice; already gone is fine."""
        spec = self.spec(props)
        have = self._have(spec)
        ssh.run_script(spec.host, plan_delete(spec, have), locked=True, holder=spec.slice)


class PoolClaim(HostResource, name="PoolClaim"):
    """A slice's VLAN range on the network node; see `PoolClaimSpec` for the inputs."""

    def __init__(
        self, resource_name: str, spec: PoolClaimSpec, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__(PoolClaimProvider(), resource_name, spec, opts)

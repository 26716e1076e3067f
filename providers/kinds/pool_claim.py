"""PoolClaim: a slice's VLAN range claimed on a network node, under the lock.

`/var/lib/cloudrepo/pools/<slice>@<start>` holds `start end uid stack` (then its parking lines); a slice
holds two claims while its pool moves (the new one is made before the old one goes). Two slices' claims may
not meet: not the same VLAN, and not the same `VLAN % 256` either, since that is the link subnet's third
octet (`192.168.{vlan % 256}.0/24`).
A clash is refused with a message naming both slices and both ranges, checked from the read and again
under the lock. Every other resource of the slice depends on its claim.

The claim also holds the slice's name for its uid (`providers.identity`): a stack whose slice name is claimed
under another uid is refused, naming the stack the claim records, before it changes anything. A claim made
before slices had uids (`start end`) is adopted (rewritten with the uid) only by an update, i.e. by the stack
whose state holds it; a create that finds one is refused too. A claim is removed only by its own uid.

The claim also records the slice's parking VLAN (a line `parking <vlan>`): no slice's parking VLAN may lie in
another slice's pool, checked both ways (a parking VLAN inside a claimed pool; a pool that holds a claimed
parking VLAN). Only the VLAN itself counts, not `VLAN % 256`: a parked port has no address and no subnet.
Slices may share a parking VLAN (parked ports pass no traffic at all, see `kinds.tap_port`). An update
that changes the parking VLAN records the old one too (its TAPs leave it only later in the same `up`); the
claim forgets it the next time it is written (`refresh` reports it as drift, the next `up` writes it).

About 400 lines: the claim file's format, its reader, the clash checks (in Python from the read, and in sh
under the lock) and the free starts are one contract and stay together.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from typing import Any

import pydantic

from providers import bodies
from providers.kind import Kind
from providers.pipeline import HostResource, input_part
from transport.script import ScriptResult, Step, sh
from vocabulary import naming
from vocabulary.errors import Conflict, StepFailed
from vocabulary.specs import PoolClaimSpec
from vocabulary.values import INTERNET_VLAN, VLAN_MAX, VLAN_MIN

VERIFY = "verify no clash"
SUBNET_OCTETS = 256
"""VLANs that are equal modulo this give the same link subnet."""

# every claim file of the current directory: "<file> <start> <end> [uid stack]", then "<file> parking <vlan>"
# for each parking VLAN
_LIST_HERE = (
    'for f in *; do [ -f "$f" ] || continue; '
    'case "$f" in .*) continue;; esac; printf "%s %s\\n" "$f" "$(head -n 1 "$f")"; '
    'for p in $(sed -n "s/^parking //p" "$f"); do printf "%s parking %s\\n" "$f" "$p"; done; done'
)
_LIST = 'cd "$1" 2>/dev/null || exit 0; ' + _LIST_HERE
CLAIMS_MARK = "@@claims"
"""The line after which a refusal under the lock lists the claims it saw (for the free pool starts)."""
# $1 dir, $2 slice, $3 start, $4 end, $5 uid, $6 "adopt" or "", then the slice's parking VLANs: fails
# naming the stack that holds the slice's name under another uid (a claim with no uid, made before slices
# had uids, only when not adopting), or the first other slice whose claim meets start..end, whose pool holds
# one of the parking VLANs, or whose parking VLAN is in start..end; then lists the claims after CLAIMS_MARK.
# Each claim costs the same few tests whatever the pools' sizes: the first VLAN w of s..e whose VLAN % 256
# is one of a..b's is s when (s - a) mod 256 < b - a + 1, else the next multiple of 256 past a's residue.
_VERIFY = (
    'no() { printf "%s\\n" "$1" "' + CLAIMS_MARK + '" >&2; { ' + _LIST_HERE + "; } >&2; exit 1; }; "
    'd=$1; n=$2; a=$3; b=$4; me=$5; ad=$6; shift 6; cd "$d" 2>/dev/null || exit 0; '
    'for c in *; do [ -f "$c" ] || continue; o=${c%@*}; read -r s e u k <"$c" || continue; '
    'if [ "$o" = "$n" ]; then [ "$u" = "$me" ] || { [ -z "$u" ] && [ "$ad" = adopt ]; } || '
    "no \"slice '$n' is held by stack '${k:-unknown}' (uid ${u:-none}, claim $c)\"; "
    "continue; fi; "
    'for p in "$@"; do if [ "$p" -ge "$s" ] && [ "$p" -le "$e" ]; then '
    "no \"parking VLAN $p of slice '$n' is in the pool of slice '$o' (claims $s-$e)\"; fi; "
    "done; "
    'for q in $(sed -n "s/^parking //p" "$c"); do if [ "$q" -ge "$a" ] && [ "$q" -le "$b" ]; then '
    "no \"VLANs $a-$b of slice '$n' hold VLAN $q, the parking VLAN of slice '$o' (claims $s-$e)\"; "
    "fi; done; "
    "x=$(( ((s - a) % 256 + 256) % 256 )); "
    'if [ "$x" -lt $((b - a + 1)) ]; then w=$s; else w=$((s + 256 - x)); fi; '
    'if [ "$w" -le "$e" ]; then '
    "no \"VLANs $a-$b of slice '$n' meet slice '$o' "
    '(claims $s-$e: VLAN $w, subnet 192.168.$((w % 256)).0/24)"; fi; done'
)
# $1 claim file, $2 uid ("" for a claim with no uid): removes the claim only when it is that uid's
_REMOVE = '[ -f "$1" ] || exit 0; read -r s e u k <"$1"; [ "$u" = "$2" ] || exit 0; rm -f "$1"'


def resource_id(spec: PoolClaimSpec) -> str:
    return f"{spec.host.name}/pool/{spec.slice}@{spec.start}"


@dataclass(frozen=True)
class Claim:
    slice: str
    start: int
    end: int
    file: str
    """The file name under the pools directory."""
    uid: str | None = None
    """The uid of the slice that holds it; None in a claim made before slices had uids."""
    stack: str | None = None
    """The stack that made it (`<project>/<stack>`), when recorded."""
    parking: tuple[int, ...] = ()
    """The slice's parking VLANs (none: a claim made before parking VLANs were recorded)."""


@dataclass(frozen=True)
class PoolHave:
    claims: tuple[Claim, ...]

    def of(self, slice_name: str, start: int, uid: str | None = None) -> Claim | None:
        """This uid's claim of the slice starting at `start`."""
        return next(
            (c for c in self.claims if c.slice == slice_name and c.start == start and c.uid == uid), None
        )

    def holders(self, slice_name: str) -> tuple[Claim, ...]:
        """Every claim of the slice name, whatever its uid."""
        return tuple(c for c in self.claims if c.slice == slice_name)


def meet(a_start: int, a_end: int, b_start: int, b_end: int) -> int | None:
    """A VLAN of b_start..b_end equal to one of a_start..a_end modulo 256 (same VLAN or subnet), or None."""
    residues = {v % SUBNET_OCTETS for v in range(a_start, a_end + 1)}
    return next((w for w in range(b_start, b_end + 1) if w % SUBNET_OCTETS in residues), None)


def preflight(_spec: PoolClaimSpec) -> list[Step]:
    return [sh("claims", _LIST, naming.POOLS_DIR, kind="probe")]


def parking_vlans(spec: PoolClaimSpec, keep: tuple[int, ...] = ()) -> tuple[int, ...]:
    """The parking VLANs the claim records: the spec's, and those an update keeps until its TAPs left them."""
    own = (spec.parking_vlan,) if spec.parking_vlan is not None else ()
    return tuple(sorted({*own, *keep}))


def claim_text(spec: PoolClaimSpec, keep: tuple[int, ...] = ()) -> str:
    """The claim file: `start end uid stack` (`start end` for a spec with no uid), then a line per parking
    VLAN."""
    fields = [str(spec.start), str(spec.end)]
    if spec.uid is not None:
        fields += [spec.uid, spec.stack or "-"]
    return " ".join(fields) + "\n" + "".join(f"parking {p}\n" for p in parking_vlans(spec, keep))


def parse_claims(text: str) -> tuple[Claim, ...]:
    """The `_LIST` lines `<file> start end [uid [stack]]` and `<file> parking <vlan>`; other lines are
    skipped."""
    out = []
    parking: dict[str, list[int]] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[1] == "parking" and parts[2].isdigit():
            parking.setdefault(parts[0], []).append(int(parts[2]))
        elif 3 <= len(parts) <= 5 and parts[1].isdigit() and parts[2].isdigit():
            name = parts[0].rpartition("@")[0] or parts[0]  # "<slice>@<start>", or an older "<slice>"
            uid = parts[3] if len(parts) > 3 and naming.SAFE_UID.fullmatch(parts[3]) else None
            stack = parts[4] if len(parts) > 4 and parts[4] != "-" else None
            out.append(Claim(name, int(parts[1]), int(parts[2]), parts[0], uid, stack))
    out = [replace(c, parking=tuple(sorted(set(parking.get(c.file, []))))) for c in out]
    return tuple(sorted(out, key=lambda c: (c.start, c.slice)))


def parse_have(res: ScriptResult) -> PoolHave:
    return PoolHave(parse_claims(res.out("claims")))


def named(vlan: int) -> bool:
    """Whether the VLAN's gateway port, DHCP port and namespace names fit the interface limit (as the
    config's pool check requires of a pool's VLANs)."""
    names = (naming.gateway_port(vlan), naming.dhcp_port(vlan), naming.dhcp_namespace(vlan))
    return all(len(n) <= naming.IFNAMSIZ_MAX for n in names)


def free_starts(spec: PoolClaimSpec, claims: Iterable[Claim]) -> list[tuple[int, int]]:
    """The pool starts still free on this node for a pool of the spec's size, as runs (first, last): every
    VLAN of the pool within 1..4094 with names on the node that fit (`named`: up to 999), none of them VLAN
    400 or the slice's own parking VLAN (what the config checks refuse), none another slice's parking VLAN,
    and no `VLAN % 256` another slice's pool holds."""
    size = spec.end - spec.start + 1
    others = [c for c in claims if c.slice != spec.slice]
    taken = {
        v % SUBNET_OCTETS for c in others for v in range(c.start, min(c.end, c.start + SUBNET_OCTETS - 1) + 1)
    }
    avoid = {INTERNET_VLAN, *parking_vlans(spec), *(p for c in others for p in c.parking)}
    ok = [named(v) and v % SUBNET_OCTETS not in taken and v not in avoid for v in range(VLAN_MAX + 1)]
    runs: list[tuple[int, int]] = []
    bad = sum(  # VLANs not ok among start..start + size - 1, a window sliding up
        not ok[v] for v in range(VLAN_MIN, VLAN_MIN + size)
    )
    for start in range(VLAN_MIN, VLAN_MAX - size + 2):
        if start > VLAN_MIN:
            bad += (not ok[start + size - 1]) - (not ok[start - 1])
        if bad:
            continue
        if runs and runs[-1][1] == start - 1:
            runs[-1] = (runs[-1][0], start)
        else:
            runs.append((start, start))
    return runs


def free_text(spec: PoolClaimSpec, claims: Iterable[Claim]) -> str:
    """What a refusal tells of the free pool starts (`free_starts`)."""
    runs = free_starts(spec, claims)
    if not runs:
        return "no pool start is still free on this node"
    shown = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in runs)
    return f"pool starts still free on this node: {shown}"


def clash_message(spec: PoolClaimSpec, other: Claim, vlan: int, claims: Iterable[Claim] = ()) -> str:
    same = "VLAN" if spec.start <= vlan <= spec.end else "subnet"
    return (
        f"VLANs {spec.start}-{spec.end} of slice {spec.slice!r} meet slice {other.slice!r} "
        f"(claims {other.start}-{other.end}: the same {same} as its VLAN {vlan}, "
        f"subnet 192.168.{vlan % SUBNET_OCTETS}.0/24); choose another vlanPool.start; "
        f"{free_text(spec, claims or (other,))}; nothing changed"
    )


def held_message(spec: PoolClaimSpec, other: Claim) -> str:
    """The refusal of a slice name another uid (or a deployment made before slices had uids) holds."""
    if other.uid is None:
        holder = (
            "a deployment made before slices had uids (only the stack that deployed it adopts it, with its "
            "next `up`)"
        )
    else:
        holder = f"stack {other.stack or 'unknown'!r} (uid {other.uid})"
    this = f"stack {spec.stack!r}" if spec.stack else "this stack"
    return (
        f"slice {spec.slice!r} is held on this node by {holder}, claim {other.file}; {this} (uid "
        f"{spec.uid}) is another owner: choose another slice.name; nothing changed"
    )


def held_by_other(spec: PoolClaimSpec, have: PoolHave, adopt: bool = False) -> Claim | None:
    """A claim of the slice's name under another uid: refused, unless it has no uid and `adopt`."""
    for c in have.holders(spec.slice):
        if c.uid != spec.uid and not (adopt and c.uid is None):
            return c
    return None


def parking_clash(
    spec: PoolClaimSpec, other: Claim, keep: tuple[int, ...] = (), claims: Iterable[Claim] = ()
) -> str | None:
    """Why the claim is refused because of a parking VLAN (its own, or one it `keep`s, in `other`'s pool; or
    `other`'s in its pool), or None. `claims`: every claim on the node, for the free pool starts."""
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
                f"vlanPool.start; {free_text(spec, claims or (other,))}; nothing changed"
            )
    return None


def clash(spec: PoolClaimSpec, have: PoolHave, adopt: bool = False, keep: tuple[int, ...] = ()) -> str | None:
    """Why the claim is refused (the name held under another uid, another slice's claim meets it or its
    parking VLANs), or None. `adopt`: a claim of the name with no uid is this stack's (an update of a claim
    made before slices had uids); `keep`: parking VLANs an update still records."""
    held = held_by_other(spec, have, adopt)
    if held is not None:
        return held_message(spec, held)
    for c in have.claims:
        if c.slice == spec.slice:
            continue
        if (vlan := meet(spec.start, spec.end, c.start, c.end)) is not None:
            return clash_message(spec, c, vlan, have.claims)
        if (why := parking_clash(spec, c, keep, have.claims)) is not None:
            return why
    return None


def plan_ensure(
    spec: PoolClaimSpec, have: PoolHave, adopt: bool = False, keep: tuple[int, ...] = ()
) -> list[Step]:
    """Refuse a clash; write the claim unless it is already there as this uid's (re-verified under the
    lock). `adopt`: see `clash`; `keep`: the parking VLANs an update gives up, recorded until the claim is
    next written."""
    why = clash(spec, have, adopt, keep)
    if why is not None:
        raise Conflict(spec.host.name, why)
    mine = have.of(spec.slice, spec.start, spec.uid)
    parking = parking_vlans(spec, keep)
    if mine is not None and mine.end == spec.end and mine.stack == spec.stack and mine.parking == parking:
        return []
    verify = [naming.POOLS_DIR, spec.slice, str(spec.start), str(spec.end), spec.uid or ""]
    return [
        sh(VERIFY, _VERIFY, *verify, "adopt" if adopt else "", *map(str, parking)),
        bodies.write_file("write claim", naming.pool_file(spec.slice, spec.start), claim_text(spec, keep)),
    ]


def plan_delete(spec: PoolClaimSpec, have: PoolHave) -> list[Step]:
    """Remove this uid's claim (checked again under the lock); another uid's is left."""
    mine = have.of(spec.slice, spec.start, spec.uid)
    if mine is None:
        return []
    return [sh("remove claim", _REMOVE, f"{naming.POOLS_DIR}/{mine.file}", spec.uid or "")]


def observe(spec: PoolClaimSpec, have: PoolHave) -> tuple[dict[str, Any], list[str]]:
    mine = have.of(spec.slice, spec.start, spec.uid)
    observed = {
        "claim": [mine.start, mine.end] if mine else None,
        "parkingVlan": list(mine.parking) if mine else None,
        "others": {f"{c.slice}@{c.start}": [c.start, c.end] for c in have.claims if c.slice != spec.slice},
        "stack": mine.stack if mine else None,
    }
    drift = []
    if mine is None:
        drift.append("claim missing")
    elif mine.end != spec.end:
        drift.append(f"claim is {mine.start}-{mine.end}, want {spec.start}-{spec.end}")
    elif mine.parking != parking_vlans(spec, carried(spec)[1]):
        want = list(parking_vlans(spec, carried(spec)[1]))
        drift.append(f"claim records parking VLANs {list(mine.parking)}, want {want}")
    return observed, drift


class ClaimChange(PoolClaimSpec):
    """The spec of an update, with what it carries over from the old inputs."""

    adopt: bool = False
    """The old state holds no uid: this stack, and only it, adopts the claim made before slices had uids
    (and the name) for its uid."""
    keep: tuple[int, ...] = ()
    """The parking VLAN the update gives up: recorded until the claim is next written (its TAPs leave it
    later in the same `up`)."""


def carried(spec: PoolClaimSpec) -> tuple[bool, tuple[int, ...]]:
    """(adopt, keep) of an update's spec; nothing for a create's."""
    return (spec.adopt, spec.keep) if isinstance(spec, ClaimChange) else (False, ())


def resolve(spec: PoolClaimSpec, _have: PoolHave, olds: dict[str, Any] | None) -> PoolClaimSpec:
    """An update's spec: adopt a claim with no uid when the old state holds none; keep the parking VLAN it
    gives up."""
    if olds is None:
        return spec
    try:
        old = PoolClaimSpec.model_validate(input_part(olds)).parking_vlan
    except pydantic.ValidationError:
        old = None
    keep = (old,) if old is not None and old != spec.parking_vlan else ()
    return ClaimChange.model_validate({**dict(spec), "adopt": olds.get("uid") is None, "keep": keep})


def plan_claim(spec: PoolClaimSpec, have: PoolHave) -> list[Step]:
    return plan_ensure(spec, have, *carried(spec))


def after(spec: PoolClaimSpec, have: PoolHave, _res: ScriptResult) -> PoolHave:
    """The claims once this one is written (or found in place)."""
    file = naming.pool_file(spec.slice, spec.start).rpartition("/")[2]
    keep = carried(spec)[1]
    mine = Claim(spec.slice, spec.start, spec.end, file, spec.uid, spec.stack, parking_vlans(spec, keep))
    rest = tuple(c for c in have.claims if (c.slice, c.start) != (spec.slice, spec.start))
    return PoolHave((*rest, mine))


def refused(spec: PoolClaimSpec, exc: StepFailed) -> Conflict | None:
    """The check under the lock found a clash: report it as the refusal it is (a pool that meets another
    slice's, or holds its parking VLAN, with the pool starts still free among the claims it saw)."""
    if exc.step != VERIFY:
        return None
    why, _, listed = exc.stderr.partition(f"\n{CLAIMS_MARK}\n")
    why = why.strip()
    if " meet slice " in why or " the parking VLAN of slice " in why:
        why += f"; choose another vlanPool.start; {free_text(spec, parse_claims(listed))}"
    return Conflict(spec.host.name, f"{why}; nothing changed")


KIND: Kind[PoolClaimSpec, PoolHave] = Kind(
    name="PoolClaim",
    spec_model=PoolClaimSpec,
    identity=("slice", "host", "start"),
    replans=False,
    resource_id=resource_id,
    preflight=preflight,
    parse_have=lambda _spec, res: parse_have(res),
    plan_ensure=plan_claim,
    plan_delete=plan_delete,
    observe=observe,
    after=after,
    gone=lambda spec, have: have.of(spec.slice, spec.start, spec.uid) is None,
    locked=lambda _spec, _have: True,
    resolve=resolve,
    refused=refused,
)


class PoolClaim(HostResource, kind=KIND):
    """A slice's VLAN range on the network node; see `PoolClaimSpec` for the inputs."""


from providers.legacy import PoolClaimProvider as PoolClaimProvider  # noqa: E402  (a class path older state holds)

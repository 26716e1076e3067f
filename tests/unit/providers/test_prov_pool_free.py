"""The pool starts still free on a node, told by a refused claim: generated claims, checked against the
claim's own clash test, and the check under the lock (sh) against the one from the read (Python)."""

from __future__ import annotations

import itertools
import re
from pathlib import Path

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from providers.kinds import pool_claim as pc
from tests.unit.providers.provkit import pool, sh
from vocabulary.errors import StepFailed
from vocabulary.values import INTERNET_VLAN, VLAN_MAX

SIZE = 20
others = st.lists(
    st.tuples(st.integers(1, VLAN_MAX - SIZE + 1), st.one_of(st.none(), st.integers(1, VLAN_MAX))),
    max_size=13,
)


def claims_of(drawn: list[tuple[int, int | None]]) -> tuple[pc.Claim, ...]:
    return tuple(
        pc.Claim(f"s{i}", start, start + SIZE - 1, f"s{i}@{start}", parking=(p,) if p else ())
        for i, (start, p) in enumerate(drawn)
    )


def started(start: int, parking: int = 4094) -> pc.PoolClaimSpec:
    return pool(start=start, end=start + SIZE - 1, parkingVlan=parking)


@given(others, st.integers(1, VLAN_MAX - SIZE + 1))
def test_a_start_is_free_exactly_when_its_claim_would_be_taken(
    drawn: list[tuple[int, int | None]], probe: int
) -> None:
    have = pc.PoolHave(claims_of(drawn))
    runs = pc.free_starts(started(100), have.claims)
    free = {s for a, b in runs for s in range(a, b + 1)}
    spec = started(probe)
    # the slice's own parking VLAN in another pool is refused whatever the start (choose another parkingVlan)
    assume(not any(c.start <= 4094 <= c.end for c in have.claims))
    pool_vlans = range(probe, probe + SIZE)
    own_rules = INTERNET_VLAN not in pool_vlans and 4094 not in pool_vlans and all(map(pc.named, pool_vlans))
    assert (probe in free) == (own_rules and pc.clash(spec, have) is None)
    # runs are sorted, disjoint and not adjacent
    assert all(b1 + 1 < a2 for (_, b1), (a2, _) in itertools.pairwise(runs))


def test_a_full_node_has_no_start_left_and_says_so() -> None:
    full = tuple(pc.Claim(f"s{k}", 100 + 20 * k, 119 + 20 * k, f"s{k}@{100 + 20 * k}") for k in range(12))
    assert pc.free_starts(started(400 + 21), full) == []  # 16 residues left, none 20 in a row
    assert pc.free_text(started(421), full) == "no pool start is still free on this node"
    # eleven: 100..319 hold the residues 100..255 and 0..63; 64..99 are left, so 64..80 in each cycle
    assert pc.free_starts(started(421), full[:11])[:2] == [(64, 80), (320, 336)]
    assert pc.free_text(started(421), full[:11]).startswith(
        "pool starts still free on this node: 64-80, 320-336, "
    )


def test_the_refusal_from_the_read_names_the_free_starts() -> None:
    have = pc.PoolHave((pc.Claim("other", 780, 799, "other@780"),))
    why = pc.clash(started(790), have)
    assert why is not None
    assert why.startswith("VLANs 790-809 of slice 'demo' meet slice 'other' (claims 780-799")
    assert (
        "; choose another vlanPool.start; pool starts still free on this node: 32-248, 288-380, 401-504, "
        in why
    )
    assert why.endswith("544-760, 800-980; nothing changed")  # a pool ends at 999 at most (its names)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60, deadline=None)
@given(st.integers(1, 4000), st.integers(1, 4000), st.integers(1, 300))
def test_the_check_under_the_lock_agrees_with_the_read(tmp_path: Path, a: int, b: int, length: int) -> None:
    """Another slice's claim of any length (a claim file written by hand may hold more than 256 VLANs):
    the sh check refuses exactly when `meet` finds a shared subnet, naming the same VLAN, and its refusal
    carries the free starts among the claims it saw."""
    d = tmp_path / f"pools-{a}-{b}-{length}"
    d.mkdir()
    end = min(b + length - 1, VLAN_MAX)
    (d / f"other@{b}").write_text(f"{b} {end}\n")
    res = sh(pc._VERIFY, str(d), "demo", str(a), str(a + SIZE - 1), "", "")
    vlan = pc.meet(a, a + SIZE - 1, b, end)
    assert (res.returncode != 0) == (vlan is not None), res.stderr
    if vlan is None:
        return
    assert f"(claims {b}-{end}: VLAN {vlan}, subnet 192.168.{vlan % 256}.0/24)" in res.stderr
    refusal = pc.refused(started(a, parking=4094), StepFailed("network", pc.VERIFY, 1, res.stderr))
    assert refusal is not None
    text = str(refusal)
    claims = (pc.Claim("other", b, end, f"other@{b}"),)
    assert pc.free_text(started(a), claims) in text and text.endswith("; nothing changed")
    assert pc.CLAIMS_MARK not in text and not re.search(rf"other@{b} {b}", text)

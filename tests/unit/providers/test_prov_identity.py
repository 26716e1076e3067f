"""A slice's identity: owner marks, the uid in the pool claim, adoption of marks made before uids, and the
rule that a delete takes only its own uid's objects (pure parts, and the claim's sh programs run locally)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pulumi.output import Unknown

from providers import shared
from providers.identity import SliceIdentityProvider, new_uid
from providers.kinds import dhcp_namespace as dn
from providers.kinds import pool_claim as pc
from providers.kinds import qemu_vm as qv
from providers.kinds import tap_port as tp
from providers.kinds import vlan_gateway as vg
from providers.pipeline import HostProvider
from tests.unit.providers.provkit import dhcp, gateway, link, port, qemu_vm, sh, tap, tap_inputs
from tests.unit.providers.provkit import pool as pool_spec
from vocabulary import naming
from vocabulary.errors import Conflict, OwnershipConflict

UID = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"

slice_names = st.from_regex(naming.SAFE_SLICE, fullmatch=True).filter(lambda s: s != naming.SHARED_OWNER)
uids = st.one_of(st.none(), st.from_regex(naming.SAFE_UID, fullmatch=True))


# ---- marks ------------------------------------------------------------------------------------------------


@given(slice_names, uids)
def test_a_mark_names_its_slice_and_uid(name: str, uid: str | None) -> None:
    mark = naming.owner_mark(name, uid)
    assert (naming.mark_slice(mark), naming.mark_uid(mark)) == (name, uid)
    assert naming.owns(mark, name, uid) and naming.adoptable(mark, name, uid)
    assert naming.SAFE_SLICE.fullmatch(name) and naming.UID_SEPARATOR not in name


@given(slice_names, uids, slice_names, uids)
def test_a_slice_owns_only_its_own_mark(a: str, ua: str | None, b: str, ub: str | None) -> None:
    """Another name or another uid is never owned; a create adopts only its own name's bare mark."""
    mark = naming.owner_mark(a, ua)
    assert naming.owns(mark, b, ub) == ((a, ua) == (b, ub))
    assert naming.adoptable(mark, b, ub) == ((a, ua) == (b, ub) or (a == b and ua is None))
    assert not naming.owns(naming.SHARED_OWNER, b, ub) and not naming.owns(None, b, ub)


def test_marks_are_described_by_slice_and_uid() -> None:
    assert naming.describe_mark(f"demo+{UID}") == f"slice 'demo' (uid {UID})"
    assert naming.describe_mark("demo") == "slice 'demo'"


def test_a_new_uid_is_random_and_well_formed() -> None:
    made = {new_uid() for _ in range(50)}
    assert len(made) == 50 and all(naming.SAFE_UID.fullmatch(u) for u in made)


def test_the_identity_never_changes_once_made() -> None:
    provider = SliceIdentityProvider()
    first, second = provider.create({}), provider.create({})
    outs, outs2 = first.outs or {}, second.outs or {}
    assert outs["uid"] != outs2["uid"] and first.id == outs["uid"]
    assert not provider.diff(first.id, outs, {"uid": None}).changes
    assert provider.read(first.id, outs).outs == outs


# ---- the pool claim holds the name for one uid ------------------------------------------------------------


def claim(name: str, start: int, end: int, uid: str | None, stack: str | None = None) -> pc.Claim:
    return pc.Claim(name, start, end, f"{name}@{start}", uid, stack)


@given(
    slice_names, st.integers(1, 4075), uids, st.one_of(st.none(), st.sampled_from(["cloudrepo/dev", "p/s"]))
)
def test_claim_text_parses_back(name: str, start: int, uid: str | None, stack: str | None) -> None:
    spec = pool_spec(slice=name, start=start, end=start + 19, uid=uid, stack=stack)
    line = f"{name}@{start} {pc.claim_text(spec).strip()}"
    assert pc.parse_claims(line) == (claim(name, start, start + 19, uid, stack if uid else None),)


def test_claim_parse_skips_malformed_lines() -> None:
    text = f"a@120 120 139 {UID} p/a\nb@140 140 159\nc@160 160 179 not-a-uid p/c\njunk\nd@1 x 2\n"
    assert pc.parse_claims(text) == (
        claim("a", 120, 139, UID, "p/a"),
        claim("b", 140, 159, None),
        claim("c", 160, 179, None, "p/c"),  # an unreadable uid is no uid: it owns nothing
    )


def test_a_name_held_by_another_uid_is_refused_naming_its_stack() -> None:
    spec = pool_spec(uid=UID, stack="cloudrepo/second")
    have = pc.PoolHave((claim("demo", 120, 139, OTHER, "cloudrepo/first"),))
    with pytest.raises(Conflict) as err:
        pc.plan_ensure(spec, have)
    assert str(err.value) == (
        f"network: slice 'demo' is held on this node by stack 'cloudrepo/first' (uid {OTHER}), claim "
        f"demo@120; stack 'cloudrepo/second' (uid {UID}) is another owner: choose another slice.name; "
        "nothing changed"
    )
    # whatever the pool: the name is the slice's
    with pytest.raises(Conflict, match="held on this node by stack 'cloudrepo/first'"):
        pc.plan_ensure(pool_spec(uid=UID, start=700, end=719), have)


def test_a_claim_made_before_uids_is_adopted_only_by_an_update() -> None:
    spec = pool_spec(uid=UID, stack="cloudrepo/dev")
    legacy = pc.PoolHave((claim("demo", 120, 139, None),))
    with pytest.raises(Conflict, match="a deployment made before slices had uids"):
        pc.plan_ensure(spec, legacy)  # a create: another stack's slice of that name
    steps = pc.plan_ensure(spec, legacy, adopt=True)
    assert [s.name for s in steps] == [pc.VERIFY, "write claim"]
    assert steps[0].argv[-2:] == (UID, "adopt")
    assert steps[1].argv[-1] == f"120 139 {UID} cloudrepo/dev\n"
    # once adopted it is the uid's: nothing to do; an update never adopts another uid's claim
    assert pc.plan_ensure(spec, pc.PoolHave((claim("demo", 120, 139, UID, "cloudrepo/dev"),))) == []
    with pytest.raises(Conflict):
        pc.plan_ensure(spec, pc.PoolHave((claim("demo", 120, 139, OTHER),)), adopt=True)


def test_the_same_uid_moving_its_pool_is_no_clash() -> None:
    have = pc.PoolHave((claim("demo", 120, 139, UID, "cloudrepo/dev"),))
    steps = pc.plan_ensure(pool_spec(uid=UID, stack="cloudrepo/dev", start=140, end=159), have)
    assert [s.name for s in steps] == [pc.VERIFY, "write claim"]


def test_a_claim_is_removed_only_by_its_uid() -> None:
    have = pc.PoolHave((claim("demo", 120, 139, OTHER),))
    assert pc.plan_delete(pool_spec(uid=UID), have) == []
    assert pc.plan_delete(pool_spec(), have) == []  # a state from before uids cannot remove it either
    mine = pc.plan_delete(pool_spec(uid=UID), pc.PoolHave((claim("demo", 120, 139, UID),)))
    assert [s.name for s in mine] == ["remove claim"]


def test_claim_scripts_check_the_uid_under_the_lock(tmp_path: Path) -> None:
    (tmp_path / "demo@120").write_text(f"120 139 {OTHER} cloudrepo/first\n")
    (tmp_path / "old@300").write_text("300 319\n")
    refused = sh(pc._VERIFY, str(tmp_path), "demo", "700", "719", UID, "")
    assert refused.returncode == 1
    why, mark, listed = refused.stderr.partition(f"\n{pc.CLAIMS_MARK}\n")  # then the claims it saw
    assert why.strip() == f"slice 'demo' is held by stack 'cloudrepo/first' (uid {OTHER}, claim demo@120)"
    assert mark and {c.file for c in pc.parse_claims(listed)} == {"demo@120", "old@300"}
    assert sh(pc._VERIFY, str(tmp_path), "demo", "700", "719", OTHER, "").returncode == 0
    # a claim with no uid: refused to a create, adopted by an update
    assert sh(pc._VERIFY, str(tmp_path), "old", "300", "319", UID, "").returncode == 1
    assert sh(pc._VERIFY, str(tmp_path), "old", "300", "319", UID, "adopt").returncode == 0
    # removal: only the uid the claim holds
    assert sh(pc._REMOVE, str(tmp_path / "demo@120"), UID).returncode == 0
    assert (tmp_path / "demo@120").exists()
    assert sh(pc._REMOVE, str(tmp_path / "old@300"), UID).returncode == 0
    assert (tmp_path / "old@300").exists()
    assert sh(pc._REMOVE, str(tmp_path / "demo@120"), OTHER).returncode == 0
    assert not (tmp_path / "demo@120").exists()
    assert sh(pc._REMOVE, str(tmp_path / "old@300"), "").returncode == 0
    assert not (tmp_path / "old@300").exists()


# ---- host objects: adopt a bare mark, never another uid's; delete only the own mark -----------------------


def tap_have(mark: str | None) -> tp.TapHave:
    alias = f"cloudrepo:{mark}" if mark else None
    marks = {} if mark is None else {naming.OWNER_KEY: mark}
    return tp.TapHave(link("tap_1002_eth1", True, "tap", alias), port("tap_1002_eth1", 120, None, **marks))


def test_a_tap_of_another_uid_is_refused_and_never_deleted() -> None:
    spec = tap(uid=UID)
    theirs = tap_have(f"demo+{OTHER}")
    with pytest.raises(OwnershipConflict) as err:
        tp.plan_ensure(spec, theirs)
    assert f"wanted by slice 'demo' (uid {UID}) but belongs to slice 'demo' (uid {OTHER})" in str(err.value)
    assert tp.plan_delete(spec, theirs) == []
    assert tp.plan_delete(tap(), theirs) == []  # nor by a state from before uids
    assert tp.KIND.foreign(spec, theirs) == ("TAP tap_1002_eth1", f"demo+{OTHER}")


def test_a_tap_marked_before_uids_is_adopted_and_marked_anew() -> None:
    spec = tap(uid=UID)
    steps = tp.plan_ensure(spec, tap_have("demo"))
    argv = [list(s.argv) for s in steps]
    assert ["ip", "link", "set", "dev", "tap_1002_eth1", "alias", f"cloudrepo:demo+{UID}"] in argv
    assert any(f'external_ids:cloudrepo-slice="demo+{UID}"' in a for a in argv)
    # a delete with the uid leaves a bare mark (not its own): the update that adopts it comes first
    assert tp.plan_delete(spec, tap_have("demo")) == []
    assert [s.name for s in tp.plan_delete(spec, tap_have(f"demo+{UID}"))] == [
        "detach port",
        "delete tap",
        "undrop",
    ]


def test_a_vm_of_another_uid_is_refused_and_never_deleted() -> None:
    spec = qemu_vm(uid=UID)
    theirs = qv.VmHave(True, f"demo+{OTHER}", None, None, None)
    with pytest.raises(OwnershipConflict):
        qv.plan_ensure(spec, theirs)
    assert qv.plan_delete(spec, theirs) == []
    binary = "/usr/bin/qemu-system-x86_64"
    bare = qv.VmHave(True, "demo", 4242, tuple(qv.qemu_argv(spec, binary)), None, binary, binary)
    assert [(s.name, s.argv[-1]) for s in qv.plan_ensure(spec, bare)] == [
        ("vm dir", "/var/lib/cloudrepo/vms/1002"),
        ("mark vm", f"demo+{UID}"),
    ]  # adopted in place: the running VM is not restarted


@given(st.lists(st.sampled_from(["demo", f"demo+{UID}", f"demo+{OTHER}", "other"]), unique=True))
def test_a_shared_registry_entry_is_the_owner_mark(users: list[str]) -> None:
    spec = tap(uid=UID)
    after = shared.joined(spec, users)
    assert f"demo+{UID}" in after and "demo" not in after
    assert set(after) - {f"demo+{UID}"} == set(users) - {"demo", f"demo+{UID}"}  # others' stay
    names = [s.name for s in shared.join("o", spec, users)]
    assert ("register user" in names) == (f"demo+{UID}" not in users)
    assert ("adopt user entry" in names) == ("demo" in users)
    assert shared.leave("o", spec).argv[-1] == f"demo+{UID}"


def test_a_uid_not_known_at_preview_is_no_problem() -> None:
    """The first preview of a slice (or of one deployed before uids) has no uid yet: the dynamic-provider
    server hands `check` and `diff` a `pulumi.output.Unknown` there."""
    provider = HostProvider(tp.KIND.name)
    news = {**tap_inputs(), "uid": Unknown(), "__provider": "blob"}
    assert provider.check({}, news).failures == []
    bad = provider.check({}, {**news, "mac": "nope"}).failures
    assert [f.property for f in bad] == ["mac"]
    old = {**tap_inputs(), "drift": [], "observed": {}}
    diff = provider.diff("id", old, {**tap_inputs(), "uid": Unknown()})
    assert diff.changes and not diff.replaces  # an upgraded slice: updated in place, never replaced


MARKS = st.sampled_from(
    [None, "demo", f"demo+{UID}", f"demo+{OTHER}", "other", f"other+{UID}", naming.SHARED_OWNER]
)


@given(MARKS, st.sampled_from([None, UID]))
def test_no_delete_removes_an_object_that_is_not_exactly_its_own(mark: str | None, uid: str | None) -> None:
    """Whatever mark an object carries, each kind's delete plan does something only when the mark is the
    deleting slice's own (`naming.owns`); a create or update takes it only when `naming.adoptable`."""
    mine = naming.owns(mark, "demo", uid)
    ids = {} if mark is None else {naming.OWNER_KEY: mark}
    found: dict[str, bool] = {}
    found["tap"] = bool(tp.plan_delete(tap(uid=uid), tap_have(mark)))
    gw = vg.GatewayHave(port("gw_vlan120", 120, None, **ids), link("gw_vlan120", True, "internal"), ())
    found["gateway"] = bool(vg.plan_delete(gateway(uid=uid), gw))
    found["dhcp"] = bool(dn.plan_delete(dhcp(uid=uid), dn.DhcpHave(mark, True, None, None)))
    if mark is not None:
        found["vm"] = bool(qv.plan_delete(qemu_vm(uid=uid), qv.VmHave(True, mark, None, None, None)))
        claimed = pc.PoolHave((claim(naming.mark_slice(mark), 120, 139, naming.mark_uid(mark)),))
        found["claim"] = bool(pc.plan_delete(pool_spec(uid=uid), claimed))
    assert found == dict.fromkeys(found, mine), found
    if mark is not None and not naming.adoptable(mark, "demo", uid):
        with pytest.raises(OwnershipConflict):
            tp.plan_ensure(tap(uid=uid), tap_have(mark))
        with pytest.raises(OwnershipConflict):
            vg.plan_ensure(gateway(uid=uid), gw)
        with pytest.raises(OwnershipConflict):
            dn.plan_ensure(dhcp(uid=uid), dn.DhcpHave(mark, True, None, None))

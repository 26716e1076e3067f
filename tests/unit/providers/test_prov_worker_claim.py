"""WorkerClaim: the plan refuses exactly the claims over the worker's capacity, and the sh check run under
the lock (run here by a local `sh` on claim files written as the plan writes them) agrees with it."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.kinds import KINDS, worker_claim
from providers.kinds.worker_claim import ClaimsHave, VmClaim, claim_text, over, parse_claims, plan_ensure
from vocabulary import naming
from vocabulary.errors import Conflict
from vocabulary.specs import Endpoint, WorkerClaimSpec

UID = "a" * 32
HOST = Endpoint(name="worker1", address="127.0.0.1", port=2201)


def spec(
    vm: int = 7,
    cpus: int = 1,
    mem: int = 256,
    cap: tuple[int, int] = (4, 4096),
    slice: str = "s1",
    uid: str = UID,
) -> WorkerClaimSpec:
    return WorkerClaimSpec(
        slice=slice, host=HOST, uid=uid, vm=vm, cpus=cpus, memory_mb=mem,
        capacity_cpus=cap[0], capacity_memory_mb=cap[1], stack="p/s1",
    )  # fmt: skip


others = st.lists(
    st.tuples(
        st.sampled_from(("s2", "s3", "s1")), st.integers(1, 60), st.integers(0, 4), st.integers(0, 2048)
    ),
    unique_by=lambda t: (t[0], t[1]),
    max_size=8,
)


def run_verify(directory: Path, s: WorkerClaimSpec) -> subprocess.CompletedProcess[str]:
    """The plan's locked check (`sh -c BODY sh DIR FILE ...`), run on `directory` instead of the claims'."""
    verify = worker_claim.verify_step(s)
    assert verify.name == worker_claim.VERIFY and verify.argv[4] == naming.CLAIMS_DIR
    argv = [*verify.argv[:4], str(directory), *verify.argv[5:]]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


@settings(max_examples=150, deadline=None)
@given(others, st.integers(0, 4), st.integers(0, 2048), st.integers(1, 12), st.integers(256, 8192))
def test_the_plan_and_the_locked_check_refuse_the_same_claims(
    held: list[tuple[str, int, int, int]], cpus: int, mem: int, cap_cpus: int, cap_mem: int
) -> None:
    s = spec(cpus=cpus, mem=mem, cap=(cap_cpus, cap_mem))
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        claims = []
        for name, vm, c, m in held:
            other = spec(vm=vm, cpus=c, mem=m, slice=name, uid="b" * 32)
            (d / f"{name}@{vm}").write_text(claim_text(other))
            claims.append(VmClaim(name, vm, c, m, f"{name}@{vm}", "b" * 32, "p/s1"))
        listed = subprocess.run(
            ["sh", "-c", worker_claim._LIST, "sh", str(d)], capture_output=True, text=True, check=True
        ).stdout
        have = ClaimsHave(parse_claims(listed))
        assert sorted(have.claims, key=lambda c: c.file) == sorted(claims, key=lambda c: c.file)
        why = over(s, have)
        mine = have.of(s)
        if mine is not None and mine.uid != s.uid:
            with pytest.raises(Conflict, match="is claimed on this worker by stack"):
                plan_ensure(s, have)
            return
        result = run_verify(d, s)
        if why is None:
            assert result.returncode == 0, result.stderr
            assert plan_ensure(s, have)  # written under the lock
        else:
            assert result.returncode == 1
            assert f"capacity of {cap_cpus} vCPUs, {cap_mem} MiB" in result.stderr
            with pytest.raises(Conflict) as err:
                plan_ensure(s, have)
            assert f"VM 7 of slice 's1' needs {cpus} vCPUs and {mem} MiB" in str(err.value)
            used = (sum(c.cpus for c in have.others(s)), sum(c.memory_mb for c in have.others(s)))
            assert used[0] + cpus > cap_cpus or used[1] + mem > cap_mem


def test_refusal_names_the_numbers_and_the_slices() -> None:
    have = ClaimsHave((VmClaim("s2", 3, 2, 3072, "s2@3", "b" * 32, "p/s2"),))
    with pytest.raises(Conflict) as err:
        plan_ensure(spec(cpus=1, mem=2048), have)
    assert str(err.value) == (
        "worker1: VM 7 of slice 's1' needs 1 vCPUs and 2048 MiB; the claims on the worker hold 2 vCPUs and "
        "3072 MiB of its capacity of 4 vCPUs, 4096 MiB (free: 2 vCPUs, 1024 MiB; slice 's2': VMs 3 "
        "(2 vCPUs, 3072 MiB)); nothing changed"
    )


def test_in_place_is_no_step_and_delete_only_its_own() -> None:
    s = spec()
    mine = VmClaim("s1", 7, 1, 256, "s1@7", UID, "p/s1")
    assert plan_ensure(s, ClaimsHave((mine,))) == []
    assert worker_claim.plan_delete(s, ClaimsHave((mine,)))
    assert worker_claim.plan_delete(s, ClaimsHave((VmClaim("s1", 7, 1, 256, "s1@7", "c" * 32),))) == []
    assert KINDS["WorkerClaim"] is worker_claim.KIND


def run_remove(path: Path, uid: str, stack: str) -> None:
    subprocess.run(["sh", "-c", worker_claim._REMOVE, "sh", str(path), uid, stack], check=True)


def test_a_pending_claim_is_taken_over_and_removed_by_its_stack_only(tmp_path: Path) -> None:
    """A pending claim (reserved at `up`) is parsed as such, rewritten with the uid by the VM's claim (checked
    again under the lock), and removed by the VM's claim's delete when its stack's: by the plan and by the sh
    body."""
    text = worker_claim.pending_text(1, 256, "p/s1", 1700000000)
    (tmp_path / "s1@7").write_text(text)
    listed = subprocess.run(
        ["sh", "-c", worker_claim._LIST, "sh", str(tmp_path)], capture_output=True, text=True, check=True
    ).stdout
    (pending,) = parse_claims(listed)
    assert (pending.pending, pending.uid, pending.stack, pending.written) == (True, None, "p/s1", 1700000000)
    steps = plan_ensure(spec(), ClaimsHave((pending,)))
    assert [st.name for st in steps] == [worker_claim.VERIFY, "write claim"]
    assert steps[1].argv[-1] == claim_text(spec())  # the uid's claim now
    assert worker_claim.KIND.gone(spec(), ClaimsHave((pending,)))  # not the uid's yet: its create runs
    # a pending claim of another stack holds no ownership: taken over too, never a conflict
    other = VmClaim("s1", 7, 1, 256, "s1@7", None, "p/other", True, 1700000000)
    assert [st.name for st in plan_ensure(spec(), ClaimsHave((other,)))] == [
        worker_claim.VERIFY,
        "write claim",
    ]
    # a delete removes the VM's claim when it is the uid's or still pending from its stack, nothing else
    left = VmClaim("s1", 9, 1, 128, "s1@9", None, "p/s1", True, 1700000000)
    mine = VmClaim("s1", 7, 1, 256, "s1@7", UID, "p/s1")
    removed = worker_claim.plan_delete(spec(), ClaimsHave((mine, left)))
    assert [st.argv[4] for st in removed] == [naming.claim_file("s1", 7)]
    assert [st.argv[4] for st in worker_claim.plan_delete(spec(vm=9), ClaimsHave((mine, left)))] == [
        naming.claim_file("s1", 9)
    ]
    assert worker_claim.plan_delete(spec(), ClaimsHave((replace_stack(left, "p/other", 7),))) == []
    # the sh body agrees: a pending claim goes by its stack, a claim by its uid, nothing else
    for name, content in {
        "s1@9": worker_claim.pending_text(1, 128, "p/s1", 1),
        "s1@8": worker_claim.pending_text(1, 128, "p/other", 1),
        "s1@7": claim_text(spec()),
        "s1@6": claim_text(spec(vm=6, uid="c" * 32)),
    }.items():
        (tmp_path / name).write_text(content)
    for name in ("s1@9", "s1@8", "s1@7", "s1@6"):
        run_remove(tmp_path / name, UID, "p/s1")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1@6", "s1@8"]


def replace_stack(c: VmClaim, stack: str, vm: int) -> VmClaim:
    return VmClaim(c.slice, vm, c.cpus, c.memory_mb, f"{c.slice}@{vm}", None, stack, True, c.written)


@given(st.integers(0, 2000), st.integers(0, 2000))
def test_a_pending_claim_expires_after_its_lease(written: int, age: int) -> None:
    c = VmClaim("s1", 1, 1, 1, "s1@1", None, "p/s1", True, written)
    now = written + age
    assert c.expired(now) == (age > worker_claim.PENDING_LEASE_SECONDS)
    assert not c.expired(None)
    assert not VmClaim("s1", 1, 1, 1, "s1@1", UID, "p/s1").expired(now + 10**6)  # a taken-over claim never


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(1, 30),
            st.integers(0, 4),
            st.integers(0, 2048),
            st.sampled_from(("taken", "fresh", "stale")),
        ),
        unique_by=lambda t: t[0],
        max_size=6,
    ),
    st.integers(1, 8),
    st.integers(256, 4096),
)
def test_pending_claims_count_until_their_lease_in_the_plan_and_the_locked_check(
    held: list[tuple[int, int, int, str]], cap_cpus: int, cap_mem: int
) -> None:
    s = spec(cpus=1, mem=256, cap=(cap_cpus, cap_mem))
    now = int(time.time())
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        for vm, c, m, kind in held:
            age = 5 if kind == "fresh" else worker_claim.PENDING_LEASE_SECONDS + 100
            text = claim_text(spec(vm=vm, cpus=c, mem=m, slice="s2", uid="b" * 32))
            if kind != "taken":
                text = worker_claim.pending_text(c, m, "p/s2", now - age)
            (d / f"s2@{vm}").write_text(text)
        listed = subprocess.run(
            ["sh", "-c", worker_claim._LIST, "sh", str(d)], capture_output=True, text=True, check=True
        ).stdout
        have = ClaimsHave(parse_claims(listed), now)
        counted = [(c, m) for _, c, m, kind in held if kind != "stale"]
        fits = sum(c for c, _ in counted) + 1 <= cap_cpus and sum(m for _, m in counted) + 256 <= cap_mem
        assert (over(s, have) is None) == fits
        assert (run_verify(d, s).returncode == 0) == fits

"""The reservation at `up`: what it writes and removes on a worker (generated claim sets), its flow under
the locks (hosts faked), and the lock holder's sh program run with the real `flock`."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers import reservation
from providers.kinds import KINDS, pending_claims
from providers.kinds.worker_claim import PENDING_LEASE_SECONDS, ClaimsHave, VmClaim, WorkerRead, parse_claims
from transport import hold
from transport.script import ScriptResult, Step
from vocabulary.errors import ConfigError, HostUnreachable
from vocabulary.specs import Endpoint, PendingClaimsSpec

SLICE, STACK, NOW = "s1", "p/s1", 10_000
UID = "a" * 32

claim = st.builds(
    lambda slice_name, vm, kind, stale, cpus, mem: VmClaim(
        slice_name,
        vm,
        cpus,
        mem,
        f"{slice_name}@{vm}",
        UID if kind == "taken" else None,
        {"taken": STACK, "mine": STACK, "other": "p/other"}[kind],
        kind != "taken",
        NOW - (PENDING_LEASE_SECONDS + 1 if stale else 5),
    ),
    st.sampled_from((SLICE, "s2")),
    st.integers(1, 12),
    st.sampled_from(("taken", "mine", "other")),
    st.booleans(),
    st.integers(0, 4),
    st.integers(0, 2048),
)
claims = st.lists(claim, unique_by=lambda c: c.file, max_size=10)
wanted = st.lists(
    st.tuples(st.integers(1, 12), st.integers(0, 4), st.integers(0, 2048)), unique_by=lambda s: s[0]
)


@settings(max_examples=200, deadline=None)
@given(claims, wanted)
def test_changes_reserve_the_wanted_shares_and_nothing_else(
    have: list[VmClaim], want: list[tuple[int, int, int]]
) -> None:
    read = WorkerRead(ClaimsHave(tuple(have), NOW), (8, 8192))
    remove, write = reservation.changes(read, SLICE, STACK, want)
    gone = {c.file for c in remove}
    assert all(c.pending for c in remove) and not gone & {f for f, _ in write}
    after = {c.file: c for c in have if c.file not in gone}
    for f, text in write:
        (after[f],) = parse_claims(f"{f} {text}")
    wanted_files = {f"{SLICE}@{vm}": (c, m) for vm, c, m in want}
    for f, c in after.items():
        assert not c.expired(NOW), f"an expired pending claim stays: {c}"
        if c.pending and c.stack == STACK and c.slice == SLICE:
            assert f in wanted_files and (c.cpus, c.memory_mb) == wanted_files[f] and c.written == NOW
    for f in wanted_files:
        held = after.get(f)
        assert held is not None, f"{f} wanted and not reserved"
        if not held.pending:  # taken over by its WorkerClaim: left to it
            assert held in have
        elif (
            held.stack != STACK
        ):  # another stack's live reservation of the name: left (the pool claim decides)
            assert held in have
    for c in have:  # every live claim that is not this stack's own pending one is left as it was
        if not c.expired(NOW) and not (c.pending and c.stack == STACK and c.slice == SLICE):
            assert after[c.file] == c


def test_the_pending_remove_body_leaves_a_claim_taken_over(tmp_path: Path) -> None:
    """The sh body removes a pending claim of the stack the read found, and leaves one taken over since."""
    (tmp_path / "s1@1").write_text("1 128 pending p/s1 5\n")
    (tmp_path / "s1@2").write_text(f"1 128 {UID} p/s1\n")
    (tmp_path / "s2@3").write_text("1 128 pending p/s2 5\n")
    read = [VmClaim("s1", 1, 1, 128, "s1@1", None, "p/s1", True, 5)]
    read += [VmClaim("s1", 2, 1, 128, "s1@2", None, "p/s1", True, 5)]  # taken over after the read
    read += [VmClaim("s2", 3, 1, 128, "s2@3", None, "p/s2", True, 5)]  # another stack's, expired
    for step in reservation.steps(read, []):
        subprocess.run(
            [*step.argv[:4], str(tmp_path / step.argv[4].rpartition("/")[2]), *step.argv[5:]], check=True
        )
    assert [p.name for p in tmp_path.iterdir()] == ["s1@2"]


WORKERS = {n: Endpoint(name=n, address=f"10.0.0.{i}", port=22) for i, n in ((3, "w1"), (1, "w2"), (2, "w3"))}


class FakeHosts:
    """The hosts of `reserve`: locks taken and released, reads and scripts, in order."""

    def __init__(self, claims: dict[str, str], fail: str | None = None) -> None:
        self.claims, self.fail, self.log = claims, fail, []  # type: ignore[var-annotated]

    @contextmanager
    def held(self, endpoints: Sequence[Endpoint], holder: str) -> Iterator[None]:
        names = [ep.name for ep in hold.order(endpoints)]
        self.log.append(("lock", tuple(names), holder))
        try:
            yield
        finally:
            self.log.append(("unlock",))

    def read(self, ep: Endpoint) -> WorkerRead:
        if ep.name == self.fail:
            raise HostUnreachable(ep.name, "cannot connect")
        self.log.append(("read", ep.name))
        return WorkerRead(ClaimsHave(parse_claims(self.claims.get(ep.name, "")), NOW), (4, 4096))

    def run(self, ep: Endpoint, steps: Sequence[Step], **_kw: Any) -> ScriptResult:
        self.log.append(("run", ep.name, tuple(s.name for s in steps)))
        return ScriptResult()


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHosts]:
    hosts = FakeHosts({"w1": "s2@4 2 1024 pending p/s2 9990\n", "w2": "s1@9 1 64 pending p/s1 9900\n"})
    monkeypatch.setattr(reservation.hold, "held", hosts.held)
    monkeypatch.setattr(reservation, "read_worker", hosts.read)
    monkeypatch.setattr(reservation.ssh, "run_script", hosts.run)
    monkeypatch.setattr(reservation.ssh, "configure", lambda _raw: None)
    yield hosts


def test_reserve_reads_chooses_and_writes_under_every_lock(fake: FakeHosts) -> None:
    seen = []

    def choose(read: Any) -> tuple[str, dict[str, list[tuple[int, int, int]]]]:
        seen.append(read)
        return "chosen", {"w3": [(1, 1, 128)], "w1": [(2, 1, 128)]}

    assert reservation.reserve({}, SLICE, STACK, WORKERS, choose) == "chosen"
    # every lock first, in the hosts' order (w2 10.0.0.1, w3, w1), the reads, the writes, then the release
    assert fake.log[0] == ("lock", ("w2", "w3", "w1"), SLICE) and fake.log[-1] == ("unlock",)
    assert [e[1] for e in fake.log if e[0] == "read"] == ["w1", "w2", "w3"]
    runs = {e[1]: e[2] for e in fake.log if e[0] == "run"}
    assert runs == {
        "w1": ("write pending claim",),
        "w2": ("remove pending claim",),  # its own reservation the choice no longer wants
        "w3": ("write pending claim",),
    }
    others, mine, _reported = seen[0]
    assert others["w1"] == (2, 1024) and mine == {9: "w2"}


def test_reserve_writes_nothing_when_the_choice_fails_or_a_worker_is_unreadable(fake: FakeHosts) -> None:
    def nothing_fits(_read: Any) -> Any:
        raise ConfigError("cloudrepo:slice.vms[0].worker: VM 1 (auto) needs 9 vCPUs")

    with pytest.raises(ConfigError, match="needs 9 vCPUs"):
        reservation.reserve({}, SLICE, STACK, WORKERS, nothing_fits)
    assert not [e for e in fake.log if e[0] == "run"] and fake.log[-1] == ("unlock",)
    fake.fail, fake.log = "w3", []
    with pytest.raises(reservation.ReservationFailed, match="w3: cannot connect; nothing else ran"):
        reservation.reserve({}, SLICE, STACK, WORKERS, lambda _r: ("x", {}))
    assert not [e for e in fake.log if e[0] == "run"] and fake.log[-1] == ("unlock",)


@given(st.permutations([*WORKERS.values(), Endpoint(name="alias", address="10.0.0.3", port=22)]))
def test_every_holder_takes_the_hosts_in_one_order_each_once(eps: list[Endpoint]) -> None:
    assert [(e.address, e.port) for e in hold.order(eps)] == [
        ("10.0.0.1", 22),
        ("10.0.0.2", 22),
        ("10.0.0.3", 22),
    ]


def start_holder(tmp_path: Path, who: str, wait: int) -> subprocess.Popen[bytes]:
    argv = [
        "sh",
        "-c",
        hold.PROGRAM,
        "sh",
        str(tmp_path / "lock"),
        str(tmp_path / "lock.holder"),
        who,
        str(wait),
    ]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_the_holder_program_holds_the_lock_until_its_stdin_ends(tmp_path: Path) -> None:
    first = start_holder(tmp_path, "s1", 5)
    assert first.stdout is not None and first.stdin is not None
    assert first.stdout.readline() == hold.HELD
    assert (tmp_path / "lock.holder").read_text() == "s1\n"
    second = start_holder(tmp_path, "s2", 1)
    assert second.wait(timeout=10) == 75  # flock's wait timed out: the first holds it
    third = start_holder(tmp_path, "s3", 10)
    time.sleep(0.3)
    assert third.poll() is None  # waiting
    first.stdin.close()  # the channel closed: the first ends and its lock goes
    assert first.wait(timeout=10) == 0
    assert third.stdout is not None and third.stdout.readline() == hold.HELD
    assert (tmp_path / "lock.holder").read_text() == "s3\n"
    assert third.stdin is not None
    third.stdin.close()
    assert third.wait(timeout=10) == 0


def test_pending_claims_delete_removes_what_its_stack_left_and_nothing_else(tmp_path: Path) -> None:
    """The `PendingClaims` resource makes nothing; its delete (under the lock) removes the slice's pending
    claims of its stack on the worker: the plan picks them, the sh body re-checks each."""
    s = PendingClaimsSpec(slice=SLICE, host=WORKERS["w1"], uid=UID, stack=STACK)
    files = {
        "s1@1": "1 128 pending p/s1 5\n",
        "s1@2": f"1 128 {UID} p/s1\n",
        "s1@3": "1 128 pending p/other 5\n",
        "s2@4": "1 128 pending p/s1 5\n",
    }
    for f, text in files.items():
        (tmp_path / f).write_text(text)
    have = ClaimsHave(parse_claims("".join(f"{f} {text}" for f, text in files.items())), NOW)
    assert pending_claims.plan_ensure(s, have) == []
    assert pending_claims.observe(s, have) == ({"pending": [1]}, [])
    assert pending_claims.KIND.locked(s, have) and not pending_claims.KIND.gone(s, have)
    (step,) = pending_claims.plan_delete(s, have)
    (tmp_path / "s1@1").write_text(f"1 128 {UID} p/s1\n")  # taken over between the read and the lock
    subprocess.run([*step.argv[:4], str(tmp_path / "s1@1"), *step.argv[5:]], check=True)
    assert (tmp_path / "s1@1").exists()
    (tmp_path / "s1@1").write_text(files["s1@1"])
    subprocess.run([*step.argv[:4], str(tmp_path / "s1@1"), *step.argv[5:]], check=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s1@2", "s1@3", "s2@4"]
    assert KINDS["PendingClaims"] is pending_claims.KIND


def test_a_host_named_twice_is_read_and_written_once_with_both_names_shares(fake: FakeHosts) -> None:
    workers = {**WORKERS, "w1b": WORKERS["w1"].model_copy(update={"name": "w1b"})}

    def choose(read: Any) -> tuple[str, dict[str, list[tuple[int, int, int]]]]:
        assert read[0]["w1b"] == read[0]["w1"]  # the same host's claims under both names
        return "chosen", {"w1": [(1, 1, 128)], "w1b": [(2, 1, 128)]}

    reservation.reserve({}, SLICE, STACK, workers, choose)
    assert [e[1] for e in fake.log if e[0] == "read"] == ["w1", "w2", "w3"]
    runs = [e for e in fake.log if e[0] == "run" and e[1] == "w1"]
    assert runs == [("run", "w1", ("write pending claim", "write pending claim"))]

"""LinkShape, the kind written as a record: properties of its pure plans over generated host states, the
parse of both `tc` output forms, and one create through the pipeline (SSH faked)."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.kinds import KINDS
from providers.kinds import link_shape as ls
from tests.unit.providers.provkit import READ, WORKER, reading
from transport import ssh
from transport.script import ScriptResult, Step
from vocabulary.errors import OwnershipConflict
from vocabulary.specs import LinkShapeSpec

UID = "0123456789abcdef0123456789abcdef"
OTHER = "fedcba9876543210fedcba9876543210"

tbf_specs = st.builds(
    lambda tap, rate, burst, latency, uid: LinkShapeSpec.model_validate(
        {"slice": "demo", "host": WORKER, "tap": tap, "rateKbit": rate, "burstBytes": burst,
         "latencyMs": latency, "uid": uid}
    ),
    st.from_regex(r"tap_[1-9][0-9]{0,3}_eth[0-9]", fullmatch=True),
    st.integers(8, 100_000_000),
    st.integers(1600, 1 << 30),
    st.integers(1, 60_000),
    st.sampled_from([None, UID]),
)  # fmt: skip
percents = st.none() | st.integers(1, 1_000_000).map(lambda n: n / 10_000)
times = st.integers(1, 60_000_000)


@st.composite
def netem_specs(draw: st.DrawFn) -> LinkShapeSpec:
    delay = draw(times)
    fields = {
        "delayUs": delay,
        "jitterUs": draw(st.none() | times),
        "rateKbit": draw(st.none() | st.integers(8, 100_000_000)),
        **{f"{k}Pct": draw(percents) for k in ("loss", "corrupt", "duplicate", "reorder")},
    }
    tap = draw(st.from_regex(r"tap_[1-9][0-9]{0,3}_eth[0-9]", fullmatch=True))
    return LinkShapeSpec.model_validate(
        {"slice": "demo", "host": WORKER, "tap": tap, "uid": draw(st.sampled_from([None, UID])),
         **{k: v for k, v in fields.items() if v is not None}}
    )  # fmt: skip


specs = tbf_specs | netem_specs()
NO_NETEM = "Error: Specified qdisc kind is unknown."


def qdiscs(spec: LinkShapeSpec) -> st.SearchStrategy[ls.Qdisc | None]:
    """Any root qdisc a read may find: none read, a default one, any tbf, the wanted tbf as the kernel
    rounds it."""
    want = ls.wanted(spec)
    if want.kind == "tbf":
        assert want.burst is not None and want.latency_us is not None
        rounded = st.builds(
            lambda db, dl: ls.Qdisc("tbf", want.rate, want.burst + db, want.latency_us + dl),
            st.integers(-2, 2),
            st.integers(-ls.LATENCY_SLACK_US, ls.LATENCY_SLACK_US),
        )
    else:
        rounded = st.builds(
            lambda dl: replace(want, delay_us=(want.delay_us or 0) + dl),
            st.integers(-ls.LATENCY_SLACK_US, ls.LATENCY_SLACK_US),
        )
    return st.one_of(
        st.none(),
        st.builds(ls.Qdisc, st.sampled_from(["pfifo_fast", "fq_codel", "noqueue", "netem"])),
        st.builds(
            ls.Qdisc, st.just("tbf"), st.integers(1, 10**10), st.integers(1, 1 << 31), st.integers(1, 10**8)
        ),
        rounded,
    )


@st.composite
def cases(draw: st.DrawFn) -> tuple[LinkShapeSpec, ls.ShapeHave]:
    spec = draw(specs)
    owner = draw(st.sampled_from([None, spec.owner, f"demo+{OTHER}", "other"]))
    no_netem = draw(st.sampled_from([None, NO_NETEM])) if spec.impairment.qdisc == "netem" else None
    return spec, ls.ShapeHave(draw(st.booleans()), owner, draw(qdiscs(spec)), no_netem)


def ours(spec: LinkShapeSpec, have: ls.ShapeHave) -> bool:
    return have.tap and have.owner == spec.owner


@given(cases())
def test_any_have_plans_to_the_wanted_state(case: tuple[LinkShapeSpec, ls.ShapeHave]) -> None:
    spec, have = case
    if not ours(spec, have):
        with pytest.raises((ls.TapMissing, OwnershipConflict), match=spec.tap):  # the TAP named
            ls.plan_ensure(spec, have)
        return
    if have.netem is not None:  # refused before any step, naming the qdisc, the keys and what tc said
        with pytest.raises(ls.QdiscMissing, match=r"no netem qdisc \(sch_netem\), which netem delay") as info:
            ls.plan_ensure(spec, have)
        assert NO_NETEM in str(info.value) and spec.tap in str(info.value)
        return
    steps = ls.plan_ensure(spec, have)
    assert (steps == []) == ls.in_place(spec, have.qdisc)
    after = ls.after(spec, have, ScriptResult())
    assert ls.observe(spec, after)[1] == []  # the host the plan leaves is the spec
    assert ls.plan_ensure(spec, after) == []  # and nothing is left to do there


@given(cases())
def test_delete_plans_are_idempotent_and_never_touch_another_slices_tap(
    case: tuple[LinkShapeSpec, ls.ShapeHave],
) -> None:
    spec, have = case
    steps = ls.plan_delete(spec, have)
    if not ours(spec, have):
        assert steps == []
        return
    deleted = replace(have, qdisc=ls.Qdisc("pfifo_fast")) if steps else have  # `tc qdisc del ... root`
    assert ls.plan_delete(spec, deleted) == []
    assert ls.observe(spec, deleted)[1] != [] or not have.tap  # unshaped: refresh says so


@given(cases())
def test_argv_is_never_parsed_again(case: tuple[LinkShapeSpec, ls.ShapeHave]) -> None:
    """Every value reaches `tc` as one argument of an argv step; the read's one sh program is a constant
    that gets the TAP as `$1`."""
    spec, have = case
    plans: list[Step] = ls.plan_delete(spec, have)
    if ours(spec, have) and have.netem is None:
        plans += ls.plan_ensure(spec, have)
    for step in plans:
        assert step.kind == "run" and step.argv[0] == "tc" and step.argv.count(spec.tap) == 1
    shape = [s for s in plans if s.name == ls.SHAPE]
    if shape and spec.impairment.qdisc == "netem":
        assert shape[0].argv[:7] == ("tc", "qdisc", "replace", "dev", spec.tap, "root", "netem")
        assert ls.parse_qdisc(f"qdisc {' '.join(shape[0].argv[6:])} root") is not None
    elif shape:
        assert list(shape[0].argv) == ls.shape_argv(spec)
        assert shape[0].argv[-6:] == (
            "rate",
            f"{spec.rate_kbit}kbit",
            "burst",
            str(spec.burst_bytes),
            "latency",
            f"{spec.latency_ms}ms",
        )
    probes = [s for s in ls.preflight(spec) if s.name == ls.NETEM_PROBE]
    assert len(probes) == (spec.impairment.qdisc == "netem")  # the kernel is asked only when it matters
    for probe in probes:  # in a namespace of its own, never on a real interface
        assert probe.argv[:3] == ("sh", "-c", ls.NETEM_PROBE_BODY) and len(probe.argv) == 4
        assert ls.NETEM_PROBE_BODY.startswith("unshare -n tc qdisc add dev lo ")
    (show,) = [s for s in ls.preflight(spec) if s.name == ls.QDISC]
    assert show.argv[:3] == ("sh", "-c", ls._SHOW) and show.argv[4:] == (spec.tap,)
    assert spec.tap not in ls._SHOW


@given(st.integers(8, 100_000_000), st.integers(1600, 1 << 20), st.integers(1, 60_000))
def test_both_tc_output_forms_parse_alike(rate_kbit: int, burst: int, latency_ms: int) -> None:
    as_json = json.dumps(
        [{"kind": "tbf", "handle": "8001:", "root": True, "refcnt": 2,
          "options": {"rate": rate_kbit * 125, "burst": burst, "lat": latency_ms * 1000}}]
    )  # fmt: skip
    as_text = f"qdisc tbf 8001: root refcnt 2 rate {rate_kbit}Kbit burst {burst}b lat {latency_ms}ms \n"
    assert (
        ls.parse_qdisc(as_json)
        == ls.parse_qdisc(as_text)
        == ls.Qdisc("tbf", rate_kbit * 125, burst, latency_ms * 1000)
    )


def test_tc_output_as_this_kernel_prints_it() -> None:
    """Read back from a real `tc` (rate 1234kbit burst 20000 latency 50ms): rounded, still in place."""
    spec = LinkShapeSpec.model_validate(
        {"slice": "demo", "host": WORKER, "tap": "tap_1002_eth1", "rateKbit": 1234, "burstBytes": 20000,
         "latencyMs": 50}
    )  # fmt: skip
    real = (
        '[{"kind":"tbf","handle":"8001:","root":true,"refcnt":2,'
        '"options":{"rate":154250,"burst":19999,"lat":49997}}]'
    )
    assert ls.in_place(spec, ls.parse_qdisc(real))
    assert ls.in_place(
        spec, ls.parse_qdisc("qdisc tbf 8001: root refcnt 2 rate 1234Kbit burst 19999b lat 50ms")
    )
    assert ls.parse_qdisc("qdisc pfifo_fast 0: root refcnt 2 bands 3 priomap 1 2 2 2") == ls.Qdisc(
        "pfifo_fast"
    )
    assert ls.parse_qdisc("Cannot find device") is None


def test_a_create_through_the_pipeline_reads_then_shapes(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = LinkShapeSpec.model_validate(
        {"slice": "demo", "host": WORKER, "tap": "tap_1002_eth1", "rateKbit": 1000, "burstBytes": 1600,
         "latencyMs": 7}
    )  # fmt: skip
    scripts: list[list[str]] = []

    def run_script(_host: Any, steps: list[Step], **_: Any) -> ScriptResult:
        scripts.append([s.name for s in steps])
        return ScriptResult()

    monkeypatch.setattr(ssh, "run_script", run_script)
    unshaped = ls.ShapeHave(True, "demo", ls.Qdisc("pfifo_fast"))
    result = reading(monkeypatch, KINDS["LinkShape"], unshaped).create(spec.inputs())
    assert result.id == "worker1/shape/tap_1002_eth1"
    assert scripts == [[READ], [ls.SHAPE]]
    assert result.outs is not None and result.outs["drift"] == []
    assert result.outs["observed"]["rateKbit"] == 1000 and result.outs["observed"]["changed"] == [ls.SHAPE]


@given(netem_specs())
def test_the_netem_read_back_in_both_forms_is_in_place(spec: LinkShapeSpec) -> None:
    """`tc -j` gives times in seconds and probabilities as fractions of 1 (the kernel holds them in 32
    bits); the text form in units and percent: both read back as the spec's netem."""
    want = ls.wanted(spec)
    opts: dict[str, Any] = {"limit": 1000}
    words = ["qdisc", "netem", "8001:", "root", "refcnt", "2", "limit", "1000"]
    if want.delay_us:
        opts["delay"] = {
            "delay": want.delay_us / 1e6,
            "jitter": (want.jitter_us or 0) / 1e6,
            "correlation": 0,
        }
        words += ["delay", f"{want.delay_us}us", *([f"{want.jitter_us}us"] if want.jitter_us else [])]
    for key, group in (("loss", "loss-random"), ("duplicate", "duplicate"), ("reorder", "reorder"),
                       ("corrupt", "corrupt")):  # fmt: skip
        if (pct := getattr(want, key)) is not None:
            opts[group] = {key: round(pct / 100 * 0xFFFFFFFF) / 0xFFFFFFFF, "correlation": 0}
            words += [key, f"{pct}%"]
    if want.rate is not None:
        opts["rate"] = {"rate": want.rate, "packetoverhead": 0, "cellsize": 0, "celloverhead": 0}
        words += ["rate", f"{spec.rate_kbit}Kbit"]
    opts.update({"ecn": False, "gap": 0})
    as_json = json.dumps([{"kind": "netem", "handle": "8001:", "root": True, "refcnt": 2, "options": opts}])
    assert ls.in_place(spec, ls.parse_qdisc(as_json)), ls.parse_qdisc(as_json)
    assert ls.in_place(spec, ls.parse_qdisc(" ".join(words))), ls.parse_qdisc(" ".join(words))
    assert not ls.in_place(spec, ls.parse_qdisc(as_json.replace('"netem"', '"tbf"')))


def test_a_kernel_without_netem_is_refused_before_any_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """The read's probe failed: the create raises naming the qdisc, and runs no script after the read."""
    spec = LinkShapeSpec.model_validate(
        {"slice": "demo", "host": WORKER, "tap": "tap_1002_eth1", "delayUs": 100_000}
    )
    scripts: list[list[str]] = []

    def run_script(_host: Any, steps: list[Step], **_: Any) -> ScriptResult:
        scripts.append([s.name for s in steps])
        return ScriptResult()

    monkeypatch.setattr(ssh, "run_script", run_script)
    have = ls.ShapeHave(True, "demo", ls.Qdisc("pfifo_fast"), NO_NETEM)
    with pytest.raises(Exception, match=r"no netem qdisc \(sch_netem\), which netem delay of TAP tap_1002"):
        reading(monkeypatch, KINDS["LinkShape"], have).create(spec.inputs())
    assert scripts == [[READ]]

"""`links[].netem`: the impairment set with its units, checked at preview (every problem at its key path,
all at once, never an exception), carried as numbers into one `LinkShape` per TAP of the link, and shown in
the outputs, `cloudrepo show` and the picture."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudrepo import tables
from cloudrepo.diagram import slice_graph
from components.allocation import allocate_vlans
from components.config import load_config
from components.outputs import Deployed, stack_outputs
from components.plan import build_plan
from components.resources import netem_resource, pool_name, resource_plan, shape_resource, tap_resource
from components.slice_rules import check_netem
from tests.cfgkit import BASE, raw_config, slice_with, with_changes
from tests.fuzzkit import fuzz_settings, hostile_values
from vocabulary import netem
from vocabulary.errors import ConfigError
from vocabulary.specs import LinkShapeSpec

WHERE = "cloudrepo:slice.links[0].netem"

times = st.builds(lambda n, u: f"{n}{u}", st.integers(1, 60), st.sampled_from(["us", "ms", "s"]))
rates = st.builds(lambda n, u: f"{n}{u}", st.integers(8, 100), st.sampled_from(["kbit", "mbit", "gbit"]))
percents = st.builds(
    lambda n, d: f"{n}.{d}%" if d else f"{n}%", st.integers(0, 99), st.sampled_from(["", "5", "25", "0001"])
).filter(lambda p: netem._PERCENT.fullmatch(p) is not None and float(p[:-1]) > 0)


@st.composite
def valid_sets(draw: st.DrawFn) -> dict[str, str]:
    out = {k: draw(percents) for k in netem.PERCENT_KEYS if draw(st.booleans())}
    if draw(st.booleans()):
        out["rate"] = draw(rates)
    if draw(st.booleans()) or not out:
        out["delay"] = draw(times)
        if draw(st.booleans()):
            out["jitter"] = draw(times)
    elif "reorder" in out:
        out["delay"] = draw(times)
    return out


VMS = [
    {"id": 1002, "worker": "worker1", "dataInterfaces": 2, "internet": True},
    {"id": 1003, "worker": "worker2", "dataInterfaces": 2},
]


def two_links(*links: Any) -> dict[str, Any]:
    return with_changes(slice=slice_with(vms=VMS, links=list(links)))


def config(netem_value: Any) -> dict[str, Any]:
    return two_links({"a": "1002.eth1", "b": "1003.eth1", "netem": netem_value}, ["1002.eth2", "1003.eth2"])


def load(netem_value: Any) -> Any:
    return load_config(raw_config(config(netem_value)), "dev")


@given(valid_sets())
def test_any_valid_set_loads_as_numbers_and_shows_back_the_same(raw: dict[str, str]) -> None:
    link = load(raw).links[0]
    assert link.netem is not None
    n = link.netem
    assert n.delay_us == (netem.time_us(raw["delay"]) if "delay" in raw else None)
    assert n.rate_kbit == (netem.rate_kbit(raw["rate"]) if "rate" in raw else None)
    for key in netem.PERCENT_KEYS:
        assert getattr(n, f"{key}_pct") == (float(raw[key][:-1]) if key in raw else None)
    assert n.qdisc == ("tbf" if set(raw) == {"rate"} else "netem")
    # what the outputs show reads back as the same set
    assert netem.NetemInput.model_validate(n.shown()).numbers() == n
    spec = LinkShapeSpec.model_validate(
        {"slice": "demo", "host": BASE_WORKER, "tap": "tap_1002_eth1", **n.model_dump()}
    )
    assert spec.impairment == n


BASE_WORKER = {"name": "worker1", "address": "10.0.10.1"}


@fuzz_settings(ci=300, long=5000)
@given(hostile_values())
def test_any_value_of_netem_is_accepted_or_named_at_its_key_path(value: Any) -> None:
    found: list[str] = []
    result = check_netem(value, WHERE, found.append)
    assert (result is None) == bool(found)
    for p in found:
        assert p.startswith((f"{WHERE}: ", f"{WHERE}.", f"{WHERE}[")), p


@fuzz_settings(ci=200, long=3000)
@given(st.sampled_from(netem.KEYS), hostile_values(depth=1))
def test_any_value_of_one_key_is_accepted_or_named_with_the_value(key: str, value: Any) -> None:
    raw = {"delay": "10ms", key: value}
    if value is None:  # null is the key left out
        raw = {"delay": "10ms"}
    found: list[str] = []
    if check_netem(raw, WHERE, found.append) is not None:
        assert isinstance(value, str) or value is None
        return
    assert any(p.startswith(f"{WHERE}.{key}: ") for p in found), found


def test_every_problem_at_once_at_preview() -> None:
    bad = {"delay": "10 ms", "jitter": "5", "loss": "101%", "rate": "1tbit", "corrupt": 5, "bogus": "1%"}
    with pytest.raises(ConfigError) as info:
        load_config(
            raw_config(two_links(
                {"a": "1002.eth1", "b": "1003.eth1", "netem": bad},
                {"a": "1002.eth2", "b": "1003.eth2", "netem": {"reorder": "1%", "jitter": "1ms"}},
            )),
            "dev",
        )  # fmt: skip
    assert sorted(info.value.problems) == sorted([
        f"{WHERE}.delay: must be a time above 0 and at most 60s, a whole number with its unit (us, ms, s) "
        "like '20ms', got '10 ms'",
        f"{WHERE}.jitter: must be a time above 0 and at most 60s, a whole number with its unit (us, ms, s) "
        "like '20ms', got '5'",
        f"{WHERE}.loss: must be a percentage above 0 and at most 100 (up to 4 decimals) like '1%' or "
        "'0.5%', got '101%'",
        f"{WHERE}.rate: must be a rate from 8kbit to 100gbit, a whole number with its unit (kbit, mbit, "
        "gbit) like '10mbit', got '1tbit'",
        f"{WHERE}.corrupt: input should be a valid string, got 5",
        f"{WHERE}.bogus: unknown key 'bogus' (known: delay, jitter, loss, rate, corrupt, duplicate, reorder)",
        "cloudrepo:slice.links[1].netem.jitter: needs delay (netem varies or reorders a delay)",
        "cloudrepo:slice.links[1].netem.reorder: needs delay (netem varies or reorders a delay)",
    ])  # fmt: skip


def test_an_empty_set_is_refused() -> None:
    found: list[str] = []
    assert check_netem({}, WHERE, found.append) is None
    assert found == [f"{WHERE}: set at least one of {', '.join(netem.KEYS)}, or remove the key"]


def plan_of(netem_value: Any) -> Any:
    cfg = load(netem_value)
    return build_plan(cfg, allocate_vlans(cfg.links, cfg.pool, Deployed().vlans))


def test_one_shape_per_tap_of_the_link_after_its_tap() -> None:
    plan = plan_of({"rate": "2mbit"})
    shapes = [r for r in resource_plan(plan) if r.kind == "LinkShape"]
    assert [r.name for r in shapes] == [shape_resource(1002, "eth1"), shape_resource(1003, "eth1")]
    for r, (vm, worker) in zip(shapes, ((1002, "worker1"), (1003, "worker2")), strict=True):
        assert isinstance(r.spec, LinkShapeSpec)
        assert r.spec.tap == f"tap_{vm}_eth1" and r.spec.host.name == worker
        assert tap_resource(vm, "eth1") in r.depends_on
        assert (r.spec.rate_kbit, r.spec.burst_bytes, r.spec.impairment.qdisc) == (2000, 2500, "tbf")


def test_editing_netem_changes_only_the_shapes() -> None:
    """An edit of `netem` is an update of the two shapes in place: every other resource's spec (TAPs,
    VLANs, gateways, DHCP) is the same (a key that needs a netem adds only the workers' checks, which make
    nothing); removing the key removes only the shapes."""
    specs = {
        key: {r.name: r.spec for r in resource_plan(plan_of(value))}
        for key, value in (("rate", {"rate": "2mbit"}), ("delay", {"delay": "100ms", "rate": "5mbit"}))
    }
    rate, delay = specs["rate"], specs["delay"]
    assert sorted(set(delay) - set(rate)) == [netem_resource("worker1"), netem_resource("worker2")]
    assert set(rate) <= set(delay)
    changed = sorted(n for n in rate if rate[n] != delay[n])
    assert changed == [shape_resource(1002, "eth1"), shape_resource(1003, "eth1")]
    cfg = load_config(raw_config(two_links(["1002.eth1", "1003.eth1"], ["1002.eth2", "1003.eth2"])), "dev")
    bare = {r.name: r.spec for r in resource_plan(build_plan(cfg, allocate_vlans(cfg.links, cfg.pool)))}
    assert sorted(set(rate) - set(bare)) == changed and all(bare[n] == rate[n] for n in bare)


def test_a_netem_is_checked_on_each_worker_before_the_pool_claim() -> None:
    """Keys only a netem carries: one check per worker of the link, and the pool claim (on which every
    other resource waits) waits for them; a rate alone needs none."""
    planned = resource_plan(plan_of({"delay": "100ms", "loss": "1%", "rate": "5mbit"}))
    checks = [r for r in planned if r.kind == "NetemSupport"]
    assert [(r.name, r.spec.host.name, r.spec.keys, r.spec.taps) for r in checks] == [  # type: ignore[attr-defined]
        (netem_resource("worker1"), "worker1", ["delay", "loss"], ["tap_1002_eth1"]),
        (netem_resource("worker2"), "worker2", ["delay", "loss"], ["tap_1003_eth1"]),
    ]
    (claim,) = [r for r in planned if r.kind == "PoolClaim"]
    assert claim.name == pool_name(120) and claim.depends_on == tuple(r.name for r in checks)
    assert planned.index(claim) > max(planned.index(r) for r in checks)
    assert not [r for r in resource_plan(plan_of({"rate": "5mbit"})) if r.kind == "NetemSupport"]


def test_outputs_show_and_picture_carry_the_impairment() -> None:
    outputs = stack_outputs(plan_of({"delay": "100ms", "loss": "0.5%", "rate": "10000kbit"}))
    link = outputs["links"][0]
    assert link["netem"] == {"delay": "100ms", "loss": "0.5%", "rate": "10mbit"}
    assert link["qdisc"] == "netem" and "netem" not in outputs["links"][1]
    text = tables.show("dev", outputs)
    assert "delay 100ms loss 0.5% rate 10mbit (netem)" in text
    assert text.splitlines()[-3].split()[-1] == "netem"  # the column's header
    assert "delay 100ms loss 0.5% rate 10mbit (netem)" in slice_graph(outputs).source
    assert "VLAN 120, delay 100ms loss 0.5% rate 10mbit" in outputs["topology"]


def test_a_slice_without_netem_shows_as_before() -> None:
    cfg = load_config(raw_config(BASE), "dev")
    outputs = stack_outputs(build_plan(cfg, allocate_vlans(cfg.links, cfg.pool)))
    assert all(set(link) == {"endpoints", "vlan", "cidr", "gateway"} for link in outputs["links"])
    assert "netem" not in tables.show("dev", outputs)

"""LinkShape on the testbed (the provider alone, no engine): a real TAP of a slice on worker1, shaped by the
real `tc`, read back, damaged by hand and repaired, another slice refused, and the default qdisc restored by
the delete; the host back to its baseline."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from tests.functional.kit import outs, provider
from tests.labfixtures import Testbed, assert_scan_equal, scan, scan_parts
from vocabulary.errors import OwnershipConflict
from vocabulary.specs import Endpoint, LinkShapeSpec, TapPortSpec

pytestmark = pytest.mark.integration

TAP = "tap_9501_eth1"


def qdisc(testbed: Testbed) -> str:
    return testbed.run("worker1", f"tc qdisc show dev {TAP} root")[1].strip()


def test_a_tap_is_shaped_read_repaired_and_restored(lab: Testbed) -> None:
    baseline = scan("worker1")
    host = Endpoint(name="worker1", address="127.0.0.1", port=lab.port("worker1"))
    taps, shapes = provider(lab, "TapPort"), provider(lab, "LinkShape")
    tap = TapPortSpec(
        slice="fshape", host=host, name=TAP, vm=9501, iface="eth1", mac="52:54:00:25:1d:01", vlan=3501
    ).inputs()
    shape = LinkShapeSpec(
        slice="fshape", host=host, tap=TAP, rate_kbit=1234, burst_bytes=20000, latency_ms=50
    ).inputs()
    made = taps.create(tap)
    try:
        default = qdisc(lab)
        assert "tbf" not in default
        created = shapes.create(shape)
        assert created.id == f"worker1/shape/{TAP}"
        assert outs(created)["observed"]["changed"] == ["shape"]
        assert qdisc(lab).startswith("qdisc tbf") and "rate 1234Kbit" in qdisc(lab)
        read = shapes.read(created.id, outs(created))
        assert outs(read)["drift"] == []  # the kernel's rounding (burst 19999, lat 49997us) is in place
        assert outs(shapes.create(shape))["observed"]["changed"] == []  # in place: nothing run

        # damage by hand: the shaping is gone, refresh says so, update puts it back
        lab.run("worker1", f"tc qdisc del dev {TAP} root")
        damaged = shapes.read(created.id, outs(created))
        assert outs(damaged)["drift"] == [f"no tbf (root qdisc {default.split()[1]})"]
        assert shapes.diff(created.id, outs(damaged), shape).changes is True
        fixed = shapes.update(created.id, outs(damaged), shape)
        assert outs(fixed)["observed"]["changed"] == ["shape"] and "rate 1234Kbit" in qdisc(lab)

        # another slice's TAP is refused, naming it, and nothing changes
        before = scan("worker1")
        with pytest.raises(OwnershipConflict, match=f"TAP {TAP} is wanted by slice 'other' but belongs to"):
            shapes.create({**shape, "slice": "other"})
        assert_scan_equal(before, scan("worker1"))
        assert "rate 1234Kbit" in qdisc(lab)

        shapes.delete(created.id, shape)
        assert qdisc(lab) == default  # the kernel's default root qdisc again
        shapes.delete(created.id, shape)  # again: nothing to do
        assert qdisc(lab) == default
    finally:
        taps.delete(made.id, tap)
    shapes.delete(f"worker1/shape/{TAP}", shape)  # the TAP is gone: nothing to do
    assert shapes.read(f"worker1/shape/{TAP}", shape).id == ""
    assert_scan_equal(scan_parts(baseline, (TAP, "3501")), scan_parts(scan("worker1"), (TAP, "3501")))


def netem_missing() -> bool:
    probe = ["unshare", "-n", "tc", "qdisc", "add", "dev", "lo", "root", "netem", "delay", "1ms"]
    return subprocess.run(probe, capture_output=True, check=False).returncode != 0


def test_a_netem_is_applied_or_refused_before_any_step(lab: Testbed) -> None:
    """Where the kernel has no sch_netem, a delay is refused naming the qdisc, and the TAP's qdisc stays as
    it was; where it has, the netem is applied and reads back in place."""
    host = Endpoint(name="worker1", address="127.0.0.1", port=lab.port("worker1"))
    taps, shapes = provider(lab, "TapPort"), provider(lab, "LinkShape")
    tap = TapPortSpec(
        slice="fshape", host=host, name=TAP, vm=9501, iface="eth1", mac="52:54:00:25:1d:01", vlan=3501
    ).inputs()
    shape = LinkShapeSpec(slice="fshape", host=host, tap=TAP, delay_us=100_000, loss_pct=1.0).inputs()
    made = taps.create(tap)
    try:
        default = qdisc(lab)
        if netem_missing():
            with pytest.raises(Exception, match=r"no netem qdisc \(sch_netem\), which netem delay, loss of"):
                shapes.create(shape)
            assert qdisc(lab) == default
        else:
            created = shapes.create(shape)
            assert qdisc(lab).startswith("qdisc netem") and "delay 100ms" in qdisc(lab)
            assert outs(shapes.read(created.id, outs(created)))["drift"] == []
            shapes.delete(created.id, shape)
            assert qdisc(lab) == default
    finally:
        taps.delete(made.id, tap)


@pytest.mark.long  # a timing figure at a larger scale
def test_apply_time_of_twenty_shapes(lab: Testbed) -> None:
    """A figure for bench/README.md: 20 TAPs' rate limits created, changed and removed through the
    provider (one SSH round trip each, run one after another), timed."""
    host = Endpoint(name="worker1", address="127.0.0.1", port=lab.port("worker1"))
    taps, shapes = provider(lab, "TapPort"), provider(lab, "LinkShape")
    names = [f"tap_9600_eth{i}" for i in range(1, 21)]
    tap_specs = [
        TapPortSpec(
            slice="fshape",
            host=host,
            name=n,
            vm=9600,
            iface=f"eth{i}",
            mac=f"52:54:00:25:80:{i:02x}",
            vlan=3501,
        ).inputs()
        for i, n in enumerate(names, 1)
    ]
    made = [taps.create(t) for t in tap_specs]
    figures: dict[str, float] = {}
    try:
        specs = [LinkShapeSpec(slice="fshape", host=host, tap=n, rate_kbit=10_000).inputs() for n in names]
        t0 = time.monotonic()
        created = [shapes.create(s) for s in specs]
        figures["create_20_seconds"] = round(time.monotonic() - t0, 2)
        faster = [{**s, "rateKbit": 20_000} for s in specs]
        t0 = time.monotonic()
        for c, s, f in zip(created, specs, faster, strict=True):
            shapes.update(c.id, {**outs(c), **s}, f)
        figures["update_20_seconds"] = round(time.monotonic() - t0, 2)
        assert all("rate 20Mbit" in lab.run("worker1", f"tc qdisc show dev {n} root")[1] for n in names)
        t0 = time.monotonic()
        for c, f in zip(created, faster, strict=True):
            shapes.delete(c.id, f)
        figures["delete_20_seconds"] = round(time.monotonic() - t0, 2)
    finally:
        for m, t in zip(made, tap_specs, strict=True):
            taps.delete(m.id, t)
    print("LinkShape x20:", figures)
    out = Path(lab.inventory["privateKeyPath"]).parent / "figures" / "link-shape-times.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")

"""LinkShape on the testbed (the provider alone, no engine): a real TAP of a slice on worker1, shaped by the
real `tc`, read back, damaged by hand and repaired, another slice refused, and the default qdisc restored by
the delete; the host back to its baseline."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config

from providers.pipeline import HostProvider
from tests.labfixtures import Testbed, assert_scan_equal, scan, scan_parts
from transport import ssh
from vocabulary.errors import OwnershipConflict
from vocabulary.specs import Endpoint, LinkShapeSpec, TapPortSpec

pytestmark = pytest.mark.integration

TAP = "tap_9501_eth1"


@pytest.fixture
def lab(testbed: Testbed) -> Iterator[Testbed]:
    ssh.close_all()
    yield testbed
    ssh.close_all()


def provider(testbed: Testbed, kind: str) -> HostProvider:
    p = HostProvider(kind)
    p.configure(ConfigureRequest(Config(testbed.ssh_config(), "cloudrepo")))
    return p


def outs(result: Any) -> dict[str, Any]:
    assert result.outs is not None
    return dict(result.outs)


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
        assert outs(damaged)["drift"] == [f"no rate limit (root qdisc {default.split()[1]})"]
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

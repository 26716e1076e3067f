"""NetemSupport: a worker's netem checked before the slice's objects; it makes nothing, refuses a kernel
without netem naming the qdisc, the keys and the TAPs, and reads the probe's answer."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from providers.kinds import KINDS, link_shape
from providers.kinds import netem_support as ns
from tests.unit.providers.provkit import READ, WORKER, reading
from transport import ssh
from transport.script import ScriptResult, Step, StepResult
from vocabulary.specs import NetemSupportSpec

SPEC = NetemSupportSpec.model_validate(
    {"slice": "demo", "host": WORKER, "keys": ["delay", "loss"], "taps": ["tap_1002_eth1"]}
)
NO_NETEM = "Error: Specified qdisc kind is unknown."


@given(st.none() | st.text(min_size=1, max_size=300))
def test_it_plans_nothing_or_refuses_naming_the_qdisc(problem: str | None) -> None:
    have = ns.Support(problem)
    assert ns.plan_delete(SPEC, have) == []
    if problem is None:
        assert ns.plan_ensure(SPEC, have) == [] and ns.observe(SPEC, have) == ({"netem": True}, [])
        return
    with pytest.raises(link_shape.QdiscMissing) as info:
        ns.plan_ensure(SPEC, have)
    assert (
        "worker1: the kernel has no netem qdisc (sch_netem), which netem delay, loss of TAP tap_1002_eth1"
        in str(info.value)
    )


@pytest.mark.parametrize(("status", "said", "problem"), [(0, "", None), (2, NO_NETEM + "\n", NO_NETEM)])
def test_the_probe_is_read(status: int, said: str, problem: str | None) -> None:
    res = ScriptResult([StepResult("tools", 0, ""), StepResult(link_shape.NETEM_PROBE, status, said)])
    assert ns.parse_have(SPEC, res) == ns.Support(problem)
    (probe,) = [s for s in ns.preflight(SPEC) if s.name == link_shape.NETEM_PROBE]
    assert probe.argv == ("sh", "-c", link_shape.NETEM_PROBE_BODY, "sh")


def test_a_create_on_a_kernel_without_netem_reads_and_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    scripts: list[list[str]] = []

    def run_script(_host: Any, steps: list[Step], **_: Any) -> ScriptResult:
        scripts.append([s.name for s in steps])
        return ScriptResult()

    monkeypatch.setattr(ssh, "run_script", run_script)
    with pytest.raises(link_shape.QdiscMissing, match="sch_netem"):
        reading(monkeypatch, KINDS["NetemSupport"], ns.Support(NO_NETEM)).create(SPEC.inputs())
    assert scripts == [[READ]]
    made = reading(monkeypatch, KINDS["NetemSupport"], ns.Support(None)).create(SPEC.inputs())
    assert made.id == "worker1/netem" and made.outs is not None and made.outs["drift"] == []

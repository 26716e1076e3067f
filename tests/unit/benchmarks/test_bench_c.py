"""(c)'s pure parts: the seed's objects as Commands, their order, the report's ratios and targets."""

from __future__ import annotations

import itertools
import signal
import subprocess
from collections import Counter

from hypothesis import given
from hypothesis import strategies as st

from bench import baselines as bl
from bench import engine
from bench.command_plan import CommandSpec, command_plan
from bench.report import ratios, table, targets
from bench.sshd_watch import accepted
from bench.topology import SliceSpec


@st.composite
def slices(draw: st.DrawFn) -> list[SliceSpec]:
    """1..5 slices with their own pools and VM ids, as the multi scenario makes them."""
    count = draw(st.integers(1, 5))
    return [SliceSpec(f"s{i}", draw(st.integers(2, 20)), 100 + 20 * i, 3000 + 20 * i) for i in range(count)]


def plan_of(specs: list[SliceSpec]) -> list[CommandSpec]:
    return command_plan(bl.seed_objects(specs, "0"))


def destroy_order(plan: list[CommandSpec]) -> list[CommandSpec]:
    """The engine's destroy: a Command is deleted once every Command that depends on it is gone."""
    left = {c.name: c for c in plan}
    out = []
    while left:
        needed = {d for c in left.values() for d in c.depends_on}
        ready = [c for n, c in left.items() if n not in needed]
        assert ready, "a dependency cycle"
        out += ready
        for c in ready:
            del left[c.name]
    return out


def test_twenty_links_is_the_reported_374_commands() -> None:
    work = bl.host_work([SliceSpec("b", 20, 100, 2000)], "0")
    assert work.count("create") == 374
    assert len(plan_of([SliceSpec("b", 20, 100, 2000)])) == 374


@given(slices())
def test_one_command_per_create_command_with_the_teardown_as_deletes(specs: list[SliceSpec]) -> None:
    work = bl.host_work(specs, "0")
    plan = plan_of(specs)
    assert len({c.name for c in plan}) == len(plan)
    for host in work.create:
        mine = [c for c in plan if c.host == host]
        assert Counter(c.create for c in mine) == Counter(work.create[host])
        assert Counter(c.delete for c in mine if c.delete) == Counter(work.teardown[host])


@given(slices())
def test_every_command_comes_after_what_it_depends_on(specs: list[SliceSpec]) -> None:
    seen: set[str] = set()
    for c in plan_of(specs):
        assert set(c.depends_on) <= seen
        seen.add(c.name)


@given(slices())
def test_objects_are_made_in_the_seed_order_and_independent(specs: list[SliceSpec]) -> None:
    plan = {c.name: c for c in plan_of(specs)}
    objects = bl.seed_objects(specs, "0")
    last = {o.name: f"{o.name}-{len(o.steps)}" for o in objects}
    for obj in objects:
        chain = [plan[f"{obj.name}-{i + 1}"] for i in range(len(obj.steps))]
        assert [c.create for c in chain] == [s.create for s in obj.steps]
        assert all(c.depends_on == (prev.name,) for prev, c in itertools.pairwise(chain))
        assert chain[0].depends_on == tuple(last[n] for n in obj.needs)


@given(slices())
def test_destroy_undoes_each_object_in_reverse_and_the_run_directory_last(specs: list[SliceSpec]) -> None:
    deletes = [c.delete for c in destroy_order(plan_of(specs)) if c.delete]
    for tap in specs[0].taps()[:3]:
        port = deletes.index(f"sudo ovs-vsctl --if-exists del-port br-int {tap.name}")
        assert port < deletes.index(f"sudo ip link delete dev {tap.name}")
    vlan = specs[0].link_vlans()[0]
    kill = deletes.index(f"sudo kill $(cat {bl.rundir()}/dnsmasq_vlan{vlan}.pid)")
    assert kill < deletes.index(f"sudo ip netns delete ns-dhcp-vlan{vlan}")
    assert deletes.index(f"rm -rf {bl.rundir()}") > kill
    assert deletes.index("sudo sysctl -w net.ipv4.ip_forward=0") > deletes.index(
        "sudo iptables -t nat -D POSTROUTING -s 10.60.7.0/24 -o ens3 -j MASQUERADE"
    )


def test_host_work_tears_down_in_reverse() -> None:
    work = bl.host_work([SliceSpec("b", 2, 100, 2000)], "1")
    assert work.teardown["worker1"][:2] == [
        "sudo ovs-vsctl --if-exists del-port br-int tap_2000_eth2",
        "sudo ip link delete dev tap_2000_eth2",
    ]
    assert work.teardown["network"][-1] == f"rm -rf {bl.rundir()}"


def test_sshd_log_lines_counted() -> None:
    log = (
        "Connection closed by 127.0.0.1 port 1 [preauth]\n"
        "Accepted publickey for root from 127.0.0.1 port 2 ssh2: ED25519 SHA256:x\n"
        "Disconnected from user root 127.0.0.1 port 2\n"
        "Accepted publickey for root from 127.0.0.1 port 3 ssh2: ED25519 SHA256:x\n"
    )
    assert accepted(log) == 2


def scenario(links: int, up: float, destroy: float, c: dict[str, object]) -> dict[str, object]:
    phase = {"ssh_connections_opened": 3, "ssh_commands_run": 9}
    sc: dict[str, object] = {
        "name": f"{links} links",
        "kind": "single",
        "links": links,
        "hosts": 3,
        "pulumi": {"up": {"seconds": up, **phase}, "destroy": {"seconds": destroy, **phase}},
        "baselines": {"pulumi_command": c},
    }
    sc["ratios"] = ratios(sc)
    return sc


def c_phases(up: float, destroy: float) -> dict[str, object]:
    return {
        ph: {"seconds": s, "host_ssh_connections": 374, "host_peak_sessions": 374}
        for ph, s in (("up", up), ("destroy", destroy))
    }


def test_c_ratios_and_targets() -> None:
    met = scenario(20, 8.0, 6.0, c_phases(60.0, 40.0))
    assert (met["ratios"]["c_over_up"], met["ratios"]["c_destroy_over_destroy"]) == ("7.50", "6.67")  # type: ignore[index]
    missed = scenario(20, 8.0, 10.0, c_phases(60.0, 40.0))
    found = {t: m for t, m, _ in targets({"scenarios": [met, missed]})}
    assert found["20 links: (c)/up >= 5"] is True
    assert found["20 links: (c) destroy / destroy >= 5"] is False
    assert "| 20 links | (c) pulumi-command up | 60.0 | - | - | 374 (374) |" in table({"scenarios": [met]})


def test_c_not_measured() -> None:
    sc = scenario(20, 8.0, 6.0, {"status": "not run (--no-c)"})
    found = {t: m for t, m, _ in targets({"scenarios": [sc]})}
    assert found["20 links: (c)/up >= 5"] is None
    assert "| 20 links | (c) pulumi-command | not run (--no-c) |" in table({"scenarios": [sc]})


def test_a_phase_past_its_timeout_is_stopped_and_reported() -> None:
    proc = subprocess.Popen(["sleep", "30"], stdout=subprocess.PIPE, text=True)
    out, timed_out = engine._finish(proc, 0.2)
    assert (out, timed_out, proc.returncode) == ("", True, -signal.SIGTERM)
    run = engine.Measured(["up"], out, proc.returncode, 0.2, None, None, 0.2)  # type: ignore[arg-type]
    assert "pulumi up on c20: stopped after 0 s" in str(run.failure("c20"))
    done = engine.Measured(["up"], "", 0, 1.0, None, None)  # type: ignore[arg-type]
    assert done.failure("c20") is None


def test_the_c_program_rebuilds_every_slice_shape_from_its_config() -> None:
    import json

    from bench.baseline_c import slice_fields
    from bench.topology import SliceSpec, from_fields

    wide = SliceSpec("w", 20, 100, 4000, workers=("worker1", "worker2", "worker3", "worker4"), pairs=True)
    ring = SliceSpec("r", 5, 120, 2000)
    for spec in (wide, ring):
        again = from_fields(json.loads(json.dumps(slice_fields(spec))))
        assert again == spec and again.taps() == spec.taps()

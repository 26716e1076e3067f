"""Shared VLAN 400 objects created by two slices at once: the read runs outside the lock, so the locked
script may find the object made (or removed) by the other slice meanwhile; the provider reads again and
re-plans once instead of failing (seen with two `pulumi up` in parallel: "ns-dhcp-vlan400: File exists")."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers import ipv6
from providers.kind import Kind
from providers.kinds import KINDS, dhcp_addresses, dnsmasq
from providers.kinds import dhcp_namespace as dn
from providers.kinds import vlan_gateway as vg
from providers.pipeline import CONTENDED_ATTEMPTS, HostProvider
from tests.unit.providers.provkit import READ, dhcp, gateway, link, port, reading
from transport import ssh
from transport.script import ScriptResult, Step, StepResult
from vocabulary.errors import OwnershipConflict, StepFailed

GW400 = {"cloudrepo-kind": "gateway", "cloudrepo-vlan": "400"}


class Host:
    """Fake reads (`reads` in turn) and fake scripts: the first locked script fails at `fail_step`."""

    def __init__(self, reads: list[Any], fail_step: str, stdout: str = "") -> None:
        self.reads = reads
        self.fail_step = fail_step
        self.stdout = stdout
        self.scripts: list[list[str]] = []
        self.read_count = 0

    def provider(self, monkeypatch: pytest.MonkeyPatch, kind: Kind[Any, Any]) -> HostProvider:
        """The pipeline's provider of `kind` on this host (SSH faked)."""
        monkeypatch.setattr(ssh, "run_script", self.run_script)
        return reading(monkeypatch, kind, *self.reads)

    def run_script(
        self, _endpoint: Any, steps: list[Step], *, locked: bool = False, **_: Any
    ) -> ScriptResult:
        names = [s.name for s in steps]
        if names == [READ]:
            self.read_count += 1
            return ScriptResult()
        self.scripts.append(names)
        if len(self.scripts) == 1 and self.fail_step in names:
            raise StepFailed("network", self.fail_step, 1, "File exists")
        return ScriptResult([StepResult(names[-1], 0, self.stdout)])


def ensure(p: HostProvider, spec: Any) -> dict[str, Any]:
    """An update whose previous outputs carry drift: read, plan, run (the create path after a read)."""
    out = p.update("id", {**spec.inputs(), "drift": ["x"], "observed": {}}, spec.inputs()).outs
    assert out is not None
    return out


def shared_dhcp(slice_name: str) -> Any:
    return dhcp(
        slice=slice_name, vlan=400, namespace="ns-dhcp-vlan400", port="dhcp_v400", address="10.60.7.2/24",
        rangeStart="10.60.7.10", rangeEnd="10.60.7.250", router="10.60.7.1", shared=True,
        reservations=[{"mac": "52:54:00:18:39:00", "hostname": "vm6201"}],
    )  # fmt: skip


def test_shared_dhcp_created_meanwhile_by_another_slice_is_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = shared_dhcp("b")
    markers = dnsmasq.proc_markers(spec)
    absent = dn.DhcpHave(None, False, None, None, markers=markers)
    made_by_a = joined_meanwhile(shared_dhcp("a"), 0)  # the server slice "a" started
    host = Host([absent, made_by_a], "add namespace", "4242\n" + "\n".join(dnsmasq.dnsmasq_args(spec)))
    p = host.provider(monkeypatch, dn.KIND)
    out = ensure(p, spec)
    assert "add namespace" in host.scripts[0]
    # the second plan joins the namespace slice "a" made: register, own reservations, SIGHUP (same pid)
    assert host.scripts[1] == [
        dn.STILL_THERE,
        "register user",
        "verify addresses free",
        "write reservations",
        "assemble reservations",
        "dnsmasq",
    ]
    assert out["observed"]["dnsmasqPid"] == 4242
    assert out["observed"]["users"] == ["a", "b"]
    assert out["drift"] == []


def test_shared_gateway_created_meanwhile_by_another_slice_is_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = gateway(slice="b", vlan=400, port="gw_vlan400", address="10.60.7.1/24", shared=True)
    absent = vg.GatewayHave(None, None, ())
    made_by_a = vg.GatewayHave(
        port=port("gw_vlan400", 400, "shared", **GW400),
        link=link("gw_vlan400", True, "internal", None, "10.60.7.1/24"),
        others=(),
        users=("a",),
    )
    host = Host([absent, made_by_a], "add address")
    p = host.provider(monkeypatch, vg.KIND)
    out = ensure(p, spec)
    assert host.scripts == [
        ["register user", "add port", ipv6.STEP, "add address", "port up"],
        [vg.STILL_THERE, "register user"],
    ]
    assert out["observed"]["users"] == ["a", "b"]


def test_a_failure_of_a_slices_own_gateway_is_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host([vg.GatewayHave(None, None, ()), vg.GatewayHave(None, None, ())], "add address")
    p = host.provider(monkeypatch, vg.KIND)
    with pytest.raises(StepFailed, match="add address"):
        ensure(p, gateway())
    assert len(host.scripts) == 1


def test_a_shared_step_that_fails_twice_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = gateway(slice="b", vlan=400, port="gw_vlan400", address="10.60.7.1/24", shared=True)
    host = Host([vg.GatewayHave(None, None, ()), vg.GatewayHave(None, None, ())], "add address")

    def always_fails_after_reads(_endpoint: Any, steps: list[Step], **kw: Any) -> ScriptResult:
        if [s.name for s in steps] == [READ]:
            return host.run_script(_endpoint, steps, **kw)
        raise StepFailed("network", "add address", 2, "x")

    p = host.provider(monkeypatch, vg.KIND)
    monkeypatch.setattr(ssh, "run_script", always_fails_after_reads)
    with pytest.raises(StepFailed, match="add address"):
        ensure(p, spec)
    assert host.read_count == 2  # read twice, then the error


def shared_gateway(slice_name: str) -> Any:
    return gateway(slice=slice_name, vlan=400, port="gw_vlan400", address="10.60.7.1/24", shared=True)


# the read outside the lock caught slice "a"'s locked add-port half-way: the device is there, its port not yet
HALF_MADE = vg.GatewayHave(None, link("gw_vlan400", False, "internal", None), ())


def test_a_shared_gateway_read_half_made_by_another_slice_is_read_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made_by_a = vg.GatewayHave(
        port=port("gw_vlan400", 400, "shared", **GW400),
        link=link("gw_vlan400", True, "internal", None, "10.60.7.1/24"),
        others=(),
        users=("a",),
    )
    host = Host([HALF_MADE, made_by_a], "none")
    out = ensure(host.provider(monkeypatch, vg.KIND), shared_gateway("b"))
    assert host.read_count == 2
    assert host.scripts == [[vg.STILL_THERE, "register user"]]  # only the second plan ran: it joins
    assert out["observed"]["users"] == ["a", "b"]


def test_an_unmarked_device_in_a_shared_gateways_place_is_refused_after_a_second_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    host = Host([HALF_MADE, HALF_MADE], "none")
    with pytest.raises(OwnershipConflict, match="an interface of that name exists"):
        ensure(host.provider(monkeypatch, vg.KIND), shared_gateway("b"))
    assert (host.read_count, host.scripts) == (2, [])


def test_a_slices_own_gateway_read_as_unmarked_is_refused_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    host = Host([vg.GatewayHave(None, link("gw_vlan120", True, "internal", None), ())], "none")
    with pytest.raises(OwnershipConflict, match="an interface of that name exists"):
        ensure(host.provider(monkeypatch, vg.KIND), gateway())
    assert (host.read_count, host.scripts) == (1, [])


def joined_meanwhile(spec: Any, others: int) -> dn.DhcpHave:
    """The shared server slice "a" runs, read after `others` other slices reserved an address each."""
    return dn.DhcpHave(
        owner="shared",
        netns=True,
        port=port("dhcp_v400", 400, "shared", **{"cloudrepo-kind": "dhcp", "cloudrepo-vlan": "400"}),
        root_link=None,
        ns_links=(link("dhcp_v400", True, "internal", None, "10.60.7.2/24"), link("lo", True, None, None)),
        pid=4242,
        cmdline=tuple(dnsmasq.dnsmasq_args(spec)),
        hosts=None,
        users=("a", *(f"o{i}" for i in range(others))),
        markers=dnsmasq.proc_markers(spec),
        others=tuple((f"o{i}", f"52:54:00:99:00:{i:02x}", f"10.60.7.{10 + i}") for i in range(others)),
    )


class Racing:
    """Locked scripts that fail at `dhcp_addresses.VERIFY_FREE` while `commits` other slices commit first
    (each read after a failure finds one more of them), then succeed; and reads that count."""

    def __init__(self, spec: Any, commits: int) -> None:
        self.spec = spec
        self.commits = commits
        self.reads = 0
        self.scripts = 0

    def provider(self, monkeypatch: pytest.MonkeyPatch) -> HostProvider:
        monkeypatch.setattr(ssh, "run_script", self.run_script)
        reading(monkeypatch, dn.KIND)  # the read is one probe named READ ...
        kind = dataclasses.replace(KINDS[dn.KIND.name], parse_have=self.read)  # ... that finds what we say
        monkeypatch.setitem(KINDS, dn.KIND.name, kind)
        return HostProvider(dn.KIND.name)

    def read(self, _spec: Any, _res: ScriptResult) -> dn.DhcpHave:
        self.reads += 1
        return joined_meanwhile(self.spec, self.reads - 1)

    def run_script(self, _endpoint: Any, steps: list[Step], **_: Any) -> ScriptResult:
        names = [s.name for s in steps]
        if names == [READ]:
            return ScriptResult()
        self.scripts += 1
        if self.scripts <= self.commits:
            ip = next(s.argv[-1] for s in steps if s.name == dhcp_addresses.VERIFY_FREE)
            raise StepFailed("network", dhcp_addresses.VERIFY_FREE, 1, f"IP {ip} just reserved by slice o")
        return ScriptResult([StepResult(names[-1], 0, "4242\n" + "\n".join(dnsmasq.dnsmasq_args(self.spec)))])


@given(st.integers(0, CONTENDED_ATTEMPTS - 1))
@settings(max_examples=20, deadline=None)
def test_an_address_reserved_meanwhile_by_other_slices_is_chosen_again(commits: int) -> None:
    """Slices joining VLAN 400 at once: each locked check that finds its address just reserved by another
    slice reads and chooses again, until it commits the lowest address none of them holds."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        spec = shared_dhcp("b")
        race = Racing(spec, commits)
        out = ensure(race.provider(monkeypatch), spec)
    assert (race.reads, race.scripts) == (commits + 1, commits + 1)
    assert out["observed"]["reserved"] == {"52:54:00:18:39:00": f"10.60.7.{10 + commits}"}


def test_a_node_that_keeps_taking_the_address_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = shared_dhcp("b")
    race = Racing(spec, CONTENDED_ATTEMPTS)
    with pytest.raises(StepFailed, match="just reserved"):
        ensure(race.provider(monkeypatch), spec)
    assert race.scripts == CONTENDED_ATTEMPTS

"""Scenario 11, slices beside each other: a pool race, VLAN 400 addresses, shared DHCP options, NAT uplinks.

- Two `pulumi up` of slices with the same pool, started together: exactly one succeeds, the other fails
  naming it, and nothing of the loser is left on any host (its TAPs wait for its claim).
- Two slices whose internet VMs' ids are congruent modulo 241 (they collided when addresses were derived
  from ids) both deploy: the network node hands out distinct VLAN 400 addresses, and the second slice's
  `up` leaves the shared dnsmasq running with the same pid. A slice with other `dnsServers` is refused.
- A slice that moves to another uplink gets NAT rules of its own; the other slice's internet keeps working;
  each destroy removes only its own rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from lab.slicecheck import check_slice, guest_exec, stop_guests
from tests.integration.e2ekit import assert_slice_ok, wall_time
from tests.integration.slicekit import SliceStack, failure, lab_config, slice_section
from tests.labfixtures import Testbed, scan

pytestmark = pytest.mark.integration

SHARED_PID = "/var/lib/cloudrepo/dhcp/vlan400/dnsmasq.pid"


def two_vms(first: int, internet: bool = True) -> tuple[list[dict[str, Any]], list[Any]]:
    vms = [
        {"id": first, "worker": "worker1", "dataInterfaces": 1, "internet": internet},
        {"id": first + 1, "worker": "worker2", "dataInterfaces": 1},
    ]
    return vms, [[f"{first}.eth1", f"{first + 1}.eth1"]]


def taps_of(vms: list[int]) -> list[str]:
    doc = scan()
    return sorted(
        f"{host}/{tap}"
        for host, h in doc["hosts"].items()
        for tap in h["taps"]
        if tap.startswith("tap_") and int(tap.split("_")[1]) in vms
    )


def test_pool_race_one_wins_the_loser_leaves_nothing(
    slice_stack: Callable[..., SliceStack], testbed: Testbed
) -> None:
    with wall_time("11a pool race"):
        a = slice_stack("e2e-racea", 240, *two_vms(6601))
        b = slice_stack("e2e-raceb", 240, *two_vms(6611))
        net_before = scan("network")["hosts"]["network"]
        procs = {
            s.cli.stack: s.cli.popen("up", "--yes", "--non-interactive", "--skip-preview") for s in (a, b)
        }
        results = {name: (p.communicate(timeout=600)[0], p.returncode) for name, p in procs.items()}
        winners = [n for n, (_, rc) in results.items() if rc == 0]
        assert len(winners) == 1, {n: rc for n, (_, rc) in results.items()}
        winner = winners[0]
        loser = next(n for n in results if n != winner)
        text = results[loser][0]
        print(
            f"\n[race] {winner} won; {loser} failed with: "
            + next((ln.strip() for ln in text.splitlines() if "meet slice" in ln), "?")
        )
        assert f"meet slice '{winner}'" in text, text
        loser_vms = [6601, 6602] if loser == "e2e-racea" else [6611, 6612]
        assert taps_of(loser_vms) == [], "the loser's TAPs are on the hosts"
        net = scan("network")["hosts"]["network"]
        gws = sorted(p for p in net["ovs"]["br-int"]["ports"] if p.startswith("gw_vlan24"))
        assert gws == ["gw_vlan240"]  # only the winner's
        claims = testbed.run("network", "ls /var/lib/cloudrepo/pools")[1].split()
        assert f"{winner}@240" in claims and not any(c.startswith(f"{loser}@") for c in claims), claims
        assert sorted(net["namespaces"]) == sorted(
            {*net_before["namespaces"], "ns-dhcp-vlan240", "ns-dhcp-vlan400"}
        )


def test_vlan400_addresses_dhcp_options_and_uplinks(
    slice_stack: Callable[..., SliceStack], testbed: Testbed
) -> None:
    with wall_time("11b VLAN 400 and NAT between slices"):
        run_vlan400(slice_stack, testbed)


def run_vlan400(slice_stack: Callable[..., SliceStack], testbed: Testbed) -> None:
    assert 6402 % 241 == 6643 % 241  # the ids that collided when addresses came from them
    a = slice_stack("e2e-ipa", 260, *two_vms(6402))
    b = slice_stack("e2e-ipb", 280, *two_vms(6643))
    a.up()
    pid = testbed.run("network", f"cat {SHARED_PID}")[1].strip()
    b.up()
    assert testbed.run("network", f"cat {SHARED_PID}")[1].strip() == pid, "slice B's up restarted dnsmasq"
    out_a, out_b = a.outputs(), b.outputs()
    ip_a = out_a["vms"]["6402"]["interfaces"]["eth0"]["ip"]
    ip_b = out_b["vms"]["6643"]["interfaces"]["eth0"]["ip"]
    assert ip_a != ip_b and ip_a.startswith("10.60.7.") and ip_b.startswith("10.60.7."), (ip_a, ip_b)
    try:
        assert_slice_ok(check_slice(out_a, testbed.inventory))
        assert_slice_ok(check_slice(out_b, testbed.inventory))
    finally:
        stop_guests({**out_a["vms"], **out_b["vms"]})
    a.preview("--expect-no-changes")
    b.preview("--expect-no-changes")

    # other DHCP options for the shared VLAN are refused, naming the slices it serves; nothing is left
    c = slice_stack("e2e-ipc", 300, *two_vms(6701), extra={"cloudrepo:dnsServers": ["1.1.1.1"]})
    text = failure(c.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
    assert "dnsServers 1.1.1.1 of slice 'e2e-ipc' differ from 8.8.8.8" in text, text
    assert "'e2e-ipa', 'e2e-ipb'" in text, text
    assert testbed.run("network", f"cat {SHARED_PID}")[1].strip() == pid
    c.destroy()
    assert taps_of([6701, 6702]) == []

    # slice B moves to another uplink: its rules go in (the new first), A's internet keeps working
    config_b = {**lab_config(), **slice_section(280, *two_vms(6643))}
    config_b["cloudrepo:networkNode"] = {**config_b["cloudrepo:networkNode"], "uplink": "ens9"}
    b.write_config(config_b)
    b.up()
    nat = scan("network")["hosts"]["network"]["iptables"]["nat"]
    assert any("-o ens9" in r and "nat-10.60.7.0-24-ens9" in r for r in nat), nat
    assert any("-o ens3" in r and "nat-10.60.7.0-24-ens3" in r for r in nat), nat
    internet = testbed.inventory["internet"]
    try:
        check = check_slice(out_a, testbed.inventory)
        assert_slice_ok(check)
        page = guest_exec("6402", "curl", "-s", "-m", "5", internet["url"])
        assert page.returncode == 0 and page.stdout == internet["body"], page
    finally:
        stop_guests(out_a["vms"])
    b.destroy()
    nat = scan("network")["hosts"]["network"]["iptables"]["nat"]
    assert not any("ens9" in r for r in nat) and any("nat-10.60.7.0-24-ens3" in r for r in nat), nat
    a.destroy()
    nat = scan("network")["hosts"]["network"]["iptables"]["nat"]
    assert not any("cloudrepo:nat-" in r for r in nat), nat

"""A slice deployed by the code before `--dhcp-hostsfile` (its dnsmasq watching `--dhcp-hostsdir`, one
inotify instance each), upgraded on the real engine.

With this code `preview` changes nothing and `refresh` finds only IPv6 on (the old code left it on);
`up` turns it off and the old servers keep running as they are (their reservations did not change). When
VLAN 400's reservations change, its server alone is restarted once with the new argv (no inotify fd), the
lease file kept and the guest's address the same on renewal; the link's server is still the old one; a
further `up` restarts nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from lab import PROJECT_ROOT
from lab.pulumi_cli import PROGRAM_PARTS
from tests.integration.e2ekit import drift_by_name, wall_time
from tests.integration.slicekit import SliceStack, lab_config, slice_section
from tests.integration.test_e2e_dhcp_reload import DHCP, lease_of, server
from tests.integration.upgradekit import program_at, use_code
from tests.labfixtures import Guest, Testbed

OLD_COMMIT = "bb2a52faed367503ea1378355d2e5f2222280e26"
"""The last commit whose dnsmasq read `--dhcp-hostsdir`."""
pytestmark = [pytest.mark.integration, pytest.mark.long]  # an upgrade from an older release: make test-long

NAME = "e2e-dhcpup"
VMS = [
    {"id": 7701, "worker": "worker1", "dataInterfaces": 1, "internet": True},
    {"id": 7702, "worker": "worker2", "dataInterfaces": 1},
]
LINKS = [["7701.eth1", "7702.eth1"]]
MORE = {"id": 7703, "worker": "worker2", "dataInterfaces": 0, "internet": True}


@pytest.fixture(scope="module")
def old_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return program_at(OLD_COMMIT, PROGRAM_PARTS, tmp_path_factory.mktemp("old-dhcp-code"))


def test_old_hostsdir_servers_are_kept_then_restarted_once(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, guest: Callable[..., Guest], old_code: Path
) -> None:
    with wall_time("dhcp upgrade"):
        stack = slice_stack(NAME, 720, VMS, LINKS)
        use_code(stack, old_code)
        stack.up()
        out = stack.outputs()
        vlans = [out["links"][0]["vlan"], 400]
        old = {}
        for vlan in vlans:
            pid, cmdline, fds = server(testbed, vlan)
            assert f"--dhcp-hostsdir={DHCP}/vlan{vlan}/hosts.d" in cmdline and fds == 1, (cmdline, fds)
            old[vlan] = pid
        eth0 = out["vms"]["7701"]["interfaces"]["eth0"]
        g = guest("dup", host="worker1", tap=eth0["tap"], iface="eth0", mac=eth0["mac"])
        assert g.dhcp("eth0") == eth0["ip"]
        leases = testbed.run("network", f"cat {DHCP}/vlan400/leases")[1]
        assert lease_of(testbed, 400, eth0["mac"]) == eth0["ip"]

        use_code(stack, PROJECT_ROOT)
        stack.preview("--expect-no-changes")
        assert {vlan: server(testbed, vlan)[0] for vlan in vlans} == old  # kept as they are
        stack.refresh()
        # the old code left IPv6 on on the interfaces it made: that alone is drift, and `up` turns it off
        # without restarting a server
        drift = drift_by_name(stack)
        assert drift and all(d == ["IPv6 on"] for d in drift.values()), drift
        stack.up()
        assert drift_by_name(stack) == {}
        assert {vlan: server(testbed, vlan)[0] for vlan in vlans} == old

        # VLAN 400's reservations change (one more internet VM): its server alone restarts, once
        stack.write_config({**lab_config(), **slice_section(720, [*VMS, MORE], LINKS)})
        stack.up()
        pid, cmdline, fds = server(testbed, 400)
        assert pid != old[400] and f"--dhcp-hostsfile={DHCP}/vlan400/hosts" in cmdline and fds == 0
        assert testbed.run("network", f"cat {DHCP}/vlan400/leases")[1] == leases  # the lease kept
        assert g.dhcp("eth0") == eth0["ip"]
        link_pid, link_cmdline, link_fds = server(testbed, vlans[0])
        assert link_pid == old[vlans[0]] and link_fds == 1  # the link's server: unchanged, kept
        assert f"--dhcp-hostsdir={DHCP}/vlan{vlans[0]}/hosts.d" in link_cmdline
        assert drift_by_name(stack) == {}
        stack.up()
        assert server(testbed, 400)[0] == pid  # restarted once

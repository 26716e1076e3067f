"""DHCP reservations by `--dhcp-hostsfile` and SIGHUP, through the real engine on the testbed.

Every dnsmasq of a deployed slice holds no inotify instance (counted as `anon_inode:inotify` fds in /proc);
a second slice joining VLAN 400 reloads the shared server (same pid) and the first slice's guest keeps its
lease (lease file entry and address on renewal) while the new guest gets its reserved address; a server
started with the old argv (`--dhcp-hostsdir`, one inotify instance) is kept while its reservations stay
and restarted once with the new argv when they change, its leases kept. The kernel's inotify limit is
shared by the whole machine, so it is not lowered here: the proof is the fd count (zero per server,
whatever the number of VLANs; `tests/unit/providers/test_prov_dhcp_reload.py` lowers a user namespace's
own limit to 0).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from tests.integration.e2ekit import drift_by_name, wall_time
from tests.integration.slicekit import SliceStack, lab_config, slice_section
from tests.labfixtures import Guest, Testbed

DHCP = "/var/lib/cloudrepo/dhcp"
A_VMS = [
    {"id": 7401, "worker": "worker1", "dataInterfaces": 1, "internet": True},
    {"id": 7402, "worker": "worker2", "dataInterfaces": 1},
]
A_LINKS = [["7401.eth1", "7402.eth1"]]
B_VMS = [{"id": 7501, "worker": "worker2", "dataInterfaces": 0, "internet": True}]
B_MORE = {"id": 7502, "worker": "worker1", "dataInterfaces": 0, "internet": True}


def server(testbed: Testbed, vlan: int) -> tuple[int, list[str], int]:
    """(pid, cmdline, inotify fds) of VLAN `vlan`'s dnsmasq."""
    pid = int(testbed.run("network", f"cat {DHCP}/vlan{vlan}/dnsmasq.pid")[1].strip())
    cmdline = testbed.run("network", f"tr '\\000' '\\n' </proc/{pid}/cmdline")[1].split()
    fds = testbed.run("network", f"ls -l /proc/{pid}/fd")[1].count("anon_inode:inotify")
    return pid, cmdline, fds


def lease_of(testbed: Testbed, vlan: int, mac: str) -> str | None:
    for line in testbed.run("network", f"cat {DHCP}/vlan{vlan}/leases")[1].splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1].lower() == mac.lower():
            return fields[2]
    return None


def test_reservations_reload_by_sighup_without_inotify(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, guest: Callable[..., Guest]
) -> None:
    with wall_time("dhcp reload"):
        run_reload(slice_stack, testbed, guest)


def run_reload(slice_stack: Callable[..., SliceStack], testbed: Testbed, guest: Callable[..., Guest]) -> None:
    a = slice_stack("e2e-dhcpa", 640, A_VMS, A_LINKS)
    a.up()
    out_a = a.outputs()
    link_vlan = out_a["links"][0]["vlan"]
    for vlan in (400, link_vlan):
        pid, cmdline, fds = server(testbed, vlan)
        assert f"--dhcp-hostsfile={DHCP}/vlan{vlan}/hosts" in cmdline, cmdline
        assert not any(arg.startswith("--dhcp-hostsdir") for arg in cmdline), cmdline
        assert fds == 0, f"VLAN {vlan}'s dnsmasq {pid} holds {fds} inotify instance(s)"

    eth0_a = out_a["vms"]["7401"]["interfaces"]["eth0"]
    ga = guest("dra", host="worker1", tap=eth0_a["tap"], iface="eth0", mac=eth0_a["mac"])
    assert ga.dhcp("eth0") == eth0_a["ip"]
    assert lease_of(testbed, 400, eth0_a["mac"]) == eth0_a["ip"]
    pid400, _, _ = server(testbed, 400)
    pid_link, _, _ = server(testbed, link_vlan)

    # a second slice joins VLAN 400: the shared server reloads (same pid), slice A's lease stays
    b = slice_stack("e2e-dhcpb", 660, B_VMS, [])
    b.up()
    eth0_b = b.outputs()["vms"]["7501"]["interfaces"]["eth0"]
    assert server(testbed, 400)[0] == pid400, "the shared dnsmasq restarted instead of reloading"
    assert server(testbed, link_vlan)[0] == pid_link, "slice A's link server was touched by slice B"
    hosts = testbed.run("network", f"cat {DHCP}/vlan400/hosts")[1]
    assert eth0_a["mac"] in hosts and eth0_b["mac"] in hosts, hosts
    assert lease_of(testbed, 400, eth0_a["mac"]) == eth0_a["ip"]
    gb = guest("drb", host="worker2", tap=eth0_b["tap"], iface="eth0", mac=eth0_b["mac"])
    assert gb.dhcp("eth0") == eth0_b["ip"] != eth0_a["ip"]
    assert ga.dhcp("eth0") == eth0_a["ip"]  # renewal after the reload: the same address
    assert server(testbed, 400)[0] == pid400

    # an unchanged `up` signals nobody: same pids, the hosts file untouched
    stamp = testbed.run("network", f"stat -c %Y.%i {DHCP}/vlan400/hosts")[1]
    a.up()
    assert server(testbed, 400)[0] == pid400 and server(testbed, link_vlan)[0] == pid_link
    assert testbed.run("network", f"stat -c %Y.%i {DHCP}/vlan400/hosts")[1] == stamp

    run_upgrade(a, b, testbed)
    assert ga.dhcp("eth0") == eth0_a["ip"]  # after the one restart: still its address


def run_upgrade(a: SliceStack, b: SliceStack, testbed: Testbed) -> None:
    """A server the old code started (`--dhcp-hostsdir`) is kept while its reservations stay, and restarted
    once with the new argv when they change, its leases kept."""
    pid, cmdline, _ = server(testbed, 400)
    old = [arg if not arg.startswith("--dhcp-hostsfile=") else f"--dhcp-hostsdir={DHCP}/vlan400/hosts.d"
           for arg in cmdline]  # fmt: skip
    testbed.run("network", f"kill {pid}; while [ -e /proc/{pid} ]; do sleep 0.1; done")
    testbed.run("network", "ip netns exec ns-dhcp-vlan400 " + " ".join(old))
    old_pid, old_cmdline, old_fds = server(testbed, 400)
    assert any(arg.startswith("--dhcp-hostsdir=") for arg in old_cmdline)
    assert old_fds == 1, f"the old argv should hold one inotify instance, not {old_fds}"
    a.refresh()
    assert "e2e-dhcpa-dhcp-vlan400" not in drift_by_name(a)
    a.up()
    assert server(testbed, 400)[0] == old_pid  # kept: its reservations did not change
    leases = testbed.run("network", f"cat {DHCP}/vlan400/leases")[1]
    # slice B's reservations change (one more internet VM): the one restart, with the new argv
    b.write_config({**lab_config(), **slice_section(660, [*B_VMS, B_MORE], [])})
    b.up()
    new_pid, new_cmdline, new_fds = server(testbed, 400)
    assert new_pid != old_pid and new_cmdline == cmdline and new_fds == 0
    assert testbed.run("network", f"cat {DHCP}/vlan400/leases")[1] == leases
    a.up()
    b.up()
    assert server(testbed, 400)[0] == new_pid, "restarted more than once"


LINKS_20 = 20


def ring(first: int, n: int) -> tuple[list[dict[str, Any]], list[list[str]]]:
    """n VMs in a ring over both workers, VM i's eth2 linked to VM i+1's eth1 (n links, as the bench)."""
    vms = [
        {"id": first + i, "worker": f"worker{1 + i % 2}", "dataInterfaces": 2, "internet": i % 3 == 0}
        for i in range(n)
    ]
    links = [[f"{first + i}.eth2", f"{first + (i + 1) % n}.eth1"] for i in range(n)]
    return vms, links


@pytest.mark.long  # the full node (make test-long) repeats it at 12 slices of 20 links
def test_a_slice_of_20_links_runs_21_servers_without_inotify(
    slice_stack: Callable[..., SliceStack], testbed: Testbed
) -> None:
    with wall_time("dhcp 20 links"):
        stack = slice_stack("e2e-dhcp20", 680, *ring(7601, LINKS_20))
        stack.up()
        vlans = [link["vlan"] for link in stack.outputs()["links"]]
        assert len(set(vlans)) == LINKS_20
        pids = set()
        for vlan in [*vlans, 400]:
            pid, cmdline, fds = server(testbed, vlan)
            assert f"--dhcp-hostsfile={DHCP}/vlan{vlan}/hosts" in cmdline and fds == 0, (vlan, cmdline, fds)
            pids.add(pid)
        assert len(pids) == LINKS_20 + 1
        # a no-op `up` signals and restarts none of them
        stack.up()
        assert {server(testbed, vlan)[0] for vlan in [*vlans, 400]} == pids

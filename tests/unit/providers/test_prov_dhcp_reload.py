"""Reservations by `--dhcp-hostsfile` and SIGHUP: the plans (generated reservation edits) and the assemble
script run locally against a stand-in server that counts its SIGHUPs."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from providers.kinds import dhcp_namespace as dn
from providers.kinds import dnsmasq
from tests.unit.providers.provkit import dhcp, link, names, port, sh
from vocabulary.specs import DhcpNamespaceSpec

D = "/var/lib/cloudrepo/dhcp/vlan120"
NET = "192.168.120"
RESTARTS = {"stop dnsmasq", "start dnsmasq"}
macs = st.integers(0, 15).map(lambda n: f"52:54:00:00:00:{n:02x}")
hosts_st = st.dictionaries(st.integers(10, 25).map(lambda n: f"{NET}.{n}"), macs, max_size=4)
"""IP -> MAC of a link VLAN's reservations (an address reserved once)."""


def spec_of(ip_mac: dict[str, str]) -> DhcpNamespaceSpec:
    by_mac = {m: ip for ip, m in sorted(ip_mac.items())}  # one reservation per MAC
    res = [{"mac": m, "ip": ip, "hostname": f"h{i}"} for i, (m, ip) in enumerate(sorted(by_mac.items()))]
    return dhcp(reservations=res)


def running(
    spec: DhcpNamespaceSpec,
    *,
    cmdline: tuple[str, ...] | None = None,
    leases: Iterable[tuple[str, str]] = (),
    hostsfile: str | None = "same",
) -> dn.DhcpHave:
    """A server in place for `spec` (its reservations written and assembled), with `leases`."""
    text = dn.hosts_text(spec)
    return dn.DhcpHave(
        owner="demo",
        netns=True,
        port=port("dhcp_v120", 120, "demo", **{"cloudrepo-kind": "dhcp", "cloudrepo-vlan": "120"}),
        root_link=None,
        ns_links=(link("lo", True, None), link("dhcp_v120", True, "internal", None, f"{NET}.2/24")),
        pid=4242,
        cmdline=tuple(dnsmasq.dnsmasq_args(spec)) if cmdline is None else cmdline,
        hosts=text,
        hostsfile=text if hostsfile == "same" else hostsfile,
        markers=dnsmasq.proc_markers(spec),
        leases=tuple(leases),
    )


@settings(max_examples=150, deadline=None)
@given(hosts_st, hosts_st, st.lists(st.tuples(macs, st.integers(10, 25).map(lambda n: f"{NET}.{n}"))))
def test_a_reservation_edit_reloads_by_sighup_and_restarts_only_for_stale_leases(
    old: dict[str, str], new: dict[str, str], leases: list[tuple[str, str]]
) -> None:
    before, after = spec_of(old), spec_of(new)
    have = running(before, leases=leases)
    steps = dn.plan_ensure(after, have)
    stale = {m for m, ip in leases if any(r.ip == ip and r.mac != m for r in after.reservations)}
    if dn.hosts_text(after) == dn.hosts_text(before) and not stale:
        assert steps == []  # unchanged: not written, not signalled, not restarted
        return
    if not stale:
        assert names(steps) == ["write reservations", "assemble reservations"]
        assert steps[1].argv[-1] == "hup"  # reloaded, leases kept: no restart
        return
    # a reserved address another MAC holds: the server restarts without those leases (docs/design.md)
    assert names(steps)[-3:] == ["stop dnsmasq", "drop stale leases", "start dnsmasq"]
    assert sorted(steps[-2].argv[5:]) == sorted(stale)
    if "assemble reservations" in names(steps):
        assert steps[names(steps).index("assemble reservations")].argv[-1] == "keep"  # the start reads it


@settings(max_examples=80, deadline=None)
@given(hosts_st, hosts_st)
def test_a_server_of_the_old_argv_is_kept_until_its_reservations_change_then_restarted_once(
    old_res: dict[str, str], new_res: dict[str, str]
) -> None:
    before, after = spec_of(old_res), spec_of(new_res)
    old = tuple(dnsmasq.legacy_args(before))
    assert f"--dhcp-hostsdir={D}/hosts.d" in old and len(old) == len(dnsmasq.dnsmasq_args(before))
    have = running(before, cmdline=old, hostsfile=None)
    assert dn.observe(before, have)[1] == []  # an upgrade shows no drift
    steps = dn.plan_ensure(after, have)
    if dn.hosts_text(after) == dn.hosts_text(before):
        assert steps == []  # kept as it is: not signalled, not restarted
        return
    assert names(steps)[0] == "write reservations" and names(steps)[-1] == "start dnsmasq"
    assemble = steps[names(steps).index("assemble reservations")]
    assert assemble.argv[-1] == "keep" and "stop dnsmasq" in names(steps)  # restarted, not signalled
    start = steps[-1].argv
    assert f"--dhcp-hostsfile={D}/hosts" in start and not any(a.startswith("--dhcp-hostsdir") for a in start)
    assert dn.plan_ensure(after, running(after)) == []  # once restarted: nothing more


def test_a_missing_hosts_file_is_assembled_and_reloaded_without_restart() -> None:
    spec = dhcp()
    steps = dn.plan_ensure(spec, running(spec, hostsfile=None))
    assert names(steps) == ["assemble reservations"] and steps[0].argv[-1] == "hup"
    assert (
        "dnsmasq's hosts file differs from the reservations"
        in dn.observe(spec, running(spec, hostsfile=""))[1]
    )


_COUNTER = (
    "import signal, sys, time\n"
    "n = 0\n"
    "def hup(*_):\n"
    "    global n\n"
    "    n += 1\n"
    "    open(sys.argv[1], 'w').write(str(n))\n"
    "signal.signal(signal.SIGHUP, hup)\n"
    "open(sys.argv[1], 'w').write('0')\n"
    "time.sleep(60)\n"
)


def _hups(path: Path, want: int) -> int:
    for _ in range(50):
        if path.exists() and path.read_text() == str(want):
            break
        time.sleep(0.05)
    return int(path.read_text())


def test_assemble_writes_atomically_and_signals_only_on_a_change(tmp_path: Path) -> None:
    pidfile, count = tmp_path / "dnsmasq.pid", tmp_path / "hups"
    marks = (f"--pid-file={pidfile}", "--interface=dhcp_v120")
    hosts_d = tmp_path / "hosts.d"
    hosts_d.mkdir()
    (hosts_d / "b+2").write_text("52:54:00:00:00:02,10.60.7.11,vm2\n")
    (hosts_d / "a+1").write_text("52:54:00:00:00:01,10.60.7.10,vm1\n")
    (hosts_d / ".a+1.tmp").write_text("half written\n")  # a dotfile being written: never read
    server = subprocess.Popen([sys.executable, "-c", _COUNTER, str(count), *marks])
    try:
        _hups(count, 0)
        pidfile.write_text(f"{server.pid}\n")

        def assemble(mode: str = "hup") -> subprocess.CompletedProcess[str]:
            return sh(dnsmasq._ASSEMBLE, str(tmp_path), str(pidfile), *marks, mode)

        first = assemble()
        assert first.returncode == 0 and first.stdout == "changed\n"
        hosts = tmp_path / "hosts"
        assert hosts.read_text() == "52:54:00:00:00:01,10.60.7.10,vm1\n52:54:00:00:00:02,10.60.7.11,vm2\n"
        assert hosts.stat().st_mode & 0o777 == 0o644  # dnsmasq re-reads it as nobody
        assert _hups(count, 1) == 1
        inode = hosts.stat().st_ino
        again = assemble()
        assert again.returncode == 0 and again.stdout == ""  # same content: not rewritten, not signalled
        assert hosts.stat().st_ino == inode and _hups(count, 1) == 1
        (hosts_d / "b+2").unlink()  # a slice leaves the VLAN
        assert assemble().stdout == "changed\n" and _hups(count, 2) == 2
        assert hosts.read_text() == "52:54:00:00:00:01,10.60.7.10,vm1\n"
        (hosts_d / "c+3").write_text("52:54:00:00:00:03,10.60.7.12,vm3\n")
        assert assemble("keep").stdout == "changed\n"  # a restart follows: no signal
        time.sleep(0.2)
        assert _hups(count, 2) == 2 and server.poll() is None
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait()


# $1 the interface, $2 the pid file, then dnsmasq's argv; run as root of a fresh user and network namespace
# whose inotify limit is 0 (the kernel checks it as well as every parent's): prints the started server's
# inotify fd count, or fails with dnsmasq's own error
_NO_INOTIFY = (
    "echo 0 >/proc/sys/user/max_inotify_instances || exit 90; ip link set lo up && "
    'ip link add "$1" type veth peer name peer0 && ip addr add 192.168.120.2/24 dev "$1" && '
    'ip link set "$1" up && ip link set peer0 up || exit 91; i=$1; p=$2; shift 2; "$@" || exit $?; '
    'sleep 0.2; n=$(ls -l "/proc/$(cat "$p")/fd" | grep -c inotify); kill "$(cat "$p")"; echo "$n"'
)


def _in_userns(iface: str, pidfile: str, argv: list[str]) -> subprocess.CompletedProcess[str]:
    cmd = ["unshare", "--user", "--map-root-user", "--net", "sh", "-c", _NO_INOTIFY, "sh", iface, pidfile]
    return subprocess.run([*cmd, *argv], capture_output=True, text=True, timeout=30)


def test_the_server_starts_where_no_inotify_instance_is_left(tmp_path: Path) -> None:
    """The real dnsmasq with the provider's argv, under an inotify limit of 0: it starts and holds no
    inotify fd; the old argv (`--dhcp-hostsdir`) fails there as on a node past 128 servers."""
    spec = dhcp()
    if shutil.which("unshare") is None or shutil.which("dnsmasq") is None:
        pytest.skip("needs unshare and dnsmasq")
    probe = subprocess.run(["unshare", "--user", "--map-root-user", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no unprivileged user namespaces here: {probe.stderr!r}")
    state = dnsmasq.state_dir(spec)
    (tmp_path / "hosts.d").mkdir()
    (tmp_path / "hosts").write_text(dn.hosts_text(spec))
    # the namespace maps only root: dnsmasq stays root instead of switching to nobody and dip
    argv = [a.replace(state, str(tmp_path)) for a in dnsmasq.dnsmasq_args(spec)] + [
        "--user=root",
        "--group=",
    ]
    pidfile = f"{tmp_path}/dnsmasq.pid"
    new = _in_userns(spec.port, pidfile, argv)
    if new.returncode in (90, 91):
        pytest.skip(f"cannot set up the namespace here: {new.stderr!r}")
    assert new.returncode == 0, new.stderr
    assert new.stdout.strip() == "0"
    old = [
        a if not a.startswith("--dhcp-hostsfile=") else f"--dhcp-hostsdir={tmp_path}/hosts.d" for a in argv
    ]
    failed = _in_userns(spec.port, pidfile, old)
    assert failed.returncode != 0 and "failed to create inotify" in failed.stderr, failed

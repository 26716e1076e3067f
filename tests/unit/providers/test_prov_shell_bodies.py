"""The constant sh programs the plans use, run locally on scratch files and processes (no SSH, no root)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from providers import bodies, shared
from providers.kinds import dhcp_addresses, dnsmasq
from providers.kinds import pool_claim as pc
from tests.unit.providers.provkit import sh
from transport.script import Step


def refusal(stderr: str) -> str:
    """A refused claim's reason: its stderr before the claims it lists for the free pool starts."""
    why, mark, listed = stderr.partition(f"\n{pc.CLAIMS_MARK}\n")
    assert mark and pc.parse_claims(listed), stderr
    return why.strip()


def test_pool_list_and_verify(tmp_path: Path) -> None:
    (tmp_path / "alpha@120").write_text("120 139\n")
    (tmp_path / "beta@140").write_text("140 159\n")
    listed = sh(pc._LIST, str(tmp_path))
    assert pc.parse_claims(listed.stdout) == (
        pc.Claim("alpha", 120, 139, "alpha@120"),
        pc.Claim("beta", 140, 159, "beta@140"),
    )
    assert sh(pc._LIST, str(tmp_path / "missing")).stdout == ""
    assert sh(pc._VERIFY, str(tmp_path), "gamma", "160", "179", "", "").returncode == 0
    assert sh(pc._VERIFY, str(tmp_path), "alpha", "120", "139", "", "").returncode == 0  # its own claim
    assert sh(pc._VERIFY, str(tmp_path), "alpha", "100", "119", "", "").returncode == 0  # its own, moving
    bad = sh(pc._VERIFY, str(tmp_path), "gamma", "150", "169", "", "")
    assert bad.returncode == 1
    assert refusal(bad.stderr) == (
        "VLANs 150-169 of slice 'gamma' meet slice 'beta' (claims 140-159: VLAN 150, subnet 192.168.150.0/24)"
    )
    # 396..415 is 140..159 modulo 256: the same subnets
    bad = sh(pc._VERIFY, str(tmp_path), "gamma", "396", "415", "", "")
    assert bad.returncode == 1 and "meet slice 'beta' (claims 140-159: VLAN 140," in bad.stderr


def test_pool_verify_checks_parking_vlans_both_ways(tmp_path: Path) -> None:
    (tmp_path / "alpha@120").write_text("120 139\nparking 4094\n")
    (tmp_path / "beta@200").write_text("200 219\nparking 3000\nparking 3001\n")
    assert pc.parse_claims(sh(pc._LIST, str(tmp_path)).stdout) == (
        pc.Claim("alpha", 120, 139, "alpha@120", parking=(4094,)),
        pc.Claim("beta", 200, 219, "beta@200", parking=(3000, 3001)),
    )
    assert (
        sh(pc._VERIFY, str(tmp_path), "gamma", "160", "179", "", "", "4094").returncode == 0
    )  # shared parking
    bad = sh(pc._VERIFY, str(tmp_path), "gamma", "160", "179", "", "", "4094", "205")
    assert bad.returncode == 1
    assert (
        refusal(bad.stderr)
        == "parking VLAN 205 of slice 'gamma' is in the pool of slice 'beta' (claims 200-219)"
    )
    bad = sh(pc._VERIFY, str(tmp_path), "gamma", "2990", "3009", "", "", "4094")
    assert bad.returncode == 1
    assert refusal(bad.stderr) == (
        "VLANs 2990-3009 of slice 'gamma' hold VLAN 3000, the parking VLAN of slice 'beta' (claims 200-219)"
    )
    assert (
        sh(pc._VERIFY, str(tmp_path), "beta", "200", "219", "", "", "3000").returncode == 0
    )  # its own claim


def test_registry_register_guard_forget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    users = tmp_path / "obj" / "users"
    reg, unreg, last = shared.register("o", "a"), shared.unregister("o", "a"), shared.last_user_guard("o")
    assert sh(reg.argv[2], str(users), "a").returncode == 0
    assert sh(reg.argv[2], str(users), "b").returncode == 0
    assert sh(unreg.argv[2], str(users), "a").returncode == 0
    assert subprocess.run([*last.argv[:4], str(users)]).returncode == 1  # the guard ends: b still uses it
    assert sh(unreg.argv[2], str(users), "b").returncode == 0
    assert subprocess.run([*last.argv[:4], str(users)]).returncode == 0
    forget = shared.forget("o")
    assert sh(forget.argv[2], str(users), str(tmp_path / "obj")).returncode == 0
    assert not (tmp_path / "obj").exists()
    assert sh(forget.argv[2], str(users), str(tmp_path / "obj")).returncode == 0  # already gone


def _spawn(tmp_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", *extra])


def test_stop_kills_only_the_process_whose_cmdline_names_this_vlan(tmp_path: Path) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    markers = (f"--pid-file={pidfile}", "--interface=dhcp_v120")
    stranger = _spawn(tmp_path, f"--pid-file={tmp_path}/other.pid", "--interface=dhcp_v120")
    try:
        pidfile.write_text(f"{stranger.pid}\n")  # a stale pid file pointing at a reused pid
        assert sh(dnsmasq._STOP, str(pidfile), *markers).returncode == 0
        assert stranger.poll() is None, "a process that is not this VLAN's dnsmasq was killed"
        assert not pidfile.exists()
    finally:
        stranger.kill()
        stranger.wait()
    ours = _spawn(tmp_path, *markers)
    try:
        pidfile.write_text(f"{ours.pid}\n")
        probe = sh(dnsmasq._PROC, str(pidfile))
        assert probe.stdout.splitlines()[0] == str(ours.pid) and markers[0] in probe.stdout.splitlines()
        t0 = time.monotonic()
        assert sh(dnsmasq._STOP, str(pidfile), *markers).returncode == 0
        assert ours.wait(5) == -15  # SIGTERM
        assert time.monotonic() - t0 < 5
    finally:
        if ours.poll() is None:
            ours.kill()
            ours.wait()
    assert sh(dnsmasq._STOP, str(pidfile), *markers).returncode == 0  # no pid file: nothing to do


def test_hup_goes_to_this_vlans_process_only(tmp_path: Path) -> None:
    pidfile = tmp_path / "dnsmasq.pid"
    (tmp_path / "hosts.d").mkdir()
    (tmp_path / "hosts.d" / "demo").write_text("52:54:00:03:ea:01,192.168.120.11,vm1002\n")
    stranger = _spawn(tmp_path)
    try:
        pidfile.write_text(str(stranger.pid))
        marks = (f"--pid-file={pidfile}", "--interface=dhcp_v120")
        assert sh(dnsmasq._ASSEMBLE, str(tmp_path), str(pidfile), *marks, "hup").returncode == 0
        time.sleep(0.2)
        assert stranger.poll() is None  # a SIGHUP would have ended it
    finally:
        stranger.kill()
        stranger.wait()


def test_atomic_write_of_reservations(tmp_path: Path) -> None:
    target = tmp_path / "hosts.d" / "demo"
    text = "52:54:00:03:ea:01,192.168.120.11,vm1002\n"
    step = bodies.write_file("w", str(target), text)
    assert subprocess.run(step.argv, capture_output=True).returncode == 0
    assert target.read_text() == text
    assert sorted(p.name for p in target.parent.iterdir()) == ["demo"]


def test_other_slices_reservations_are_listed_without_own(tmp_path: Path) -> None:
    (tmp_path / "alpha").write_text("52:54:00:03:ea:00,10.60.7.48,vm1002\n")
    (tmp_path / "beta").write_text(
        "52:54:00:04:00:00,10.60.7.60,vm1024\n52:54:00:04:01:00,10.60.7.61,vm1025\n"
    )
    listed = sh(dhcp_addresses._OTHERS, str(tmp_path), "alpha")
    assert listed.returncode == 0
    assert dhcp_addresses.parse_others(listed.stdout) == (
        ("beta", "52:54:00:04:00:00", "10.60.7.60"),
        ("beta", "52:54:00:04:01:00", "10.60.7.61"),
    )
    assert sh(dhcp_addresses._OTHERS, str(tmp_path / "missing"), "alpha").stdout == ""


# ---- iptables rules, against an iptables of our own on PATH (the testbed runs the real one) -------------

FAKE_IPTABLES = r"""
import json, os, sys
args = sys.argv[1:]
state = os.environ["FAKE_IPTABLES_STATE"]
rules = json.load(open(state)) if os.path.exists(state) else {}
assert args[0] == "-w" and args[1] == "-t", args
table, op, chain, rest = args[2], args[3], args[4], args[5:]
chain_rules = rules.setdefault(f"{table} {chain}", [])
if op == "-I":
    assert rest[0] == "1", rest
    chain_rules.insert(0, rest[1:])
elif op == "-A":
    chain_rules.append(rest)
elif op == "-C":
    sys.exit(0 if rest in chain_rules else 1)
elif op == "-D":
    if rest not in chain_rules:
        sys.exit(1)
    chain_rules.remove(rest)
json.dump(rules, open(state, "w"))
"""


@pytest.fixture
def iptables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Callable[[], dict[str, list[list[str]]]]:
    """A fake `iptables` first on PATH keeping its rules in a file; returns a reader of them."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "iptables"
    fake.write_text(f"#!{sys.executable}\n{FAKE_IPTABLES}")
    fake.chmod(0o755)
    state = tmp_path / "rules.json"
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_IPTABLES_STATE", str(state))
    return lambda: json.loads(state.read_text()) if state.exists() else {}


def run_step(step: Step) -> subprocess.CompletedProcess[str]:
    return subprocess.run(step.argv, capture_output=True, text=True, timeout=30)


RULE_A = ["-i", "gw_vlan120", "-m", "comment", "--comment", "cloudrepo:gw_vlan120", "-j", "DROP"]
RULE_B = ["-o", "gw_vlan120", "-m", "comment", "--comment", "cloudrepo:gw_vlan120", "-j", "DROP"]


def test_a_rule_is_added_once_and_first_when_asked(iptables: Callable[[], Any]) -> None:
    run_step(bodies.add_rule("x", "filter", "FORWARD", ["-j", "ACCEPT"]))
    for _ in range(2):
        assert run_step(bodies.add_rule("a", "filter", "FORWARD", RULE_A, first=True)).returncode == 0
        assert run_step(bodies.add_rule("b", "filter", "FORWARD", RULE_B)).returncode == 0
    assert iptables() == {"filter FORWARD": [RULE_A, ["-j", "ACCEPT"], RULE_B]}


def test_removing_a_rule_removes_every_copy_and_nothing_else(iptables: Callable[[], Any]) -> None:
    run_step(bodies.add_rule("a", "nat", "POSTROUTING", RULE_B))
    for _ in range(3):
        assert (
            run_step(Step("dup", ["iptables", "-w", "-t", "nat", "-A", "POSTROUTING", *RULE_A])).returncode
            == 0
        )
    assert run_step(bodies.remove_rule("r", "nat", "POSTROUTING", RULE_A)).returncode == 0
    assert iptables() == {"nat POSTROUTING": [RULE_B]}
    assert run_step(bodies.remove_rule("r", "nat", "POSTROUTING", RULE_A)).returncode == 0  # none left: fine


def test_pool_verify_reads_the_uid_and_the_parking_vlans_of_one_claim(tmp_path: Path) -> None:
    uid, other = "0123456789abcdef0123456789abcdef", "fedcba9876543210fedcba9876543210"
    (tmp_path / "alpha@120").write_text(f"120 139 {uid} cloudrepo/alpha\nparking 4000\n")
    assert pc.parse_claims(sh(pc._LIST, str(tmp_path)).stdout) == (
        pc.Claim("alpha", 120, 139, "alpha@120", uid, "cloudrepo/alpha", (4000,)),
    )
    assert sh(pc._VERIFY, str(tmp_path), "alpha", "120", "139", uid, "", "4000").returncode == 0
    held = sh(pc._VERIFY, str(tmp_path), "alpha", "120", "139", other, "", "4000")
    assert held.returncode == 1
    assert refusal(held.stderr) == (
        f"slice 'alpha' is held by stack 'cloudrepo/alpha' (uid {uid}, claim alpha@120)"
    )
    parked = sh(pc._VERIFY, str(tmp_path), "beta", "3990", "4009", other, "", "4094")
    assert parked.returncode == 1
    assert refusal(parked.stderr) == (
        "VLANs 3990-4009 of slice 'beta' hold VLAN 4000, the parking VLAN of slice 'alpha' (claims 120-139)"
    )

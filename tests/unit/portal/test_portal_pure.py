"""The portal's pure rules: the VLAN pool it gives, quotas, boot presets, VM ids, the VM status parse."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from cloudrepo.portal import pools, quotas, service, status
from cloudrepo.portal.accounts import Limits
from components.model import POOL_SIZE
from components.slice_rules import check_pool
from vocabulary.values import INTERNET_VLAN

pool_starts = st.integers(min_value=1, max_value=4000)


@given(st.lists(pool_starts, max_size=8))
def test_free_pool_is_the_lowest_that_meets_no_vlan_nor_subnet(starts: list[int]) -> None:
    taken = {v for s in starts for v in pools.pool_vlans(s)}
    got = pools.free_pool(taken)
    if got is None:
        return
    vlans = set(pools.pool_vlans(got))
    assert not vlans & taken
    assert not {v % 256 for v in vlans} & {v % 256 for v in taken}
    assert INTERNET_VLAN not in vlans
    assert check_pool(got, 4094, lambda _p: None) is not None
    for lower in range(1, got):
        assert pools.clashes(lower, taken) or check_pool(lower, 4094, lambda _p: None) is None


def test_free_pool_skips_taken_subnets_and_runs_out() -> None:
    assert pools.free_pool(set()) == 1
    assert pools.free_pool(pools.pool_vlans(1)) == 1 + POOL_SIZE
    # VLAN 257 has the subnet of VLAN 1: a pool at 257 would give two slices 192.168.1.0/24
    assert pools.clashes(250, pools.pool_vlans(1))
    full = {v for s in range(1, 256, POOL_SIZE) for v in pools.pool_vlans(s)}
    assert pools.free_pool(full) is None


limits = st.builds(Limits, *(st.integers(0, 50) for _ in range(5)))
usages = st.builds(quotas.Usage, *(st.integers(0, 60) for _ in range(5)))


@given(limits, usages)
def test_overruns_name_each_exceeded_quota_with_its_numbers(limit: Limits, wanted: quotas.Usage) -> None:
    problems = quotas.overruns("ann", limit, wanted)
    exceeded = [f for f in quotas.QUOTA_NAMES if getattr(wanted, f) > getattr(limit, f)]
    assert len(problems) == len(exceeded)
    for field, text in zip(exceeded, problems, strict=True):
        assert text.startswith(f"quota {field} of ann: {getattr(wanted, field)} ")
        assert f"{getattr(limit, field)} allowed" in text
    assert quotas.overruns("root", None, wanted) == []


def test_usage_adds_up() -> None:
    a, b = quotas.Usage(1, 2, 3, 4, 1), quotas.Usage(10, 20, 30, 40, 1)
    assert quotas.total([a, b]) == quotas.Usage(11, 22, 33, 44, 2)


PRESETS = {"busybox": {"kernel": "/srv/k", "initrd": "/srv/i"}}


@given(st.one_of(st.text(max_size=30), st.integers(), st.none(), st.lists(st.text(max_size=5), max_size=3)))
def test_a_user_boot_is_a_preset_name_or_an_object_without_paths(launch: Any) -> None:
    section = {"vms": [{"id": 1, "worker": "w", "launch": launch}]}
    problems = service.boot_problems(section, PRESETS)
    if launch is None or launch == "busybox":
        assert problems == []
    else:
        assert problems and all(p.startswith("vms[0].launch") for p in problems)


def test_boot_files_by_path_are_refused_and_presets_expand() -> None:
    section = {"vms": [{"id": 1, "launch": {"kernel": "/etc/shadow"}}, {"id": 2, "launch": {"image": "a/b"}}]}
    problems = service.boot_problems(section, PRESETS)
    assert any("vms[0].launch: kernel not allowed" in p for p in problems), problems
    assert any("vms[1].launch.image: a registry image name, not a path" in p for p in problems), problems
    by_image = {"vms": [{"id": 3, "launch": {"image": "debian", "memoryMb": 256}}]}
    assert service.boot_problems(by_image, {}) == []
    expanded = service.with_presets({"vms": [{"id": 1, "launch": "busybox"}]}, PRESETS)
    assert expanded["vms"][0]["launch"] == PRESETS["busybox"]


@given(st.sets(st.integers(1, 40)), st.integers(1, 40))
def test_next_free_id_is_the_first_not_held(held: set[int], start: int) -> None:
    got = service.next_free_id(held, start)
    assert got >= start and got not in held
    assert all(n in held for n in range(start, got))


def test_status_parse_keeps_only_the_asked_vms_and_says_unknown_for_the_silent() -> None:
    text = "7 running\n8 stopped\n9 running\nrubbish line\n10 exploded\n"
    assert status.parse(text, [7, 8, 10, 11]) == {7: "running", 8: "stopped", 10: "unknown", 11: "unknown"}
    argv = status.status_argv([7])
    assert argv[:2] == ["sh", "-c"] and argv[-1].endswith("/7/qemu.pid") and argv[-1].startswith("7=")


def test_a_written_preset_or_an_unchanged_launch_is_not_judged_again() -> None:
    written = service.with_presets({"vms": [{"id": 1, "launch": "busybox"}]}, PRESETS)
    assert service.boot_problems(written, PRESETS) == []
    admins = {"vms": [{"id": 2, "launch": {"kernel": "/srv/other"}}]}
    assert service.boot_problems(admins, PRESETS, current=admins) == []
    changed = {"vms": [{"id": 2, "launch": {"kernel": "/srv/mine"}}]}
    assert service.boot_problems(changed, PRESETS, current=admins) != []


def test_leases_are_read_from_dnsmasq_lease_lines_only() -> None:
    text = (
        "1765000000 52:54:00:aa:bb:01 192.168.1.10 vm7601 01:52:54:00:aa:bb:01\n"
        "1765000000 52:54:00:aa:bb:02 192.168.1.11 * *\n"
        "duid 00:01:00:01\n"
        "garbage\n"
        "12 aa not-an-address x\n"
    )
    assert status.leased(text) == {"192.168.1.10", "192.168.1.11"}
    argv = status.leases_argv([1, 7])
    assert (
        argv[:2] == ["sh", "-c"] and argv[-2].endswith("/vlan1/leases") and argv[-1].endswith("/vlan7/leases")
    )


def test_a_job_s_runner_is_gone_when_its_process_on_this_host_is() -> None:
    import os
    import subprocess
    import sys

    ended = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    host = service.this_runner().partition(":")[0]
    assert service.runner_gone(f"{host}:{ended.stdout.strip()}:abcd")
    assert not service.runner_gone(service.this_runner())
    assert service.runner_gone(f"{host}:{os.getpid()}:an-earlier-process")  # one that had this pid
    assert not service.runner_gone(f"{host}:1:any")  # init runs
    assert not service.runner_gone(f"another-{host}:{ended.stdout.strip()}:abcd")  # not known there
    assert not service.runner_gone("garbage")

"""`slice.checks` at preview: the three forms made into checks (the address a `to: VM` pings chosen on a
shared link, else the VM's first addressed interface), every problem at its key path and all at once
(unknown VMs, a VM not launched, an unknown interface, a bad `expect`), never an exception for any value."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from components.check_specs import Lease, Reach
from components.checks import WHERE, check_checks
from components.config import load_config
from components.model import IfaceRef, Link, Vm
from tests.cfgkit import ROOT, guest_project, raw_config
from tests.fuzzkit import fuzz_settings, hostile_values
from vocabulary.errors import ConfigError

VMS = (
    Vm(id=1002, worker="w1", data_interfaces=2, internet=True),
    Vm(id=1003, worker="w2", data_interfaces=1, internet=False),
    Vm(id=1004, worker="w2", data_interfaces=2, internet=False),
    Vm(id=1005, worker="w1", data_interfaces=0, internet=False),
)
LINKS = (
    Link(a=IfaceRef(vm=1002, iface="eth1"), b=IfaceRef(vm=1003, iface="eth1")),
    Link(a=IfaceRef(vm=1002, iface="eth2"), b=IfaceRef(vm=1004, iface="eth1")),
)
LAUNCHED = {1002, 1003, 1004}


def checked(raw: Any) -> tuple[tuple[Any, ...], list[str]]:
    problems: list[str] = []
    found = check_checks(raw, VMS, LINKS, LAUNCHED, ("198.51.100.7",), problems.append)
    return found, problems


def test_the_three_forms() -> None:
    found, problems = checked(
        [
            {"from": 1003, "to": 1002},
            {"from": 1003, "to": 1004, "expect": "blocked"},
            {"from": 1003, "to": "1002.eth2", "expect": "blocked"},
            {"from": 1002, "to": "internet"},
            {"from": 1003, "to": "internet", "host": "192.0.2.1", "expect": "blocked"},
            {"vm": 1004, "lease": "eth1"},
        ]
    )
    assert problems == []
    assert found == (
        Reach(0, 1003, "reach", dst_vm=1002, dst_iface="eth1", chosen=True),  # the link they share
        Reach(1, 1003, "blocked", dst_vm=1004, dst_iface="eth1", chosen=True),  # 1004's first address
        Reach(2, 1003, "blocked", dst_vm=1002, dst_iface="eth2", chosen=False),
        Reach(3, 1002, "reach", host="198.51.100.7"),  # the first DNS server by default
        Reach(4, 1003, "blocked", host="192.0.2.1"),
        Lease(5, 1004, "eth1"),
    )


def test_the_address_chosen_for_a_vm() -> None:
    found, problems = checked([{"from": 1004, "to": 1002}])
    # 1004 and 1002 do share a link (1002.eth2 -- 1004.eth1): that address, not eth0
    assert problems == [] and found[0].dst_iface == "eth2"
    found, _ = checked([{"from": 1003, "to": 1004}])
    assert found[0].dst_iface == "eth1" and found[0].chosen
    # no shared link: the internet VM's first link address, not its VLAN 400 one
    problems.clear()
    found = check_checks([{"from": 1003, "to": 1002}], VMS, LINKS[1:], LAUNCHED, (), problems.append)
    assert problems == [] and found == (Reach(0, 1003, "reach", dst_vm=1002, dst_iface="eth2", chosen=True),)
    found = check_checks([{"from": 1003, "to": 1002}], VMS, (), LAUNCHED, (), problems.append)
    assert found == (Reach(0, 1003, "reach", dst_vm=1002, dst_iface="eth0", chosen=True),)  # no link at all


def test_every_problem_at_its_key_path_at_once() -> None:
    found, problems = checked(
        [
            {"from": 1099, "to": 1003},
            {"from": 1005, "to": 1003},
            {"from": 1003, "to": 1004, "expect": "maybe"},
            {"vm": 1003, "lease": "eth2"},
            {"vm": 1003, "lease": "wlan0"},
            {"from": 1003, "to": 1003},
            {"from": 1003, "to": "1004.eth2"},
            {"from": 1003, "to": 1005},
            {"from": 1003, "to": "1003.eth1x"},
            {"from": 1003, "to": 1002, "host": "192.0.2.1"},
            {"from": 1003, "to": "internet", "host": "300.1.1.1"},
            {"from": 1003, "too": 1002},
            "1002->1003",
            {"vm": 1003},
        ]
    )
    assert found == ()
    assert problems == [
        f"{WHERE}[0].from: VM 1099 is not defined in cloudrepo:slice.vms",
        f"{WHERE}[1].from: VM 1005 is not launched (no `launch` in its cloudrepo:slice.vms entry): there is "
        "no guest to run the check in",
        f"{WHERE}[2].expect: must be one of reach, blocked, got 'maybe'",
        f"{WHERE}[3].lease: VM 1003 has no reserved address on eth2 (its addressed interfaces: eth1)",
        f"{WHERE}[4].lease: must be an interface name ethN, got 'wlan0'",
        f"{WHERE}[5].to: VM 1003 is the `from` VM (a check is between two VMs)",
        f"{WHERE}[6].to: VM 1004 has no reserved address on eth2 (its addressed interfaces: eth1)",
        f"{WHERE}[7].to: VM 1005 has no reserved address (no link and no internet): nothing to ping",
        f"{WHERE}[8].to: must be a VM id, an interface VM.ethN or 'internet', got '1003.eth1x'",
        f"{WHERE}[9].host: only with `to: internet` (a VM's address comes from the slice)",
        f"{WHERE}[10].host: '300.1.1.1' is not an IPv4 address",
        f"{WHERE}[11]: unknown key 'too'; did you mean 'to'? (known: from, to, expect, host) (a check is "
        "either {from, to, expect, host} or {vm, lease})",
        f"{WHERE}[11].to: required",
        f"{WHERE}[12]: must be an object {{from, to, expect}} or {{vm, lease}}, got '1002->1003'",
        f"{WHERE}[13].lease: required",
    ]


def test_not_a_list() -> None:
    assert checked({"from": 1002})[1] == [
        f"{WHERE}: must be a list of checks ({{from, to, expect}} or {{vm, lease}}), got {{'from': 1002}}"
    ]
    assert checked(None) == ((), [])


def test_a_vm_with_problems_of_its_own_adds_none() -> None:
    problems: list[str] = []
    check_checks([{"from": 1099, "to": 1003}], VMS, LINKS, LAUNCHED, (), problems.append, bad_vm_ids={1099})
    assert problems == []


KEYS = st.sampled_from(["from", "to", "expect", "host", "vm", "lease", "via", ""])


@fuzz_settings(ci=300, long=5000)
@given(
    st.one_of(hostile_values(), st.lists(st.dictionaries(KEYS, hostile_values(1), max_size=5), max_size=4))
)
def test_hostile_values_are_problems_at_key_paths_never_exceptions(raw: Any) -> None:
    found, problems = checked(raw)
    assert all(p.startswith(WHERE) for p in problems), problems
    if isinstance(raw, list):
        bad = {int(p[len(WHERE) + 1 :].split("]", 1)[0]) for p in problems}
        assert bad.isdisjoint(c.index for c in found)  # a check with a problem is not made
        assert len(found) + len(bad) == len(raw)  # every entry is a check or has a problem
        assert all(0 <= c.index < len(raw) for c in found)
    assert all("\n" not in p for p in problems)


def test_load_config_carries_the_checks_and_collects_their_problems(tmp_path: Path) -> None:
    config = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())["config"]
    config["cloudrepo:slice"]["checks"] = [{"from": 1002, "to": 1003}, {"vm": 1004, "lease": "eth1"}]
    cfg = load_config(raw_config(config), "dev", guest_project(tmp_path))
    assert cfg.checks == (
        Reach(0, 1002, "reach", dst_vm=1003, dst_iface="eth1", chosen=True),
        Lease(1, 1004, "eth1"),
    )
    config["cloudrepo:slice"]["checks"] = [{"from": 1002, "to": 1009}, {"vm": 1004, "lease": "eth2"}]
    config["cloudrepo:bridge"] = "no such bridge!"
    with pytest.raises(ConfigError) as err:
        load_config(raw_config(config), "dev", guest_project(tmp_path))
    text = str(err.value)
    assert "cloudrepo:bridge: " in text
    assert f"{WHERE}[0].to: VM 1009 is not defined" in text
    assert (
        f"{WHERE}[1].lease: VM 1004 has no reserved address on eth2 (its addressed interfaces: eth1)" in text
    )

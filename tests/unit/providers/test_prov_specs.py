"""Input validation: every problem reported at once, with the property and an exact reason."""

from __future__ import annotations

import pytest

from providers.kinds import KINDS
from providers.pipeline import UNKNOWN, HostProvider
from tests.unit.providers.provkit import dhcp_inputs, gateway_inputs, tap_inputs
from vocabulary import naming
from vocabulary.specs import PoolClaimSpec, problems


def test_valid_tap_inputs_round_trip_with_camel_case_keys() -> None:
    res = HostProvider("TapPort").check({}, {**tap_inputs(mac="52:54:00:03:EA:01"), "__provider": "blob"})
    assert res.failures == []
    assert res.inputs["mac"] == "52:54:00:03:ea:01"  # normalized
    assert res.inputs["__provider"] == "blob"


def test_check_reports_every_problem_at_once() -> None:
    bad = tap_inputs(
        slice="shared",
        host={"name": "w1", "address": "x;rm -rf /"},
        name="tap_100002_eth10",
        vm=0,
        mac="01:00:5e:00:00:01",
        vlan=4095,
    )
    res = HostProvider("TapPort").check({}, {**bad, "__provider": "blob", "drift": None, "observed": None})
    got = {(f.property, f.reason) for f in res.failures}
    assert got == {
        ("slice", "slice name 'shared' is reserved for the objects slices share"),
        ("host.address", "'x;rm -rf /' is not a host name or IP address"),
        ("name", "interface name 'tap_100002_eth10' is 16 characters, over the Linux limit of 15"),
        ("vm", "Input should be greater than or equal to 1"),
        ("mac", "MAC address '01:00:5e:00:00:01' is a multicast address"),
        ("vlan", "Input should be less than or equal to 4094"),
    }


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("tap_1;reboot", "must start with a letter or digit"),
        ("tap 1", "must start with a letter or digit"),
        ("-tap", "must start with a letter or digit"),
        ("tap/x", "must start with a letter or digit"),
    ],
)
def test_hostile_interface_names_are_input_errors(name: str, reason: str) -> None:
    got = problems(KINDS["TapPort"].spec_model, tap_inputs(name=name))
    assert len(got) == 1 and got[0][0] == "name" and reason in got[0][1]


def test_seed_names_fit_ifnamsiz() -> None:
    assert naming.tap_name(1002, "eth1") == "tap_1002_eth1"
    assert naming.gateway_port(4094) == "gw_vlan4094"
    assert naming.dhcp_port(4094) == "dhcp_v4094"
    assert naming.dhcp_namespace(120) == "ns-dhcp-vlan120"
    assert naming.ifname_problem(naming.gateway_port(4094)) is None
    assert naming.ifname_problem(naming.tap_name(10002, "eth10")) is None  # exactly 15
    assert naming.ifname_problem(naming.tap_name(100002, "eth10")) == (
        "interface name 'tap_100002_eth10' is 16 characters, over the Linux limit of 15"
    )


def test_gateway_address_must_be_a_host_address_with_prefix() -> None:
    assert problems(KINDS["VlanGateway"].spec_model, gateway_inputs(address="192.168.120.1")) == [
        ("address", "'192.168.120.1' must be an IPv4 address with a prefix length, e.g. 192.168.120.1/24")
    ]
    assert problems(KINDS["VlanGateway"].spec_model, gateway_inputs(address="192.168.120.0/24")) == [
        ("address", "'192.168.120.0/24' is the network or broadcast address of its subnet")
    ]
    assert problems(KINDS["VlanGateway"].spec_model, gateway_inputs(vlan=0)) == [
        ("vlan", "Input should be greater than or equal to 1")
    ]


def test_dhcp_cross_field_problems_name_their_properties() -> None:
    from vocabulary.specs import DhcpNamespaceSpec

    bad = dhcp_inputs(
        rangeStart="192.168.121.10",
        router="10.0.0.1",
        reservations=[
            {"mac": "52:54:00:03:ea:01", "ip": "192.168.120.11", "hostname": "a"},
            {"mac": "52:54:00:03:ea:01", "ip": "192.168.120.1", "hostname": "b"},
        ],
    )
    assert problems(DhcpNamespaceSpec, bad) == [
        ("rangeStart", "192.168.121.10 is outside 192.168.120.0/24"),
        ("router", "10.0.0.1 is outside 192.168.120.0/24"),
        ("rangeStart", "192.168.121.10 is after rangeEnd 192.168.120.250"),
        ("reservations.1", "a and b share MAC 52:54:00:03:ea:01"),
    ]
    bad2 = dhcp_inputs(rangeStart="192.168.120.1", reservations=[])
    assert problems(DhcpNamespaceSpec, bad2) == [
        ("address", "the server address 192.168.120.2 lies inside the range 192.168.120.1-192.168.120.250")
    ]
    bad3 = dhcp_inputs(reservations=[{"mac": "52:54:00:03:ea:01", "ip": "192.168.120.2", "hostname": "x"}])
    assert problems(DhcpNamespaceSpec, bad3) == [
        ("reservations.0", "x's 192.168.120.2 is not a free host address")
    ]
    bad4 = dhcp_inputs(reservations=[{"mac": "52:54:00:03:ea:01", "ip": "192.168.120.9", "hostname": "a b"}])
    assert [p for p, _ in problems(DhcpNamespaceSpec, bad4)] == ["reservations.0.hostname"]


def test_pool_range_order() -> None:
    assert problems(
        PoolClaimSpec, {"slice": "d", "host": {"name": "n", "address": "h"}, "start": 5, "end": 4}
    ) == [("start", "5 is after end 4")]


def test_unknown_values_at_preview_are_not_failures() -> None:
    res = HostProvider("TapPort").check({}, {**tap_inputs(vlan=UNKNOWN), "__provider": "blob"})
    assert res.failures == []
    res = HostProvider("TapPort").check({}, {**tap_inputs(vlan=UNKNOWN, mac="nope"), "__provider": "blob"})
    assert [(f.property, f.reason) for f in res.failures] == [
        ("mac", "MAC address 'nope' must be six ':'-separated hex octets")
    ]

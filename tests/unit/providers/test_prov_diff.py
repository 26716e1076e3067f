"""Explicit diffs: identity fields replace (old object first), the rest updates in place; drift updates."""

from __future__ import annotations

from providers.pipeline import HostProvider
from tests.unit.providers.provkit import dhcp_inputs, gateway_inputs, tap_inputs


def olds_of(inputs: dict, **extra: object) -> dict:
    return {**inputs, "__provider": "old-pickle", "drift": [], "observed": {}, **extra}


def news_of(inputs: dict) -> dict:
    return {**inputs, "__provider": "new-pickle"}


def test_no_change_even_when_the_provider_code_changed() -> None:
    d = HostProvider("TapPort").diff("id", olds_of(tap_inputs()), news_of(tap_inputs()))
    assert d.changes is False
    assert d.replaces == []
    assert d.delete_before_replace is False


def test_tap_retag_and_park_update_in_place() -> None:
    d = HostProvider("TapPort").diff("id", olds_of(tap_inputs()), news_of(tap_inputs(vlan=4094, parked=True)))
    assert (d.changes, d.replaces) == (True, [])
    assert "vlan" not in (d.stables or []) and "name" in (d.stables or [])


def test_tap_rename_replaces_deleting_first() -> None:
    d = HostProvider("TapPort").diff("id", olds_of(tap_inputs()), news_of(tap_inputs(name="tap_1002_eth2")))
    assert (d.changes, d.replaces, d.delete_before_replace) == (True, ["name"], True)


def test_host_name_replaces_but_address_and_port_update() -> None:
    moved = dict(tap_inputs()["host"], address="10.0.10.1", port=22)
    d = HostProvider("TapPort").diff("id", olds_of(tap_inputs()), news_of(tap_inputs(host=moved)))
    assert (d.changes, d.replaces) == (True, [])
    renamed = dict(tap_inputs()["host"], name="worker2")
    d = HostProvider("TapPort").diff("id", olds_of(tap_inputs()), news_of(tap_inputs(host=renamed)))
    assert d.replaces == ["host"] and d.delete_before_replace is True


def test_slice_change_replaces() -> None:
    d = HostProvider("TapPort").diff("id", olds_of(tap_inputs()), news_of(tap_inputs(slice="other")))
    assert d.replaces == ["slice"]


def test_gateway_vlan_replaces_address_updates() -> None:
    p = HostProvider("VlanGateway")
    d = p.diff("id", olds_of(gateway_inputs()), news_of(gateway_inputs(vlan=121, port="gw_vlan121")))
    assert sorted(d.replaces or []) == ["port", "vlan"] and d.delete_before_replace
    d = p.diff("id", olds_of(gateway_inputs()), news_of(gateway_inputs(address="192.168.120.254/24")))
    assert (d.changes, d.replaces) == (True, [])


def test_dhcp_reservations_and_options_update_in_place() -> None:
    p = HostProvider("DhcpNamespace")
    d = p.diff("id", olds_of(dhcp_inputs()), news_of(dhcp_inputs(reservations=[], dnsServers=["9.9.9.9"])))
    assert (d.changes, d.replaces) == (True, [])


def test_drift_found_by_refresh_triggers_an_update() -> None:
    d = HostProvider("DhcpNamespace").diff(
        "id", olds_of(dhcp_inputs(), drift=["dnsmasq not running"]), news_of(dhcp_inputs())
    )
    assert (d.changes, d.replaces) == (True, [])


def test_nat_replacement_creates_before_deleting() -> None:
    from tests.unit.providers.provkit import nat

    inputs = nat().inputs()
    d = HostProvider("NatRule").diff("id", olds_of(inputs), news_of({**inputs, "uplink": "ens5"}))
    assert d.replaces == ["uplink"] and d.delete_before_replace is False

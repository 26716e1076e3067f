"""The provider objects pickle with dill (as the SDK does) and carry no connection, lock or secret."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import dill
import pulumi
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider

from providers.kinds.dhcp_namespace import DhcpNamespace, DhcpNamespaceProvider
from providers.kinds.nat_rule import NatRule, NatRuleProvider
from providers.kinds.pool_claim import PoolClaim, PoolClaimProvider
from providers.kinds.tap_port import TapPort, TapPortProvider
from providers.kinds.vlan_gateway import VlanGateway, VlanGatewayProvider
from tests.unit.providers.fakesshd import new_key, pem
from tests.unit.providers.provkit import dhcp, gateway, nat, pool, tap
from transport import ssh

PROVIDERS = [TapPortProvider, VlanGatewayProvider, DhcpNamespaceProvider, NatRuleProvider, PoolClaimProvider]


@pytest.mark.parametrize("cls", PROVIDERS)
def test_provider_pickles_small_and_without_secrets(cls: type, tmp_path: Path) -> None:
    key = new_key()
    (tmp_path / "kh").write_text("")
    provider = cls()
    cfg = {
        "cloudrepo:ssh": json.dumps({"user": "root", "knownHostsPath": str(tmp_path / "kh"), "sudo": True}),
        "cloudrepo:sshPrivateKey": pem(key),
    }
    provider.configure(ConfigureRequest(Config(cfg, "cloudrepo")))
    blob = base64.b64decode(serialize_provider(provider))
    assert b"PRIVATE KEY" not in blob and str(tmp_path).encode() not in blob
    assert len(blob) < 1000  # a reference to an importable class, nothing captured
    again = dill.loads(blob)
    assert type(again) is cls
    assert again.__dict__ == {}
    ssh.close_all()


def test_serialization_is_deterministic() -> None:
    assert serialize_provider(TapPortProvider()) == serialize_provider(TapPortProvider())


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.seen.append((args.typ, args.name, dict(args.inputs)))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def test_resources_register_with_type_names_from_class_names_and_spec_inputs() -> None:
    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, preview=False)

    @pulumi.runtime.test
    def build() -> Any:
        t = TapPort("t", tap())
        VlanGateway("g", gateway())
        DhcpNamespace("d", dhcp())
        NatRule("n", nat())
        PoolClaim("p", pool())
        return t.id.apply(lambda i: i)

    build()
    types = sorted(typ for typ, _, _ in mocks.seen)
    assert types == sorted(
        f"pulumi-python:dynamic:{n}"
        for n in ("TapPort", "VlanGateway", "DhcpNamespace", "NatRule", "PoolClaim")
    )
    tap_inputs = next(i for typ, _, i in mocks.seen if typ.endswith(":TapPort"))
    assert tap_inputs["name"] == "tap_1002_eth1" and tap_inputs["host"]["port"] == 2201
    assert "__provider" in tap_inputs
    dhcp_inputs = next(i for typ, _, i in mocks.seen if typ.endswith(":DhcpNamespace"))
    assert dhcp_inputs["rangeStart"] == "192.168.120.10"

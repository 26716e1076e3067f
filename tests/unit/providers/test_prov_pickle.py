"""The provider objects pickle with dill (as the SDK does), carry no connection, lock or secret, refer to the
one stable entry point (`providers.pipeline.HostProvider`), and the blobs that state written by older code
holds still unpickle into a provider that works as their kind."""

from __future__ import annotations

import base64
import json
import pickletools
from pathlib import Path
from typing import Any

import dill
import pulumi
import pytest
from pulumi.dynamic import ConfigureRequest
from pulumi.dynamic.config import Config
from pulumi.dynamic.dynamic import serialize_provider

from providers.identity import SliceIdentityProvider
from providers.kinds import KINDS
from providers.kinds.dhcp_namespace import DhcpNamespace
from providers.kinds.nat_rule import NatRule
from providers.kinds.pool_claim import PoolClaim
from providers.kinds.qemu_vm import QemuVm
from providers.kinds.tap_port import TapPort
from providers.kinds.vlan_gateway import VlanGateway
from providers.pipeline import HostProvider
from tests.unit.providers.fakesshd import new_key, pem
from tests.unit.providers.provkit import dhcp, gateway, nat, pool, qemu_vm, tap, tap_inputs
from transport import ssh

LEGACY_BLOBS = {
    "TapPort": "gASVLQAAAAAAAACMEnByb3ZpZGVycy50YXBfcG9ydJSMD1RhcFBvcnRQcm92aWRlcpSTlCmBlC4=",
    "VlanGateway": "gASVNQAAAAAAAACMFnByb3ZpZGVycy52bGFuX2dhdGV3YXmUjBNWbGFuR2F0ZXdheVByb3ZpZGVylJOUKYGULg==",
    "DhcpNamespace": (
        "gASVOQAAAAAAAACMGHByb3ZpZGVycy5kaGNwX25hbWVzcGFjZZSMFURoY3BOYW1lc3BhY2VQcm92aWRlcpSTlCmBlC4="
    ),
    "NatRule": "gASVLQAAAAAAAACMEnByb3ZpZGVycy5uYXRfcnVsZZSMD05hdFJ1bGVQcm92aWRlcpSTlCmBlC4=",
    "PoolClaim": "gASVMQAAAAAAAACMFHByb3ZpZGVycy5wb29sX2NsYWltlIwRUG9vbENsYWltUHJvdmlkZXKUk5QpgZQu",
    "QemuVm": "gASVKwAAAAAAAACMEXByb3ZpZGVycy5xZW11X3ZtlIwOUWVtdVZtUHJvdmlkZXKUk5QpgZQu",
}
"""Real `__provider` blobs of commit d72a8a2 (the code before `providers.kinds`): made by
`git archive d72a8a2 | tar -x -C OLD` and, with OLD first on `sys.path`,
`serialize_provider(providers.tap_port.TapPortProvider())` etc. (the SDK's own serializer, as the engine
stores them). Each names `providers.<kind module>.<Kind>Provider` with an empty instance dict."""
MOVED_BLOB = "gASVMwAAAAAAAACMGHByb3ZpZGVycy5raW5kcy50YXBfcG9ydJSMD1RhcFBvcnRQcm92aWRlcpSTlCmBlC4="
"""The same, made with commit 529e9d7 (the kinds moved): `providers.kinds.tap_port.TapPortProvider`."""
IDENTITY_BLOB = "gASVMwAAAAAAAACMEnByb3ZpZGVycy5pZGVudGl0eZSMFVNsaWNlSWRlbnRpdHlQcm92aWRlcpSTlCmBlC4="
"""`providers.identity.SliceIdentityProvider` of d72a8a2 (no host: not a pipeline kind)."""

SPECS: dict[str, Any] = {
    "TapPort": tap,
    "VlanGateway": gateway,
    "DhcpNamespace": dhcp,
    "NatRule": nat,
    "PoolClaim": pool,
    "QemuVm": qemu_vm,
}


def globals_of(blob: bytes) -> list[str]:
    """The `module name` of every class or function the pickle refers to (read with pickletools)."""
    strings: list[str] = []
    found: list[str] = []
    for op, arg, _ in pickletools.genops(blob):
        if op.name in ("SHORT_BINUNICODE", "BINUNICODE", "UNICODE"):
            strings.append(str(arg))
        elif op.name == "STACK_GLOBAL":
            found.append(" ".join(strings[-2:]))
        elif op.name == "GLOBAL":
            found.append(str(arg))
    return found


def test_blobs_of_older_code_name_the_legacy_paths() -> None:
    """What the test data is: references to the old class paths, nothing else."""
    assert globals_of(base64.b64decode(LEGACY_BLOBS["TapPort"])) == ["providers.tap_port TapPortProvider"]
    assert globals_of(base64.b64decode(MOVED_BLOB)) == ["providers.kinds.tap_port TapPortProvider"]


@pytest.mark.parametrize("kind", sorted(LEGACY_BLOBS))
def test_a_blob_of_older_code_works_as_its_kind(kind: str) -> None:
    old = dill.loads(base64.b64decode(LEGACY_BLOBS[kind]))
    assert type(old) is HostProvider and old.kind == kind and old.record is KINDS[kind]
    spec = SPECS[kind]()
    inputs = {**spec.inputs(), "__provider": "blob"}
    assert old.check({}, inputs).failures == []
    assert old.check({}, {**inputs, "slice": "no way"}).failures[0].property == "slice"
    olds = {**spec.inputs(), "__provider": "old", "drift": [], "observed": {}}
    renamed = dict(spec.inputs(), host=dict(spec.inputs()["host"], name="elsewhere"))
    diff = old.diff("id", olds, renamed)
    assert diff.replaces == ["host"]  # every kind's identity holds the host
    assert diff.delete_before_replace is KINDS[kind].delete_before_replace


def test_a_blob_of_the_moved_kinds_works_as_its_kind() -> None:
    old = dill.loads(base64.b64decode(MOVED_BLOB))
    assert type(old) is HostProvider and old.kind == "TapPort"
    olds = {**tap_inputs(), "drift": [], "observed": {}}
    assert old.diff("id", olds, tap_inputs(name="tap_1002_eth2")).replaces == ["name"]
    assert (
        old.diff("id", olds, tap_inputs(join={"members": [], "hosts": [], "parkingVlan": 4094})).changes
        is False
    )


def test_the_identity_blob_still_unpickles() -> None:
    assert type(dill.loads(base64.b64decode(IDENTITY_BLOB))) is SliceIdentityProvider


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_provider_pickles_small_without_secrets_and_refers_to_the_entry_point(
    kind: str, tmp_path: Path
) -> None:
    key = new_key()
    (tmp_path / "kh").write_text("")
    provider = HostProvider(kind)
    cfg = {
        "cloudrepo:ssh": json.dumps({"user": "root", "knownHostsPath": str(tmp_path / "kh"), "sudo": True}),
        "cloudrepo:sshPrivateKey": pem(key),
    }
    provider.configure(ConfigureRequest(Config(cfg, "cloudrepo")))
    blob = base64.b64decode(serialize_provider(provider))
    assert b"PRIVATE KEY" not in blob and str(tmp_path).encode() not in blob
    assert len(blob) < 200  # a reference to the class and the kind's name, nothing captured
    assert globals_of(blob) == ["providers.pipeline HostProvider"]
    again = dill.loads(blob)
    assert type(again) is HostProvider and again.__dict__ == {"kind": kind}
    ssh.close_all()


def test_serialization_is_deterministic() -> None:
    assert serialize_provider(HostProvider("TapPort")) == serialize_provider(HostProvider("TapPort"))


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.seen: list[tuple[str, str, dict[str, Any]]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.seen.append((args.typ, args.name, dict(args.inputs)))
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        return {}, None


def test_resources_keep_their_type_names_and_store_the_entry_point() -> None:
    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, preview=False)

    @pulumi.runtime.test
    def build() -> Any:
        t = TapPort("t", tap())
        VlanGateway("g", gateway())
        DhcpNamespace("d", dhcp())
        NatRule("n", nat())
        PoolClaim("p", pool())
        QemuVm("q", qemu_vm())
        return t.id.apply(lambda i: i)

    build()
    types = sorted(typ for typ, _, _ in mocks.seen)
    assert types == sorted(
        f"pulumi-python:dynamic:{n}"
        for n in ("TapPort", "VlanGateway", "DhcpNamespace", "NatRule", "PoolClaim", "QemuVm")
    )
    tap_inputs_ = next(i for typ, _, i in mocks.seen if typ.endswith(":TapPort"))
    assert tap_inputs_["name"] == "tap_1002_eth1" and tap_inputs_["host"]["port"] == 2201
    dhcp_inputs = next(i for typ, _, i in mocks.seen if typ.endswith(":DhcpNamespace"))
    assert dhcp_inputs["rangeStart"] == "192.168.120.10"
    for typ, _, inputs in mocks.seen:
        stored = inputs["__provider"]  # a secret: the mocks hand it over wrapped
        blob = base64.b64decode(stored["value"] if isinstance(stored, dict) else stored)
        assert globals_of(blob) == ["providers.pipeline HostProvider"]
        assert dill.loads(blob).kind == typ.rpartition(":")[2]

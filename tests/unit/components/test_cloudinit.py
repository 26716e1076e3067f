"""NoCloud seeds as data (`components.cloudinit`): generated specs give documents that read back to exactly
the data built, keys only and DHCP on every interface by MAC, an instance-id that follows every change;
hostile host names, users, keys, MACs and extra config are refused naming the key path and the value
(and never showing key text); a parked interface is named but gets no DHCP."""

from __future__ import annotations

import base64
import math
import struct
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import assume, given
from hypothesis import strategies as st

from components.cloudinit import (
    RESERVED_USERS,
    SeedSpec,
    known_hosts_line,
    network_config,
    parsed,
    seed_documents,
    seed_spec,
    user_config,
)
from tests.fuzzkit import PEM, fuzz_settings, hostile_text, leaks_key
from vocabulary.errors import ConfigError
from vocabulary.shown import shown
from vocabulary.values import GUEST_HOST_RE, LOGIN_RE, SSH_KEY_TYPES


def _openssh(key: Any) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        .decode()
    )


PUBLIC_KEYS = [
    _openssh(ed25519.Ed25519PrivateKey.generate()),
    _openssh(ed25519.Ed25519PrivateKey.generate()),
    _openssh(ec.generate_private_key(ec.SECP256R1())),
    _openssh(ec.generate_private_key(ec.SECP384R1())),
    _openssh(ec.generate_private_key(ec.SECP521R1())),
    _openssh(rsa.generate_private_key(65537, 2048)),
]
"""Real keys of each type (bodies made by `cryptography`), without comments."""
WEAK_RSA = _openssh(rsa.generate_private_key(65537, 1024))

comments = st.text(st.characters(codec="utf-8").filter(str.isprintable), max_size=40)
keys = st.builds(
    lambda key, comment: f"{key} {comment}" if comment else key, st.sampled_from(PUBLIC_KEYS), comments
)
hostnames = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", fullmatch=True)
users = st.from_regex(LOGIN_RE, fullmatch=True).filter(lambda u: u not in RESERVED_USERS)
macs = st.lists(st.integers(0, 255), min_size=5, max_size=5).map(
    lambda b: ":".join(f"{x:02x}" for x in [0x52, *b])
)
interfaces = st.lists(macs, min_size=1, max_size=6, unique=True).map(
    lambda ms: {f"eth{i}": m for i, m in enumerate(ms)}
)
yaml_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(st.characters(codec="utf-8"), max_size=30),
)
yaml_data = st.recursive(
    yaml_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=20,
)
extras = st.one_of(st.none(), st.dictionaries(st.text(max_size=20), yaml_data, max_size=5))


def raw_spec(**over: Any) -> dict[str, Any]:
    base = {
        "vm": 1002,
        "hostname": "vm1002",
        "sshAuthorizedKeys": [PUBLIC_KEYS[0]],
        "interfaces": {"eth0": "52:54:00:03:ea:00"},
    }
    return {**base, **over}


specs = st.builds(
    lambda vm, host, user, ks, ifs, parked, extra: seed_spec(
        raw_spec(
            vm=vm,
            hostname=host,
            user=user,
            sshAuthorizedKeys=ks,
            interfaces=ifs,
            parked=[name for name, p in zip(sorted(ifs), parked, strict=False) if p],
            extra=extra,
        )
    ),
    st.integers(1, 0xFFFF),
    hostnames,
    users,
    st.lists(keys, min_size=1, max_size=4, unique_by=lambda k: " ".join(k.split(" ")[:2])),
    interfaces,
    st.lists(st.booleans(), max_size=6),
    extras,
)


def refusal(raw: dict[str, Any]) -> str:
    with pytest.raises(ConfigError) as exc:
        seed_spec(raw)
    return str(exc.value)


@fuzz_settings(ci=150, long=3000)
@given(specs)
def test_documents_read_back_to_exactly_the_data(spec: SeedSpec) -> None:
    docs = seed_documents(spec)
    assert docs.user_data.startswith("#cloud-config\n")
    assert parsed(docs.user_data) == user_config(spec)
    assert parsed(docs.network_config) == network_config(spec)
    assert parsed(docs.meta_data) == {"instance-id": docs.instance_id, "local-hostname": spec.hostname}
    assert seed_documents(spec) == docs, "the same spec gives the same text"


@fuzz_settings(ci=150, long=3000)
@given(specs)
def test_keys_only_and_dhcp_on_every_interface_by_mac_but_parked_ones(spec: SeedSpec) -> None:
    docs = seed_documents(spec)
    config = parsed(docs.user_data)
    ours = user_config(spec.model_copy(update={"extra": None}))
    for key, value in ours.items():
        if key not in (spec.extra or {}):
            assert config[key] == value
    if "users" not in (spec.extra or {}):
        (user,) = config["users"]
        assert user["name"] == spec.user and user["lock_passwd"] is True
        assert user["ssh_authorized_keys"] == spec.ssh_authorized_keys
        assert not {"passwd", "plain_text_passwd", "hashed_passwd"} & set(user)
    if "ssh_pwauth" not in (spec.extra or {}):
        assert config["ssh_pwauth"] is False
    net = parsed(docs.network_config)
    assert net["version"] == 2
    assert net["ethernets"] == {
        name: {"match": {"macaddress": mac}, "set-name": name, "dhcp4": name not in spec.parked}
        for name, mac in spec.interfaces.items()
    }


@fuzz_settings(ci=150, long=3000)
@given(specs, specs)
def test_instance_id_follows_every_change_of_the_seed(a: SeedSpec, b: SeedSpec) -> None:
    da, db = seed_documents(a), seed_documents(b)
    same = (da.user_data, da.network_config, a.hostname) == (db.user_data, db.network_config, b.hostname)
    assert (da.instance_id == db.instance_id) == same


@fuzz_settings(ci=100, long=2000)
@given(specs, st.data())
def test_a_key_added_or_removed_is_a_new_instance(spec: SeedSpec, data: st.DataObject) -> None:
    listed = {" ".join(k.split(" ")[:2]) for k in spec.ssh_authorized_keys}
    # a spec lists at most 4 of the 6 keys: the key added is drawn from the others (no inputs filtered out)
    key = data.draw(st.sampled_from([k for k in PUBLIC_KEYS if k not in listed]), "key")
    key = " ".join([key, data.draw(comments, "comment")]).strip()
    added = spec.model_copy(update={"ssh_authorized_keys": [*spec.ssh_authorized_keys, key]})
    assert seed_documents(added).instance_id != seed_documents(spec).instance_id


@fuzz_settings(ci=200, long=5000)
@given(hostile_text())
def test_hostile_host_names_are_refused_naming_the_value(value: str) -> None:
    assume(not GUEST_HOST_RE.fullmatch(value))
    text = refusal(raw_spec(hostname=value))
    assert "seed.hostname: " in text
    assert shown(value) in text or "not shown" in text


@fuzz_settings(ci=200, long=5000)
@given(hostile_text())
def test_hostile_users_are_refused_naming_the_value(value: str) -> None:
    assume(not LOGIN_RE.fullmatch(value) or value in RESERVED_USERS)
    text = refusal(raw_spec(user=value))
    assert "seed.user: " in text
    assert shown(value) in text or "not shown" in text


@fuzz_settings(ci=300, long=5000)
@given(st.one_of(hostile_text(), keys.map(lambda k: k + "\n"), keys.map(lambda k: "  " + k)))
def test_hostile_keys_are_refused_naming_the_value(value: str) -> None:
    try:
        assert seed_spec(raw_spec(sshAuthorizedKeys=[value])).ssh_authorized_keys == [value]
        return  # a valid key line (hypothesis rarely writes one)
    except ConfigError as exc:
        text = str(exc)
    assert "seed.sshAuthorizedKeys[0]: " in text
    assert shown(value) in text or "not shown" in text
    assert leaks_key(text) == []


def _body(*fields: bytes) -> str:
    return base64.b64encode(b"".join(struct.pack(">I", len(f)) + f for f in fields)).decode()


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (f"ssh-rsa {PUBLIC_KEYS[0].split()[1]}", "is not a ssh-rsa key"),
        (PUBLIC_KEYS[0][:-8], "is not a ssh-ed25519 key"),
        (f"ssh-ed25519 {_body(b'ssh-ed25519', b'short')}", "is not a ssh-ed25519 key"),
        (f'command="sh" {PUBLIC_KEYS[0]}', "(no options)"),
        (f"{PUBLIC_KEYS[0]} a\nssh-ed25519 x", "(no options)"),
        (f"{PUBLIC_KEYS[0]} bell\x07", "control characters"),
        (f"ssh-dss {PUBLIC_KEYS[0].split()[1]}", "is not one of"),
        (WEAK_RSA, "an RSA key of 1024 bits"),
        (PEM, "is private key text"),
    ],
)
def test_malformed_keys_say_why(value: str, why: str) -> None:
    text = refusal(raw_spec(sshAuthorizedKeys=[value]))
    assert "seed.sshAuthorizedKeys[0]: SSH public key " in text and why in text, text
    assert leaks_key(text) == []


def test_every_key_type_is_accepted() -> None:
    spec = seed_spec(raw_spec(sshAuthorizedKeys=[f"{k} user@host" for k in PUBLIC_KEYS]))
    assert {k.split()[0] for k in spec.ssh_authorized_keys} <= set(SSH_KEY_TYPES)


def test_all_problems_at_once() -> None:
    text = refusal(
        raw_spec(
            hostname="Bad_Host",
            user="root",
            sshAuthorizedKeys=[PUBLIC_KEYS[0], PUBLIC_KEYS[0] + " again"],
            interfaces={
                "eth0": "52:54:00:00:00:01",
                "eth1": "52:54:00:00:00:01",
                "bad;name": "01:00:5e:00:00:01",
            },
            extra={"x": math.nan},
        )
    )
    assert "6 problems" in text, text
    for expected in (
        "seed.hostname: host name 'Bad_Host' must be",
        "seed.user: user 'root' is an account of the image",
        "seed.sshAuthorizedKeys: SSH public key",
        "is listed twice",
        "seed.interfaces['bad;name']['[key]']: interface name 'bad;name' must",
        "seed.interfaces['bad;name']: MAC address '01:00:5e:00:00:01' is a multicast address",
        "seed.extra: extra cloud-config holds nan, not a finite number",
    ):
        assert expected in text, (expected, text)


def test_a_parked_interface_must_be_one_of_the_interfaces() -> None:
    text = refusal(raw_spec(parked=["eth0", "eth9"]))
    assert "seed: parked interface(s) 'eth9' not among the interfaces" in text, text


def test_one_mac_on_two_interfaces_is_refused() -> None:
    text = refusal(raw_spec(interfaces={"eth0": "52:54:00:00:00:01", "eth1": "52:54:00:00:00:01"}))
    assert "seed.interfaces: MAC address '52:54:00:00:00:01' is given to both eth0 and eth1" in text, text


@fuzz_settings(ci=100, long=2000)
@given(st.one_of(st.just(float("inf")), st.just(float("nan")), st.just("\ud800"), st.just({1: "x"})))
def test_extra_config_yaml_cannot_carry_back_is_refused(value: Any) -> None:
    text = refusal(raw_spec(extra={"runcmd": [value]}))
    assert text.count("seed.extra: extra cloud-config ") == 1, text


def test_the_host_key_is_never_in_the_documents_and_extra_config_cannot_set_one() -> None:
    docs = seed_documents(seed_spec(raw_spec(extra={"runcmd": [["true"]]})))
    assert "ssh_keys" not in parsed(docs.user_data) and "PRIVATE KEY" not in docs.user_data
    bad = refusal(raw_spec(extra={"ssh_keys": {"ed25519_private": PEM}}))
    assert "seed.extra: extra cloud-config sets 'ssh_keys'" in bad and leaks_key(bad) == []
    assert known_hosts_line("192.168.120.10", f"{PUBLIC_KEYS[0]} vm7") == f"192.168.120.10 {PUBLIC_KEYS[0]}\n"

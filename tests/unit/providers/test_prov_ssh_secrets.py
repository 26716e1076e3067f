"""Secrets stay secret in the SSH settings: key text pasted where a path goes is named, never shown (at
preview and in the provider); the key secret must be a Pulumi secret; key and known_hosts files that are
binary, huge or no regular file are clear errors, not tracebacks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from components.config import load_config
from components.inputs import SecretText, raw_stack_config
from tests.cfgkit import raw_config, with_changes
from tests.fuzzkit import KEY_LINES, PEM, fuzz_settings, leaks_key
from tests.unit.providers.fakesshd import new_key, pem
from transport.ssh_settings import settings_from_config
from vocabulary.errors import ConfigError
from vocabulary.shown import KEY_MARKERS

KEY = pem(new_key())
KEY_BODY = [line for line in KEY.splitlines() if "-----" not in line]


def provider_error(ssh: dict[str, Any], base: Path, secret: str | None = None) -> str:
    config: dict[str, Any] = {"cloudrepo:ssh": json.dumps(ssh)}
    if secret is not None:
        config["cloudrepo:sshPrivateKey"] = secret
    with pytest.raises(ConfigError) as err:
        settings_from_config(config, base=base)
    return str(err.value)


def preview_problems(ssh: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as err:
        load_config(raw_config(with_changes(ssh=ssh)), "dev")
    return err.value.problems


@pytest.mark.parametrize("field", ["privateKeyPath", "knownHostsPath"])
@pytest.mark.parametrize(
    "pasted",
    [KEY, KEY.strip(), KEY.replace("\n", " "), "\n".join(KEY_BODY), KEY_LINES[0] + KEY_LINES[1], "A" * 2000],
    ids=["pem", "pem-stripped", "one-line", "body-only", "openssh-body", "long"],
)
def test_key_text_in_a_path_is_named_not_shown(field: str, pasted: str, tmp_path: Path) -> None:
    ssh = {"user": "u", "privateKeyPath": "k", "knownHostsPath": "kh", field: pasted}
    (problem,) = [p for p in preview_problems(ssh) if p.startswith(f"cloudrepo:ssh.{field}:")]
    assert "looks like a private key, not a path" in problem and "not shown" in problem
    text = provider_error(ssh, tmp_path)
    assert "looks like a private key, not a path" in text
    for message in (problem, text):
        assert not any(line[:20] in message for line in [*KEY_BODY, *KEY_LINES, "A" * 2000]), message
        assert not any(marker in message for marker in KEY_MARKERS), message


@given(
    before=st.text(max_size=30),
    after=st.text(max_size=30),
    armour=st.sampled_from([PEM, "-----BEGIN RSA PRIVATE KEY-----", "PRIVATE KEY", "b3BlbnNzaC1rZXktdjE"]),
)
@fuzz_settings(ci=40, long=500)
def test_no_problem_ever_carries_key_text(before: str, after: str, armour: str) -> None:
    """Key text in any ssh field, wherever in the value: the problems name the field, never the text."""
    for field in ("user", "privateKeyPath", "knownHostsPath"):
        ssh: dict[str, Any] = {"user": "u", "privateKeyPath": "k", "knownHostsPath": "kh"}
        ssh[field] = before + armour + after
        problems = preview_problems(ssh)
        assert any(p.startswith(f"cloudrepo:ssh.{field}:") for p in problems), problems
        assert not leaks_key(str(problems)) and "b3BlbnNzaC1rZXktdjE" not in str(problems), problems


def test_the_key_secret_in_clear_is_refused_by_key_name_only() -> None:
    raw = raw_config(with_changes(ssh={"user": "u", "knownHostsPath": "kh"}))
    raw["cloudrepo:sshPrivateKey"] = KEY  # in the stack file as plain text
    with pytest.raises(ConfigError) as err:
        load_config(raw, "dev")
    assert err.value.problems == [
        "cloudrepo:sshPrivateKey: must be a secret, but the stack config holds it in clear (the value is not "
        "shown): pulumi config set --secret cloudrepo:sshPrivateKey < KEYFILE"
    ]
    assert not any(line in str(err.value) for line in KEY_BODY)
    raw["cloudrepo:sshPrivateKey"] = SecretText(KEY)  # the engine says it is a secret
    assert load_config(raw, "dev").ssh.private_key is not None


def test_raw_stack_config_marks_the_engines_secret_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine runs the program with the config in PULUMI_CONFIG and the secret keys' names in
    PULUMI_CONFIG_SECRET_KEYS (the language host's run request); their values come back as SecretText."""
    monkeypatch.setenv("PULUMI_CONFIG", json.dumps({"cloudrepo:sshPrivateKey": KEY, "cloudrepo:bridge": "b"}))
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", json.dumps(["cloudrepo:sshPrivateKey"]))
    raw = raw_stack_config()
    assert isinstance(raw["cloudrepo:sshPrivateKey"], SecretText) and raw["cloudrepo:sshPrivateKey"] == KEY
    assert not isinstance(raw["cloudrepo:bridge"], SecretText)
    assert KEY_BODY[0] not in repr(raw)
    monkeypatch.setenv("PULUMI_CONFIG_SECRET_KEYS", "[]")
    assert not isinstance(raw_stack_config()["cloudrepo:sshPrivateKey"], SecretText)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(os.urandom(64) + b"\xff\xfe"), "not a text file"),
        (lambda p: p.write_bytes(b"x" * (64 * 1024 + 1)), "over 65536 bytes"),
        (lambda p: p.mkdir(), "not a regular file"),
        (lambda p: p.symlink_to("/dev/zero"), "not a regular file"),
        (lambda p: None, "not a regular file"),
        (lambda p: p.write_text("not a key\n"), "is not a usable unencrypted private key"),
    ],
    ids=["binary", "huge", "directory", "device", "missing", "text"],
)
def test_a_key_file_that_is_no_key_is_a_clear_error(make: Any, message: str, tmp_path: Path) -> None:
    (tmp_path / "kh").write_text("")
    make(tmp_path / "key")
    text = provider_error({"user": "u", "privateKeyPath": "key", "knownHostsPath": "kh"}, tmp_path)
    assert "cloudrepo:ssh.privateKeyPath" in text and message in text, text
    assert str(tmp_path / "key") in text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (os.urandom(200) + b"\xff", "not a text file"),
        (b"host ssh-ed25519 !!notbase64!!\n", "not a known_hosts"),
    ],
    ids=["binary", "bad-key"],
)
def test_a_known_hosts_file_that_is_none_is_a_clear_error(
    content: bytes, message: str, tmp_path: Path
) -> None:
    (tmp_path / "kh").write_bytes(content)
    text = provider_error({"user": "u", "knownHostsPath": "kh"}, tmp_path, secret=KEY)
    assert "cloudrepo:ssh.knownHostsPath" in text and message in text, text
    assert not any(line in text for line in KEY_BODY)


@pytest.mark.parametrize("key", ["cloudrepo:slice", "cloudrepo:ssh", "cloudrepo:parkingVlan"])
def test_a_secret_value_of_any_key_is_never_shown(key: str) -> None:
    """Whatever key an operator makes a secret, a problem with its value names the key, not the value."""
    raw = raw_config(with_changes())
    raw[key] = SecretText("{not json: " + KEY_BODY[0])
    with pytest.raises(ConfigError) as err:
        load_config(raw, "dev")
    assert any(p.startswith(f"{key}:") and "(a secret, not shown)" in p for p in err.value.problems)
    assert KEY_BODY[0][:20] not in str(err.value)

"""Every bad input is an answer, on the real engine: hostile config values give `pulumi preview` and `up` a
clean error naming the key (no Python traceback, no key text), no host is logged in to and nothing changes
on the hosts; the key secret in clear is refused; a key file that is binary is refused by the provider
before it connects."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from lab.common import host_paths
from tests.integration.slicekit import SliceStack, failure, lab_config, slice_section
from tests.labfixtures import Testbed, assert_scan_equal, scan

pytestmark = pytest.mark.integration

HOSTS = ("network", "worker1", "worker2")
VMS = [
    {"id": 9501, "worker": "worker1", "dataInterfaces": 1},
    {"id": 9502, "worker": "worker2", "dataInterfaces": 1},
]
LINKS = [["9501.eth1", "9502.eth1"]]
POOL = 520


def logins() -> dict[str, int]:
    """Public-key logins each host's sshd has accepted so far."""
    return {h: host_paths(h).sshd_log.read_text(errors="replace").count("Accepted publickey") for h in HOSTS}


def refused(stack: SliceStack, *args: str) -> str:
    text = failure(stack.cli.run(*args, check=False))
    assert "Traceback" not in text, text
    return text


def test_hostile_config_is_a_clean_error_and_changes_nothing(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path
) -> None:
    key = Path(testbed.inventory["privateKeyPath"]).read_text()
    body = [line for line in key.splitlines() if line and "-----" not in line]
    stack = slice_stack("e2e-hostile", POOL, VMS, LINKS)
    ssh = lab_config()["cloudrepo:ssh"]
    section = slice_section(POOL, VMS, LINKS)["cloudrepo:slice"]
    cases: list[tuple[str, dict[str, Any], list[str]]] = [
        (
            "preset-not-a-string",
            {"cloudrepo:slice": {**section, "topology": [{"preset": ["ring"], "vms": [9501, 9502]}]}},
            ["cloudrepo:slice.topology[0].preset: unknown preset ['ring']"],
        ),
        (
            "key-text-as-path",
            {"cloudrepo:ssh": {**ssh, "privateKeyPath": key}},
            ["cloudrepo:ssh.privateKeyPath: looks like a private key, not a path"],
        ),
        (
            "hostile-strings",
            {
                "cloudrepo:parkingVlan": "9" * 5000,
                "cloudrepo:dnsServers": ["8.8.8.8\x00; reboot"],
                "cloudrepo:bridge": "br-int\n--",
                "cloudrepo:slice": {**section, "name": "../../etc", "links": [["9501.eth1", {"a": 1}]]},
            },
            [
                "cloudrepo:parkingVlan: must be an integer, got '99999",
                "(5000 characters)",
                "cloudrepo:dnsServers[0]: '8.8.8.8\\x00; reboot' is not an IPv4 address",
                "cloudrepo:bridge: interface name 'br-int\\n--'",
                "cloudrepo:slice.name: slice name '../../etc'",
                "cloudrepo:slice.links[0].b: input should be a valid string, got {'a': 1}",
            ],
        ),
    ]
    before, seen = scan(), logins()
    for name, changes, expected in cases:
        stack.write_config({**lab_config(), **slice_section(POOL, VMS, LINKS), **changes})
        for args in (
            ("preview", "--non-interactive"),
            ("up", "--yes", "--non-interactive", "--skip-preview"),
        ):
            text = refused(stack, *args)
            print(
                f"{name} / {args[0]}:\n"
                + "\n".join(line for line in text.splitlines() if "cloudrepo:" in line)
            )
            assert "problem" in text and "in the stack config (nothing was changed)" in text, text
            for part in expected:
                assert part in text, f"{name}: {part!r} not in\n{text}"
            assert not any(line in text for line in body), f"{name}: key text in the output"

    # the key secret in clear (`pulumi config set` without --secret) is refused, naming the key only
    stack.write_config({**lab_config(secret_key=True), **slice_section(POOL, VMS, LINKS)})
    stack.cli.run("config", "set", "cloudrepo:sshPrivateKey", input=key)
    assert body[0] in stack.config_file.read_text(), "the key is not in clear: the case proves nothing"
    text = refused(stack, "preview", "--non-interactive")
    assert "cloudrepo:sshPrivateKey: must be a secret" in text, text
    assert not any(line in text for line in body), "key text in the output"

    # a key file that is binary: the provider refuses it before it connects, by path
    binary = tmp_path / "binary-key"
    binary.write_bytes(bytes(range(256)) * 4)
    stack.write_config(
        {
            **lab_config(),
            **slice_section(POOL, VMS, LINKS),
            "cloudrepo:ssh": {**ssh, "privateKeyPath": str(binary)},
        }
    )
    text = refused(stack, "up", "--yes", "--non-interactive", "--skip-preview")
    assert f"cloudrepo:ssh.privateKeyPath {str(binary)!r}: not a text file" in text, text

    assert logins() == seen, "a host was logged in to"
    assert_scan_equal(before, scan())
    # positive control: the same stack with its config repaired comes up (and is destroyed at teardown)
    stack.write_config({**lab_config(), **slice_section(POOL, VMS, LINKS)})
    stack.up()
    assert logins() != seen

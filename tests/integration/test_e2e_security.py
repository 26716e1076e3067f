"""Scenario 9: security. A changed host key is refused before any command runs on that host; a private key
given as a Pulumi secret is nowhere in clear (state, backend files, stack config); names carrying shell
metacharacters are refused at `pulumi preview`, naming the value, and nothing is created anywhere."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lab.common import host_paths, lab_dir
from tests.integration.e2ekit import known_hosts_with_wrong_key, wall_time
from tests.integration.slicekit import SliceStack, failure, lab_config
from tests.labfixtures import Testbed, assert_scan_equal, scan


def two_vms(first: int) -> tuple[list[dict[str, Any]], list[Any]]:
    """VM ids are unique across the cloud: each stack here has its own."""
    vms = [
        {"id": first, "worker": "worker1", "dataInterfaces": 1, "internet": True},
        {"id": first + 1, "worker": "worker2", "dataInterfaces": 1},
    ]
    return vms, [[f"{first}.eth1", f"{first + 1}.eth1"]]


def accepted_logins(host: str) -> int:
    """Public-key logins sshd of HOST has accepted so far (its log is kept for the testbed's life)."""
    return host_paths(host).sshd_log.read_text(errors="replace").count("Accepted publickey")


def failed(result: Any) -> str:
    text = failure(result)
    print("\n".join(dict.fromkeys(line.strip() for line in text.splitlines() if "error" in line.lower())))
    return text


def diagnostics_naming(text: str, value: str) -> list[str]:
    """The lines of a pulumi run's `Diagnostics:` section that name `value`."""
    section = text.split("Diagnostics:", 1)[-1].split("Resources:", 1)[0]
    return [line.strip() for line in section.splitlines() if value in line]


def test_security(slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path) -> None:
    with wall_time("9 security"):
        changed_host_key_is_refused(slice_stack, testbed, tmp_path)
        private_key_is_never_in_clear(slice_stack)
        shell_metacharacters_are_refused(slice_stack)


def changed_host_key_is_refused(
    slice_stack: Callable[..., SliceStack], testbed: Testbed, tmp_path: Path
) -> None:
    bad = known_hosts_with_wrong_key(tmp_path / "known_hosts", testbed.port("worker1"))
    ssh = {**lab_config()["cloudrepo:ssh"], "knownHostsPath": str(bad)}
    stack = slice_stack("e2e-hostkey", 360, *two_vms(9401), extra={"cloudrepo:ssh": ssh})
    before = scan("worker1")
    logins = accepted_logins("worker1")
    # --continue-on-error: the engine creates all that does not wait on worker1, so the positive control
    # below does not depend on how far the engine got before worker1's refusal
    up = ("up", "--yes", "--non-interactive", "--skip-preview", "--continue-on-error")
    text = failed(stack.cli.run(*up, check=False))
    assert accepted_logins("worker1") == logins, "the stack logged in to worker1 despite its changed key"
    port = testbed.port("worker1")
    assert f"host key of 127.0.0.1:{port} CHANGED: got ssh-ed25519 SHA256:" in text, text
    assert_scan_equal(before, scan("worker1"))
    # positive control: worker2 (its key is right) was reached and got both of its VM's TAPs
    taps = scan("worker2")["hosts"]["worker2"]["taps"]
    assert {"tap_9402_eth0", "tap_9402_eth1"} <= set(taps), taps


def private_key_is_never_in_clear(slice_stack: Callable[..., SliceStack]) -> None:
    stack = slice_stack("e2e-secret", 380, *two_vms(9411), secret_key=True)
    pem = (lab_dir() / "id_ed25519").read_text()
    body = [line for line in pem.splitlines() if line and "-----" not in line]
    assert body
    config = stack.config_file.read_text()
    assert "privateKeyPath" not in config
    # the key is there, as a secret: the engine decrypts it, and the slice comes up with it
    got = stack.cli.run("config", "get", "cloudrepo:sshPrivateKey").stdout
    assert got.strip() == pem.strip()
    stack.up()
    assert stack.outputs()["links"][0]["vlan"] == 380

    def leaks(name: str, text: str) -> list[str]:
        found = [f"{name}: PRIVATE KEY"] if "PRIVATE KEY" in text else []
        return found + [f"{name}: PEM line {i}" for i, line in enumerate(body) if line in text]

    problems = leaks("stack export", stack.cli.export_state())
    problems += leaks(stack.config_file.name, config + stack.config_file.read_text())
    assert stack.cli.backend_dir is not None  # every test stack has a backend of its own
    files = [p for p in stack.cli.backend_dir.rglob("*") if p.is_file()]
    assert any(stack.cli.stack in str(p) for p in files), files
    for path in files:
        raw = path.read_bytes()
        if path.suffix == ".gz":
            raw = gzip.decompress(raw)
        problems += leaks(str(path), raw.decode(errors="replace"))
    assert not problems, problems
    # the search itself finds the key where it is in clear
    assert leaks("the key file", pem)
    stack.destroy()


def shell_metacharacters_are_refused(slice_stack: Callable[..., SliceStack]) -> None:
    before = scan()
    vms, links = two_vms(9421)
    cases: list[tuple[str, dict[str, Any], str]] = [
        (
            "e2e-meta-slice",
            {
                "cloudrepo:slice": {
                    "name": "demo;reboot",
                    "vlanPool": {"start": 340},
                    "vms": vms,
                    "links": links,
                }
            },
            "demo;reboot",
        ),
        (
            "e2e-meta-worker",
            {
                "cloudrepo:workers": {
                    "worker1": {"host": "127.0.0.1", "port": 2201},
                    "w1$(id)": {"host": "127.0.0.1", "port": 2202},
                },
                "cloudrepo:slice": {
                    "vlanPool": {"start": 340},
                    "vms": [vms[0], {**vms[1], "worker": "w1$(id)"}],
                    "links": links,
                },
            },
            "w1$(id)",
        ),
    ]
    for name, extra, value in cases:
        stack = slice_stack(name, 340, vms, links, extra=extra)
        logins = {h: accepted_logins(h) for h in ("network", "worker1", "worker2")}
        text = failed(stack.cli.run("preview", "--non-interactive", check=False))
        assert "problem in the stack config (nothing was changed)" in text, text
        naming = diagnostics_naming(text, value)
        print(f"{name}: {naming}")
        assert naming, f"{name}: the message does not name {value!r}:\n{text}"
        # `up` is refused the same way (the same diagnostics), before any host is reached
        text = failed(stack.cli.run("up", "--yes", "--non-interactive", "--skip-preview", check=False))
        assert diagnostics_naming(text, value) == naming, text
        assert {h: accepted_logins(h) for h in logins} == logins, f"{name}: a host was reached"
    assert_scan_equal(before, scan())

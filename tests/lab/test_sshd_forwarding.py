"""The testbed's sshd forwards as a network node's must for `cloudrepo ssh` (the guests' ProxyJump):
a channel to port 22 opens; any other port, a remote forward and agent forwarding are refused."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.labfixtures import Testbed

pytestmark = pytest.mark.integration


def ssh(testbed: Testbed, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    base = [
        "ssh", "-F", "/dev/null", "-i", testbed.inventory["privateKeyPath"], "-o", "IdentitiesOnly=yes",
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={testbed.inventory['knownHostsPath']}", "-o", "ExitOnForwardFailure=yes",
        "-p", str(testbed.port("network")),
    ]  # fmt: skip
    return subprocess.run(
        [*base, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=env,
    )


def test_the_network_node_opens_channels_to_port_22_only(testbed: Testbed, tmp_path: Path) -> None:
    to_ssh = ssh(testbed, "-W", "127.0.0.1:22", "root@127.0.0.1")  # its own sshd, seen from inside
    assert to_ssh.stdout.startswith("SSH-2.0-"), to_ssh.stderr
    to_http = ssh(testbed, "-W", "127.0.0.1:80", "root@127.0.0.1")
    assert to_http.returncode == 255 and "administratively prohibited" in to_http.stderr, to_http
    remote = ssh(testbed, "-R", "2999:127.0.0.1:22", "root@127.0.0.1", "true")
    assert remote.returncode == 255 and "remote port forwarding failed" in remote.stderr, remote
    sock = tmp_path / "agent.sock"
    agent_process = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not sock.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        env = {**os.environ, "SSH_AUTH_SOCK": str(sock)}
        agent = ssh(testbed, "-A", "-v", "root@127.0.0.1", "echo ${SSH_AUTH_SOCK:-none}", env=env)
        assert "Requesting authentication agent forwarding" in agent.stderr, agent.stderr  # asked for ...
        assert agent.returncode == 0 and agent.stdout.strip() == "none", agent  # ... and not given
    finally:
        agent_process.terminate()
        agent_process.wait(10)

"""A host that is down fails with one error naming it, not with paramiko's tracebacks on the provider's
stderr (the engine shows each stderr line as a message of the stack)."""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_a_failed_connection_prints_nothing_on_stderr() -> None:
    # a port that accepts and closes at once: paramiko fails reading the SSH banner (as with sshd stopped
    # behind the testbed's forward), and logs the exception with its traceback
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        program = textwrap.dedent(
            f"""
            import paramiko
            from transport import ssh  # noqa: F401  (the provider process imports it)
            client = paramiko.SSHClient()
            client.set_missing_host_key_policy(paramiko.RejectPolicy())
            try:
                client.connect("127.0.0.1", port={port}, username="x", password="x", timeout=5,
                               banner_timeout=5, allow_agent=False, look_for_keys=False)
            except Exception as exc:
                print("failed:", type(exc).__name__)
            """
        )
        proc = subprocess.Popen(
            [sys.executable, "-c", program],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        conn, _ = listener.accept()
        conn.close()
        out, err = proc.communicate(timeout=30)
    assert out.startswith("failed:"), (out, err)
    assert err == "", err

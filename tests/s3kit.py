"""A real S3-compatible server for Pulumi's S3 backend in tests: versitygw (scripts/install-versitygw) on a
free loopback port, POSIX storage in a temporary directory, stopped by its pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from lab.pulumi_cli import TOOLCHAIN_BIN

VERSITYGW = TOOLCHAIN_BIN / "versitygw"
BUCKET = "pulumi-state"
ACCESS_KEY = "cloudrepo-test"
SECRET_KEY = "cloudrepo-test-secret"


@dataclass(frozen=True)
class S3Backend:
    port: int
    data: Path
    pid: int
    started_in: float
    """Seconds from exec to the first answer."""

    @property
    def url(self) -> str:
        return f"s3://{BUCKET}?endpoint=http://127.0.0.1:{self.port}&s3ForcePathStyle=true&region=us-east-1"

    def env(self) -> dict[str, str]:
        """What a `pulumi` (or `cloudrepo`) process needs to use this backend."""
        return {
            "PULUMI_BACKEND_URL": self.url,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=1)
    except urllib.error.HTTPError:
        return True  # 403 without credentials: it is serving
    except OSError:
        return False
    return True


@contextmanager
def versitygw(root: Path, timeout: float = 30) -> Iterator[S3Backend]:
    """Start the server on loopback with the bucket ready; stop it (by pid) on exit."""
    data = root / "s3"
    (data / BUCKET).mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (root / "versitygw.log").open("w")
    env = {**os.environ, "ROOT_ACCESS_KEY": ACCESS_KEY, "ROOT_SECRET_KEY": SECRET_KEY}
    t0 = time.monotonic()
    proc = subprocess.Popen(
        [str(VERSITYGW), "--port", f"127.0.0.1:{port}", "posix", str(data)],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    try:
        while not _answers(port):
            if proc.poll() is not None or time.monotonic() - t0 > timeout:
                raise AssertionError(
                    f"versitygw did not start (exit {proc.poll()}): {(root / 'versitygw.log').read_text()}"
                )
            time.sleep(0.05)
        yield S3Backend(port=port, data=data, pid=proc.pid, started_in=time.monotonic() - t0)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()

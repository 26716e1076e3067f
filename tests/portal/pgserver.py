"""A real PostgreSQL server for the portal's tests: Debian's `postgresql` binaries, a cluster in a
temporary directory, listening on a free loopback port only; run by a dedicated unix user when the tests
run as root (PostgreSQL refuses root). Stopped and removed at the end."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

PG_USER = "cloudrepo-pgtest"


def pg_bindir() -> Path | None:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _as_server_user(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", PG_USER], check=True
        )
    return ["runuser", "-u", PG_USER, "--", *argv]


@contextlib.contextmanager
def server() -> Iterator[str]:
    """The URL (SQLAlchemy, psycopg) of the `postgres` database of a new cluster; trust on loopback."""
    bindir = pg_bindir()
    if bindir is None:
        raise FileNotFoundError("PostgreSQL is not installed (scripts/install-system installs it)")
    root = Path(tempfile.mkdtemp(prefix="cloudrepo-pg-"))
    data = root / "data"
    port = free_port()
    try:
        if os.geteuid() == 0:
            _as_server_user(["true"])
            shutil.chown(root, PG_USER)
        run = _as_server_user
        subprocess.run(
            run([str(bindir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                 "--no-sync"]),
            check=True, capture_output=True,
        )  # fmt: skip
        options = (
            f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c fsync=off"
        )
        start = [
            str(bindir / "pg_ctl"),
            "-D",
            str(data),
            "-l",
            str(root / "log"),
            "-o",
            options,
            "-w",
            "start",
        ]
        subprocess.run(run(start), check=True, capture_output=True, timeout=120)
        try:
            yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                check=False, capture_output=True, timeout=120,
            )  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)


def new_database(url: str, name: str) -> str:
    """A new empty database on the server of `url`; its URL."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + f"/{name}"

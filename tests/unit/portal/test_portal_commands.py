"""The portal's shell verbs answer bad input with a message and exit 1, never a traceback, and never show a
database password."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from cloudrepo.cli import main


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+psycopg://someone:sekrit-pw@127.0.0.1:1/db",
        "nonsense:sekrit-pw",
        "sqlite:////nonexistent/sekrit-pw/x.db",
    ],
)
def test_a_database_that_cannot_be_opened_is_named_without_its_password(
    url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["token", "create", "ann", "--db", url]) == 1
    err = capsys.readouterr().err
    assert "cannot open the portal's database" in err, err
    if "postgresql" in url or "nonsense" in url:
        assert "sekrit-pw" not in err, err
    assert "Traceback" not in err


def test_user_add_asks_a_terminal_or_reads_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    db = f"sqlite:///{tmp_path / 'p.db'}"
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["user", "add", "ann", "--role", "admin", "--db", db]) == 1
    assert "not a terminal: pass --password-stdin" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["user", "add", "ann", "--role", "admin", "--password-stdin", "--db", db]) == 1
    assert "too short" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("long enough password\n"))
    assert main(["user", "add", "ann", "--role", "admin", "--password-stdin", "--db", db]) == 0
    assert main(["quota", "set", "ann", "--vms", "-1", "--db", db]) == 1
    assert "quota vms must be 0 or more" in capsys.readouterr().err
    assert main(["token", "create", "ann", "--db", db]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out[-1].startswith("crp_") and "long enough password" not in "\n".join(out)

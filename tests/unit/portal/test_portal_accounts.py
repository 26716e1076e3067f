"""Accounts, sessions, CSRF and the login rate limit, on a real SQLite database migrated from empty."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import inspect, select
from sqlalchemy.orm import Session, sessionmaker

from cloudrepo.portal import accounts, db, migrate, ratelimit, sessions


@pytest.fixture
def database(tmp_path: Path) -> sessionmaker:
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    migrate.upgrade(url)
    return db.sessions(url)


def test_migrations_from_empty_make_every_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    migrate.upgrade(url)
    names = set(inspect(db.engine_for(url)).get_table_names())
    assert set(db.Base.metadata.tables) <= names
    migrate.upgrade(url)  # again: nothing to do, no error


def test_passwords_are_salted_argon2_and_checked(database: sessionmaker) -> None:
    with database() as s, s.begin():
        a = accounts.add_user(s, "ann", "student", "correct horse")
        b = accounts.add_user(s, "bob", "student", "correct horse")
        assert a.password_hash.startswith("$argon2id$") and "correct horse" not in a.password_hash
        assert a.password_hash != b.password_hash
        assert accounts.authenticate(s, "ann", "correct horse") is not None
        assert accounts.authenticate(s, "ann", "correct hors") is None
        assert accounts.authenticate(s, "nobody", "correct horse") is None
        with pytest.raises(accounts.AccountError, match="exists already"):
            accounts.add_user(s, "ann", "admin", "another one")
        with pytest.raises(accounts.AccountError, match="not a role"):
            accounts.add_user(s, "cid", "root", "another one")
        with pytest.raises(accounts.AccountError, match="too short"):
            accounts.add_user(s, "dan", "student", "short")


def test_tokens_are_kept_as_digests_only(database: sessionmaker) -> None:
    with database() as s, s.begin():
        user = accounts.add_user(s, "ann", "student", "correct horse")
        token = accounts.create_token(s, user)
        stored = s.scalars(select(db.Token.digest)).all()
        assert token not in stored and accounts.token_digest(token) in stored
        found = accounts.token_user(s, token)
        assert found is not None and found.name == "ann"
        assert accounts.token_user(s, token + "x") is None


def test_teachers_see_their_groups_students_only(database: sessionmaker) -> None:
    with database() as s, s.begin():
        t = accounts.add_user(s, "tess", "teacher", "correct horse")
        mine = accounts.add_user(s, "sam", "student", "correct horse")
        other = accounts.add_user(s, "oli", "student", "correct horse")
        root = accounts.add_user(s, "root1", "admin", "correct horse")
        accounts.add_member(s, accounts.add_group(s, t, "class-a"), mine)
        assert accounts.may_see(s, t, mine.id) and not accounts.may_see(s, t, other.id)
        assert accounts.may_see(s, root, other.id) and not accounts.may_see(s, mine, other.id)
        with pytest.raises(accounts.AccountError, match="only teachers and admins"):
            accounts.add_group(s, mine, "class-b")


def test_login_rate_limit_per_user_and_per_address(database: sessionmaker) -> None:
    with database() as s, s.begin():
        for _ in range(ratelimit.MAX_FAILURES - 1):
            ratelimit.failed(s, "ann", "10.0.0.1")
        assert ratelimit.retry_after(s, "ann", "10.0.0.9") is None
        ratelimit.failed(s, "ann", "10.0.0.1")
        wait = ratelimit.retry_after(s, "ann", "10.0.0.9")  # the user is limited from any address
        assert wait is not None and wait >= ratelimit.MIN_RETRY
        assert ratelimit.retry_after(s, "bob", "10.0.0.1") is not None  # and the address for any user
        assert ratelimit.retry_after(s, "bob", "10.0.0.2") is None
        later = db.now() + ratelimit.WINDOW + timedelta(seconds=1)
        assert ratelimit.retry_after(s, "ann", "10.0.0.9", at=later) is None


def _session_user(s: Session, signer: sessions.Signer, cookie: str) -> int | None:
    found = signer.read(cookie)
    return found.user_id if found else None


@settings(max_examples=60)
@given(st.integers(0, 200), st.text(min_size=1, max_size=3))
def test_a_tampered_session_cookie_is_no_session(cut: int, junk: str) -> None:
    signer = sessions.Signer(b"k" * 32)
    cookie, session = signer.issue(42)
    assert signer.read(cookie) == session
    tampered = cookie[:cut] + junk + cookie[cut + len(junk) :]
    if tampered != cookie:
        assert signer.read(tampered) is None
    assert sessions.Signer(b"x" * 32).read(cookie) is None
    assert sessions.csrf_ok(session, session.csrf) and not sessions.csrf_ok(session, None)
    assert not sessions.csrf_ok(session, session.csrf + "a")


def test_the_session_key_file_is_made_for_its_owner_alone(tmp_path: Path) -> None:
    path = tmp_path / "state" / "key"
    key = sessions.load_key(path)
    assert len(key) == 32 and path.stat().st_mode & 0o777 == 0o600
    assert sessions.load_key(path) == key

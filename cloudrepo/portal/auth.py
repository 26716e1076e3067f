"""Who calls: a bearer token (`Authorization: Bearer ...`, scripts) or a session cookie (browsers; their
state-changing requests must carry the session's CSRF token)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import HTTPException, Request
from sqlalchemy.orm import Session
from starlette.requests import HTTPConnection

from cloudrepo.portal import accounts, sessions
from cloudrepo.portal.db import User

SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


@dataclass(frozen=True)
class Caller:
    user: User
    session: sessions.Session | None
    """None when the caller came with a bearer token (no cookie, so no CSRF to fear)."""

    @property
    def csrf(self) -> str:
        return self.session.csrf if self.session else ""


def identify(request: HTTPConnection, db: Session, signer: sessions.Signer) -> Caller | None:
    header = request.headers.get("authorization", "")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        user = accounts.token_user(db, token.strip())
        return Caller(user, None) if user is not None else None
    session = signer.read(request.cookies.get(sessions.COOKIE))
    if session is None:
        return None
    user = db.get(User, session.user_id)
    return Caller(user, session) if user is not None else None


def check_csrf(request: Request, caller: Caller, form_value: str | None = None) -> None:
    """A cookie session's state-changing request must carry its CSRF token (header or form field)."""
    if caller.session is None or request.method in SAFE_METHODS:
        return
    given = request.headers.get(sessions.CSRF_HEADER) or form_value
    if not sessions.csrf_ok(caller.session, given):
        raise HTTPException(403, "the CSRF token is missing or wrong (reload the page)")


def require_role(caller: Caller, *roles: str) -> None:
    if caller.user.role not in roles:
        raise HTTPException(
            403, f"{caller.user.name} is a {caller.user.role}: this needs {' or '.join(roles)}"
        )

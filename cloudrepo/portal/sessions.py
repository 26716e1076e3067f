"""Browser sessions in signed cookies (HttpOnly, SameSite=Strict), each with its CSRF token.

The cookie holds the user's id and a random CSRF token, signed with the portal's key (`itsdangerous`) and
valid for `MAX_AGE`; a state-changing form carries the token in a hidden field, a script in the
`X-CSRF-Token` header. The key lives in the state directory, readable by its owner alone.
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

from itsdangerous import BadSignature, URLSafeTimedSerializer

COOKIE = "cloudrepo_session"
MAX_AGE = 12 * 3600
CSRF_FIELD = "csrf"
CSRF_HEADER = "x-csrf-token"
COOKIE_TEXT = re.compile(r"^[A-Za-z0-9_.\-]{1,4096}$")
"""What a cookie the signer issued looks like (URL-safe base64 and dots); anything else is no session (the
base64 decoder would skip bytes outside its alphabet)."""


@dataclass(frozen=True)
class Session:
    user_id: int
    csrf: str


def load_key(path: Path) -> bytes:
    """The signing key at `path`, made (random, mode 0600) when missing."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = secrets.token_bytes(32)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(key)
        return key


class Signer:
    def __init__(self, key: bytes) -> None:
        self._s = URLSafeTimedSerializer(key, salt="cloudrepo-portal-session")

    def issue(self, user_id: int) -> tuple[str, Session]:
        session = Session(user_id, secrets.token_urlsafe(24))
        return self._s.dumps({"u": user_id, "c": session.csrf}), session

    def read(self, cookie: str | None) -> Session | None:
        if not cookie or not COOKIE_TEXT.fullmatch(cookie):
            return None
        try:
            data = self._s.loads(cookie, max_age=MAX_AGE)
        except BadSignature:
            return None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("u"), int)
            or not isinstance(data.get("c"), str)
        ):
            return None
        return Session(data["u"], data["c"])


def csrf_ok(session: Session, given: str | None) -> bool:
    return given is not None and hmac.compare_digest(session.csrf.encode(), given.encode())

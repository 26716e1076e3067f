"""Login rate limiting: after `MAX_FAILURES` failed logins within `WINDOW` for one user name or one
address, further logins for it are refused (429) until the oldest of them leaves the window."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from cloudrepo.portal.db import LoginFailure, aware, now

MAX_FAILURES = 5
WINDOW = timedelta(minutes=5)
MIN_RETRY = 30


def keys(user: str, address: str) -> tuple[str, str]:
    return f"user:{user[:100]}", f"addr:{address[:100]}"


def retry_after(db: Session, user: str, address: str, at: datetime | None = None) -> int | None:
    """Seconds to wait before the next try (at least `MIN_RETRY`), or None when a try is allowed."""
    t = at or now()
    since = t - WINDOW
    worst = 0.0
    for key in keys(user, address):
        times = sorted(aware(x) for x in db.scalars(select(LoginFailure.at).where(LoginFailure.key == key)))
        recent = [x for x in times if x > since]
        if len(recent) >= MAX_FAILURES:
            worst = max(worst, (recent[-MAX_FAILURES] + WINDOW - t).total_seconds())
    return max(MIN_RETRY, int(worst) + 1) if worst > 0 else None


def failed(db: Session, user: str, address: str) -> None:
    for key in keys(user, address):
        db.add(LoginFailure(key=key))
    db.execute(delete(LoginFailure).where(LoginFailure.at < now() - 2 * WINDOW))
    db.flush()


def succeeded(db: Session, user: str) -> None:
    db.execute(delete(LoginFailure).where(LoginFailure.key == keys(user, "")[0]))
    db.flush()

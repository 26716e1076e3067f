"""The administration's changes, one function each, shared by the pages and the API: users, quotas, groups
and their students. Each is one transaction; an `AccountError` is refused (422) with its reason; what
passes is written to the audit log."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from sqlalchemy.orm import Session

from cloudrepo.portal import accounts, audit
from cloudrepo.portal.db import User
from cloudrepo.portal.service import Portal, Refused


@contextmanager
def change(p: Portal, actor: User, action: str, detail: str) -> Iterator[Session]:
    """A change of the accounts by `actor`: refused (422) on an `AccountError`, audited when it passes."""
    with p.session() as db:
        try:
            yield db
        except accounts.AccountError as exc:
            raise Refused(422, str(exc)) from None
        audit.record(db, actor.name, action, None, "ok", detail)


def add_user(p: Portal, actor: User, name: str, role: str, password: str) -> None:
    with change(p, actor, "user add", f"{name} ({role})") as db:
        accounts.add_user(db, name, role, password)


def set_quota(p: Portal, actor: User, name: str, limits: accounts.Limits) -> None:
    with change(p, actor, "quota set", f"{name}: {asdict(limits)}") as db:
        accounts.set_quota(db, accounts.find_user(db, name), limits)


def add_group(p: Portal, actor: User, name: str) -> None:
    with change(p, actor, "group add", name) as db:
        accounts.add_group(db, actor, name)


def add_member(p: Portal, actor: User, group: str, student: str) -> dict[str, Any]:
    """Add a student to a group of the actor's (an admin: any group); the group as `groups_of` shows it."""
    with change(p, actor, "member add", f"{student} to {group}") as db:
        found = accounts.find_group(db, group)
        if found.teacher_id != actor.id and actor.role != "admin":
            raise Refused(403, f"group {group!r} is not yours")
        accounts.add_member(db, found, accounts.find_user(db, student))
        return next(g for g in accounts.groups_of(db, actor) if g["name"] == group)

"""The audit log: who did what to which slice, when, and the result."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from cloudrepo.portal.db import Audit

MAX_DETAIL = 4000


def record(
    db: Session, actor: str, action: str, slice_name: str | None, result: str, detail: str = ""
) -> None:
    db.add(Audit(actor=actor, action=action, slice=slice_name, result=result, detail=detail[-MAX_DETAIL:]))
    db.flush()


def entries(db: Session, limit: int = 200, slices: set[str] | None = None) -> list[dict[str, Any]]:
    """The newest entries first (only those of `slices` when given)."""
    q = select(Audit).order_by(Audit.id.desc()).limit(limit)
    if slices is not None:
        q = q.where(Audit.slice.in_(sorted(slices)))
    return [
        {
            "at": a.at.isoformat(),
            "actor": a.actor,
            "action": a.action,
            "slice": a.slice,
            "result": a.result,
            "detail": a.detail,
        }
        for a in db.scalars(q)
    ]

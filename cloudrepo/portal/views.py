"""What pages and the API show of slices, from the database and the stack files (no engine call: the
slice list stays fast with many slices)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from cloudrepo.portal import pools
from cloudrepo.portal.db import Audit, User
from cloudrepo.portal.service import Portal, section_pool


def slice_rows(p: Portal, user: User) -> list[dict[str, Any]]:
    """The slices `user` may see: name, owner, pool, VMs, links, the last deploy or destroy and its result."""
    with p.session() as db:
        visible = p.visible(db, user)
        last: dict[str, Audit] = {}
        names = [n for n, _ in visible]
        for a in db.scalars(
            select(Audit)
            .where(Audit.slice.in_(names), Audit.action.in_(("deploy", "destroy", "create")))
            .order_by(Audit.id)
        ):
            last[a.slice or ""] = a
    rows = []
    for name, owner in visible:
        try:
            section = p.section(name)
        except ValueError:
            section = {}
        start = section_pool(section)
        seen = last.get(name)
        rows.append(
            {
                "name": name,
                "owner": owner.name,
                "pool": None if start is None else f"{start}..{pools.pool_vlans(start)[-1]}",
                "vms": len(section.get("vms") or []),
                "links": len(section.get("links") or []) + len(section.get("topology") or []),
                "lastUpdate": None if seen is None else seen.at.isoformat(timespec="seconds"),
                "action": None if seen is None else seen.action,
                "result": None if seen is None else seen.result,
            }
        )
    return rows

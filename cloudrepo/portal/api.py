"""The REST API under /api (its schema at /openapi.json): everything the pages do."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import yaml
from fastapi import APIRouter, Body, Depends, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import select

from cloudrepo import edits
from cloudrepo.diagram import render
from cloudrepo.portal import accounts, admin, audit, registry, status
from cloudrepo.portal.auth import Caller, check_csrf, require_role
from cloudrepo.portal.db import User
from cloudrepo.portal.deps import api_caller, portal
from cloudrepo.portal.service import Job, Portal, Refused
from cloudrepo.portal.views import slice_rows

router = APIRouter(prefix="/api", tags=["api"])


class VmIn(BaseModel):
    id: int
    worker: str
    dataInterfaces: int = 0
    internet: bool = False
    launch: Any = None


class LinkIn(BaseModel):
    a: str
    b: str
    vlan: int | None = None


class PresetIn(BaseModel):
    preset: str
    vms: list[int]


class UserIn(BaseModel):
    name: str
    role: str
    password: str = Field(min_length=accounts.MIN_PASSWORD)


class GroupIn(BaseModel):
    name: str


class MemberIn(BaseModel):
    name: str


class ImageIn(BaseModel):
    name: str
    path: str
    """A file inside the cloud's `qemu.imageDirs` (relative paths from the project)."""
    description: str = ""


class QuotaIn(BaseModel):
    vms: int = Field(ge=0)
    vcpus: int = Field(ge=0)
    memory_mb: int = Field(ge=0)
    links: int = Field(ge=0)
    slices: int = Field(ge=0)


def writer(request: Request, caller: Caller = Depends(api_caller)) -> Caller:
    check_csrf(request, caller)
    return caller


def admin_reader(caller: Caller = Depends(api_caller)) -> Caller:
    require_role(caller, "admin")
    return caller


def admin_writer(caller: Caller = Depends(writer)) -> Caller:
    require_role(caller, "admin")
    return caller


def teacher_writer(caller: Caller = Depends(writer)) -> Caller:
    require_role(caller, "teacher", "admin")
    return caller


def add_vm(section: dict[str, Any], vm: VmIn) -> dict[str, Any]:
    out = edits.add_vm(section, vm.id, vm.worker, vm.dataInterfaces, vm.internet)
    if vm.launch is not None:
        out["vms"][-1]["launch"] = vm.launch
    return out


def job_json(job: Job) -> dict[str, Any]:
    return {
        "job": job.id,
        "slice": job.slice,
        "verb": job.verb,
        "done": job.done,
        "ok": job.ok,
        "events": f"/api/jobs/{job.id}/events",
    }


async def event_stream(p: Portal, job: Job, request: Request) -> AsyncIterator[bytes]:
    """Server-sent events: one `data:` per engine line as it comes, then `event: end` with the result (a
    job of another server process is followed in the database)."""
    sent = 0
    while True:
        job = await asyncio.to_thread(p.current, job)
        lines, done = job.lines[sent:], job.done
        for line in lines:
            yield f"data: {line}\n\n".encode()
        sent += len(lines)
        if done and sent >= len(job.lines):
            yield f"event: end\ndata: {'ok' if job.ok else 'failed'}\n\n".encode()
            return
        if await request.is_disconnected():
            return
        await asyncio.sleep(0.1)


@router.get("/me")
def me(caller: Caller = Depends(api_caller)) -> dict[str, Any]:
    return {"name": caller.user.name, "role": caller.user.role}


@router.get("/slices")
def list_slices(caller: Caller = Depends(api_caller), p: Portal = Depends(portal)) -> list[dict[str, Any]]:
    return slice_rows(p, caller.user)


@router.post("/slices", status_code=201)
def create_slice(
    body: dict[str, Any] = Body(...), caller: Caller = Depends(writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    name = p.create(caller.user, body)
    return p.describe(caller.user, name)


@router.get("/slices/{name}")
def get_slice(name: str, caller: Caller = Depends(api_caller), p: Portal = Depends(portal)) -> dict[str, Any]:
    return p.describe(caller.user, name)


@router.delete("/slices/{name}")
def delete_slice(name: str, caller: Caller = Depends(writer), p: Portal = Depends(portal)) -> dict[str, Any]:
    lines: list[str] = []
    p.remove(caller.user, name, lines.append)
    return {"name": name, "removed": True, "output": "\n".join(lines[-40:])}


@router.post("/slices/{name}/deploy", status_code=202)
def deploy(name: str, caller: Caller = Depends(writer), p: Portal = Depends(portal)) -> dict[str, Any]:
    return job_json(p.start(caller.user, name, "up"))


@router.post("/slices/{name}/preview", status_code=202)
def preview(name: str, caller: Caller = Depends(writer), p: Portal = Depends(portal)) -> dict[str, Any]:
    return job_json(p.start(caller.user, name, "preview"))


@router.get("/jobs/{job_id}")
def job_state(
    job_id: int, caller: Caller = Depends(api_caller), p: Portal = Depends(portal)
) -> dict[str, Any]:
    job = p.job(caller.user, job_id)
    return {**job_json(job), "lines": job.lines}


@router.get("/jobs/{job_id}/events")
def job_events(
    job_id: int, request: Request, caller: Caller = Depends(api_caller), p: Portal = Depends(portal)
) -> StreamingResponse:
    job = p.job(caller.user, job_id)
    return StreamingResponse(
        event_stream(p, job, request), media_type="text/event-stream", headers={"Cache-Control": "no-store"}
    )


def edited(p: Portal, caller: Caller, name: str, change: Any, what: str) -> dict[str, Any]:
    """An edit of the slice (checked whole by `Portal.edit`), answered with the slice as it is then."""
    p.edit(caller.user, name, change, what)
    return p.describe(caller.user, name)


@router.post("/slices/{name}/vms")
def api_add_vm(
    name: str, vm: VmIn, caller: Caller = Depends(writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    return edited(p, caller, name, lambda s: add_vm(s, vm), f"VM {vm.id} added on {vm.worker}")


@router.delete("/slices/{name}/vms/{vm}")
def api_rm_vm(
    name: str, vm: int, caller: Caller = Depends(writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    return edited(p, caller, name, lambda s: edits.rm_vm(s, vm)[0], f"VM {vm} removed")


@router.post("/slices/{name}/links")
def api_add_link(
    name: str, link: LinkIn, caller: Caller = Depends(writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    return edited(
        p, caller, name, lambda s: edits.add_link(s, link.a, link.b, link.vlan), f"link {link.a} -- {link.b}"
    )


@router.delete("/slices/{name}/links")
def api_rm_link(
    name: str, link: LinkIn, caller: Caller = Depends(writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    what = f"link {link.a} -- {link.b} removed"
    return edited(p, caller, name, lambda s: edits.rm_link(s, link.a, link.b), what)


@router.post("/slices/{name}/topology")
def api_add_preset(
    name: str, preset: PresetIn, caller: Caller = Depends(writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    return edited(p, caller, name, lambda s: edits.add_topology(s, preset.preset, preset.vms), preset.preset)


@router.get("/slices/{name}/export")
def export_slice(name: str, caller: Caller = Depends(api_caller), p: Portal = Depends(portal)) -> Response:
    section = p.describe(caller.user, name)["config"]
    text = yaml.safe_dump({"cloudrepo:slice": section}, sort_keys=False)
    return Response(text, media_type="application/yaml")


@router.put("/slices/{name}/config")
def import_slice(
    name: str, body: dict[str, Any] = Body(...), caller: Caller = Depends(writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    section = body.get("cloudrepo:slice", body)
    p.replace(caller.user, name, section)
    return p.describe(caller.user, name)


@router.get("/slices/{name}/status")
def slice_status(
    name: str, caller: Caller = Depends(api_caller), p: Portal = Depends(portal)
) -> dict[str, Any]:
    outputs = p.describe(caller.user, name)["outputs"]
    seen = status.leases(p.slices, name, outputs) if outputs else set()
    return {
        "vms": {str(k): v for k, v in status.live(p.slices, name, outputs).items()},
        "leases": None if seen is None else sorted(seen),
    }


@router.get("/slices/{name}/diagram.svg")
def diagram(name: str, caller: Caller = Depends(api_caller), p: Portal = Depends(portal)) -> Response:
    outputs = p.describe(caller.user, name)["outputs"]
    if not outputs:
        raise Refused(404, f"slice {name!r} is not deployed: nothing to draw")
    return Response(render(outputs, "svg"), media_type="image/svg+xml")


@router.get("/audit")
def audit_log(caller: Caller = Depends(api_caller), p: Portal = Depends(portal)) -> list[dict[str, Any]]:
    with p.session() as db:
        if caller.user.role == "admin":
            return audit.entries(db)
        return audit.entries(db, slices={n for n, _ in p.visible(db, caller.user)})


@router.get("/users")
def users(caller: Caller = Depends(admin_reader), p: Portal = Depends(portal)) -> list[dict[str, Any]]:
    with p.session() as db:
        return [{"name": u.name, "role": u.role} for u in db.scalars(select(User).order_by(User.name))]


@router.post("/users", status_code=201)
def add_user(
    new: UserIn, caller: Caller = Depends(admin_writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    admin.add_user(p, caller.user, new.name, new.role, new.password)
    return {"name": new.name, "role": new.role}


@router.put("/users/{user}/quota")
def set_quota(
    user: str, quota: QuotaIn, caller: Caller = Depends(admin_writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    admin.set_quota(p, caller.user, user, accounts.Limits(**quota.model_dump()))
    return {"name": user, **quota.model_dump()}


def refused(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, Refused)
    return JSONResponse({"detail": exc.problems}, status_code=exc.status)


@router.get("/groups")
def groups(caller: Caller = Depends(api_caller), p: Portal = Depends(portal)) -> list[dict[str, Any]]:
    """The caller's groups (a teacher's own; every group for an admin; none for a student)."""
    with p.session() as db:
        return accounts.groups_of(db, caller.user)


@router.post("/groups", status_code=201)
def add_group(
    new: GroupIn, caller: Caller = Depends(teacher_writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    admin.add_group(p, caller.user, new.name)
    return {"name": new.name, "teacher": caller.user.name, "students": []}


@router.post("/groups/{group}/members")
def add_member(
    group: str, member: MemberIn, caller: Caller = Depends(teacher_writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    """Add a student to a group of the caller's (an admin: any group)."""
    return admin.add_member(p, caller.user, group, member.name)


@router.get("/images")
def list_images(caller: Caller = Depends(admin_reader), p: Portal = Depends(portal)) -> list[dict[str, Any]]:
    """The backend's named images (as `cloudrepo image list --json`)."""
    return [registry.entry_json(e) for e in registry.listed(p)]


@router.post("/images", status_code=201)
def add_image(
    new: ImageIn, caller: Caller = Depends(admin_writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    """Keep a file of the operator's image directories (`qemu.imageDirs`) as a named image."""
    return registry.entry_json(registry.add(p, caller.user, new.name, new.path, new.description))


@router.delete("/images/{name}")
def rm_image(
    name: str, caller: Caller = Depends(admin_writer), p: Portal = Depends(portal)
) -> dict[str, Any]:
    """Remove a named image (409 naming them while deployed slices boot from it)."""
    registry.remove(p, caller.user, name)
    return {"name": name, "removed": True}

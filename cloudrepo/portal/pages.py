"""The server-rendered pages (Jinja2 templates): login, slices, a slice, the console, administration.
Every form that changes something carries the session's CSRF token."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from sqlalchemy import select

from cloudrepo import edits, tables
from cloudrepo.engine import SliceError
from cloudrepo.images import size_text
from cloudrepo.portal import accounts, admin, audit, ratelimit, registry, sessions, status
from cloudrepo.portal.auth import Caller
from cloudrepo.portal.db import User
from cloudrepo.portal.deps import (
    page_admin,
    page_admin_writer,
    page_caller,
    page_teacher,
    page_teacher_writer,
    page_writer,
    portal,
    signer,
)
from cloudrepo.portal.service import Portal, Refused, vm_choices
from cloudrepo.portal.views import slice_rows
from components.topology import MIN_VMS

HERE = Path(__file__).resolve().parent
templates = Jinja2Templates(directory=str(HERE / "templates"))
router = APIRouter(include_in_schema=False)
LOGIN_COOKIE = "cloudrepo_login"
IMAGE_BOOT = "image:"
"""A boot choice of the add-VM form that names a registry image (`launch: {image: NAME}`), not a preset."""


def page(
    request: Request, template: str, caller: Caller | None, status_code: int = 200, **context: Any
) -> HTMLResponse:
    return templates.TemplateResponse(
        request,
        template,
        {"user": caller.user if caller else None, "csrf": caller.csrf if caller else "", **context},
        status_code=status_code,
    )


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/login")
def login_form(request: Request) -> HTMLResponse:
    token = secrets.token_urlsafe(24)
    response = page(request, "login.html", None, login_csrf=token)
    response.set_cookie(
        LOGIN_COOKIE, token, httponly=True, samesite="strict", secure=secure(request), max_age=3600
    )
    return response


@router.post("/login")
def login(
    request: Request,
    name: str = Form(""),
    password: str = Form(""),
    csrf: str = Form(""),
    p: Portal = Depends(portal),
) -> Response:
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not secrets.compare_digest(expected.encode(), csrf.encode()):
        raise HTTPException(403, "the login form's CSRF token is missing or wrong (reload the page)")
    address = request.client.host if request.client else "unknown"
    with p.session() as db:
        wait = ratelimit.retry_after(db, name, address)
        if wait is None:
            user = accounts.authenticate(db, name, password)
            if user is not None:
                ratelimit.succeeded(db, name)
                audit.record(db, name, "login", None, "ok", address)
                cookie, _ = signer(request).issue(user.id)
                response = back("/")
                response.set_cookie(
                    sessions.COOKIE,
                    cookie,
                    httponly=True,
                    samesite="strict",
                    secure=secure(request),
                    max_age=sessions.MAX_AGE,
                )
                response.delete_cookie(LOGIN_COOKIE)
                return response
            ratelimit.failed(db, name, address)
            audit.record(db, name[:64], "login", None, "failed", address)
            wait = ratelimit.retry_after(db, name, address)
    if wait is not None:
        refused = page(
            request,
            "login.html",
            None,
            429,
            login_csrf=expected,
            error=f"too many failed logins: try again in {wait} s",
        )
        refused.headers["Retry-After"] = str(wait)
        return refused
    return page(request, "login.html", None, 401, login_csrf=expected, error="wrong name or password")


@router.post("/logout")
def logout(_caller: Caller = Depends(page_writer)) -> Response:
    response = back("/login")
    response.delete_cookie(sessions.COOKIE)
    return response


@router.get("/")
def home(
    request: Request, caller: Caller = Depends(page_caller), p: Portal = Depends(portal)
) -> HTMLResponse:
    return page(request, "slices.html", caller, rows=slice_rows(p, caller.user))


@router.post("/slices")
def create(
    name: str = Form(""), caller: Caller = Depends(page_writer), p: Portal = Depends(portal)
) -> Response:
    p.create(caller.user, {"name": name})
    return back(f"/slices/{name}")


@router.post("/slices/import")
def import_slice(
    name: str = Form(""),
    yaml_text: str = Form("", alias="yaml"),
    caller: Caller = Depends(page_writer),
    p: Portal = Depends(portal),
) -> Response:
    made = p.import_yaml(caller.user, name, yaml_text)
    return back(f"/slices/{made}")


@router.get("/slices/{name}")
def slice_page(
    name: str, request: Request, caller: Caller = Depends(page_caller), p: Portal = Depends(portal)
) -> HTMLResponse:
    info = p.describe(caller.user, name)
    outputs = info["outputs"]
    live = status.live(p.slices, name, outputs) if outputs else {}
    seen = status.leases(p.slices, name, outputs) if outputs else set()
    held = {vm for h in p.holdings(but=name) for vm in h.vm_ids}
    workers = sorted((p.cloud.plain.get("cloudrepo:workers") or {}).keys())
    return page(
        request,
        "slice.html",
        caller,
        info=info,
        name=name,
        live=live,
        show=tables.show(name, outputs),
        next_id=vm_choices(info["config"], held),
        workers=workers,
        boots=[*sorted(p.cloud.launches), *(f"{IMAGE_BOOT}{e.name}" for e in p.images())],
        presets=list(MIN_VMS),
        deployed={r["id"]: r for r in vm_rows(outputs, live, seen)},
        job=p.latest_job(caller.user, name),
    )


def vm_rows(outputs: dict[str, Any], live: dict[int, str], seen: set[str] | None) -> list[dict[str, Any]]:
    """Per deployed VM: worker, state, addresses (each marked when its DHCP lease was seen), console."""
    rows = []
    for key, vm in sorted((outputs.get("vms") or {}).items(), key=lambda kv: int(kv[0])):
        addresses = [
            f"{i}: {s['ip']}" + (" (lease seen)" if seen and s["ip"] in seen else "")
            for i, s in sorted(vm.get("interfaces", {}).items())
            if s.get("ip")
        ]
        rows.append(
            {
                "id": key,
                "worker": vm.get("worker"),
                "state": live.get(int(key), "not launched"),
                "addresses": ", ".join(addresses) or "-",
                "console": bool(vm.get("console")),
            }
        )
    return rows


def _edit(p: Portal, caller: Caller, name: str, change: Any, what: str) -> Response:
    """An edit of the slice (checked whole by `Portal.edit`), then the slice page."""
    p.edit(caller.user, name, change, what)
    return back(f"/slices/{name}")


@router.post("/slices/{name}/vms")
def add_vm(
    name: str,
    id: int = Form(...),
    worker: str = Form(...),
    data_interfaces: int = Form(0),
    internet: bool = Form(False),
    boot: str = Form(""),
    caller: Caller = Depends(page_writer),
    p: Portal = Depends(portal),
) -> Response:
    def change(s: dict[str, Any]) -> dict[str, Any]:
        out = edits.add_vm(s, id, worker, data_interfaces, internet)
        if boot.startswith(IMAGE_BOOT):
            out["vms"][-1]["launch"] = {"image": boot.removeprefix(IMAGE_BOOT)}
        elif boot:
            out["vms"][-1]["launch"] = boot
        return out

    return _edit(p, caller, name, change, f"VM {id} added on {worker}")


@router.post("/slices/{name}/vms/{vm}/rm")
def rm_vm(name: str, vm: int, caller: Caller = Depends(page_writer), p: Portal = Depends(portal)) -> Response:
    return _edit(p, caller, name, lambda s: edits.rm_vm(s, vm)[0], f"VM {vm} removed")


@router.post("/slices/{name}/links")
def add_link(
    name: str,
    a: str = Form(...),
    b: str = Form(...),
    vlan: str = Form(""),
    caller: Caller = Depends(page_writer),
    p: Portal = Depends(portal),
) -> Response:
    pin: int | None = None
    if vlan.strip():
        if not vlan.strip().isdigit():
            raise Refused(422, f"vlan: a VLAN number of the slice's pool, got {vlan!r}")
        pin = int(vlan)
    what = f"link {a} -- {b}" + (f" on VLAN {pin}" if pin is not None else "")
    return _edit(p, caller, name, lambda s: edits.add_link(s, a, b, pin), what)


@router.post("/slices/{name}/links/rm")
def rm_link(
    name: str,
    a: str = Form(...),
    b: str = Form(...),
    caller: Caller = Depends(page_writer),
    p: Portal = Depends(portal),
) -> Response:
    return _edit(p, caller, name, lambda s: edits.rm_link(s, a, b), f"link {a} -- {b} removed")


@router.post("/slices/{name}/topology")
def add_preset(
    name: str,
    preset: str = Form(...),
    vms: str = Form(...),
    caller: Caller = Depends(page_writer),
    p: Portal = Depends(portal),
) -> Response:
    try:
        ids = [int(v) for v in vms.replace(",", " ").split()]
    except ValueError:
        raise Refused(422, f"vms: VM ids separated by spaces, got {vms!r}") from None
    return _edit(p, caller, name, lambda s: edits.add_topology(s, preset, ids), preset)


@router.post("/slices/{name}/config")
def import_config(
    name: str,
    yaml_text: str = Form("", alias="yaml"),
    caller: Caller = Depends(page_writer),
    p: Portal = Depends(portal),
) -> Response:
    """Import into the slice: its section replaced by the YAML's, under the rules of every edit."""
    p.replace_yaml(caller.user, name, yaml_text)
    return back(f"/slices/{name}")


@router.post("/slices/{name}/destroy")
def destroy(name: str, caller: Caller = Depends(page_writer), p: Portal = Depends(portal)) -> Response:
    try:
        p.remove(caller.user, name, lambda _line: None)
    except SliceError as exc:
        raise Refused(409, str(exc)) from None
    return back("/")


@router.get("/slices/{name}/console/{vm}")
def console_page(
    name: str, vm: int, request: Request, caller: Caller = Depends(page_caller), p: Portal = Depends(portal)
) -> HTMLResponse:
    p.describe(caller.user, name)
    return page(request, "console.html", caller, name=name, vm=vm)


@router.get("/admin/users")
def admin_users(
    request: Request, caller: Caller = Depends(page_admin), p: Portal = Depends(portal)
) -> HTMLResponse:
    with p.session() as db:
        users = list(db.scalars(select(User).order_by(User.name)))
        limits = {u.name: accounts.limits_of(db, u) for u in users}
    return page(request, "users.html", caller, users=users, limits=limits)


@router.post("/admin/users")
def admin_add_user(
    name: str = Form(...),
    role: str = Form(...),
    password: str = Form(...),
    caller: Caller = Depends(page_admin_writer),
    p: Portal = Depends(portal),
) -> Response:
    admin.add_user(p, caller.user, name, role, password)
    return back("/admin/users")


@router.post("/admin/quotas")
def admin_quota(
    name: str = Form(...),
    vms: int = Form(...),
    vcpus: int = Form(...),
    memory_mb: int = Form(...),
    links: int = Form(...),
    slices: int = Form(...),
    caller: Caller = Depends(page_admin_writer),
    p: Portal = Depends(portal),
) -> Response:
    admin.set_quota(p, caller.user, name, accounts.Limits(vms, vcpus, memory_mb, links, slices))
    return back("/admin/users")


@router.get("/admin/audit")
def admin_audit(
    request: Request, caller: Caller = Depends(page_admin), p: Portal = Depends(portal)
) -> HTMLResponse:
    with p.session() as db:
        entries = audit.entries(db, limit=500)
    return page(request, "audit.html", caller, entries=entries)


@router.get("/groups")
def groups_page(
    request: Request, caller: Caller = Depends(page_teacher), p: Portal = Depends(portal)
) -> HTMLResponse:
    with p.session() as db:
        found = accounts.groups_of(db, caller.user)
    return page(request, "groups.html", caller, groups=found)


@router.post("/groups")
def add_group(
    name: str = Form(...), caller: Caller = Depends(page_teacher_writer), p: Portal = Depends(portal)
) -> Response:
    admin.add_group(p, caller.user, name)
    return back("/groups")


@router.post("/groups/{group}/members")
def add_member(
    group: str,
    name: str = Form(...),
    caller: Caller = Depends(page_teacher_writer),
    p: Portal = Depends(portal),
) -> Response:
    admin.add_member(p, caller.user, group, name)
    return back("/groups")


@router.get("/admin/images")
def admin_images(
    request: Request, caller: Caller = Depends(page_admin), p: Portal = Depends(portal)
) -> HTMLResponse:
    return page(
        request,
        "images.html",
        caller,
        images=registry.listed(p),
        presets=p.cloud.launches,
        files=registry.files(registry.image_dirs(p.cloud, p.project)),
        size_text=size_text,
    )


@router.post("/admin/images")
def admin_add_image(
    name: str = Form(...),
    path: str = Form(...),
    description: str = Form(""),
    caller: Caller = Depends(page_admin_writer),
    p: Portal = Depends(portal),
) -> Response:
    registry.add(p, caller.user, name, path, description)
    return back("/admin/images")


@router.post("/admin/images/{image}/rm")
def admin_rm_image(
    image: str, caller: Caller = Depends(page_admin_writer), p: Portal = Depends(portal)
) -> Response:
    registry.remove(p, caller.user, image)
    return back("/admin/images")

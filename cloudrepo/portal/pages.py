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
from cloudrepo.portal import accounts, audit, ratelimit, sessions, status
from cloudrepo.portal.auth import Caller, check_csrf
from cloudrepo.portal.db import User
from cloudrepo.portal.deps import page_admin, page_caller, page_teacher, portal, signer
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
def logout(request: Request, csrf: str = Form(""), caller: Caller = Depends(page_caller)) -> Response:
    check_csrf(request, caller, csrf)
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
    request: Request,
    name: str = Form(""),
    csrf: str = Form(""),
    caller: Caller = Depends(page_caller),
    p: Portal = Depends(portal),
) -> Response:
    check_csrf(request, caller, csrf)
    p.create(caller.user, {"name": name})
    return back(f"/slices/{name}")


@router.post("/slices/import")
def import_slice(
    request: Request,
    name: str = Form(""),
    yaml_text: str = Form("", alias="yaml"),
    csrf: str = Form(""),
    caller: Caller = Depends(page_caller),
    p: Portal = Depends(portal),
) -> Response:
    check_csrf(request, caller, csrf)
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


def _edit(
    request: Request, caller: Caller, p: Portal, name: str, csrf: str, change: Any, what: str
) -> Response:
    check_csrf(request, caller, csrf)
    p.edit(caller.user, name, change, what)
    return back(f"/slices/{name}")


@router.post("/slices/{name}/vms")
def add_vm(
    name: str,
    request: Request,
    id: int = Form(...),
    worker: str = Form(...),
    data_interfaces: int = Form(0),
    internet: bool = Form(False),
    boot: str = Form(""),
    csrf: str = Form(""),
    caller: Caller = Depends(page_caller),
    p: Portal = Depends(portal),
) -> Response:
    def change(s: dict[str, Any]) -> dict[str, Any]:
        out = edits.add_vm(s, id, worker, data_interfaces, internet)
        if boot.startswith(IMAGE_BOOT):
            out["vms"][-1]["launch"] = {"image": boot.removeprefix(IMAGE_BOOT)}
        elif boot:
            out["vms"][-1]["launch"] = boot
        return out

    return _edit(request, caller, p, name, csrf, change, f"VM {id} added on {worker}")


@router.post("/slices/{name}/vms/{vm}/rm")
def rm_vm(
    name: str,
    vm: int,
    request: Request,
    csrf: str = Form(""),
    caller: Caller = Depends(page_caller),
    p: Portal = Depends(portal),
) -> Response:
    return _edit(request, caller, p, name, csrf, lambda s: edits.rm_vm(s, vm)[0], f"VM {vm} removed")


@router.post("/slices/{name}/links")
def add_link(
    name: str,
    request: Request,
    a: str = Form(...),
    b: str = Form(...),
    vlan: str = Form(""),
    csrf: str = Form(""),
    caller: Caller = Depends(page_caller),
    p: Portal = Depends(portal),
) -> Response:
    pin: int | None = None
    if vlan.strip():
        if not vlan.strip().isdigit():
            raise Refused(422, f"vlan: a VLAN number of the slice's pool, got {vlan!r}")
        pin = int(vlan)
    what = f"link {a} -- {b}" + (f" on VLAN {pin}" if pin is not None else "")
    return _edit(request, caller, p, name, csrf, lambda s: edits.add_link(s, a, b, pin), what)


@router.post("/slices/{name}/links/rm")
def rm_link(
    name: str,
    request: Request,
    a: str = Form(...),
    b: str = Form(...),
    csrf: str = Form(""),
    caller: Caller = Depends(page_caller),
    p: Portal = Depends(portal),
) -> Response:
    return _edit(request, caller, p, name, csrf, lambda s: edits.rm_link(s, a, b), f"link {a} -- {b} removed")


@router.post("/slices/{name}/topology")
def add_preset(
    name: str,
    request: Request,
    preset: str = Form(...),
    vms: str = Form(...),
    csrf: str = Form(""),
    caller: Caller = Depends(page_caller),
    p: Portal = Depends(portal),
) -> Response:
    try:
        ids = [int(v) for v in vms.replace(",", " ").split()]
    except ValueError:
        raise Refused(422, f"vms: VM ids separated by spaces, got {vms!r}") from None
    return _edit(request, caller, p, name, csrf, lambda s: edits.add_topology(s, preset, ids), preset)


@router.post("/slices/{name}/destroy")
def destroy(
    name: str,
    request: Request,
    csrf: str = Form(""),
    caller: Caller = Depends(page_caller),
    p: Portal = Depends(portal),
) -> Response:
    check_csrf(request, caller, csrf)
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
    request: Request,
    name: str = Form(...),
    role: str = Form(...),
    password: str = Form(...),
    csrf: str = Form(""),
    caller: Caller = Depends(page_admin),
    p: Portal = Depends(portal),
) -> Response:
    check_csrf(request, caller, csrf)
    with p.session() as db:
        try:
            accounts.add_user(db, name, role, password)
        except accounts.AccountError as exc:
            raise Refused(422, str(exc)) from None
        audit.record(db, caller.user.name, "user add", None, "ok", f"{name} ({role})")
    return back("/admin/users")


@router.post("/admin/quotas")
def admin_quota(
    request: Request,
    name: str = Form(...),
    vms: int = Form(...),
    vcpus: int = Form(...),
    memory_mb: int = Form(...),
    links: int = Form(...),
    slices: int = Form(...),
    csrf: str = Form(""),
    caller: Caller = Depends(page_admin),
    p: Portal = Depends(portal),
) -> Response:
    check_csrf(request, caller, csrf)
    with p.session() as db:
        try:
            accounts.set_quota(
                db, accounts.find_user(db, name), accounts.Limits(vms, vcpus, memory_mb, links, slices)
            )
        except accounts.AccountError as exc:
            raise Refused(422, str(exc)) from None
        audit.record(db, caller.user.name, "quota set", None, "ok", name)
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
    request: Request,
    name: str = Form(...),
    csrf: str = Form(""),
    caller: Caller = Depends(page_teacher),
    p: Portal = Depends(portal),
) -> Response:
    check_csrf(request, caller, csrf)
    with p.session() as db:
        try:
            accounts.add_group(db, caller.user, name)
        except accounts.AccountError as exc:
            raise Refused(422, str(exc)) from None
        audit.record(db, caller.user.name, "group add", None, "ok", name)
    return back("/groups")


@router.post("/groups/{group}/members")
def add_member(
    group: str,
    request: Request,
    name: str = Form(...),
    csrf: str = Form(""),
    caller: Caller = Depends(page_teacher),
    p: Portal = Depends(portal),
) -> Response:
    check_csrf(request, caller, csrf)
    with p.session() as db:
        try:
            found = accounts.find_group(db, group)
            if found.teacher_id != caller.user.id and caller.user.role != "admin":
                raise Refused(403, f"group {group!r} is not yours")
            accounts.add_member(db, found, accounts.find_user(db, name))
        except accounts.AccountError as exc:
            raise Refused(422, str(exc)) from None
        audit.record(db, caller.user.name, "member add", None, "ok", f"{name} to {group}")
    return back("/groups")


@router.get("/admin/images")
def admin_images(
    request: Request, caller: Caller = Depends(page_admin), p: Portal = Depends(portal)
) -> HTMLResponse:
    return page(request, "images.html", caller, images=p.images(), presets=p.cloud.launches)

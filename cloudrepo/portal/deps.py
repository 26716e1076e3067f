"""What every route needs: the portal, the signer, and the caller (401 for the API, the login page for
pages; a page's form carries the session's CSRF token)."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import Depends, Form, HTTPException, Request

from cloudrepo.portal.auth import Caller, check_csrf, identify, require_role
from cloudrepo.portal.service import Portal
from cloudrepo.portal.sessions import Signer


class NeedLogin(Exception):
    """A page asked without a session: the login page answers."""


def portal(request: Request) -> Portal:
    return request.app.state.portal


def signer(request: Request) -> Signer:
    return request.app.state.signer


def caller_or_none(request: Request) -> Caller | None:
    with portal(request).db() as db:
        return identify(request, db, signer(request))


def api_caller(request: Request) -> Caller:
    found = caller_or_none(request)
    if found is None:
        raise HTTPException(
            401, "log in or give a token: Authorization: Bearer TOKEN", headers={"WWW-Authenticate": "Bearer"}
        )
    return found


def page_caller(request: Request) -> Caller:
    found = caller_or_none(request)
    if found is None:
        raise NeedLogin()
    return found


def page_admin(request: Request) -> Caller:
    found = page_caller(request)
    require_role(found, "admin")
    return found


def page_teacher(request: Request) -> Caller:
    found = page_caller(request)
    require_role(found, "teacher", "admin")
    return found


def form_writer(who: Callable[[Request], Caller]) -> Callable[..., Caller]:
    """A dependency of a page's state-changing form: the caller `who` finds (who may use the route),
    whose form carries the session's CSRF token (403 else)."""

    def checked(request: Request, csrf: str = Form(""), caller: Caller = Depends(who)) -> Caller:
        check_csrf(request, caller, csrf)
        return caller

    return checked


page_writer = form_writer(page_caller)
page_admin_writer = form_writer(page_admin)
page_teacher_writer = form_writer(page_teacher)

"""What every route needs: the portal, the signer, and the caller (401 for the API, the login page for
pages)."""

from __future__ import annotations

from fastapi import HTTPException, Request

from cloudrepo.portal.auth import Caller, identify, require_role
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

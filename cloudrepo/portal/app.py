"""The portal's ASGI application: the API, the pages, the static files and the console WebSocket."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import WebSocketRoute

from cloudrepo.engine import SliceError
from cloudrepo.portal import api, pages, webconsole
from cloudrepo.portal.auth import identify
from cloudrepo.portal.deps import NeedLogin
from cloudrepo.portal.service import Portal, Refused
from cloudrepo.portal.sessions import Signer

HERE = Path(__file__).resolve().parent
VENDOR = HERE / "assets" / "node_modules" / "@xterm"
"""The vendored xterm.js (`make setup`: scripts/install-assets), served at /vendor/."""
CONSOLE_PATH = "/api/slices/{name}/vms/{vm}/console"
ROUTERS = (api.router, pages.router)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def route_table(app: FastAPI) -> set[tuple[str, str]]:
    """Every (method, path) the app answers ("WS" for its WebSockets), static files and the schema's
    documentation pages aside."""
    found: set[tuple[str, str]] = set()
    for route in [*app.router.routes, *(r for router in ROUTERS for r in router.routes)]:
        path = getattr(route, "path", None)
        if isinstance(route, WebSocketRoute):
            found.add(("WS", route.path))
        elif path is not None and path not in ("/docs", "/docs/oauth2-redirect", "/redoc"):
            found |= {(m, path) for m in getattr(route, "methods", None) or () if m != "HEAD"}
    return found


def create_app(portal: Portal, signer: Signer) -> FastAPI:
    app = FastAPI(title="cloudrepo portal", version="1", docs_url=None, redoc_url=None)
    app.state.portal = portal
    app.state.signer = signer
    for router in ROUTERS:
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")
    if VENDOR.is_dir():
        app.mount("/vendor", StaticFiles(directory=str(VENDOR)), name="vendor")

    def problem(
        request: Request, status: int, problems: list[str], headers: dict[str, str] | None = None
    ) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": problems}, status_code=status, headers=headers)
        caller = None
        with portal.db() as db:
            caller = identify(request, db, signer)
        return pages.page(request, "error.html", caller, status, problems=problems)

    @app.exception_handler(Refused)
    def _refused(request: Request, exc: Refused) -> Response:
        return problem(request, exc.status, exc.problems)

    @app.exception_handler(SliceError)
    def _slice_error(request: Request, exc: SliceError) -> Response:
        return problem(request, 409, [str(exc)])

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return problem(request, exc.status_code, [str(exc.detail)], dict(exc.headers or {}))

    @app.exception_handler(NeedLogin)
    def _login(_request: Request, _exc: NeedLogin) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.websocket(CONSOLE_PATH)
    async def console_socket(ws: WebSocket, name: str, vm: int) -> None:
        """A VM's serial console for a caller allowed on its slice; refused (close 4401/4403/4409) else."""
        origin = ws.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != ws.headers.get("host"):
            await ws.close(code=4403, reason="cross-origin console refused")
            return
        with portal.db() as db:
            caller = identify(ws, db, signer)
        if caller is None:
            await ws.close(code=4401, reason="log in first")
            return
        try:
            portal.describe(caller.user, name)
        except Refused as exc:
            await ws.close(code=4403 if exc.status == 403 else 4404, reason=exc.problems[0][:120])
            return
        loop = asyncio.get_running_loop()
        try:
            client, chan, first = await loop.run_in_executor(
                None, webconsole.open_console, portal.slices, name, vm, caller.user.name
            )
        except SliceError as exc:
            await ws.accept()
            await ws.send_text(f"\r\n{exc}\r\n")
            await ws.close(code=4409, reason=str(exc)[:120])
            return
        await ws.accept()
        try:
            if first:
                await ws.send_bytes(first)
            await webconsole.pump(ws, chan)
        finally:
            client.close()

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app

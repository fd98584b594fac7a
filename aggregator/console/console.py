"""Console: the admin console's routes under /admin/ (on when AGGREGATOR_ADMIN_TOKEN is set), and its watch.

Pages are GETs that change nothing and render without JavaScript; every change is a POST from a
signed-in session that carries the session's CSRF token and this console's own Origin, and
answers 303 back to the page (htmx swaps in the page's live part; without script the browser
loads it). See docs/console.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from aggregator.admin import set_tool_block
from aggregator.console.calls import CallHistory
from aggregator.console.guard import client_address, same_origin, secure
from aggregator.console.live import LiveStream
from aggregator.console.pages import BASE, PAGES, Pages
from aggregator.console.sessions import COOKIE, LIFETIME, ConsoleSession, ConsoleSessions
from aggregator.console.watch import ClusterWatch
from aggregator.gateway import Gateway
from shared.reconnect import request_reconnect
from shared.store.protocols import StoreUnavailable

__all__ = ["Console"]

log = logging.getLogger("aggregator.console")

_STATIC = Path(__file__).parent / "static"
_TYPES = {".js": "text/javascript", ".css": "text/css", ".txt": "text/plain"}
_FORM_LIMIT = 8192
_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
        "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    ),
    "referrer-policy": "same-origin",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
}
_BLOCKS = {"block": True, "unblock": False, "reset": None}

Handler = Callable[[Request, ConsoleSession], Awaitable[Response]]


class Console:
    def __init__(self, gateway: Gateway, token: str) -> None:
        self.gateway = gateway
        self.sessions = ConsoleSessions(token, gateway.stores)
        self.watch = ClusterWatch(gateway.stores.heartbeats, CallHistory())
        self.pages = Pages(gateway, self.watch)
        self.live = LiveStream(gateway, self.pages, self.sessions)
        self.static = {path.name: path.read_bytes() for path in _STATIC.iterdir() if path.suffix in _TYPES}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.watch.refresh()
        self._task = asyncio.create_task(self.watch.run(), name="console-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def routes(self) -> list[Route]:
        routes = [
            Route("/admin", _to_console, methods=["GET"]),
            Route(f"{BASE}/sign-in", self._sign_in_page, methods=["GET"]),
            Route(f"{BASE}/sign-in", self._sign_in, methods=["POST"]),
            Route(f"{BASE}/sign-out", self._signed_in(self._sign_out), methods=["POST"]),
            Route(f"{BASE}/events", self._signed_in(self.live.events), methods=["GET"]),
            Route(f"{BASE}/static/{{name}}", self._static, methods=["GET"]),
            Route(f"{BASE}/tools/{{action}}", self._signed_in(self._toggle), methods=["POST"]),
            Route(f"{BASE}/backends/reconnect", self._signed_in(self._reconnect), methods=["POST"]),
        ]
        for page, (_, path) in PAGES.items():
            routes.append(Route(path, self._signed_in(self._page(page)), methods=["GET"]))
        return routes

    # -- pages ------------------------------------------------------------------------------------

    def _page(self, page: str) -> Handler:
        async def show(request: Request, session: ConsoleSession) -> Response:
            params = {key: request.query_params.get(key, "") for key in ("q", "server") if page == "tools"}
            return _html(await self.pages.full(page, params, session.csrf))

        return show

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = self.static.get(name)
        if body is None:
            return PlainTextResponse("not found", status_code=404)
        kind = _TYPES[Path(name).suffix]
        return Response(body, media_type=kind, headers={"cache-control": "public, max-age=3600"})

    # -- signing in and out -------------------------------------------------------------------

    async def _sign_in_page(self, request: Request) -> Response:
        return self._sign_in_form()

    def _sign_in_form(self, error: str | None = None, status: int = 200) -> Response:
        return _html(self.pages.render("sign_in.html", base=BASE, error=error), status)

    async def _sign_in(self, request: Request) -> Response:
        if not same_origin(request, self.gateway.settings.allowed_origins):
            return _refused("a sign-in must come from this console's own page (Origin)")
        form = await _form(request)
        client = client_address(request)
        try:
            if not await self.sessions.may_try(client):
                return self._sign_in_form("Too many failed sign-ins from this address; wait a few minutes.", 429)
            if form is None or not self.sessions.token_matches(form.get("token", "")):
                await self.sessions.failed(client)
                log.warning("a console sign-in from %s failed", client)
                return self._sign_in_form("That is not the admin token.", 401)
        except StoreUnavailable as exc:
            return self._sign_in_form(f"Cannot sign in while the shared store is unavailable ({exc}).", 503)
        _, cookie = self.sessions.issue()
        log.info("console sign-in from %s", client)
        response = RedirectResponse("/admin/", 303, headers=_HEADERS)
        response.set_cookie(
            COOKIE, cookie, max_age=LIFETIME, path="/admin/", secure=secure(request), httponly=True, samesite="strict"
        )
        return response

    async def _sign_out(self, request: Request, session: ConsoleSession) -> Response:
        response = RedirectResponse(f"{BASE}/sign-in", 303, headers=_HEADERS)
        response.delete_cookie(COOKIE, path="/admin/", secure=secure(request), httponly=True, samesite="strict")
        try:
            await self.sessions.sign_out(session)
        except StoreUnavailable as exc:
            log.warning("a console session was signed out in the browser only: the store is unavailable (%s)", exc)
        return response

    def _signed_in(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        """The handler, for a signed-in session only; a POST also needs its CSRF token and our Origin."""

        async def guarded(request: Request) -> Response:
            session = await self.sessions.find(request.cookies.get(COOKIE))
            if request.method in ("GET", "HEAD"):
                if session is not None:
                    return await handler(request, session)
                if request.url.path.endswith("/events"):
                    return PlainTextResponse("sign in first", status_code=401)
                return RedirectResponse(f"{BASE}/sign-in", 303)
            if not same_origin(request, self.gateway.settings.allowed_origins):
                return _refused("a change must come from this console's own page (Origin)")
            form = await _form(request)
            if session is None or form is None or not self.sessions.csrf_ok(session, form.get("csrf")):
                return _refused("sign in again: the session or its CSRF token is missing or wrong")
            request.state.form = form
            return await handler(request, session)

        return guarded

    # -- actions ------------------------------------------------------------------------------

    async def _toggle(self, request: Request, session: ConsoleSession) -> Response:
        action = request.path_params["action"]
        tool = request.state.form.get("tool", "")
        if action not in _BLOCKS or not tool:
            return PlainTextResponse("use block, unblock or reset, with a tool", status_code=404)
        try:
            await set_tool_block(self.gateway, tool, _BLOCKS[action])
        except StoreUnavailable as exc:
            return _unavailable(f"cannot {action} {tool} now", exc)
        log.info("console: %s %s", action, tool, extra={"tool": tool})
        return _back(request)

    async def _reconnect(self, request: Request, session: ConsoleSession) -> Response:
        server = request.state.form.get("server", "")
        if server not in self.gateway.specs:
            return PlainTextResponse(f"no backend named {server!r}", status_code=404)
        try:
            await request_reconnect(self.gateway.stores.messages, server)
        except StoreUnavailable as exc:
            return _unavailable(f"cannot ask to reconnect {server} now", exc)
        log.info("console: reconnect %s", server, extra={"server": server})
        return _back(request)


async def _to_console(request: Request) -> Response:
    return RedirectResponse("/admin/", 308)


async def _form(request: Request) -> dict[str, str] | None:
    """A small urlencoded form body, or None (too large or of another type)."""
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _FORM_LIMIT:
            return None
    return dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))


def _back(request: Request) -> Response:
    """303 to the page the action came from (only a console page: no open redirect)."""
    target = request.state.form.get("next", "")
    if not (target.startswith(f"{BASE}/") or target == "/admin/") or "//" in target or "\\" in target:
        target = "/admin/"
    return RedirectResponse(target, 303, headers=_HEADERS)


def _html(body: str, status: int = 200) -> Response:
    return HTMLResponse(body, status_code=status, headers=_HEADERS)


def _refused(why: str) -> Response:
    return PlainTextResponse(f"refused: {why}", status_code=403, headers=_HEADERS)


def _unavailable(what: str, exc: StoreUnavailable) -> Response:
    return PlainTextResponse(
        f"{what}: the shared store is unavailable ({exc}); retry when it is up",
        status_code=503,
        headers={**_HEADERS, "retry-after": "5"},
    )

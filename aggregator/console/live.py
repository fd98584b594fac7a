"""LiveStream: a page's live part over server-sent events, sent again whenever it renders differently.

Each open page holds one stream (`/admin/ui/events?page=...`). Once a second the stream renders
the page's live part from this replica's state (its registry follows the store's events within
a second; heartbeats are read every two) and sends it as event `live` when it changed, which
htmx's SSE extension swaps into `#live`. Polling the replica's own memory keeps this simple and
its cost bounded: at most MAX_STREAMS renders a second, only while pages are open. A stream ends
when the gateway stops or the session does (signed out, expired).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse

from aggregator.console.pages import PAGES, Pages
from aggregator.console.sessions import COOKIE, ConsoleSession, ConsoleSessions
from aggregator.gateway import Gateway

__all__ = ["MAX_STREAMS", "LiveStream"]

MAX_STREAMS = 32
_TICK = 1.0
_SESSION_CHECK = 10.0
_KEEPALIVE = 15.0


class LiveStream:
    def __init__(self, gateway: Gateway, pages: Pages, sessions: ConsoleSessions) -> None:
        self.gateway = gateway
        self.pages = pages
        self.sessions = sessions
        self.open = 0

    async def events(self, request: Request, session: ConsoleSession) -> Response:
        page = request.query_params.get("page", "")
        if page not in PAGES:
            return PlainTextResponse(f"unknown page {page!r}", status_code=404)
        if self.open >= MAX_STREAMS:
            return PlainTextResponse("too many open console pages; close some", status_code=503)
        params = {key: request.query_params.get(key, "") for key in ("q", "server") if page == "tools"}
        cookie = request.cookies.get(COOKIE)
        return StreamingResponse(
            self._stream(page, params, session, cookie),
            media_type="text/event-stream",
            headers={"cache-control": "no-store", "x-accel-buffering": "no"},
        )

    async def _stream(
        self, page: str, params: dict[str, str], session: ConsoleSession, cookie: str | None
    ) -> AsyncIterator[bytes]:
        self.open += 1
        try:
            yield b"retry: 2000\n\n"
            last = ""  # the first render is sent too: the page may have changed since it was loaded
            checked = sent = time.monotonic()
            while not self.gateway.closing.is_set():
                now = time.monotonic()
                if now - checked >= _SESSION_CHECK:
                    if await self.sessions.find(cookie) is None:
                        return
                    checked = now
                fragment = await self.pages.live(page, params, session.csrf)
                if fragment != last:
                    last, sent = fragment, now
                    yield _event("live", fragment)
                elif now - sent >= _KEEPALIVE:
                    sent = now
                    yield b": keep-alive\n\n"
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.gateway.closing.wait(), _TICK)
        finally:
            self.open -= 1


def _event(name: str, data: str) -> bytes:
    lines = "".join(f"data: {line}\n" for line in data.splitlines())
    return f"event: {name}\n{lines}\n".encode()

"""Pages: the console's templates, and the values each page renders (views.py) by page name."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from aggregator.console import views
from aggregator.console.watch import ClusterWatch
from aggregator.gateway import Gateway

__all__ = ["PAGES", "Pages"]

BASE = "/admin/ui"
PAGES = {
    "overview": ("Overview", "/admin/"),
    "backends": ("Backends", f"{BASE}/backends"),
    "tools": ("Tools", f"{BASE}/tools"),
    "calls": ("Calls", f"{BASE}/calls"),
    "auth": ("Auth", f"{BASE}/auth"),
}
"""Page name -> (title, path), in navigation order."""


class Pages:
    def __init__(self, gateway: Gateway, watch: ClusterWatch) -> None:
        self.gateway = gateway
        self.watch = watch
        self.env = Environment(
            loader=FileSystemLoader(Path(__file__).parent / "templates"),
            autoescape=select_autoescape(default=True),
            undefined=StrictUndefined,
        )
        self.env.filters.update(utc=_utc, age=_age, ms=_ms, percent=_percent)

    def render(self, template: str, **values: Any) -> str:
        return self.env.get_template(template).render(**values)

    async def values(self, page: str, params: dict[str, str]) -> dict[str, Any]:
        """What `page` shows now; `params` are its query (the tools filter)."""
        gateway = self.gateway
        if page == "overview":
            return await views.overview(gateway, self.watch, (await gateway.readiness())[1])
        if page == "backends":
            return views.backends(gateway, (await gateway.readiness())[1])
        if page == "tools":
            return views.tools(gateway, params.get("q", ""), params.get("server", ""))
        if page == "calls":
            return views.calls(self.watch)
        return await views.auth(gateway)

    async def live(self, page: str, params: dict[str, str], csrf: str) -> str:
        """The part of a page that updates itself (the inside of its `#live`)."""
        values = await self.values(page, params)
        return self.render(f"live/{page}.html", csrf=csrf, here=here(page, params), **values)

    async def full(self, page: str, params: dict[str, str], csrf: str) -> str:
        values = await self.values(page, params)
        query = urlencode({"page": page, **params})
        return self.render(
            f"{page}.html",
            page=page,
            pages=PAGES,
            title=PAGES[page][0],
            base=BASE,
            csrf=csrf,
            here=here(page, params),
            replica=self.gateway.replica_id,
            events=f"{BASE}/events?{query}",
            **values,
        )


def here(page: str, params: dict[str, str]) -> str:
    """The page's own address, where an action sends the browser back to."""
    path = PAGES[page][1]
    query = urlencode({k: v for k, v in params.items() if v})
    return f"{path}?{query}" if query else path


def _utc(seconds: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(seconds)) if seconds else "-"


def _age(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h {seconds % 3600 // 60}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _ms(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _percent(share: float) -> str:
    return f"{share * 100:.1f}%"

"""`/admin`: run-time tool blocking (ToggleToolBlock) and a status view, behind a bearer token.

Enabled only when AGGREGATOR_ADMIN_TOKEN is set. Overrides are written to the BlockStore and
announced as a `tool_block_changed` event, so they hold on every replica.
"""

from __future__ import annotations

import hmac
import logging
import time
from typing import Any

import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aggregator.gateway import Gateway
from shared.events import ToolUpdateEvent
from shared.store.protocols import AuthServerMetrics, StoreUnavailable

__all__ = ["admin_routes", "set_tool_block"]

log = logging.getLogger("aggregator.admin")


async def set_tool_block(gateway: Gateway, tool: str, blocked: bool | None) -> None:
    """Set (True/False) or clear (None) a tool's override and tell every replica."""
    await gateway.stores.blocks.set(tool, blocked)
    await gateway.stores.events.publish(
        ToolUpdateEvent(type="tool_block_changed", tool=tool, origin=gateway.replica_id)
    )


def admin_routes(gateway: Gateway, token: str) -> list[Route]:
    expected = f"Bearer {token}".encode()

    def authorized(request: Request) -> bool:
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, expected)

    def denied() -> Response:
        return JSONResponse(
            {"error": "unauthorized: send Authorization: Bearer <AGGREGATOR_ADMIN_TOKEN>"},
            status_code=401,
            headers={"www-authenticate": "Bearer"},
        )

    async def tools(request: Request) -> Response:
        if not authorized(request):
            return denied()
        catalog = gateway.registry.catalog
        rows = [
            {
                "name": route.exposed,
                "original": route.original,
                "servers": list(route.servers),
                "blocked": route.blocked is not None,
                **({"reason": route.blocked} if route.blocked else {}),
            }
            for route in sorted(catalog.tool_routes.values(), key=lambda r: r.exposed)
        ]
        return JSONResponse({"yolo": gateway.settings.yolo, "tools": rows})

    async def toggle(request: Request) -> Response:
        if not authorized(request):
            return denied()
        name = request.path_params["name"]
        action = request.path_params["action"]
        if action not in ("block", "unblock", "reset"):
            return JSONResponse({"error": f"unknown action {action!r}; use block, unblock or reset"}, status_code=404)
        known = name in gateway.registry.catalog.tool_routes
        blocked = {"block": True, "unblock": False, "reset": None}[action]
        try:
            await set_tool_block(gateway, name, blocked)
        except StoreUnavailable as exc:
            log.warning("could not %s %s: the store is unavailable: %s", action, name, exc)
            return JSONResponse(
                {"error": f"cannot {action} {name} now: the shared store is unavailable ({exc}); retry when it is up"},
                status_code=503,
                headers={"retry-after": "5"},
            )
        return JSONResponse({"tool": name, "override": blocked, "known": known})

    async def servers(request: Request) -> Response:
        if not authorized(request):
            return denied()
        _, body = await gateway.readiness()
        return JSONResponse(body)

    async def auth_metrics(request: Request) -> Response:
        """The seed's AuthMetricsSummary, cluster-wide (from the store)."""
        if not authorized(request):
            return denied()
        try:
            per_server = await gateway.stores.auth_metrics.all()
        except StoreUnavailable as exc:
            return JSONResponse({"error": f"the shared store is unavailable ({exc}); retry when it is up"}, 503)
        return JSONResponse(auth_summary(per_server))

    return [
        Route("/admin/tools", tools, methods=["GET"]),
        Route("/admin/tools/{name}/{action}", toggle, methods=["POST"]),
        Route("/admin/servers", servers, methods=["GET"]),
        Route("/admin/auth/metrics", auth_metrics, methods=["GET"]),
    ]


def auth_summary(per_server: list[AuthServerMetrics]) -> dict[str, Any]:
    """AuthMetricsSummary: totals over every backend, and each backend's counters (times as RFC 3339)."""
    views = [
        {
            key: _rfc3339(value) if key.startswith("last_") else value
            for key, value in msgspec.structs.asdict(metrics).items()
            if value is not None
        }
        for metrics in per_server
    ]

    def total(field: str) -> int:
        return sum(int(getattr(metrics, field)) for metrics in per_server)

    return {
        "total_login_attempts": total("login_attempts"),
        "total_login_successes": total("login_successes"),
        "total_login_failures": total("login_failures"),
        "total_rate_limit_blocks": total("rate_limit_blocks"),
        "total_logout_attempts": total("logout_attempts"),
        "total_logout_successes": total("logout_successes"),
        "per_server_metrics": views,
    }


def _rfc3339(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))

"""`/admin`: run-time tool blocking (ToggleToolBlock) and a status view, behind a bearer token.

Enabled only when AGGREGATOR_ADMIN_TOKEN is set. Overrides are written to the BlockStore and
announced as a `tool_block_changed` event, so they hold on every replica.
"""

from __future__ import annotations

import hmac
import logging

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aggregator.gateway import Gateway
from shared.events import ToolUpdateEvent
from shared.store.protocols import StoreUnavailable

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

    return [
        Route("/admin/tools", tools, methods=["GET"]),
        Route("/admin/tools/{name}/{action}", toggle, methods=["POST"]),
        Route("/admin/servers", servers, methods=["GET"]),
    ]

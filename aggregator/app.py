"""Builds the ASGI application from a Config: routes, lifespan, middleware.

`/mcp` is dispatched before Starlette's router (it is the hot path); everything else
(`/sse`, `/message`, `/healthz`, `/readyz`, `/metrics`, `/admin`) is ordinary Starlette.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aggregator.admin import admin_routes
from aggregator.gateway import Gateway
from aggregator.middleware import check_host_and_origin
from aggregator.protocol.errors import InternalError
from aggregator.transport.http_common import Receive, Scope, Send, send_error
from aggregator.transport.legacy_sse import LegacySseEndpoints
from aggregator.transport.streamable_http import StreamableHttpEndpoint
from shared.config import Config
from shared.store.factory import open_stores
from shared.store.protocols import Stores

__all__ = ["GatewayApp", "create_app"]

log = logging.getLogger("aggregator.app")


class GatewayApp:
    """The ASGI app. The Gateway exists between lifespan start and stop."""

    def __init__(
        self,
        config: Config,
        *,
        redis_url: str | None = None,
        control_plane: bool = True,
        admin_token: str | None = None,
        stores: Stores | None = None,
    ) -> None:
        self.config = config
        self.redis_url = redis_url
        self.control_plane = control_plane
        self.admin_token = admin_token
        self._given_stores = stores
        self.gateway: Gateway | None = None
        self._mcp: StreamableHttpEndpoint | None = None
        self._sse: LegacySseEndpoints | None = None
        routes = [
            Route("/healthz", self._healthz, methods=["GET"]),
            Route("/readyz", self._readyz, methods=["GET"]),
            Route("/metrics", self._metrics, methods=["GET"]),
            Route("/sse", self._legacy_stream, methods=["GET"]),
            Route("/message", self._legacy_message, methods=["POST"]),
        ]
        self._starlette = Starlette(routes=routes, lifespan=self._lifespan)
        self._app = check_host_and_origin(self._dispatch, config.aggregator)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in ("/mcp", "/mcp/"):
            if self._mcp is None:
                await send_error(send, InternalError("The gateway is starting or stopping; retry shortly"), status=503)
                return
            await self._mcp(scope, receive, send)
            return
        await self._starlette(scope, receive, send)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        stores = self._given_stores or await open_stores(self.redis_url)
        gateway = Gateway(self.config, stores, control_plane=self.control_plane)
        await gateway.start()
        self.gateway = gateway
        self._mcp = StreamableHttpEndpoint(gateway)
        self._sse = LegacySseEndpoints(gateway)
        if self.admin_token:
            for route in admin_routes(gateway, self.admin_token):
                self._starlette.router.routes.append(route)
        try:
            yield
        finally:
            self._mcp = None
            await gateway.stop()
            self.gateway = None
            if self._given_stores is None:
                await stores.aclose()

    async def _healthz(self, request: Request) -> Response:
        return JSONResponse({"status": "alive"})

    async def _readyz(self, request: Request) -> Response:
        if self.gateway is None:
            return JSONResponse({"status": "starting"}, status_code=503)
        ok, body = await self.gateway.readiness()
        return JSONResponse(body, status_code=200 if ok else 503)

    async def _metrics(self, request: Request) -> Response:
        if self.gateway is None:
            return Response(status_code=503)
        return Response(self.gateway.telemetry.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def _legacy_stream(self, request: Request) -> Response:
        assert self._sse is not None
        return await self._sse.stream(request)

    async def _legacy_message(self, request: Request) -> Response:
        assert self._sse is not None
        return await self._sse.message(request)


def create_app(config: Config, **options: object) -> GatewayApp:
    return GatewayApp(config, **options)  # type: ignore[arg-type]

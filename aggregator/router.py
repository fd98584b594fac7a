"""Router: method name -> handler, one table per protocol era, and the one place errors become replies."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from msgspec import Raw

from aggregator.calls import CallContext
from aggregator.handlers import AggregatorServer, method_table
from shared.protocol.errors import GatewayError, InternalError, MethodNotFound
from shared.protocol.jsonrpc import Params, ResultResponse, encode, error_response
from shared.store.protocols import StoreUnavailable

__all__ = ["Handler", "Router"]

log = logging.getLogger("aggregator.router")

Handler = Callable[[CallContext, Params], Awaitable[Raw]]


class Router:
    def __init__(self, server: AggregatorServer) -> None:
        self.server = server
        self._stateless: dict[str, Handler] = method_table(server, stateless=True)
        self._session: dict[str, Handler] = method_table(server, stateless=False)

    async def dispatch(self, ctx: CallContext, params: Params) -> tuple[bytes, int | None]:
        """Run the handler; return the encoded response and the error code, if any."""
        try:
            handler = (self._stateless if ctx.stateless else self._session).get(ctx.method)
            if handler is None:
                raise MethodNotFound(_unknown_method(ctx))
            result = await handler(ctx, params)
            return encode(ResultResponse(id=ctx.request_id, result=result)), None
        except GatewayError as exc:
            return error_response(ctx.request_id, exc), exc.code
        except StoreUnavailable as exc:
            log.warning("%s failed: shared state unavailable: %s", ctx.method, exc)
            error = InternalError(f"{ctx.method} needs shared state that is unavailable right now ({exc}); retry")
            return error_response(ctx.request_id, error), error.code
        except Exception as exc:
            log.exception("handling %s failed", ctx.method)
            error = InternalError(f"Internal error while handling {ctx.method}: {type(exc).__name__}")
            return error_response(ctx.request_id, error), error.code


def _unknown_method(ctx: CallContext) -> str:
    if ctx.stateless and ctx.method in ("initialize", "ping", "logging/setLevel", "resources/subscribe"):
        return f"Method not found: {ctx.method} does not exist in protocol {ctx.protocol_version}"
    if not ctx.stateless and ctx.method in ("server/discover", "subscriptions/listen"):
        return f"Method not found: {ctx.method} needs protocol 2026-07-28; this session speaks {ctx.protocol_version}"
    return f"Method not found: {ctx.method}"

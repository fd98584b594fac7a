"""RelaySink: carries a backend's messages about one call back to the client that made it.

Progress tokens are the gateway's own on the backend side (many clients share one backend
connection); the client's token is put back here. A backend's own requests (sampling,
elicitation, roots) reach a 2025-11-25 client as requests on its stream; for a 2026-07-28
client they are queued for the MRTR round trip (see mrtr.py). A client that did not declare
the capability is never asked: the backend gets an error instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from msgspec import Raw

from aggregator.calls import CallContext
from shared.protocol import versions as v
from shared.protocol.errors import MissingClientCapability
from shared.protocol.jsonrpc import Params, encode
from shared.protocol.vocabulary import CLIENT_CAPABILITY_FOR

__all__ = ["Ask", "RelaySink"]


class Ask:
    """One backend question waiting for the client's answer."""

    __slots__ = ("future", "method", "params")

    def __init__(self, method: str, params: Raw) -> None:
        self.method = method
        self.params = params
        self.future: asyncio.Future[Raw] = asyncio.get_running_loop().create_future()


class RelaySink:
    """`queue_asks`: a 2026-07-28 client's call; the backend's questions are held in `asks` for
    its MRTR round trip, and `on_ask` (set by whoever waits on the call) is called as each arrives."""

    def __init__(self, ctx: CallContext, *, queue_asks: bool = False) -> None:
        self.ctx = ctx
        self.wants_progress = ctx.progress_token is not None
        self.asks: list[Ask] | None = [] if queue_asks else None
        self.on_ask: Callable[[], object] | None = None

    async def notify(self, method: str, params: Params) -> None:
        ctx = self.ctx
        if ctx.channel is None:
            return
        if method == "notifications/progress":
            token = ctx.progress_token
            if token is None:
                return
            params = {**params, v.PROGRESS_TOKEN: token}
        elif method == "notifications/message" and ctx.stateless and v.LOG_LEVEL not in ctx.meta:
            return  # 2026-07-28: log messages only for requests that asked for them
        await ctx.channel.notify(method, Raw(encode(params)))

    async def ask(self, method: str, params: Raw) -> Raw:
        ctx = self.ctx
        capability = CLIENT_CAPABILITY_FOR.get(method)
        if capability is None or capability not in ctx.client_capabilities:
            raise MissingClientCapability(
                f"the calling client did not declare the {capability or method} capability, so the gateway "
                f"cannot pass {method} on to it",
                {"requiredCapabilities": {capability or method: {}}},
            )
        if self.asks is not None:
            ask = Ask(method, params)
            self.asks.append(ask)
            if self.on_ask is not None:
                self.on_ask()
            return await ask.future
        if ctx.channel is None:
            raise MissingClientCapability(f"the calling client has no stream open to receive {method}")
        return await ctx.channel.request(method, params)

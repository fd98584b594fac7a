"""Forwarder: the hop itself, a request passed to the backend that serves it and its answer passed back.

Bytes go through untouched, stamped for the backend's protocol version. Where the client's and
the backend's eras differ, the questions a backend asks mid-call are bridged (input_required.py).
A protected backend is reached over the calling user's own connection, its token made fresh first.
"""

from __future__ import annotations

import asyncio

from msgspec import UNSET, Raw

from aggregator.auth.user_backends import UserBackends
from aggregator.calls import CallContext
from aggregator.input_required import InputBroker, drive_input_required, is_gateway_state
from aggregator.relay import RelaySink
from shared.backends.base import BackendConnection
from shared.pool import SessionConnectionPool
from shared.protocol import versions as v
from shared.protocol.errors import GatewayError, error_from_wire
from shared.protocol.jsonrpc import Message, Params

__all__ = ["Forwarder", "backend_error", "stamp"]

_COMPLETE = b'"resultType":"complete"'
_CACHE_HINT = b'"ttlMs":0,"cacheScope":"private"'


class Forwarder:
    def __init__(self, pool: SessionConnectionPool, broker: InputBroker) -> None:
        self.pool = pool
        self.broker = broker
        self.users: UserBackends | None = None

    async def forward(self, ctx: CallContext, server: str, method: str, params: Params, *, binding: str) -> Raw:
        """The backend's result for the request; GatewayError with the backend's error otherwise."""
        if self.users is not None:
            await self.users.prepare(ctx.principal, server)
            conn = await self.pool.get(server, self.users.scope(ctx.principal, server))
        else:
            conn = await self.pool.get(server)
        if ctx.stateless and not conn.stateless:
            outcome = await self._forward_bridged(ctx, conn, method, params, binding)
            if isinstance(outcome, Raw):
                return outcome  # input_required: the client answers and retries
            reply = outcome
        else:
            reply = await self._forward_direct(ctx, conn, method, params)
        if reply.error is not UNSET:
            raise backend_error(conn, reply)
        assert reply.result is not UNSET
        if ctx.stateless and not conn.stateless:
            return stamp(reply.result, method == "resources/read")
        return reply.result

    async def _forward_bridged(
        self, ctx: CallContext, conn: BackendConnection, method: str, params: Params, binding: str
    ) -> Message | Raw:
        """A 2026-07-28 client, a handshake-era backend: the backend's questions become input_required."""
        if is_gateway_state(params):
            return await self.broker.resume(ctx, params, binding, timeout=conn.spec.timeout + 5.0)
        for key in ("inputResponses", "requestState"):
            params.pop(key, None)
        sink = RelaySink(ctx, queue_asks=True)
        task = asyncio.create_task(conn.request(method, params, sink=sink, client_meta=ctx.meta))
        return await self.broker.run(ctx, task, sink, binding)

    async def _forward_direct(self, ctx: CallContext, conn: BackendConnection, method: str, params: Params) -> Message:
        capabilities = ctx.forward_capabilities() if conn.stateless else None
        sink = RelaySink(ctx) if _needs_sink(ctx, conn) else None
        reply = await conn.request(method, params, sink=sink, client_meta=ctx.meta, client_capabilities=capabilities)
        if sink is None or not conn.stateless or ctx.stateless:
            return reply
        relay = sink  # a handshake-era client, a 2026-07-28 backend: the gateway asks the client, then retries

        async def again(retry: Params) -> Message:
            return await conn.request(method, retry, sink=relay, client_meta=ctx.meta, client_capabilities=capabilities)

        return await drive_input_required(reply, params, relay, again)


def _needs_sink(ctx: CallContext, conn: BackendConnection) -> bool:
    """Whether the backend may send anything about this call before answering.

    A 2026-07-28 backend sends only progress and (when asked) log messages, and questions come
    back in its result; older backends may ask the client mid-call at any time.
    """
    if ctx.channel is None:
        return False
    if not conn.stateless or not ctx.stateless:
        return True
    return v.PROGRESS_TOKEN in ctx.meta or v.LOG_LEVEL in ctx.meta


def backend_error(conn: BackendConnection, reply: Message) -> GatewayError:
    """The backend's JSON-RPC error, passed on with its code."""
    return error_from_wire(reply.error if reply.error is not UNSET else None, who=f"backend {conn.server!r}")


def stamp(result: Raw, cacheable: bool) -> Raw:
    """Add 2026-07-28's required result fields to a result from an older backend."""
    body = bytes(result).strip()
    if not body.startswith(b"{"):
        return result
    fields = _COMPLETE + (b"," + _CACHE_HINT if cacheable else b"")
    rest = body[1:].lstrip()
    return Raw(b"{" + fields + (b"" if rest.startswith(b"}") else b",") + rest)

"""AggregatorServer: the MCP methods the gateway answers, over whatever transport.

Lists come from the local catalog; calls are forwarded to the backend that owns the name,
with the name translated back and the payload passed through as bytes. Methods raise
GatewayError; the router turns that into a JSON-RPC error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from aggregator.auth.sign_in import SignIn
from aggregator.auth.user_backends import UserBackends
from aggregator.calls import CallContext
from aggregator.catalog import Catalog, ItemRoute, ToolRoute
from aggregator.forwarding import Forwarder, backend_error, stamp
from aggregator.internal_tools import InternalTools
from aggregator.protocol.sessions import SessionManager
from aggregator.protocol.stateless import SUPPORTED_VERSIONS
from aggregator.registry import ServerRegistry
from aggregator.replica_link import SessionStreams
from shared.config import Config
from shared.pool import SessionConnectionPool
from shared.protocol import versions as v
from shared.protocol.errors import (
    BackendError,
    GatewayError,
    HeaderMismatch,
    InvalidParams,
    UnknownTool,
)
from shared.protocol.jsonrpc import Params, param_str, raw
from shared.protocol.vocabulary import LOG_LEVELS, decode_header_value, kind_for_method
from shared.telemetry import Telemetry

__all__ = ["CAPABILITIES_OFFERED_TO_CLIENTS", "AggregatorServer"]

log = logging.getLogger("aggregator.handlers")

CAPABILITIES_OFFERED_TO_CLIENTS: dict[str, Any] = {
    "tools": {"listChanged": True},
    "prompts": {"listChanged": True},
    "resources": {"subscribe": True, "listChanged": True},
    "completions": {},
    "logging": {},
}

UNKNOWN_TOOL = "unknown"
"""The one label under which calls to names the catalog does not know are counted."""


class AggregatorServer:
    def __init__(
        self,
        config: Config,
        registry: ServerRegistry,
        pool: SessionConnectionPool,
        sessions: SessionManager,
        streams: SessionStreams,
        telemetry: Telemetry,
        forwarder: Forwarder,
    ) -> None:
        self.config = config
        self.settings = config.aggregator
        self.registry = registry
        self.pool = pool
        self.sessions = sessions
        self.streams = streams
        self.telemetry = telemetry
        self.forwarder = forwarder
        self.sign_in: SignIn | None = None
        self.internal = InternalTools()
        self._list_cache: dict[tuple[int, str, str | None, bool], Raw] = {}

    @property
    def users(self) -> UserBackends | None:
        """Set (on the forwarder) when some backend needs users' own tokens: each user then sees their own catalog."""
        return self.forwarder.users

    # -- identity --------------------------------------------------------------------------------

    def instructions(self) -> str:
        parts = ["This gateway aggregates the tools, prompts and resources of several MCP servers."]
        for name, record in sorted(self.registry.catalog.servers.items()):
            if record.state == "up" and record.instructions:
                parts.append(f"[{name}] {record.instructions}")
        return "\n".join(parts)

    async def discover(self, ctx: CallContext, params: Params) -> Raw:
        return raw(
            {
                "resultType": "complete",
                "supportedVersions": SUPPORTED_VERSIONS,
                "capabilities": CAPABILITIES_OFFERED_TO_CLIENTS,
                "instructions": self.instructions(),
                "ttlMs": self.settings.list_ttl_ms,
                "cacheScope": "public",
                "_meta": {v.SERVER_INFO: v.GATEWAY_INFO},
            }
        )

    async def initialize(self, ctx: CallContext, params: Params) -> Raw:
        record = await self.sessions.create(params, subject=ctx.subject, session_id=ctx.transport_session)
        ctx.session = record
        ctx.protocol_version = record.protocol_version
        return raw(
            {
                "protocolVersion": record.protocol_version,
                "capabilities": CAPABILITIES_OFFERED_TO_CLIENTS,
                "serverInfo": v.GATEWAY_INFO,
                "instructions": self.instructions(),
            }
        )

    async def ping(self, ctx: CallContext, params: Params) -> Raw:
        return raw({})

    async def set_log_level(self, ctx: CallContext, params: Params) -> Raw:
        level = param_str(params, "level")
        if level not in LOG_LEVELS:
            raise InvalidParams(f"Invalid params: level must be one of {', '.join(LOG_LEVELS)}")
        if ctx.session is not None:
            await self.sessions.update(msgspec.structs.replace(ctx.session, log_level=level))
        return raw({})

    # -- lists ------------------------------------------------------------------------------------

    async def catalog(self, ctx: CallContext) -> Catalog:
        """What the caller sees: the shared catalog, or (protected backends configured) the user's own."""
        if self.users is None or ctx.principal is None:
            return self.registry.catalog
        return await self.users.view(ctx.principal)

    async def list_items(self, ctx: CallContext, params: Params) -> Raw:
        list_kind = kind_for_method(ctx.method)
        assert list_kind is not None, "the method table routes only list methods here"
        kind = list_kind.key
        cursor = param_str(params, "cursor", required=False)
        catalog = await self.catalog(ctx)
        key = (catalog.serial, kind, cursor, ctx.stateless)
        cached = self._list_cache.get(key)
        if cached is not None:
            return cached
        items, next_cursor = catalog.page(kind, cursor, self.settings.page_size)
        result: dict[str, Any] = {kind: items}
        if next_cursor is not None:
            result["nextCursor"] = next_cursor
        if ctx.stateless:
            scope = "public" if self.users is None else "private"  # per-user lists must not be shared by caches
            result.update(resultType="complete", ttlMs=self.settings.list_ttl_ms, cacheScope=scope)
        if len(self._list_cache) > 256:
            self._list_cache.clear()
        encoded = self._list_cache[key] = raw(result)
        return encoded

    # -- forwarding -------------------------------------------------------------------------------

    async def call_tool(self, ctx: CallContext, params: Params) -> Raw:
        name = param_str(params, "name")
        assert name is not None
        started = time.perf_counter()
        server, outcome = "-", "error"
        catalog = await self.catalog(ctx)
        # Metric labels and log fields take only names the catalog knows: a client must not mint series.
        label = name if name in catalog.tool_routes else UNKNOWN_TOOL
        try:
            route = self._tool(catalog, name)
            if route.internal:
                arguments = _decode_object(params.get("arguments"), "arguments")
                answer = await self.internal.call(ctx, name, arguments, params)
                outcome = "tool_error" if answer.get("isError") else "ok"
                return raw(_complete(ctx) | answer)
            server = self._route_arguments(route, params)
            if route.header_map and ctx.param_headers is not None:
                _check_param_headers(route, params, ctx.param_headers)
            params["name"] = raw(route.original)
            try:
                result = await self.forwarder.forward(ctx, server, "tools/call", params, binding=f"tools/call:{name}")
            except BackendError as exc:
                outcome = "backend_error"
                return raw({"content": [{"type": "text", "text": exc.message}], "isError": True} | _complete(ctx))
            outcome = "tool_error" if b'"isError":true' in bytes(result) else "ok"
            return result
        except GatewayError as exc:
            outcome = "blocked" if exc.data and isinstance(exc.data, dict) and exc.data.get("blocked") else "error"
            raise
        finally:
            self.telemetry.tool_call(label, server, outcome, time.perf_counter() - started)

    async def get_prompt(self, ctx: CallContext, params: Params) -> Raw:
        return await self._forward_item(ctx, params, "prompts/get", "name", (await self.catalog(ctx)).prompt)

    async def read_resource(self, ctx: CallContext, params: Params) -> Raw:
        return await self._forward_item(ctx, params, "resources/read", "uri", (await self.catalog(ctx)).resource)

    async def _forward_item(
        self, ctx: CallContext, params: Params, method: str, key: str, route_of: Callable[[str], ItemRoute]
    ) -> Raw:
        """Forward a request that names one prompt or resource, under the name its backend knows."""
        target = param_str(params, key)
        assert target is not None
        route = route_of(target)
        if route.internal:  # auth://status
            assert self.sign_in is not None
            status = await self.sign_in.status(ctx.principal)
            return stamp(status, True) if ctx.stateless else status
        params[key] = raw(route.original)
        return await self.forwarder.forward(ctx, route.server, method, params, binding=f"{method}:{target}")

    async def complete(self, ctx: CallContext, params: Params) -> Raw:
        ref = _decode_object(params.get("ref"), "ref")
        kind = ref.get("type")
        route: ItemRoute
        if kind == "ref/prompt" and isinstance(ref.get("name"), str):
            route = self.registry.catalog.prompt(ref["name"])
            ref["name"] = route.original
        elif kind == "ref/resource" and isinstance(ref.get("uri"), str):
            route = self.registry.catalog.template(ref["uri"])
            ref["uri"] = route.original
        else:
            raise InvalidParams(
                'Invalid params: ref must be {"type": "ref/prompt", "name"} or {"type": "ref/resource", "uri"}'
            )
        params["ref"] = raw(ref)
        return await self.forwarder.forward(
            ctx, route.server, "completion/complete", params, binding="completion/complete"
        )

    async def subscribe(self, ctx: CallContext, params: Params) -> Raw:
        uri = param_str(params, "uri")
        assert uri is not None
        await self.watch(uri)
        if ctx.session is not None:
            await self._set_subscriptions(ctx, {*ctx.session.subscriptions, uri})
        return raw({})

    async def watch(self, uri: str) -> None:
        """Make sure the owning backend reports updates of `uri` (for subscribe and listen)."""
        await self._backend_subscribe(self.registry.catalog.resource(uri), subscribe=True)

    async def unsubscribe(self, ctx: CallContext, params: Params) -> Raw:
        uri = param_str(params, "uri")
        assert uri is not None
        if ctx.session is not None:
            await self._set_subscriptions(ctx, set(ctx.session.subscriptions) - {uri})
        return raw({})

    async def _set_subscriptions(self, ctx: CallContext, uris: set[str]) -> None:
        """Remember a session's subscriptions and tell the replica holding its stream."""
        assert ctx.session is not None
        ctx.session = msgspec.structs.replace(ctx.session, subscriptions=sorted(uris))
        await self.sessions.update(ctx.session)
        await self.streams.set_subscriptions(ctx.session.id, uris)

    async def _backend_subscribe(self, route: ItemRoute, *, subscribe: bool) -> None:
        conn = await self.pool.get(route.server)
        resources = conn.capabilities.get("resources") or {}
        if not resources.get("subscribe"):
            return
        if conn.stateless:
            await conn.watch_resource(route.original)
            return
        method = "resources/subscribe" if subscribe else "resources/unsubscribe"
        reply = await conn.request(method, {"uri": raw(route.original)})
        if reply.error is not UNSET:
            raise backend_error(conn, reply)

    def _route_arguments(self, route: ToolRoute, params: Params) -> str:
        """The backend for this call; removes a family's instance argument before forwarding."""
        if route.instance_arg is None:
            return route.servers[0]
        arguments = _decode_object(params.get("arguments"), "arguments")
        server = route.server_for(arguments.pop(route.instance_arg, None))
        params["arguments"] = raw(arguments)
        return server

    def _tool(self, catalog: Catalog, name: str) -> ToolRoute:
        """The route of `name`; for a tool of a protected backend the user does not see, how to get it."""
        try:
            return catalog.tool(name)
        except UnknownTool:
            if self.users is not None:
                hint = self.users.hint_for(name)
                if hint is not None:
                    raise UnknownTool(f"Unknown tool: {name!r}. {hint}", {"tool": name}) from None
            raise


def _complete(ctx: CallContext) -> dict[str, Any]:
    return {"resultType": "complete"} if ctx.stateless else {}


def _decode_object(value: Raw | None, name: str) -> dict[str, Any]:
    if value is None:
        return {}
    try:
        decoded = msgspec.json.decode(value)
    except msgspec.DecodeError:  # pragma: no cover - came from a successful decode
        decoded = None
    if not isinstance(decoded, dict):
        raise InvalidParams(f"Invalid params: {name} must be a JSON object")
    return decoded


def _check_param_headers(route: ToolRoute, params: Params, headers: Mapping[str, str]) -> None:
    """2026-07-28 `x-mcp-header`: mirrored argument headers must match the arguments."""
    arguments = _decode_object(params.get("arguments"), "arguments")
    for path, token in route.header_map:
        value: Any = arguments
        for key in path:
            value = value.get(key) if isinstance(value, dict) else None
        header = headers.get(f"mcp-param-{token.lower()}")
        if value is None:
            continue
        if header is None:
            raise HeaderMismatch(f"Header mismatch: Mcp-Param-{token} is required for argument {'.'.join(path)}")
        expected = ("true" if value else "false") if isinstance(value, bool) else str(value)
        actual = decode_header_value(header)
        if actual != expected and not _same_number(actual, value):
            raise HeaderMismatch(f"Header mismatch: Mcp-Param-{token} {actual!r} does not match argument {expected!r}")


def _same_number(header: str, value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return float(header) == float(value)
    except ValueError:
        return False


# Method tables: which handler serves which method, per protocol era.
def method_table(server: AggregatorServer, *, stateless: bool) -> dict[str, Any]:
    common = {
        "tools/list": server.list_items,
        "tools/call": server.call_tool,
        "prompts/list": server.list_items,
        "prompts/get": server.get_prompt,
        "resources/list": server.list_items,
        "resources/templates/list": server.list_items,
        "resources/read": server.read_resource,
        "completion/complete": server.complete,
    }
    if stateless:
        return {**common, "server/discover": server.discover}
    return {
        **common,
        "initialize": server.initialize,
        "ping": server.ping,
        "logging/setLevel": server.set_log_level,
        "resources/subscribe": server.subscribe,
        "resources/unsubscribe": server.unsubscribe,
    }

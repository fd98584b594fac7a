"""MetaTools: a small tool surface for agents that would drown in hundreds of aggregated tools.

With `aggregator.exposure: meta` (or `both`) an agent lists, filters and describes what the
gateway offers, and reaches it through `call_tool`, `get_resource` and `get_prompt`. Those three
re-enter the gateway's own handlers with the outer call's context, so routing, the denylist (its
refusals word for word), families, the user's own view, timeouts, metrics, logs, progress and
cancellation are exactly those of the direct request. The others read the caller's catalog.
Each answer is JSON text plus the same data as structuredContent (meta_tool_specs.py has the
schemas); `call_tool` answers the called tool's own result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Iterable
from fnmatch import fnmatchcase
from typing import Any

import msgspec
from msgspec import Raw

from aggregator.calls import CallContext
from aggregator.catalog import Catalog
from aggregator.handlers import AggregatorServer
from aggregator.internal_tools import answer, optional_string, string_argument
from aggregator.meta_tool_specs import META_TOOL_NAMES, META_TOOLS
from shared.protocol.errors import InvalidParams, UnknownTool
from shared.protocol.jsonrpc import Params, raw

__all__ = ["MetaTools"]

_Tool = Callable[[CallContext, dict[str, Any], Params], Awaitable[dict[str, Any]]]
_CONTINUATION = ("inputResponses", "requestState")
"""What a 2026-07-28 client's retry after input_required adds to its request: the inner request needs it too."""
_ENVELOPE = ("resultType", "ttlMs", "cacheScope")
"""A 2026-07-28 result's own fields: not part of the data an inner request answered."""


class MetaTools:
    def __init__(self, server: AggregatorServer) -> None:
        self.server = server
        self._tools: dict[str, _Tool] = {name: getattr(self, name) for name in META_TOOL_NAMES}  # one method each

    async def call(self, ctx: CallContext, name: str, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        """Serve one meta-tool (an InternalTool)."""
        return await self._tools[name](ctx, arguments, params)

    # -- tools ------------------------------------------------------------------------------------

    async def list_tools(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        catalog = await self.server.catalog(ctx)
        sign_in = self.server.sign_in
        awaiting = sign_in.awaiting(ctx.principal) if sign_in is not None else []
        return answer({"tools": [_summary(tool) for tool in catalog.backend_tools], "signInRequired": awaiting})

    async def describe_tool(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        name = string_argument(arguments, "name")
        catalog = await self.server.catalog(ctx)
        catalog.tool(name)  # an unknown or blocked tool: the refusal a direct call gets
        tool = _find((*catalog.backend_tools, *self.server.registry.core.tools, *META_TOOLS), "name", name)
        if tool is None:  # a name only another part serves, which does not describe it here
            raise UnknownTool(f"Unknown tool: {name!r}", {"tool": name})
        return answer({"tool": tool})

    async def filter_tools(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        pattern = string_argument(arguments, "pattern").casefold().replace("[", "[[]")  # only * and ? are special
        text = (optional_string(arguments, "description") or "").casefold()
        server = optional_string(arguments, "server")
        catalog = await self.server.catalog(ctx)
        found = [
            _summary(tool)
            for tool in catalog.backend_tools
            if fnmatchcase(tool["name"].casefold(), pattern)
            and text in str(tool.get("description") or "").casefold()
            and (server is None or server in catalog.tool_routes[tool["name"]].servers)
        ]
        return answer({"tools": found})

    async def call_tool(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        """The called tool's result as a direct tools/call gets it, with structuredContent always there."""
        name = string_argument(arguments, "name")
        if name in META_TOOL_NAMES:
            raise InvalidParams(f"Invalid params: call {name} itself, not through call_tool", {"tool": name})
        tool_arguments = arguments.get("arguments")
        if tool_arguments is not None and not isinstance(tool_arguments, dict):
            raise InvalidParams("Invalid params: 'arguments' must be an object")
        inner_params = {**_continuation(params), "name": raw(name), "arguments": raw(tool_arguments or {})}
        # The client mirrored call_tool's own arguments into Mcp-Param headers, never the called tool's.
        inner = dataclasses.replace(ctx, param_headers=None)
        result: dict[str, Any] = msgspec.json.decode(await self.server.call_tool(inner, inner_params))
        if result.get("resultType") != "input_required":
            result.setdefault("structuredContent", {"content": result.get("content", [])})
        return result

    async def list_core_tools(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        return answer({"tools": list(self.server.registry.core.tools)})

    # -- resources and prompts --------------------------------------------------------------------

    async def list_resources(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        catalog = await self.server.catalog(ctx)
        return answer({"resources": catalog.resources, "resourceTemplates": catalog.resource_templates})

    async def describe_resource(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        uri = string_argument(arguments, "uri")
        catalog = await self.server.catalog(ctx)
        found = _find(catalog.resources, "uri", uri) or _find(
            catalog.resource_templates, "uriTemplate", _template(catalog, uri)
        )
        if found is None:
            raise InvalidParams(f"Resource not found: {uri!r}", {"uri": uri})
        return answer({"resource": found})

    async def get_resource(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        inner_params = {**_continuation(params), "uri": raw(string_argument(arguments, "uri"))}
        return _relayed(await self.server.read_resource(ctx, inner_params))

    async def list_prompts(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        return answer({"prompts": (await self.server.catalog(ctx)).prompts})

    async def describe_prompt(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        name = string_argument(arguments, "name")
        catalog = await self.server.catalog(ctx)
        catalog.prompt(name)  # an unknown prompt: the refusal prompts/get gives
        return answer({"prompt": _find(catalog.prompts, "name", name)})

    async def get_prompt(self, ctx: CallContext, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        inner_params = {**_continuation(params), "name": raw(string_argument(arguments, "name"))}
        if arguments.get("arguments") is not None:
            inner_params["arguments"] = raw(arguments["arguments"])
        return _relayed(await self.server.get_prompt(ctx, inner_params))


def _relayed(result: Raw) -> dict[str, Any]:
    """An inner request's result as this tool's; input_required as it is (the client answers, then retries)."""
    decoded: dict[str, Any] = msgspec.json.decode(result)
    if decoded.get("resultType") == "input_required":
        return decoded
    return answer({key: value for key, value in decoded.items() if key not in _ENVELOPE})


def _continuation(params: Params) -> Params:
    return {key: params[key] for key in _CONTINUATION if key in params}


def _summary(tool: dict[str, Any]) -> dict[str, Any]:
    return {key: tool[key] for key in ("name", "title", "description") if key in tool}


def _find(items: Iterable[dict[str, Any]], key: str, value: str | None) -> dict[str, Any] | None:
    return next((item for item in items if item.get(key) == value), None) if value is not None else None


def _template(catalog: Catalog, uri: str) -> str | None:
    """The exposed template `uri` is, or matches."""
    for route in catalog.template_routes:
        if uri == route.exposed or route.pattern.fullmatch(uri):
            return route.exposed
    return None

"""InternalTools: the gateway's own tools (sign-in, meta-tools), each served by the part that owns it.

The catalog marks their routes `internal`, so deciding that a call stays in the gateway costs
the one route lookup every call makes; only then is the serving part looked up here. Each part
registers its names and one handler; a new kind of tool (workflows) plugs in the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from aggregator.calls import CallContext
from shared.protocol.errors import UnknownTool
from shared.protocol.jsonrpc import Params

__all__ = ["InternalTool", "InternalTools"]

InternalTool = Callable[[CallContext, str, dict[str, Any], Params], Awaitable[dict[str, Any]]]
"""Serves one call: (context, tool name, its arguments, the request's params) -> the tool result."""


class InternalTools:
    def __init__(self) -> None:
        self._handlers: dict[str, InternalTool] = {}

    def register(self, names: Iterable[str], handler: InternalTool) -> None:
        for name in names:
            self._handlers[name] = handler

    async def call(self, ctx: CallContext, name: str, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        """The tool result; UnknownTool when no part serves `name` here (its part is not running)."""
        handler = self._handlers.get(name)
        if handler is None:
            raise UnknownTool(f"Unknown tool: {name!r}", {"tool": name})
        return await handler(ctx, name, arguments, params)

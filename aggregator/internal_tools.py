"""InternalTools: the gateway's own tools (sign-in, meta-tools), each served by the part that owns it.

The catalog marks their routes `internal`, so deciding that a call stays in the gateway costs
the one route lookup every call makes; only then is the serving part looked up here. Each part
registers its names and one handler; a part whose names change at run time (workflows)
unregisters the ones it no longer serves.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import msgspec

from aggregator.calls import CallContext
from shared.protocol.errors import InvalidParams, UnknownTool
from shared.protocol.jsonrpc import Params

__all__ = ["InternalTool", "InternalTools", "answer", "optional_string", "string_argument"]

InternalTool = Callable[[CallContext, str, dict[str, Any], Params], Awaitable[dict[str, Any]]]
"""Serves one call: (context, tool name, its arguments, the request's params) -> the tool result."""


class InternalTools:
    def __init__(self) -> None:
        self._handlers: dict[str, InternalTool] = {}

    def register(self, names: Iterable[str], handler: InternalTool) -> None:
        for name in names:
            self._handlers[name] = handler

    def unregister(self, names: Iterable[str]) -> None:
        for name in names:
            self._handlers.pop(name, None)

    async def call(self, ctx: CallContext, name: str, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        """The tool result; UnknownTool when no part serves `name` here (its part is not running)."""
        handler = self._handlers.get(name)
        if handler is None:
            raise UnknownTool(f"Unknown tool: {name!r}", {"tool": name})
        return await handler(ctx, name, arguments, params)


def answer(data: dict[str, Any], *, is_error: bool = False) -> dict[str, Any]:
    """A tool result holding `data` twice: as JSON text, and as structuredContent for clients that read that."""
    text = [{"type": "text", "text": msgspec.json.encode(data).decode()}]
    return {"content": text, "structuredContent": data} | ({"isError": True} if is_error else {})


def string_argument(arguments: dict[str, Any], key: str) -> str:
    value = optional_string(arguments, key)
    if value is None:
        raise InvalidParams(f"Invalid params: missing required string {key!r}")
    return value


def optional_string(arguments: dict[str, Any], key: str) -> str | None:
    value = arguments.get(key)
    if value is not None and not isinstance(value, str):
        raise InvalidParams(f"Invalid params: {key!r} must be a string")
    return value

"""Catalog: one consistent view of everything a replica exposes, and where each exposed name routes.

Built whole by the ServerRegistry on every change and never mutated afterwards, so the request
path reads `registry.catalog` without locks: one dict lookup routes a call. Lists are served in
pages whose cursors say which list and where to go on.
"""

from __future__ import annotations

import base64
import itertools
import re
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shared.protocol.errors import InvalidCursor, InvalidParams, ToolBlocked, UnknownTool
from shared.records import ServerRecord

__all__ = ["Catalog", "CoreItems", "ItemRoute", "TemplateRoute", "ToolRoute"]


_SERIALS = itertools.count(1)


@dataclass(frozen=True, slots=True)
class CoreItems:
    """The gateway's own tools and resources, listed in every catalog beside the backends'."""

    tools: tuple[dict[str, Any], ...] = ()
    resources: tuple[dict[str, Any], ...] = ()
    meta_tools: tuple[dict[str, Any], ...] = ()
    """Listed instead of the backends' tools (`exposure: meta`) or beside them (`both`); unused when native."""
    workflows: tuple[dict[str, Any], ...] = ()
    """The workflows' tools (`workflow_<name>`), listed with the backends' tools; they change at run time."""


@dataclass(frozen=True, slots=True)
class ToolRoute:
    """Where an exposed tool name goes."""

    exposed: str
    original: str
    servers: tuple[str, ...]
    instance_arg: str | None = None
    blocked: str | None = None
    header_map: tuple[tuple[tuple[str, ...], str], ...] = ()
    internal: bool = False
    """The gateway's own tool (core_auth_login, a meta-tool, a workflow): served here, no backend."""

    def server_for(self, instance: Any) -> str:
        """The backend for a call; family tools need a valid instance."""
        if self.instance_arg is None:
            return self.servers[0]
        choices = ", ".join(self.servers)
        if instance is None:
            raise InvalidParams(
                f"Tool {self.exposed!r} needs the argument {self.instance_arg!r} (which instance); one of: {choices}",
                {"argument": self.instance_arg, "choices": list(self.servers)},
            )
        if not isinstance(instance, str) or instance not in self.servers:
            raise InvalidParams(
                f"Unknown instance {instance!r} for {self.instance_arg!r} of tool {self.exposed!r}; one of: {choices}",
                {"argument": self.instance_arg, "choices": list(self.servers)},
            )
        return instance


@dataclass(frozen=True, slots=True)
class ItemRoute:
    server: str
    original: str
    internal: bool = False
    """The gateway's own resource (auth://status): served here, no backend."""


@dataclass(frozen=True, slots=True)
class TemplateRoute:
    pattern: re.Pattern[str]
    server: str
    exposed: str
    original: str
    strip: str  # prefix to remove from a concrete URI before forwarding ("" for scheme URIs)


@dataclass(slots=True)
class Catalog:
    """One consistent view of everything exposed; replaced whole on every change."""

    version: int = 0
    serial: int = field(default_factory=lambda: next(_SERIALS))
    """Unique per catalog built (views of one version share it, serials tell them apart)."""
    tools: list[dict[str, Any]] = field(default_factory=list)
    """What tools/list shows, as `aggregator.exposure` says."""
    backend_tools: list[dict[str, Any]] = field(default_factory=list)
    """The backends' tools a client may call (blocked ones left out) and the workflows: what list_tools shows."""
    prompts: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    resource_templates: list[dict[str, Any]] = field(default_factory=list)
    tool_routes: dict[str, ToolRoute] = field(default_factory=dict)
    prompt_routes: dict[str, ItemRoute] = field(default_factory=dict)
    resource_routes: dict[str, ItemRoute] = field(default_factory=dict)
    template_routes: list[TemplateRoute] = field(default_factory=list)
    segments: dict[str, str] = field(default_factory=dict)  # "{prefix}_{segment}_" -> server
    servers: dict[str, ServerRecord] = field(default_factory=dict)
    _pages: dict[tuple[str, int], tuple[list[dict[str, Any]], str | None]] = field(default_factory=dict)

    def tool(self, name: str) -> ToolRoute:
        route = self.tool_routes.get(name)
        if route is None:
            raise UnknownTool(f"Unknown tool: {name!r}", {"tool": name})
        if route.blocked:
            raise ToolBlocked(
                f"Tool {name!r} is blocked: {route.blocked}. To allow it, run `aggregator tools unblock {name}`, "
                "add it to aggregator.denylist.allow, or start the gateway with --yolo (development only).",
                {"tool": name, "blocked": True},
            )
        return route

    def prompt(self, name: str) -> ItemRoute:
        route = self.prompt_routes.get(name)
        if route is None:
            raise UnknownTool(f"Unknown prompt: {name!r}", {"prompt": name})
        return route

    def resource(self, uri: str) -> ItemRoute:
        """Route a concrete resource URI: listed resource, template match, or name prefix."""
        route = self.resource_routes.get(uri)
        if route is not None:
            return route
        matches = [t for t in self.template_routes if t.pattern.fullmatch(uri)]
        servers = sorted({t.server for t in matches})
        if len(servers) > 1:
            raise InvalidParams(f"Resource URI {uri!r} matches templates of several servers: {', '.join(servers)}")
        if matches:
            match = matches[0]
            return ItemRoute(match.server, uri[len(match.strip) :] if match.strip else uri)
        for head, server in self.segments.items():
            if uri.startswith(head):
                return ItemRoute(server, uri[len(head) :])
        raise InvalidParams(f"Resource not found: {uri!r}", {"uri": uri})

    def exposed_uri(self, server: str, original: str) -> str | None:
        """The URI clients know for a backend's resource URI, or None when it is not exposed."""
        for exposed, route in self.resource_routes.items():
            if route.server == server and route.original == original:
                return exposed
        for template in self.template_routes:
            if template.server == server and template.pattern.fullmatch(template.strip + original):
                return template.strip + original
        return None

    def template(self, exposed: str) -> ItemRoute:
        for route in self.template_routes:
            if route.exposed == exposed:
                return ItemRoute(route.server, route.original)
        raise InvalidParams(f"Unknown resource template: {exposed!r}", {"uri": exposed})

    def page(self, kind: str, cursor: str | None, size: int) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a list and the cursor for the next, or InvalidCursor."""
        offset = 0 if cursor is None else _decode_cursor(cursor, kind)
        key = (kind, offset)
        cached = self._pages.get(key)
        if cached is None:
            items = self.items(kind)
            if offset > len(items):
                raise InvalidCursor(f"Invalid cursor for {kind}: past the end of the list")
            end = offset + size
            next_cursor = _encode_cursor(kind, end) if end < len(items) else None
            cached = self._pages[key] = (items[offset:end], next_cursor)
        return cached

    def items(self, kind: str) -> list[dict[str, Any]]:
        return {
            "tools": self.tools,
            "prompts": self.prompts,
            "resources": self.resources,
            "resourceTemplates": self.resource_templates,
        }[kind]


_cursor_encoder = msgspec.json.Encoder(order="deterministic")


def _encode_cursor(kind: str, offset: int) -> str:
    payload = _cursor_encoder.encode({"k": kind, "o": offset})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> int:
    try:
        payload = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if payload["k"] != kind or not isinstance(payload["o"], int) or payload["o"] < 0:
            raise ValueError
        return payload["o"]
    except (ValueError, KeyError, TypeError, RecursionError, msgspec.DecodeError):
        raise InvalidCursor(f"Invalid cursor for {kind}: {cursor!r} (start again without a cursor)") from None

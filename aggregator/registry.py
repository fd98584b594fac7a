"""ServerRegistry: what the backends offer, under which names, and how a name routes back.

Naming is deterministic and independent of backend start order:

    tools, prompts      {prefix}_{toolPrefix|name}_{original}   (no doubled segment)
    family tools        {prefix}_{family}_{original} + a required `instanceArg` enum
    resources           URIs with a scheme unchanged; others like prompts

Names the spec would reject (too long, characters outside [A-Za-z0-9_.-]) are shortened to a
readable stem plus a short hash of the full name, and still route. Every change rebuilds an
immutable `Catalog`; the request path only reads `registry.catalog`.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import logging
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from aggregator.denylist import Denylist
from aggregator.tool_names import has_hidden_characters
from shared.config import AggregatorSettings, ServerSpec
from shared.protocol.errors import InvalidCursor, InvalidParams, ToolBlocked, UnknownTool
from shared.protocol.vocabulary import LIST_KINDS
from shared.records import ServerRecord

__all__ = ["Catalog", "ItemRoute", "ServerRegistry", "ToolRoute", "fit_name"]

log = logging.getLogger("aggregator.registry")

_DISALLOWED = re.compile(r"[^A-Za-z0-9_.-]")
_HASH_LEN = 8


@dataclass(frozen=True, slots=True)
class ToolRoute:
    """Where an exposed tool name goes."""

    exposed: str
    original: str
    servers: tuple[str, ...]
    instance_arg: str | None = None
    blocked: str | None = None
    header_map: tuple[tuple[tuple[str, ...], str], ...] = ()

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
        if instance not in self.servers:
            raise InvalidParams(
                f"Unknown instance {instance!r} for {self.instance_arg!r} of tool {self.exposed!r}; one of: {choices}",
                {"argument": self.instance_arg, "choices": list(self.servers)},
            )
        return instance


@dataclass(frozen=True, slots=True)
class ItemRoute:
    server: str
    original: str


@dataclass(frozen=True, slots=True)
class _TemplateRoute:
    pattern: re.Pattern[str]
    server: str
    exposed: str
    original: str
    strip: str  # prefix to remove from a concrete URI before forwarding ("" for scheme URIs)


@dataclass(slots=True)
class Catalog:
    """One consistent view of everything exposed; replaced whole on every change."""

    version: int = 0
    tools: list[dict[str, Any]] = field(default_factory=list)
    prompts: list[dict[str, Any]] = field(default_factory=list)
    resources: list[dict[str, Any]] = field(default_factory=list)
    resource_templates: list[dict[str, Any]] = field(default_factory=list)
    tool_routes: dict[str, ToolRoute] = field(default_factory=dict)
    prompt_routes: dict[str, ItemRoute] = field(default_factory=dict)
    resource_routes: dict[str, ItemRoute] = field(default_factory=dict)
    template_routes: list[_TemplateRoute] = field(default_factory=list)
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


def fit_name(name: str, limit: int) -> str:
    """`name` if the spec allows it within `limit`, else a readable stem plus a short hash."""
    clean = _DISALLOWED.sub("_", name)
    if clean == name and 0 < len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_LEN]
    return f"{clean[: limit - _HASH_LEN - 1]}_{digest}"


class ServerRegistry:
    """The exposed catalog, rebuilt from backend records whenever one changes."""

    def __init__(self, settings: AggregatorSettings, specs: Sequence[ServerSpec]) -> None:
        self.settings = settings
        self.specs = {spec.name: spec for spec in specs}
        self.records: dict[str, ServerRecord] = {}
        self.denylist = Denylist(settings.yolo, settings.denylist.extra, settings.denylist.allow)
        self.catalog = Catalog()
        self._listeners: list[Callable[[set[str]], None]] = []

    def on_change(self, listener: Callable[[set[str]], None]) -> None:
        """Call `listener(kinds)` after each rebuild that changed the named lists."""
        self._listeners.append(listener)

    def update(self, record: ServerRecord) -> set[str]:
        """Apply a backend's latest record (up or down); returns the lists that changed."""
        if record.server not in self.specs:
            log.warning("ignoring a record for %r, which is not in this gateway's config", record.server)
            return set()
        self.records[record.server] = record
        return self._rebuild()

    def remove(self, server: str) -> set[str]:
        if self.records.pop(server, None) is None:
            return set()
        return self._rebuild()

    def replace_all(self, records: Iterable[ServerRecord]) -> set[str]:
        self.records = {r.server: r for r in records if r.server in self.specs}
        return self._rebuild()

    def set_overrides(self, overrides: dict[str, bool]) -> set[str]:
        self.denylist = self.denylist.with_overrides(overrides)
        return self._rebuild()

    def _rebuild(self) -> set[str]:
        old = self.catalog
        new = _CatalogBuilder(self.settings, self.specs, self.records, self.denylist).build(old.version + 1)
        changed = {kind.key for kind in LIST_KINDS if _encode(old.items(kind.key)) != _encode(new.items(kind.key))}
        self.catalog = new
        if changed:
            for listener in self._listeners:
                listener(changed)
        return changed


class _CatalogBuilder:
    """Builds one Catalog; all naming decisions live here."""

    def __init__(
        self,
        settings: AggregatorSettings,
        specs: dict[str, ServerSpec],
        records: dict[str, ServerRecord],
        denylist: Denylist,
    ) -> None:
        self.prefix = settings.prefix
        self.limit = settings.max_tool_name_length
        self.specs = specs
        self.up = sorted(name for name, r in records.items() if r.state == "up")
        self.records = records
        self.denylist = denylist
        self.catalog = Catalog(servers=dict(records))
        self.taken: set[str] = set()

    def build(self, version: int) -> Catalog:
        self.catalog.version = version
        self._tools()
        self._prompts()
        self._resources()
        cat = self.catalog
        for name in self.up:
            cat.segments[f"{self.prefix}_{self.specs[name].prefix}_"] = name
        return cat

    def _exposed(self, segment: str, original: str) -> str:
        """Claim a unique exposed name for `original` under `segment`."""
        base = original if original.startswith(f"{segment}_") else f"{segment}_{original}"
        for candidate in (f"{self.prefix}_{base}", f"{self.prefix}_{segment}_{original}"):
            name = fit_name(candidate, self.limit)
            if name not in self.taken:
                self.taken.add(name)
                return name
        name = fit_name(f"{self.prefix}_{segment}_{original}#{len(self.taken)}", self.limit)
        self.taken.add(name)
        return name

    # -- tools ---------------------------------------------------------------------------------

    def _tools(self) -> None:
        families: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
        solo: list[tuple[str, dict[str, Any]]] = []
        for server in self.up:
            spec = self.specs[server]
            segment = spec.family.name if spec.family is not None else spec.prefix
            for tool in sorted(self.records[server].tools, key=_claim_order(segment)):
                if not _exposable(server, "tool", tool.get("name")):
                    continue
                if spec.family is not None:
                    families.setdefault((spec.family.name, tool["name"]), []).append((server, tool))
                else:
                    solo.append((server, tool))
        exposed: list[dict[str, Any]] = []
        for (family, original), members in sorted(families.items()):
            instance_arg = self.specs[members[0][0]].family.instance_arg  # type: ignore[union-attr]
            problem = _family_problem(members, instance_arg)
            if problem:
                log.warning(
                    "family %s tool %s %s; exposing it per server instead",
                    family,
                    original,
                    problem,
                    extra={"family": family, "tool": original},
                )
                solo.extend(members)
                continue
            exposed.append(self._family_tool(family, original, instance_arg, members))
        for server, tool in solo:
            exposed.append(self._solo_tool(server, tool))
        self.catalog.tools = sorted((t for t in exposed if t is not None), key=lambda t: t["name"])

    def _solo_tool(self, server: str, tool: dict[str, Any]) -> dict[str, Any] | None:
        name = self._exposed(self.specs[server].prefix, tool["name"])
        return self._add_tool(name, tool["name"], (server,), None, copy.deepcopy(tool))

    def _family_tool(
        self, family: str, original: str, instance_arg: str, members: list[tuple[str, dict[str, Any]]]
    ) -> dict[str, Any] | None:
        servers = tuple(sorted(server for server, _ in members))
        tool = copy.deepcopy(members[0][1])
        schema = tool.setdefault("inputSchema", {"type": "object"})
        schema.setdefault("type", "object")
        schema.setdefault("properties", {})[instance_arg] = {
            "type": "string",
            "enum": list(servers),
            "description": f"Which instance runs this tool. One of: {', '.join(servers)}",
        }
        required = [r for r in schema.get("required", []) if r != instance_arg]
        schema["required"] = [*required, instance_arg]
        tool["description"] = f"{tool.get('description') or ''} (available on servers: {', '.join(servers)})".strip()
        name = self._exposed(family, original)
        return self._add_tool(name, original, servers, instance_arg, tool)

    def _add_tool(
        self, name: str, original: str, servers: tuple[str, ...], instance_arg: str | None, tool: dict[str, Any]
    ) -> dict[str, Any] | None:
        blocked = self.denylist.blocked(original, name)
        header_map = _header_map(tool.get("inputSchema"))
        self.catalog.tool_routes[name] = ToolRoute(name, original, servers, instance_arg, blocked, header_map)
        if blocked:
            return None
        tool["name"] = name
        return tool

    # -- prompts and resources -------------------------------------------------------------------

    def _prompts(self) -> None:
        out = []
        for server in self.up:
            segment = self.specs[server].prefix
            for prompt in sorted(self.records[server].prompts, key=_claim_order(segment)):
                if not _exposable(server, "prompt", prompt.get("name")):
                    continue
                name = self._exposed(segment, prompt["name"])
                self.catalog.prompt_routes[name] = ItemRoute(server, prompt["name"])
                out.append({**prompt, "name": name})
        self.catalog.prompts = sorted(out, key=lambda p: p["name"])

    def _resources(self) -> None:
        resources, templates = [], []
        for server in self.up:
            segment = self.specs[server].prefix
            record = self.records[server]
            for resource in sorted(record.resources, key=lambda r: str(r.get("uri", ""))):
                uri = resource.get("uri")
                if not isinstance(uri, str):
                    continue
                exposed = self._exposed_uri(segment, uri)
                if exposed in self.catalog.resource_routes:
                    owner = self.catalog.resource_routes[exposed].server
                    log.warning("resource %s of %s is shadowed by the same URI on %s", uri, server, owner)
                    continue
                self.catalog.resource_routes[exposed] = ItemRoute(server, uri)
                resources.append({**resource, "uri": exposed})
            for template in sorted(record.resource_templates, key=lambda r: str(r.get("uriTemplate", ""))):
                uri_template = template.get("uriTemplate")
                if not isinstance(uri_template, str):
                    continue
                exposed = self._exposed_uri(segment, uri_template)
                strip = exposed[: len(exposed) - len(uri_template)] if exposed != uri_template else ""
                pattern = re.compile(_template_regex(exposed))
                self.catalog.template_routes.append(_TemplateRoute(pattern, server, exposed, uri_template, strip))
                templates.append({**template, "uriTemplate": exposed})
        self.catalog.resources = sorted(resources, key=lambda r: r["uri"])
        self.catalog.resource_templates = sorted(templates, key=lambda r: r["uriTemplate"])

    def _exposed_uri(self, segment: str, uri: str) -> str:
        if "://" in uri:
            return uri
        base = uri if uri.startswith(f"{segment}_") else f"{segment}_{uri}"
        return f"{self.prefix}_{base}"


def _exposable(server: str, kind: str, name: Any) -> bool:
    """A name a client can see and type: a string without invisible or control characters."""
    if not isinstance(name, str):
        return False
    if has_hidden_characters(name):
        log.warning(
            "backend %s: %s %s is not exposed: its name holds invisible or control characters",
            server,
            kind,
            ascii(name),
            extra={"server": server},
        )
        return False
    return True


def _claim_order(segment: str) -> Callable[[dict[str, Any]], tuple[bool, str]]:
    """Sort key: names that need no de-duplication claim their exposed name first."""

    def key(item: dict[str, Any]) -> tuple[bool, str]:
        name = str(item.get("name", ""))
        return name.startswith(f"{segment}_"), name

    return key


def _family_problem(members: list[tuple[str, dict[str, Any]]], instance_arg: str) -> str | None:
    descriptions = {str(tool.get("description") or "") for _, tool in members}
    if len(descriptions) > 1:
        return "has different descriptions on its instances"
    for _, tool in members:
        properties = (tool.get("inputSchema") or {}).get("properties") or {}
        if instance_arg in properties:
            return f"already has an input property named {instance_arg!r} (the family's instanceArg)"
    return None


def _header_map(schema: Any, path: tuple[str, ...] = ()) -> tuple[tuple[tuple[str, ...], str], ...]:
    """Properties annotated with `x-mcp-header`, as (property path, header token) pairs."""
    if not isinstance(schema, dict):
        return ()
    found: list[tuple[tuple[str, ...], str]] = []
    properties = schema.get("properties")
    if isinstance(properties, dict):
        for key, sub in properties.items():
            if isinstance(sub, dict):
                token = sub.get("x-mcp-header")
                if isinstance(token, str) and token:
                    found.append(((*path, key), token))
                found.extend(_header_map(sub, (*path, key)))
    return tuple(found)


def _template_regex(template: str) -> str:
    """A regex matching concrete URIs of an RFC 6570 template (the operators servers use)."""
    out, pos = [], 0
    for match in re.finditer(r"\{([+#./;?&]?)([^}]*)\}", template):
        out.append(re.escape(template[pos : match.start()]))
        operator = match.group(1)
        if operator in ("+", "#"):
            out.append(".*")
        elif operator in ("?", "&"):
            out.append(r"(?:[?&][^#]*)?")
        elif operator in ("/", "."):
            out.append("(?:" + re.escape(operator) + "[^/?#]*)*")
        else:
            out.append(r"[^/?#]+")
        pos = match.end()
    out.append(re.escape(template[pos:]))
    return "".join(out)


_encoder = msgspec.json.Encoder(order="deterministic")


def _encode(items: list[dict[str, Any]]) -> bytes:
    return _encoder.encode(items)


def _encode_cursor(kind: str, offset: int) -> str:
    payload = _encoder.encode({"k": kind, "o": offset})
    return base64.urlsafe_b64encode(payload).decode().rstrip("=")


def _decode_cursor(cursor: str, kind: str) -> int:
    try:
        payload = msgspec.json.decode(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if payload["k"] != kind or not isinstance(payload["o"], int) or payload["o"] < 0:
            raise ValueError
        return payload["o"]
    except (ValueError, KeyError, TypeError, RecursionError, msgspec.DecodeError):
        raise InvalidCursor(f"Invalid cursor for {kind}: {cursor!r} (start again without a cursor)") from None

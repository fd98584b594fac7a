"""CatalogBuilder: every naming decision, made once per rebuild.

Naming is deterministic and independent of backend start order:

    tools, prompts      {prefix}_{toolPrefix|name}_{original}   (no doubled segment)
    family tools        {prefix}_{family}_{original} + a required `instanceArg` enum
    resources           URIs with a scheme unchanged; others like prompts

Names the spec would reject (too long, characters outside [A-Za-z0-9_.-]) are shortened to a
readable stem plus a short hash of the full name, and still route. `aggregator.exposure` decides
what tools/list shows (the backends' tools and workflows, the meta-tools, or both); every name
routes either way. Every change rebuilds an immutable `Catalog`; the request path only reads `registry.catalog`.

A rebuild reuses what an unchanged backend contributed last time (`ToolCache`): its tools are
checked, copied and named once per record, and as long as no name claimed before it collides
with one it would claim, its names, routes and listed tools are taken over whole. So one
backend's registration or list change costs about its own tools, not the whole catalog's.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any

import msgspec

from aggregator.catalog import Catalog, CoreItems, ItemRoute, TemplateRoute, ToolRoute
from aggregator.denylist import Denylist
from aggregator.tool_names import has_hidden_characters
from shared.config import AggregatorSettings, ServerSpec
from shared.records import ServerRecord

__all__ = ["CatalogBuilder", "ToolCache", "fit_name"]

log = logging.getLogger("aggregator.registry")

_DISALLOWED = re.compile(r"[^A-Za-z0-9_.-]")
_HASH_LEN = 8


def fit_name(name: str, limit: int) -> str:
    """`name` if the spec allows it within `limit`, else a readable stem plus a short hash."""
    clean = _DISALLOWED.sub("_", name)
    if clean == name and 0 < len(name) <= limit:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:_HASH_LEN]
    return f"{clean[: limit - _HASH_LEN - 1]}_{digest}"


def claim(prefix: str, limit: int, segment: str, original: str, taken: set[str], seen: set[str] | None = None) -> str:
    """Claim a unique exposed name for `original` under `segment` (added to `taken`); `seen` collects each name tried.

    The last resort, a name numbered by how many are taken, is returned with a `#` kept in `seen`.
    """
    base = original if original.startswith(f"{segment}_") else f"{segment}_{original}"
    for candidate in (f"{prefix}_{base}", f"{prefix}_{segment}_{original}"):
        name = fit_name(candidate, limit)
        if seen is not None:
            seen.add(name)
        if name not in taken:
            taken.add(name)
            return name
    name = fit_name(f"{prefix}_{segment}_{original}#{len(taken)}", limit)
    if seen is not None:
        seen.add("#")  # depends on every name claimed before: never reused
    taken.add(name)
    return name


@dataclass(eq=False)
class _ServerTools:
    """One backend record's tools, checked, copied and named as if its backend came first."""

    record: ServerRecord
    key: tuple[str, str, int]  # (segment, prefix, limit) the names were made with
    originals: list[str]
    tools: list[dict[str, Any]]  # deep copies, in claim order
    header_maps: list[tuple[tuple[tuple[str, ...], str], ...]]
    names: list[str]
    seen: set[str]
    """Every name the claims tried: if none is taken by then, claiming again gives `names`."""
    listed: tuple[Denylist, dict[str, ToolRoute], list[dict[str, Any] | None]] | None = field(default=None)
    """The routes and listed tools (None where blocked) for `names` under one denylist."""


_decode_tool = msgspec.json.Decoder(dict[str, Any]).decode


def _copied(tool: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of a tool (JSON data from a backend) through msgspec: a seventh of copy.deepcopy's cost."""
    return _decode_tool(msgspec.json.encode(tool))


class ToolCache:
    """What each backend's record contributed to the last catalog, kept by the registry between rebuilds:
    one entry per backend, replaced when its record is (records are never changed in place)."""

    def __init__(self) -> None:
        self._servers: dict[str, _ServerTools] = {}

    def entry(self, server: str, record: ServerRecord, key: tuple[str, str, int]) -> _ServerTools:
        entry = self._servers.get(server)
        if entry is None or entry.record is not record or entry.key != key:
            entry = self._servers[server] = _prepare(server, record, key)
        return entry


def _prepare(server: str, record: ServerRecord, key: tuple[str, str, int]) -> _ServerTools:
    segment, prefix, limit = key
    chosen = [t for t in sorted(record.tools, key=_claim_order(segment)) if _exposable(server, "tool", t.get("name"))]
    originals = [tool["name"] for tool in chosen]
    taken: set[str] = set()
    seen: set[str] = set()
    names = [claim(prefix, limit, segment, original, taken, seen) for original in originals]
    tools = [_copied(tool) for tool in chosen]
    header_maps = [_header_map(tool.get("inputSchema")) for tool in tools]
    return _ServerTools(record, key, originals, tools, header_maps, names, seen)


class CatalogBuilder:
    """Builds one Catalog; all naming decisions live here."""

    def __init__(
        self,
        settings: AggregatorSettings,
        specs: dict[str, ServerSpec],
        records: dict[str, ServerRecord],
        denylist: Denylist,
        core: CoreItems,
        cache: ToolCache | None = None,
    ) -> None:
        self.core = core
        self.exposure = settings.exposure
        self.cache = cache if cache is not None else ToolCache()
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
        return claim(self.prefix, self.limit, segment, original, self.taken)

    # -- tools ---------------------------------------------------------------------------------

    def _tools(self) -> None:
        own = [*self.core.tools, *(self.core.meta_tools if self.exposure != "native" else ())]
        # The gateway's own tools and the workflows, unprefixed, claimed first; never on a denylist.
        for tool in (*own, *self.core.workflows):
            self.taken.add(tool["name"])
            self.catalog.tool_routes[tool["name"]] = ToolRoute(tool["name"], tool["name"], (), internal=True)
        families: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
        solo: list[str] = []
        for server in self.up:
            spec_family = self.specs[server].family
            if spec_family is None:
                solo.append(server)
                continue
            for tool in sorted(self.records[server].tools, key=_claim_order(spec_family.name)):
                if _exposable(server, "tool", tool.get("name")):
                    families.setdefault((spec_family.name, tool["name"]), []).append((server, tool))
        exposed: list[dict[str, Any] | None] = []
        demoted: list[tuple[str, dict[str, Any]]] = []
        for (family, original), members in sorted(families.items()):
            spec_family = self.specs[members[0][0]].family
            assert spec_family is not None, "only family members are grouped here"
            instance_arg = spec_family.instance_arg
            problem = _family_problem(members, instance_arg)
            if problem:
                log.warning(
                    "family %s tool %s %s; exposing it per server instead",
                    family,
                    original,
                    problem,
                    extra={"family": family, "tool": original},
                )
                demoted.extend(members)
                continue
            exposed.append(self._family_tool(family, original, instance_arg, members))
        for server in solo:
            exposed.extend(self._server_tools(server))
        for server, tool in demoted:  # after every backend's own tools, as their names are claimed
            exposed.append(self._solo_tool(server, tool))
        callable_tools = [*(tool for tool in exposed if tool is not None), *self.core.workflows]
        backend = self.catalog.backend_tools = sorted(callable_tools, key=_by_name)
        listed = [*self.core.meta_tools] if self.exposure == "meta" else [*backend, *own]
        self.catalog.tools = sorted(listed, key=_by_name)

    def _server_tools(self, server: str) -> list[dict[str, Any] | None]:
        """A backend's own tools (not a family's): its cached entry taken over whole when nothing collides."""
        entry = self.cache.entry(server, self.records[server], (self.specs[server].prefix, self.prefix, self.limit))
        if "#" in entry.seen or not self.taken.isdisjoint(entry.seen):
            names = [self._exposed(entry.key[0], original) for original in entry.originals]
            routes, listed = self._named_tools(server, entry, names)
        else:
            self.taken.update(entry.names)
            if entry.listed is None or entry.listed[0] is not self.denylist:
                entry.listed = (self.denylist, *self._named_tools(server, entry, entry.names))
            _, routes, listed = entry.listed
        self.catalog.tool_routes.update(routes)
        return listed

    def _named_tools(
        self, server: str, entry: _ServerTools, names: list[str]
    ) -> tuple[dict[str, ToolRoute], list[dict[str, Any] | None]]:
        routes: dict[str, ToolRoute] = {}
        listed: list[dict[str, Any] | None] = []
        for name, original, tool, header_map in zip(
            names, entry.originals, entry.tools, entry.header_maps, strict=True
        ):
            blocked = self.denylist.blocked(original, name)
            routes[name] = ToolRoute(name, original, (server,), None, blocked, header_map)
            listed.append(None if blocked else {**tool, "name": name})
        return routes, listed

    def _solo_tool(self, server: str, tool: dict[str, Any]) -> dict[str, Any] | None:
        name = self._exposed(self.specs[server].prefix, tool["name"])
        return self._add_tool(name, tool["name"], (server,), None, _copied(tool))

    def _family_tool(
        self, family: str, original: str, instance_arg: str, members: list[tuple[str, dict[str, Any]]]
    ) -> dict[str, Any] | None:
        servers = tuple(sorted(server for server, _ in members))
        tool = _copied(members[0][1])
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
        """Resources and templates; a URI two backends share goes to the one listed first in the config."""
        resources, templates = [], []
        for server in (name for name in self.specs if name in self.up):
            segment = self.specs[server].prefix
            record = self.records[server]
            for resource in sorted(record.resources, key=lambda r: str(r.get("uri", ""))):
                uri = resource.get("uri")
                if not isinstance(uri, str):
                    continue
                exposed = self._exposed_uri(segment, uri)
                if exposed in self.catalog.resource_routes:
                    owner = self.catalog.resource_routes[exposed].server
                    log.warning(
                        "resource %s of %s is shadowed by the same URI on %s, which comes first in the config",
                        uri,
                        server,
                        owner,
                    )
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
                self.catalog.template_routes.append(TemplateRoute(pattern, server, exposed, uri_template, strip))
                templates.append({**template, "uriTemplate": exposed})
        for resource in self.core.resources:
            self.catalog.resource_routes[resource["uri"]] = ItemRoute("", resource["uri"], internal=True)
            resources.append(resource)
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


_by_name = itemgetter("name")


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

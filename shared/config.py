"""The configuration: one Struct tree, one loader, errors that name the field.

Field names follow muster's MCPServer spec where one exists. Everything the file does not
say takes a safe default: bind to localhost, denylist on, 4 MiB body limit. Reading the
document (JSON or YAML, our list of servers or the clients' map, ${VAR}) is config_document's
part; this module decodes the result, checks it and explains what is wrong.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import msgspec
from msgspec import inspect

from shared.config_document import SERVER_CLIENT_FIELDS, TOP_CLIENT_FIELDS, ConfigProblem, Document, read_document

__all__ = [
    "AggregatorSettings",
    "Config",
    "ConfigError",
    "DenylistSettings",
    "FamilySpec",
    "ServerSpec",
    "load_config",
    "parse_config",
]

Transport = Literal["streamable-http", "sse", "stdio"]
BackendType = Literal["stdio", "sse", "streamable-http"]

_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PREFIX = re.compile(r"^[A-Za-z0-9]+(?:[-.][A-Za-z0-9]+)*$")
_SERVER_INDEX = re.compile(r"\$\.mcpServers\[(\d+)\]")
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(.*)`", re.DOTALL)
_MISSING_FIELD = re.compile(r"Object missing required field `(.*)`", re.DOTALL)
_BAD_ENUM = re.compile(r"Invalid enum value (.*)", re.DOTALL)


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, field and problem."""


class _Spec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Config Structs: camelCase keys, unknown keys rejected so a typo fails with its path.

    Subclasses repeat frozen=True so type checkers see it too.
    """


class DenylistSettings(_Spec, frozen=True):
    extra: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()


class AggregatorSettings(_Spec, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8090
    transport: Transport = "streamable-http"
    prefix: str = "x"
    yolo: bool = False
    max_tool_name_length: int = 64
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    """Seconds for a request's line and headers to arrive (from connecting, or from its first byte)."""
    body_timeout: float = 30.0
    """Seconds for a request's body to arrive once its headers did."""
    keep_alive_timeout: int = 30
    """Seconds an idle keep-alive connection stays open between requests (whole seconds: uvicorn's unit)."""
    max_streams: int = 1000
    """Open client streams per replica: GET, subscriptions/listen and /sse streams together."""
    max_batch_size: int = 100
    denylist: DenylistSettings = DenylistSettings()
    session_idle_timeout: float = 3600.0
    page_size: int = 500
    list_ttl_ms: int = 0
    health_check_interval: float = 30.0
    shutdown_grace: float = 10.0


class FamilySpec(_Spec, frozen=True):
    name: str
    instance_arg: str = "server"


class ServerSpec(_Spec, frozen=True):
    name: str
    type: BackendType
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = {}
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    tool_prefix: str | None = None
    family: FamilySpec | None = None
    timeout: float = 60.0
    max_in_flight: int = 128
    """Calls in flight to this backend per replica; more wait in a queue of `max_queued`."""
    max_queued: int = 512
    max_connections: int = 256
    """Sockets to an HTTP backend per replica (calls, its notification stream, answers to its questions)."""

    @property
    def prefix(self) -> str:
        """The name segment this server's tools are exposed under."""
        return self.tool_prefix or self.name


class Config(_Spec, frozen=True):
    """The file's settings; `source`, `disabled` and `warnings` are filled in by the loader."""

    aggregator: AggregatorSettings = AggregatorSettings()
    mcp_servers: tuple[ServerSpec, ...] = msgspec.field(default=(), name="mcpServers")
    source: str = msgspec.field(default="<config>", name="_source")
    disabled: tuple[str, ...] = msgspec.field(default=(), name="_disabled")
    """Servers the file turns off (`disabled: true`); not in mcp_servers."""
    warnings: tuple[str, ...] = msgspec.field(default=(), name="_warnings")
    """Problems that do not stop the gateway, each as 'FILE: $.path: problem'."""

    def server(self, name: str) -> ServerSpec | None:
        return next((s for s in self.mcp_servers if s.name == name), None)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a config file (JSON if named .json, else YAML); raise ConfigError naming file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (pass an existing file with -c/--config)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<config>") -> Config:
    """Validate config text into a Config; ConfigError messages and warnings start with `source`."""
    try:
        document = read_document(text, json_file=source.endswith(".json"))
        config = _decode(document)
    except ConfigProblem as problem:
        raise ConfigError(f"{source}: {problem}") from None
    warnings = tuple(f"{source}: {warning}" for warning in _warnings(config, document.server_paths))
    return msgspec.structs.replace(config, source=source, disabled=document.disabled, warnings=warnings)


def _decode(document: Document) -> Config:
    try:
        config = msgspec.convert(document.data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigProblem(_describe(exc, document.server_paths)) from None
    problem = next(_check(config, document), None)
    if problem is not None:
        raise ConfigProblem(problem)
    return config


def _describe(exc: msgspec.ValidationError, server_paths: tuple[str, ...]) -> str:
    """Turn msgspec's 'problem - at `$.path`' into '$.path: problem', the path as written in the file."""
    problem, sep, path = str(exc).rpartition(" - at `")
    if not sep:
        problem, path = path, "$"
    path = path.rstrip("`")
    index = _SERVER_INDEX.match(path)
    shown = server_paths[int(index.group(1))] + path[index.end() :] if index else path
    node = _type_at(path)
    if (unknown := _UNKNOWN_FIELD.fullmatch(problem)) and isinstance(node, inspect.StructType):
        return f"{shown}.{unknown.group(1)}: unknown field; {_suggestion(unknown.group(1), node)}"
    if missing := _MISSING_FIELD.fullmatch(problem):
        hint = "; give command (a stdio server) or url (an HTTP server)" if missing.group(1) == "type" else ""
        return f"{shown}.{missing.group(1)}: required field is missing{hint}"
    if (enum := _BAD_ENUM.fullmatch(problem)) and isinstance(node, inspect.LiteralType):
        return f"{shown}: {enum.group(1)} is not one of {', '.join(map(str, node.values))}"
    return f"{shown}: {problem.replace('`', '')}"


def _type_at(path: str) -> inspect.Type | None:
    """The type msgspec decodes at a `$.a[0].b` path of a Config, without Optional; None if unknown."""
    node: inspect.Type = inspect.type_info(Config)
    for field, index in _PATH_STEP.findall(path):
        node = _unwrap(node)
        if field and isinstance(node, inspect.StructType):
            found = next((f.type for f in node.fields if f.encode_name == field), None)
            if found is None:
                return None
            node = found
        elif index and isinstance(node, inspect.VarTupleType):
            node = node.item_type
        elif isinstance(node, inspect.DictType):
            node = node.value_type
        else:
            return None
    return _unwrap(node)


def _unwrap(node: inspect.Type) -> inspect.Type:
    if isinstance(node, inspect.UnionType):
        return next(t for t in node.types if not isinstance(t, inspect.NoneType))
    return node


def _suggestion(field: str, struct: inspect.StructType) -> str:
    """The closest valid field name, or all of them when none is close."""
    extra = {Config: TOP_CLIENT_FIELDS, ServerSpec: SERVER_CLIENT_FIELDS}.get(struct.cls, ())
    valid = [f.encode_name for f in struct.fields if not f.encode_name.startswith("_")] + list(extra)
    close = difflib.get_close_matches(field, valid, n=1)
    return f"did you mean {close[0]!r}?" if close else f"valid fields are {', '.join(valid)}"


def _check(config: Config, document: Document) -> Iterator[str]:
    """Yield semantic problems msgspec cannot see, each as '$.path: what is wrong'."""
    agg = config.aggregator
    if not 0 < agg.port < 65536:
        yield f"$.aggregator.port: {agg.port} is not a TCP port (1-65535)"
    if not _PREFIX.match(agg.prefix):
        yield f"$.aggregator.prefix: {agg.prefix!r} must be letters and digits (dots or dashes inside)"
    if agg.max_tool_name_length < 16:
        yield "$.aggregator.maxToolNameLength: must be at least 16"
    if agg.max_body_bytes < 1024:
        yield "$.aggregator.maxBodyBytes: must be at least 1024"
    if agg.page_size < 1:
        yield "$.aggregator.pageSize: must be at least 1"
    if agg.max_header_bytes < 1024:
        yield "$.aggregator.maxHeaderBytes: must be at least 1024"
    for key, seconds in (
        ("headerTimeout", agg.header_timeout),
        ("bodyTimeout", agg.body_timeout),
        ("keepAliveTimeout", agg.keep_alive_timeout),
    ):
        if seconds <= 0:
            yield f"$.aggregator.{key}: must be a positive number of seconds"
    if agg.max_streams < 1:
        yield "$.aggregator.maxStreams: must be at least 1"
    if agg.max_batch_size < 1:
        yield "$.aggregator.maxBatchSize: must be at least 1"
    seen: dict[str, str] = {}
    for spec, at, name_at in zip(config.mcp_servers, document.server_paths, document.name_paths, strict=True):
        if not _NAME.match(spec.name):
            yield f"{name_at}: {spec.name!r} must match [a-z0-9-]+ (lowercase letters, digits, inner dashes)"
        if spec.type == "stdio":
            if not spec.command:
                yield f"{at}.command: required for type stdio (the program to start)"
            if spec.url:
                yield f"{at}.url: not used for type stdio (did you mean type streamable-http?)"
        else:
            if not spec.url or not spec.url.startswith(("http://", "https://")):
                yield f"{at}.url: type {spec.type} needs an http:// or https:// URL"
            if spec.command:
                yield f"{at}.command: not used for type {spec.type} (did you mean type stdio?)"
        if spec.tool_prefix is not None and not _PREFIX.match(spec.tool_prefix):
            yield f"{at}.toolPrefix: {spec.tool_prefix!r} must be letters and digits (dots or dashes inside)"
        if spec.family is not None:
            if not _NAME.match(spec.family.name):
                yield f"{at}.family.name: {spec.family.name!r} must match [a-z0-9-]+"
            if not spec.family.instance_arg.isidentifier():
                yield f"{at}.family.instanceArg: {spec.family.instance_arg!r} must be an identifier"
        if spec.timeout <= 0:
            yield f"{at}.timeout: must be a positive number of seconds"
        if spec.max_in_flight < 1:
            yield f"{at}.maxInFlight: must be at least 1"
        if spec.max_queued < 0:
            yield f"{at}.maxQueued: must be 0 or more"
        if spec.max_connections < 2:
            yield f"{at}.maxConnections: must be at least 2 (the backend's notification stream holds one)"
        if spec.name in seen:
            yield f"{name_at}: {spec.name!r} is already used by {seen[spec.name]}"
        seen.setdefault(spec.name, at)
    yield from _check_namespaces(config, document.server_paths)


def _check_namespaces(config: Config, server_paths: tuple[str, ...]) -> Iterator[str]:
    """Every exposed name segment (server prefix or family) must belong to exactly one owner."""
    owners: dict[str, str] = {}
    families: dict[str, str] = {}
    for spec, at in zip(config.mcp_servers, server_paths, strict=True):
        claims = [(spec.prefix, f"server {spec.name}")]
        if spec.family is not None:
            first = families.setdefault(spec.family.name, spec.family.instance_arg)
            if first != spec.family.instance_arg:
                yield (
                    f"{at}.family.instanceArg: family {spec.family.name!r} already uses instanceArg {first!r}; "
                    "all instances of a family must agree"
                )
            claims.append((spec.family.name, f"family {spec.family.name}"))
        for segment, owner in claims:
            previous = owners.setdefault(segment, owner)
            if previous != owner:
                yield f"{at}: exposed name segment {segment!r} is already used by {previous}; set a distinct toolPrefix"


def _warnings(config: Config, server_paths: tuple[str, ...]) -> Iterator[str]:
    """Problems that do not stop the gateway (that backend just fails to start), as '$.path: problem'."""
    for spec, at in zip(config.mcp_servers, server_paths, strict=True):
        if spec.type == "stdio" and spec.command and not _can_start(spec.command, spec):
            yield (
                f"{at}.command: {spec.command!r} is not on PATH nor an executable file;"
                " the server cannot start until it is installed"
            )


def _can_start(command: str, spec: ServerSpec) -> bool:
    """Whether `command` resolves the way the backend's process start resolves it (its env, its cwd)."""
    if os.sep in command:
        path = os.path.join(spec.cwd or ".", command)
        return os.path.isfile(path) and os.access(path, os.X_OK)
    search = spec.env.get("PATH", os.environ.get("PATH", os.defpath))
    return shutil.which(command, path=search) is not None

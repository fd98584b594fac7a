"""The YAML configuration: one Struct tree, one loader, errors that name the field.

Field names follow muster's MCPServer spec where one exists. Everything the file does not
say takes a safe default: bind to localhost, denylist on, 4 MiB body limit.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Literal

import msgspec
import yaml

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
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, field and problem."""


class _Spec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Config Structs: camelCase keys, unknown keys rejected so a typo fails with its path."""


class DenylistSettings(_Spec):
    extra: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()


class AggregatorSettings(_Spec):
    host: str = "127.0.0.1"
    port: int = 8090
    transport: Transport = "streamable-http"
    prefix: str = "x"
    yolo: bool = False
    max_tool_name_length: int = 64
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    denylist: DenylistSettings = DenylistSettings()
    session_idle_timeout: float = 3600.0
    page_size: int = 500
    list_ttl_ms: int = 0
    health_check_interval: float = 30.0
    shutdown_grace: float = 10.0


class FamilySpec(_Spec):
    name: str
    instance_arg: str = "server"


class ServerSpec(_Spec):
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

    @property
    def prefix(self) -> str:
        """The name segment this server's tools are exposed under."""
        return self.tool_prefix or self.name


class Config(_Spec):
    aggregator: AggregatorSettings = AggregatorSettings()
    mcp_servers: tuple[ServerSpec, ...] = msgspec.field(default=(), name="mcpServers")
    source: str = msgspec.field(default="<config>", name="_source")

    def server(self, name: str) -> ServerSpec | None:
        return next((s for s in self.mcp_servers if s.name == name), None)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate a YAML config file; raise ConfigError naming the file and field."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found (pass an existing file with -c/--config)") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, *, source: str = "<config>") -> Config:
    """Validate YAML text into a Config; ConfigError messages start with `source`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    data = _expand_env(data)
    data["_source"] = source
    try:
        config = msgspec.convert(data, Config)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from None
    problems = list(_check(config))
    if problems:
        raise ConfigError(f"{source}: {problems[0]}")
    return config


def _expand_env(value: object) -> object:
    """Replace ${VAR} in string values so secrets can stay in the environment."""
    if isinstance(value, str):
        return _ENV_REF.sub(lambda m: os.environ.get(m.group(1), ""), value)
    if isinstance(value, dict):
        return {k: _expand_env(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_expand_env(v) for v in value]
    return value


def _describe(exc: msgspec.ValidationError) -> str:
    """Turn msgspec's 'problem - at `$.path`' into '$.path: problem'."""
    message = str(exc)
    problem, sep, where = message.rpartition(" - at `")
    if sep:
        return f"{where.rstrip('`')}: {problem.replace('`', '')}"
    return message.replace("`", "")


def _check(config: Config):
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
    seen: dict[str, str] = {}
    for i, spec in enumerate(config.mcp_servers):
        at = f"$.mcpServers[{i}]"
        if not _NAME.match(spec.name):
            yield f"{at}.name: {spec.name!r} must match [a-z0-9-]+ (lowercase letters, digits, inner dashes)"
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
        if spec.name in seen:
            yield f"{at}.name: {spec.name!r} is already used by {seen[spec.name]}"
        seen.setdefault(spec.name, at)
    yield from _check_namespaces(config)


def _check_namespaces(config: Config):
    """Every exposed name segment (server prefix or family) must belong to exactly one owner."""
    owners: dict[str, str] = {}
    families: dict[str, str] = {}
    for i, spec in enumerate(config.mcp_servers):
        at = f"$.mcpServers[{i}]"
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

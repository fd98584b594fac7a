"""What the config types cannot say by themselves: semantic checks, warnings, and readable errors.

Each problem is one line, `$.path.to.field: what is wrong`, the path as written in the file.
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
from collections.abc import Iterator
from urllib.parse import urlsplit

import msgspec
from msgspec import inspect

from shared.config_document import SERVER_CLIENT_FIELDS, TOP_CLIENT_FIELDS, Document
from shared.config_types import Config, ServerSpec
from shared.workflow_checks import workflow_errors, workflow_warnings

__all__ = ["check", "describe", "non_fatal_problems"]

_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_PREFIX = re.compile(r"^[A-Za-z0-9]+(?:[-.][A-Za-z0-9]+)*$")
_SERVER_INDEX = re.compile(r"\$\.mcpServers\[(\d+)\]")
_PATH_STEP = re.compile(r"\.([^.\[]+)|\[(\d+)\]")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(.*)`", re.DOTALL)
_MISSING_FIELD = re.compile(r"Object missing required field `(.*)`", re.DOTALL)
_BAD_ENUM = re.compile(r"Invalid enum value (.*)", re.DOTALL)


def describe(exc: msgspec.ValidationError, server_paths: tuple[str, ...], root: type = Config) -> str:
    """Turn msgspec's 'problem - at `$.path`' into '$.path: problem', the path as written in the file.

    `root` is the type the document decodes to (a workflow file's is WorkflowSpec).
    """
    problem, sep, path = str(exc).rpartition(" - at `")
    if not sep:
        problem, path = path, "$"
    path = path.rstrip("`")
    index = _SERVER_INDEX.match(path)
    shown = server_paths[int(index.group(1))] + path[index.end() :] if index else path
    node = _type_at(path, root)
    if (unknown := _UNKNOWN_FIELD.fullmatch(problem)) and isinstance(node, inspect.StructType):
        return f"{shown}.{unknown.group(1)}: unknown field; {_suggestion(unknown.group(1), node)}"
    if missing := _MISSING_FIELD.fullmatch(problem):
        hint = "; give command (a stdio server) or url (an HTTP server)" if missing.group(1) == "type" else ""
        return f"{shown}.{missing.group(1)}: required field is missing{hint}"
    if (enum := _BAD_ENUM.fullmatch(problem)) and isinstance(node, inspect.LiteralType):
        return f"{shown}: {enum.group(1)} is not one of {', '.join(map(str, node.values))}"
    return f"{shown}: {problem.replace('`', '')}"


def _type_at(path: str, root: type) -> inspect.Type | None:
    """The type msgspec decodes at a `$.a[0].b` path of a `root`, without Optional; None if unknown."""
    node: inspect.Type = inspect.type_info(root)
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


def check(config: Config, document: Document) -> Iterator[str]:
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
    yield from _check_auth(config, document.server_paths)
    yield from _check_workflows(config)


def _check_workflows(config: Config) -> Iterator[str]:
    history = config.aggregator.workflow_history
    if history.keep < 1:
        yield "$.aggregator.workflowHistory.keep: must be at least 1"
    if history.ttl <= 0:
        yield "$.aggregator.workflowHistory.ttl: must be a positive number of seconds"
    names: dict[str, int] = {}
    for index, workflow in enumerate(config.workflows):
        at = f"$.workflows[{index}]"
        yield from workflow_errors(workflow, at, name_limit=config.aggregator.max_tool_name_length)
        if workflow.name in names:
            yield f"{at}.name: workflow {workflow.name!r} is already defined by $.workflows[{names[workflow.name]}]"
        names.setdefault(workflow.name, index)


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


def _check_auth(config: Config, server_paths: tuple[str, ...]) -> Iterator[str]:
    """The gateway's own OAuth settings, and how each protected backend gets a user's token."""
    agg = config.aggregator
    if agg.public_url is not None and not _http_url(agg.public_url):
        yield f"$.aggregator.publicUrl: {agg.public_url!r} must be an http:// or https:// URL (no query or fragment)"
    if agg.oauth is not None:
        if not _http_url(agg.oauth.issuer):
            yield f"$.aggregator.oauth.issuer: {agg.oauth.issuer!r} must be an http:// or https:// URL"
        if agg.oauth.jwks_url is not None and not _http_url(agg.oauth.jwks_url):
            yield f"$.aggregator.oauth.jwksUrl: {agg.oauth.jwks_url!r} must be an http:// or https:// URL"
        if agg.oauth.audience is not None and not agg.oauth.audience.strip():
            yield "$.aggregator.oauth.audience: must not be empty (leave it out for publicUrl + /mcp)"
    if agg.auth_rate_limit.max_attempts < 1:
        yield "$.aggregator.authRateLimit.maxAttempts: must be at least 1"
    if agg.auth_rate_limit.window <= 0:
        yield "$.aggregator.authRateLimit.window: must be a positive number of seconds"
    for spec, at in zip(config.mcp_servers, server_paths, strict=True):
        auth = spec.auth
        if auth is None:
            continue
        if spec.type == "stdio":
            yield f"{at}.auth: only HTTP backends (sse, streamable-http) take a user's token; {spec.name} is stdio"
        if auth.forward_token and auth.token_exchange is not None:
            yield f"{at}.auth: forwardToken and tokenExchange exclude each other; choose one"
        if auth.mode != "login" and agg.oauth is None:
            yield (
                f"{at}.auth.{'forwardToken' if auth.forward_token else 'tokenExchange'}: single sign-on passes on "
                "the user's gateway token; set aggregator.oauth so that clients present one"
            )
        if auth.token_exchange is not None:
            exchange = auth.token_exchange
            if not _http_url(exchange.token_endpoint):
                yield f"{at}.auth.tokenExchange.tokenEndpoint: {exchange.token_endpoint!r} must be an http(s) URL"
            if exchange.client_secret_env is None:
                yield (
                    f"{at}.auth.tokenExchange.clientSecretEnv: required: the gateway authenticates its exchanges "
                    "(name the environment variable that holds the client secret)"
                )
            yield from _check_secret(f"{at}.auth.tokenExchange.clientSecretEnv", exchange.client_secret_env)
        yield from _check_secret(f"{at}.auth.clientSecretEnv", auth.client_secret_env)


def _check_secret(at: str, variable: str | None) -> Iterator[str]:
    if variable is not None and not os.environ.get(variable):
        yield f"{at}: environment variable {variable} is not set (it holds the client secret)"


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname) and not parts.query and not parts.fragment


def non_fatal_problems(config: Config, server_paths: tuple[str, ...]) -> Iterator[str]:
    """Problems that do not stop the gateway (that backend or step just fails), as '$.path: problem'."""
    for spec, at in zip(config.mcp_servers, server_paths, strict=True):
        if spec.type == "stdio" and spec.command and not _can_start(spec.command, spec):
            yield (
                f"{at}.command: {spec.command!r} is not on PATH nor an executable file;"
                " the server cannot start until it is installed"
            )
    for index, workflow in enumerate(config.workflows):
        yield from workflow_warnings(workflow, f"$.workflows[{index}]", config)


def _can_start(command: str, spec: ServerSpec) -> bool:
    """Whether `command` resolves the way the backend's process start resolves it (its env, its cwd)."""
    if os.sep in command:
        path = os.path.join(spec.cwd or ".", command)
        return os.path.isfile(path) and os.access(path, os.X_OK)
    search = spec.env.get("PATH", os.environ.get("PATH", os.defpath))
    return shutil.which(command, path=search) is not None

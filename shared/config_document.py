"""A config document as users write it, turned into the one shape the Config Structs decode.

A document is JSON or YAML. Its servers come as our list (`mcpServers: [{name: ...}]`) or as
the map Claude Desktop, Cursor and VS Code write (`mcpServers` or `servers`: `{name: {...}}`),
with those clients' type spellings and fields. `${VAR}` references are expanded here, and
credentials in a URL's userinfo move into an Authorization header. Problems name the place as
written, so a server of the map form is `$.mcpServers.time`, not an index. Field types and
defaults are not looked at: msgspec checks those afterwards.
"""

from __future__ import annotations

import base64
import json
import os
import re
from urllib.parse import unquote, urlsplit, urlunsplit

import msgspec
import yaml

__all__ = ["SERVER_CLIENT_FIELDS", "TOP_CLIENT_FIELDS", "ConfigProblem", "Document", "expand", "parse", "read_document"]

# Clients' names for our types; anything else is left for the enum check to report.
_TYPE_SPELLINGS = {"http": "streamable-http", "streamableHttp": "streamable-http"}
# Approval lists of the client's UI: the gateway has no approval step, and the client in front
# of it still asks, so ignoring them grants nothing.
_IGNORED = ("autoApprove", "alwaysAllow")
_UNSUPPORTED = {
    "envFile": "put the variables under env (values may use ${VAR})",
    "disabledTools": "block tools with aggregator.denylist.extra (globs on tool names)",
}
SERVER_CLIENT_FIELDS = ("disabled", *_IGNORED)
"""Server fields accepted besides ServerSpec's own."""
TOP_CLIENT_FIELDS = ("servers",)
"""Top-level fields accepted besides Config's own."""

_REFERENCE = re.compile(r"\$(\$?)\{([^}]*)\}")
_VARIABLE = re.compile(r"(?:env:)?([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_-]+")


class ConfigProblem(Exception):
    """One problem as '$.path: what is wrong'; the loader puts the file name in front."""


class Document(msgspec.Struct, frozen=True, kw_only=True):
    """The canonical data, and where each of its servers is written in the file."""

    data: dict[str, object]
    server_paths: tuple[str, ...]
    """Per entry of data["mcpServers"]: `$.mcpServers[2]` or `$.mcpServers.time`."""
    name_paths: tuple[str, ...]
    """Per entry: where its name is written (in the map form, the key)."""
    disabled: tuple[str, ...]
    """Servers the file turns off with `disabled: true`; they are neither checked nor expanded."""


def read_document(text: str, *, json_file: bool) -> Document:
    """Parse, normalise and expand a config document; raise ConfigProblem on the first problem."""
    data = parse(text, json_file=json_file)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigProblem(f"expected a mapping at the top level, got {type(data).__name__}")
    if "mcpServers" in data and "servers" in data:
        raise ConfigProblem("$.servers: use either mcpServers or servers, not both")
    key = "servers" if "servers" in data else "mcpServers"
    written = data.pop(key, None)
    if key == "servers":
        data.pop("inputs", None)  # VS Code's prompts for ${input:...}, which are refused where used
    canonical = {name: expand(value, f"${_key_path(str(name))}") for name, value in data.items()}
    servers: list[object] = []
    server_paths: list[str] = []
    name_paths: list[str] = []
    disabled: list[str] = []
    for at, name, entry in _entries(key, written):
        if isinstance(entry, dict) and _is_disabled(entry, at):
            disabled.append(name or str(entry.get("name", at)))
            continue
        servers.append(_expand_server(_normalise(entry, at, name), at) if isinstance(entry, dict) else entry)
        server_paths.append(at)
        name_paths.append(at if name is not None else f"{at}.name")
    canonical["mcpServers"] = servers
    return Document(
        data=canonical, server_paths=tuple(server_paths), name_paths=tuple(name_paths), disabled=tuple(disabled)
    )


def parse(text: str, *, json_file: bool) -> object:
    """JSON for .json files and JSON-looking text (YAML reads tabs, escapes, comments otherwise), else YAML."""
    json_problem = None
    if json_file or text.lstrip().startswith("{"):
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            json_problem = ConfigProblem(_json_error(exc))
        if json_file:
            raise json_problem
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        if json_problem is not None:
            raise json_problem from None  # it looked like JSON, so the JSON error says more
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise ConfigProblem(f"not valid YAML{where}: {getattr(exc, 'problem', None) or exc}") from None


def _json_error(exc: json.JSONDecodeError) -> str:
    """The decoder's message with line and column, and the likely cause where it is a common one."""
    hint = ""
    if exc.doc.startswith(("//", "/*"), exc.pos):
        hint = "; JSON has no comments"
    elif exc.doc[: exc.pos].rstrip().endswith(","):
        hint = "; remove the trailing comma"
    return f"not valid JSON (line {exc.lineno}, column {exc.colno}): {exc.msg}{hint}"


def _entries(key: str, written: object) -> list[tuple[str, str | None, object]]:
    """(path, name from a map key or None, entry) for each server as written."""
    if written is None:
        return []
    if isinstance(written, dict):
        for name in written:
            if isinstance(name, bool):  # YAML 1.1 reads on/off/yes/no as booleans
                raise ConfigProblem(
                    f"$.{key}: YAML reads a server name as {str(name).lower()}"
                    " (unquoted on, off, yes, no, true and false are booleans); quote it"
                )
        return [(f"$.{key}{_key_path(str(name))}", str(name), entry) for name, entry in written.items()]
    if isinstance(written, list):
        return [(f"$.{key}[{i}]", None, entry) for i, entry in enumerate(written)]
    raise ConfigProblem(f"$.{key}: expected a list of servers or a map of name to server, got {type(written).__name__}")


def _is_disabled(entry: dict[str, object], at: str) -> bool:
    disabled = entry.get("disabled", False)
    if not isinstance(disabled, bool):
        raise ConfigProblem(f"{at}.disabled: expected true or false, got {disabled!r}")
    return disabled


def _normalise(written: dict[str, object], at: str, name: str | None) -> dict[str, object]:
    """A server entry in the list form's terms: a name, one of our type names, no client-only fields."""
    entry = {key: value for key, value in written.items() if key not in SERVER_CLIENT_FIELDS}
    for key, fix in _UNSUPPORTED.items():
        if key in entry:
            raise ConfigProblem(f"{at}.{key}: not supported; {fix}")
    if name is not None:
        if "name" in entry:
            raise ConfigProblem(f"{at}.name: not used in the map form; the key {name!r} is the name")
        entry["name"] = name
    kind = entry.pop("type", None)
    if kind is None:
        if "command" in entry and "url" in entry:
            raise ConfigProblem(f"{at}: has both command and url; set type (stdio, or sse or streamable-http)")
        kind = "stdio" if "command" in entry else "streamable-http" if "url" in entry else None
    if kind is not None:
        entry["type"] = _TYPE_SPELLINGS.get(kind, kind) if isinstance(kind, str) else kind
    return entry


def _expand_server(entry: dict[str, object], at: str) -> dict[str, object]:
    """Expand one server's strings; credentials in its URL become an Authorization header."""
    expanded = {key: expand(value, f"{at}{_key_path(key)}") for key, value in entry.items() if key != "url"}
    url = entry.get("url")
    if not isinstance(url, str):
        if "url" in entry:
            expanded["url"] = url  # not a string: msgspec reports it
        return expanded
    expanded["url"], credentials = _split_credentials(url, f"{at}.url")
    if credentials is None:
        return expanded
    headers = expanded.setdefault("headers", {})
    if isinstance(headers, dict):  # else msgspec reports the wrong type
        written = next((key for key in headers if str(key).lower() == "authorization"), None)
        if written is not None:
            raise ConfigProblem(
                f"{at}.url: the user:password in it and {at}.headers.{written} both authenticate; keep one"
            )
        headers["Authorization"] = credentials
    return expanded


def _split_credentials(template: str, at: str) -> tuple[str, str | None]:
    """The expanded URL without userinfo, and that userinfo as a Basic Authorization value (or None)."""
    written = _userinfo(template)
    if written is not None:
        # Written in the file: each part is expanded on its own, so a password may hold / ? # @.
        user, password, rest = written
        user, password = _expand_text(unquote(user), at), _expand_text(unquote(password), at)
        url = _expand_text(rest, at)
    else:
        # Or inside a variable holding the whole URL, where it is percent-encoded URL text.
        url = _expand_text(template, at)
        found = _userinfo(url)
        if found is None:
            return url, None
        user, password, url = unquote(found[0]), unquote(found[1]), found[2]
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return url, f"Basic {token}"


def _userinfo(url: str) -> tuple[str, str, str] | None:
    """(user, password, the URL without them) when the URL has userinfo."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # not a URL: the checks after decoding say so
    userinfo, at_sign, host = parts.netloc.rpartition("@")
    if not at_sign:
        return None
    user, _, password = userinfo.partition(":")
    return user, password, urlunsplit(parts._replace(netloc=host))


def expand(value: object, at: str) -> object:
    """Every string below `value` with ${VAR} expanded; `at` is the path of `value`."""
    if isinstance(value, str):
        return _expand_text(value, at)
    if isinstance(value, dict):
        return {key: expand(item, f"{at}{_key_path(str(key))}") for key, item in value.items()}
    if isinstance(value, list):
        return [expand(item, f"{at}[{i}]") for i, item in enumerate(value)]
    return value


def _expand_text(text: str, at: str) -> str:
    """${VAR} (or VS Code's ${env:VAR}) must be set; ${VAR:-default} covers unset or empty; $${...} is literal."""
    return _REFERENCE.sub(lambda match: _resolve(match, at), text)


def _resolve(match: re.Match[str], at: str) -> str:
    escaped, body = match.groups()
    if escaped:
        return match.group(0)[1:]
    variable = _VARIABLE.fullmatch(body)
    if variable is None:
        raise ConfigProblem(
            f"{at}: ${{{body}}} is not supported; only environment variables are read"
            " (${NAME}, ${NAME:-default}, or $${...} for a literal)"
        )
    name, default = variable.groups()
    value = os.environ.get(name)
    if default is not None and not value:
        return str(default)
    if value is None:
        raise ConfigProblem(f"{at}: environment variable {name} is not set (use ${{{name}:-default}} for a default)")
    return value


def _key_path(key: str) -> str:
    """A mapping key as a path step: `.key`, or `["odd key"]` when it needs quoting."""
    return f".{key}" if _PLAIN_KEY.fullmatch(key) else f"[{json.dumps(key)}]"

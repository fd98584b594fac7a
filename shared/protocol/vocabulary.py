"""The MCP words both sides of the gateway use: lists, their notifications, named methods, header values.

One table per idea, so that a new list kind or a new named method is one edit. Nothing here
has behaviour beyond looking things up and encoding one header value.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Final

from shared.protocol.errors import HeaderMismatch

__all__ = [
    "CLIENT_CAPABILITY_FOR",
    "LIST_KINDS",
    "LOG_LEVELS",
    "NAMED_METHODS",
    "ListKind",
    "decode_header_value",
    "encode_header_value",
    "kind_for_key",
    "kind_for_method",
    "kinds_changed_by",
]


@dataclass(frozen=True, slots=True)
class ListKind:
    """One of the four lists a server offers, under every name it goes by."""

    key: str
    """The result member and the catalog's name for it: `tools`, `resourceTemplates`."""
    method: str
    """The method that reads it: `tools/list`."""
    field: str
    """The ServerRecord field that holds it: `tools`, `resource_templates`."""
    capability: str
    """The server capability that offers it (templates come with `resources`)."""
    changed: str
    """The notification that says it changed (templates share `resources/list_changed`)."""
    listen_flag: str
    """The `subscriptions/listen` filter member that asks for that notification."""


LIST_KINDS: Final = (
    ListKind("tools", "tools/list", "tools", "tools", "notifications/tools/list_changed", "toolsListChanged"),
    ListKind(
        "prompts", "prompts/list", "prompts", "prompts", "notifications/prompts/list_changed", "promptsListChanged"
    ),
    ListKind(
        "resources",
        "resources/list",
        "resources",
        "resources",
        "notifications/resources/list_changed",
        "resourcesListChanged",
    ),
    ListKind(
        "resourceTemplates",
        "resources/templates/list",
        "resource_templates",
        "resources",
        "notifications/resources/list_changed",
        "resourcesListChanged",
    ),
)
_BY_METHOD = {kind.method: kind for kind in LIST_KINDS}
_BY_KEY = {kind.key: kind for kind in LIST_KINDS}


def kind_for_method(method: str) -> ListKind | None:
    """The list a `*/list` method reads, or None for any other method."""
    return _BY_METHOD.get(method)


def kind_for_key(key: str) -> ListKind:
    return _BY_KEY[key]


def kinds_changed_by(notification: str) -> tuple[ListKind, ...]:
    """The lists a `notifications/*/list_changed` announces (none for any other notification)."""
    return tuple(kind for kind in LIST_KINDS if kind.changed == notification)


NAMED_METHODS: Final = {"tools/call": "name", "prompts/get": "name", "resources/read": "uri"}
"""Methods whose target travels in the `Mcp-Name` header (2026-07-28), and the params member it mirrors."""

LOG_LEVELS: Final = ("debug", "info", "notice", "warning", "error", "critical", "alert", "emergency")

CLIENT_CAPABILITY_FOR: Final = {
    "sampling/createMessage": "sampling",
    "elicitation/create": "elicitation",
    "roots/list": "roots",
}
"""Server-to-client requests and the client capability each needs."""

_SENTINEL_HEAD, _SENTINEL_TAIL = "=?base64?", "?="


def encode_header_value(value: str) -> str:
    """An HTTP header value as 2026-07-28 wants it: plain when safe, else the base64 sentinel."""
    safe = (
        value == value.strip()
        and all(0x20 <= ord(c) <= 0x7E for c in value)
        and not (value.startswith(_SENTINEL_HEAD) and value.endswith(_SENTINEL_TAIL))
    )
    if safe:
        return value
    return _SENTINEL_HEAD + base64.b64encode(value.encode()).decode() + _SENTINEL_TAIL


def decode_header_value(value: str) -> str:
    """Undo `encode_header_value`; HeaderMismatch for a value HTTP or the sentinel does not allow."""
    if value.isascii() and value.isprintable() and not value.startswith("=?"):
        return value
    if value.startswith(_SENTINEL_HEAD) and value.endswith(_SENTINEL_TAIL):
        try:
            return base64.b64decode(value[len(_SENTINEL_HEAD) : -len(_SENTINEL_TAIL)], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            raise HeaderMismatch(f"Header mismatch: {value!r} is not valid base64-encoded UTF-8") from None
    if any(not (0x20 <= ord(c) <= 0x7E or c == "\t") for c in value):
        raise HeaderMismatch("Header mismatch: a header value contains characters HTTP does not allow")
    return value

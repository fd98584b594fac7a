"""ToolUpdateEvent: the one message that says the registry changed, with a version counter.

The control plane publishes one per change (a backend registered, deregistered, still down
with a new error, its lists changed, a tool blocked or unblocked, the workflows changed).
Versions increase by one per event across the whole deployment, so a subscriber that sees a gap
knows it missed events and reloads the snapshot.
"""

from __future__ import annotations

from typing import Literal

import msgspec

__all__ = ["EventType", "ToolUpdateEvent", "decode_event", "encode_event"]

EventType = Literal[
    "registered",
    "deregistered",
    "status_changed",
    "capabilities_changed",
    "tool_block_changed",
    "user_changed",
    "workflows_changed",
    "resync",
]


class ToolUpdateEvent(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    type: EventType
    server: str | None = None
    tool: str | None = None
    changed: tuple[str, ...] = ()
    version: int = 0
    origin: str | None = None
    user: str | None = None
    """For user_changed: whose protected backends changed (the user key, a digest of the subject)."""


_decoder = msgspec.json.Decoder(ToolUpdateEvent)
_encoder = msgspec.json.Encoder()


def encode_event(event: ToolUpdateEvent) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> ToolUpdateEvent:
    return _decoder.decode(data)

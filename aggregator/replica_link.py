"""ReplicaLink: gets a message to the replica that holds the client stream it is for.

Each replica listens on its own channel (`replica:{tag}`) and on `broadcast`. Ids this
replica mints for things only it can complete (server-to-client request ids, legacy SSE
session ids) carry its tag, so whichever replica receives the client's next message knows
where to send it. Session notifications and resource updates are broadcast: the replica
holding the session's GET stream delivers them. On the embedded store all of this is local.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Literal

import msgspec

from shared.store.protocols import MessageBus

__all__ = ["LinkMessage", "ReplicaLink", "replica_of"]

log = logging.getLogger("aggregator.replica_link")

Kind = Literal["answer", "sse", "session", "resource", "subscriptions", "session_ended"]
_RETRY = (0.5, 1.0, 2.0, 5.0)


class LinkMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    kind: Kind
    session: str | None = None
    body: bytes = b""
    uris: list[str] = []


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(LinkMessage)


def replica_of(minted_id: object) -> str | None:
    """The replica tag inside an id this gateway minted (`gw-{tag}-{n}` or `{tag}.{rest}`)."""
    if not isinstance(minted_id, str):
        return None
    if minted_id.startswith("gw-"):
        parts = minted_id.split("-")
        return parts[1] if len(parts) >= 3 else None
    head, sep, _ = minted_id.partition(".")
    return head if sep else None


class ReplicaLink:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.tag = secrets.token_hex(4)
        self.channel = f"replica:{self.tag}"
        self._handlers: dict[str, Callable[[LinkMessage], Awaitable[None] | None]] = {}
        self.connected = asyncio.Event()

    def on(self, kind: Kind, handler: Callable[[LinkMessage], Awaitable[None] | None]) -> None:
        self._handlers[kind] = handler

    def mine(self, minted_id: object) -> bool:
        tag = replica_of(minted_id)
        return tag is None or tag == self.tag

    async def send(self, minted_id: object, message: LinkMessage) -> None:
        """Deliver to the replica whose tag is in `minted_id` (locally if it is ours)."""
        tag = replica_of(minted_id)
        if tag is None or tag == self.tag:
            await self._dispatch(message)
        else:
            await self.bus.publish(f"replica:{tag}", _encoder.encode(message))

    async def broadcast(self, message: LinkMessage) -> None:
        """Deliver on every replica, this one included."""
        await self.bus.publish("broadcast", _encoder.encode(message))

    async def run(self) -> None:
        """Receive until cancelled; resubscribe after store failures."""
        failures = 0
        while True:
            try:
                async with self.bus.subscribe(self.channel, "broadcast") as inbox:
                    self.connected.set()
                    failures = 0
                    async for _, payload in inbox:
                        try:
                            await self._dispatch(_decoder.decode(payload))
                        except (msgspec.DecodeError, msgspec.ValidationError):
                            log.warning("dropped a malformed replica message")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected.clear()
                delay = _RETRY[min(failures, len(_RETRY) - 1)]
                failures += 1
                log.warning("replica link lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    async def _dispatch(self, message: LinkMessage) -> None:
        handler = self._handlers.get(message.kind)
        if handler is None:
            return
        try:
            result = handler(message)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("handling a %s message from another replica failed", message.kind)

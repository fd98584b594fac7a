"""ReplicaLink: gets a message to the replica that holds the client stream it is for.

Each replica listens on its own channel (`replica:{tag}`) and on `broadcast`. Ids this
replica mints for things only it can complete (server-to-client request ids, legacy SSE
session ids) carry its tag, so whichever replica receives the client's next message knows
where to send it. Session notifications and resource updates are broadcast: the replica
holding the session's GET stream delivers them (`SessionStreams`). On the embedded store all
of this is local.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable, Iterable
from typing import Literal

import msgspec

from aggregator.notifications import ALL_KINDS, Listener, NotificationHub
from aggregator.protocol.sessions import SessionManager
from shared.retry import backoff_delay
from shared.store.protocols import MessageBus

__all__ = ["LinkMessage", "LinkTimeout", "ReplicaLink", "SessionStreams", "replica_of"]

log = logging.getLogger("aggregator.replica_link")

Kind = Literal["answer", "sse", "session", "resource", "subscriptions", "session_ended", "resume", "reply"]
_RETRY_CAP = 2.0  # seconds between attempts to resubscribe once the store is back


class LinkMessage(msgspec.Struct, kw_only=True, omit_defaults=True):
    kind: Kind
    session: str | None = None
    body: bytes = b""
    uris: list[str] = []
    ref: str = ""
    """For a request: its id, which the reply repeats."""
    reply_to: str = ""
    """For a request: the tag of the replica waiting for the reply."""
    subject: str | None = None
    """Who sent the client message it carries, as the forwarding replica verified."""


class LinkTimeout(Exception):
    """Another replica did not reply in time (it may have stopped)."""


Handler = Callable[[LinkMessage], Awaitable[None] | None]
RequestHandler = Callable[[LinkMessage], Awaitable[bytes]]


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
        self._handlers: dict[str, Handler] = {"reply": self._on_reply}
        self._request_handlers: dict[str, RequestHandler] = {}
        self._replies: dict[str, asyncio.Future[bytes]] = {}
        self._serving: set[asyncio.Task[None]] = set()
        self.connected = asyncio.Event()

    def on(self, kind: Kind, handler: Handler) -> None:
        self._handlers[kind] = handler

    def on_request(self, kind: Kind, handler: RequestHandler) -> None:
        """Answer requests of `kind` from other replicas with the bytes `handler` returns (run as a task)."""
        self._request_handlers[kind] = handler

    async def request(self, minted_id: object, message: LinkMessage, *, timeout: float) -> bytes:
        """Ask the replica whose tag is in `minted_id` and wait for its reply; LinkTimeout after `timeout`."""
        ref = secrets.token_hex(8)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._replies[ref] = future
        try:
            await self.send(minted_id, msgspec.structs.replace(message, ref=ref, reply_to=self.tag))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            raise LinkTimeout(f"replica {replica_of(minted_id)} did not reply within {timeout:.0f}s") from None
        finally:
            self._replies.pop(ref, None)

    def mine(self, minted_id: object) -> bool:
        tag = replica_of(minted_id)
        return tag is None or tag == self.tag

    async def send(self, minted_id: object, message: LinkMessage) -> None:
        """Deliver to the replica whose tag is in `minted_id` (locally if it is ours)."""
        await self._deliver(replica_of(minted_id), message)

    async def _deliver(self, tag: str | None, message: LinkMessage) -> None:
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
                failures += 1
                delay = backoff_delay(failures, cap=_RETRY_CAP)
                log.warning("replica link lost (%s); reconnecting in %.1fs", exc, delay)
                await asyncio.sleep(delay)

    def _on_reply(self, message: LinkMessage) -> None:
        future = self._replies.get(message.ref)
        if future is not None and not future.done():
            future.set_result(message.body)

    async def _serve_request(self, handler: RequestHandler, message: LinkMessage) -> None:
        try:
            body = await handler(message)
        except Exception:
            log.exception("serving a %s request from replica %s failed", message.kind, message.reply_to)
            return
        reply = LinkMessage(kind="reply", ref=message.ref, body=body)
        await self._deliver(message.reply_to, reply)

    async def _dispatch(self, message: LinkMessage) -> None:
        serve = self._request_handlers.get(message.kind) if message.reply_to else None
        if serve is not None:
            task = asyncio.ensure_future(self._serve_request(serve, message))  # may wait long: not inline
            self._serving.add(task)
            task.add_done_callback(self._serving.discard)
            return
        handler = self._handlers.get(message.kind)
        if handler is None:
            return
        try:
            result = handler(message)
            if asyncio.iscoroutine(result):
                await result
        except Exception:
            log.exception("handling a %s message from another replica failed", message.kind)


class SessionStreams:
    """The streams of handshake-era sessions (GET streams, legacy SSE), reached from any replica.

    A message for a session goes straight to its stream when this replica holds it, and is
    broadcast otherwise; the replica holding the stream delivers it. The stream's listener
    keeps the session's resource subscriptions (the session record is their source of truth).
    """

    def __init__(self, link: ReplicaLink, hub: NotificationHub, sessions: SessionManager) -> None:
        self.link = link
        self.hub = hub
        self.sessions = sessions
        self._streams: dict[str, Listener] = {}
        link.on("session", self._on_session)
        link.on("resource", self._on_resource)
        link.on("subscriptions", self._on_subscriptions)
        link.on("session_ended", self._on_session_ended)

    def open(self, session_id: str, subscriptions: Iterable[str] = (), subject: str | None = None) -> Listener:
        """This session's stream, from now on on this replica (one per session: a later one replaces it).

        TooManyStreams when the replica's cap is reached (replacing a stream is always allowed).
        """
        previous = self._streams.get(session_id)
        if previous is not None:
            self.close(previous)
        listener = Listener(kinds=ALL_KINDS, uris=set(subscriptions), session_id=session_id, subject=subject)
        self.hub.add(listener)
        self._streams[session_id] = listener
        return listener

    def close(self, listener: Listener) -> None:
        self.hub.remove(listener)
        if listener.session_id is not None and self._streams.get(listener.session_id) is listener:
            del self._streams[listener.session_id]

    def stream_of(self, session_id: str) -> Listener | None:
        """The session's stream if this replica holds it."""
        return self._streams.get(session_id)

    async def notify(self, session_id: str, data: bytes) -> None:
        """Put a message on the session's stream, on whichever replica holds it."""
        listener = self._streams.get(session_id)
        if listener is not None:
            listener.push(data)
        else:
            await self.link.broadcast(LinkMessage(kind="session", session=session_id, body=data))

    async def set_subscriptions(self, session_id: str, uris: set[str]) -> None:
        """The session's stream, wherever it is, now delivers updates of exactly these resources."""
        self._set_uris(session_id, uris)
        await self.link.broadcast(LinkMessage(kind="subscriptions", session=session_id, uris=sorted(uris)))

    async def resource_updated(self, uri: str) -> None:
        """Every stream subscribed to `uri`, on every replica, hears of the update."""
        await self.link.broadcast(LinkMessage(kind="resource", uris=[uri]))

    async def end(self, session_id: str) -> bool:
        """End the session everywhere; False when it did not exist."""
        existed = await self.sessions.delete(session_id)
        await self.link.broadcast(LinkMessage(kind="session_ended", session=session_id))
        return existed

    def _set_uris(self, session_id: str, uris: Iterable[str]) -> None:
        listener = self._streams.get(session_id)
        if listener is not None:
            listener.uris = set(uris)

    def _on_session(self, message: LinkMessage) -> None:
        listener = self._streams.get(message.session or "")
        if listener is not None:
            listener.push(message.body)

    def _on_resource(self, message: LinkMessage) -> None:
        for uri in message.uris:
            self.hub.resource_updated(uri)

    def _on_subscriptions(self, message: LinkMessage) -> None:
        if message.session is not None:
            self._set_uris(message.session, message.uris)

    def _on_session_ended(self, message: LinkMessage) -> None:
        if message.session is None:
            return
        self.sessions.forget(message.session)
        listener = self._streams.get(message.session)
        if listener is not None:
            self.close(listener)

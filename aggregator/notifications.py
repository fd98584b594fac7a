"""NotificationHub: fan-out of change notifications to the client streams open on this replica.

Streams are 2026-07-28 `subscriptions/listen` responses (filtered, tagged with their
subscription id), 2025-11-25 GET streams and legacy SSE streams (every list change, plus the
resources the session subscribed to), and the stdio client. A stream that cannot keep up is
closed rather than allowed to block the others; past `max_streams`, new streams are refused
(never the open ones dropped).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from collections.abc import Set as AbstractSet

from msgspec import UNSET, Raw

from shared.protocol import versions as v
from shared.protocol.errors import TooManyStreams
from shared.protocol.jsonrpc import Notification, encode, raw
from shared.protocol.vocabulary import kind_for_key

__all__ = ["Listener", "NotificationHub"]

log = logging.getLogger("aggregator.notifications")

_QUEUE_LIMIT = 1000
KEEPALIVE = 15.0
"""Seconds between the hub's ticks: each open stream then sends a comment line, so proxies keep it open."""
ALL_KINDS = frozenset({"tools", "prompts", "resources"})
_NO_URIS: frozenset[str] = frozenset()


class Listener:
    """One open client stream and what it asked to hear about."""

    __slots__ = (
        "_messages",
        "_tick",
        "_wake",
        "closed",
        "kinds",
        "on_overflow",
        "session_id",
        "subject",
        "subscription_id",
        "uris",
    )

    def __init__(
        self,
        *,
        kinds: AbstractSet[str],
        uris: AbstractSet[str] | None = None,
        subscription_id: Raw | None = None,
        session_id: str | None = None,
        subject: str | None = None,
        on_overflow: Callable[[], None] | None = None,
    ) -> None:
        self.kinds = kinds
        self.subject = subject  # whose stream, when clients are authenticated: list changes reach only theirs
        self.uris = uris or _NO_URIS  # replaced, never changed in place: streams share the empty one
        self.subscription_id = subscription_id
        self.session_id = session_id
        self.on_overflow = on_overflow
        self.closed = False
        # A list and one future rather than an asyncio.Queue: thousands of idle streams each hold
        # one, and a queue with its getter/putter deques costs several times as much.
        self._messages: list[bytes] = []
        self._wake: asyncio.Future[None] | None = None
        self._tick = False

    def deliver(self, method: str, params: dict[str, object] | None = None) -> None:
        body: dict[str, object] = dict(params or {})
        if self.subscription_id is not None:
            body["_meta"] = {v.SUBSCRIPTION_ID: self.subscription_id}
        message = encode(Notification(method=method, params=raw(body) if body else UNSET))
        self.push(message)

    def push(self, message: bytes) -> None:
        if self.closed:
            return
        if len(self._messages) >= _QUEUE_LIMIT:
            log.warning("a client stream fell %d messages behind; closing it", _QUEUE_LIMIT)
            self.close()
            if self.on_overflow is not None:
                self.on_overflow()
            return
        self._messages.append(message)
        self.wake()

    def close(self) -> None:
        """No more messages; a stream waiting in `next` ends."""
        self.closed = True
        self.wake()

    def wake(self) -> None:
        """End a wait in `next` now (a message came, the listener closed, or its client left)."""
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    def tick(self) -> None:
        """The hub's keepalive tick: a waiting `next` returns b""."""
        self._tick = True
        self.wake()

    async def next(self) -> bytes | None:
        """The next message; b"" on the hub's keepalive tick; None when closed or woken by `wake`."""
        if not self._messages and not self.closed and not self._tick:
            self._wake = wake = asyncio.get_running_loop().create_future()
            try:
                await wake
            finally:
                self._wake = None
        if self.closed:
            return None
        if self._messages:
            return self._messages.pop(0)
        if self._tick:
            self._tick = False
            return b""
        return None


class NotificationHub:
    """`keepalive`: seconds between ticks to every open stream (one timer for all of them)."""

    def __init__(self, *, max_streams: int, keepalive: float = KEEPALIVE) -> None:
        self.max_streams = max_streams
        self.keepalive = keepalive
        self._listeners: set[Listener] = set()
        self._ticker: asyncio.TimerHandle | None = None

    def add(self, listener: Listener) -> None:
        """Deliver to `listener` from now on; TooManyStreams once `max_streams` are open."""
        if len(self._listeners) >= self.max_streams:
            raise TooManyStreams(self.max_streams)
        self._listeners.add(listener)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(self.keepalive, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        for listener in self._listeners:
            listener.tick()
        if self._listeners:
            self._ticker = asyncio.get_running_loop().call_later(self.keepalive, self._tick)

    def remove(self, listener: Listener) -> None:
        self._listeners.discard(listener)
        listener.close()

    def close_all(self) -> None:
        """End every stream (the gateway is stopping)."""
        for listener in list(self._listeners):
            self.remove(listener)
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None

    def __len__(self) -> int:
        return len(self._listeners)

    def lists_changed(self, kinds: set[str], subject: str | None = None) -> None:
        """Tell every stream that asked about one of these lists (`tools`, ...); only `subject`'s when given."""
        methods = {kind_for_key(kind).changed for kind in kinds}
        sending: dict[int, list[str]] = {}  # by id of a listener's kinds: streams share a few sets
        plain: dict[str, bytes] = {}  # a stream without a subscription id gets the same bytes as all such
        for listener in list(self._listeners):
            if subject is not None and listener.subject != subject:
                continue
            chosen = sending.get(id(listener.kinds))
            if chosen is None:
                wanted = {kind_for_key(kind).changed for kind in listener.kinds}
                chosen = sending[id(listener.kinds)] = sorted(methods & wanted)
            for method in chosen:
                if listener.subscription_id is not None:
                    listener.deliver(method)
                    continue
                if method not in plain:
                    plain[method] = encode(Notification(method=method))
                listener.push(plain[method])

    def resource_updated(self, uri: str) -> None:
        for listener in list(self._listeners):
            if uri in listener.uris:
                listener.deliver("notifications/resources/updated", {"uri": uri})

    def session_listener(self, session_id: str) -> Listener | None:
        return next((item for item in self._listeners if item.session_id == session_id), None)

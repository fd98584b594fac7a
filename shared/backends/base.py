"""One live JSON-RPC conversation with a backend MCP server, whatever carries it.

A `BackendConnection` multiplexes concurrent requests by id, stamps each request with the
envelope its negotiated protocol version needs, and routes what the backend sends back:
responses to the waiting caller, progress and request-scoped messages to that caller's
`CallSink`, list changes to the owner's `on_notification`. It ignores what the messages
mean beyond that; transports (stdio, SSE, streamable HTTP) only move bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from shared.backends.call import CallSink, PendingCall, stamp_meta
from shared.backends.call_gate import CallGate
from shared.config import ServerSpec
from shared.protocol import versions as v
from shared.protocol.errors import (
    METHOD_NOT_FOUND,
    BackendTimeout,
    BackendUnavailable,
    GatewayError,
)
from shared.protocol.jsonrpc import (
    ErrorResponse,
    Message,
    Notification,
    Params,
    Request,
    RequestId,
    ResultResponse,
    decode_params,
    encode,
    raw,
)
from shared.protocol.vocabulary import LIST_KINDS

__all__ = ["BackendConnection", "Credentials", "NotificationHandler"]

log = logging.getLogger("aggregator.backend")

NotificationHandler = Callable[["BackendConnection", str, Params], None]
Credentials = Callable[[], str | None]
"""The bearer token a request should carry now, read at every request (tokens are refreshed meanwhile)."""
"""Called with each notification of a backend that belongs to no call (list changes, resource updates)."""

_EMPTY_RESULT = raw({})
_NO_ROOTS = raw({"roots": []})

_LISTEN_BACKOFF = (0.2, 0.5, 1.0, 2.0, 5.0)
_FOREVER = 10 * 365 * 24 * 3600.0


class BackendConnection:
    """Base class: request multiplexing, envelope stamping and message routing."""

    transport = "abstract"
    speaks_stateless = True

    def __init__(
        self,
        spec: ServerSpec,
        *,
        on_notification: NotificationHandler | None = None,
        on_lost: Callable[[BackendConnection, str], None] | None = None,
        credentials: Credentials | None = None,
    ) -> None:
        self.spec = spec
        self.credentials = credentials
        """The user's current token for this connection (per-user connections to protected backends)."""
        self.server = spec.name
        self.protocol_version: str | None = None
        self.capabilities: dict[str, Any] = {}
        self.server_info: dict[str, Any] = {}
        self.instructions: str | None = None
        self.on_notification = on_notification
        self.on_lost = on_lost
        self.lost_reason: str | None = None
        self._ids = itertools.count(1)
        self._pending: dict[RequestId, PendingCall] = {}
        self._progress: dict[str, CallSink] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._watched: set[str] = set()
        self._answering: dict[RequestId, asyncio.Task[None]] = {}  # backend requests being put to clients
        self._listener: asyncio.Task[None] | None = None
        self.calls = CallGate(spec.name, max_in_flight=spec.max_in_flight, max_queued=spec.max_queued)

    # -- what the rest of the gateway uses --------------------------------------------------

    @property
    def stateless(self) -> bool:
        return v.is_stateless(self.protocol_version)

    def authorization(self) -> dict[str, str]:
        """The Authorization header a request carries now: the user's token, on a per-user connection."""
        token = self.credentials() if self.credentials is not None else None
        return {"authorization": f"Bearer {token}"} if token is not None else {}

    @property
    def alive(self) -> bool:
        return self.lost_reason is None

    async def request(
        self,
        method: str,
        params: Params | None = None,
        *,
        timeout: float | None = None,
        sink: CallSink | None = None,
        client_meta: Params | None = None,
        client_capabilities: Raw | None = None,
        control: bool = False,
    ) -> Message:
        """Send a request stamped for this backend's protocol version; return its response.

        `control` marks the gateway's own traffic (discovery, health checks, the notification
        stream): it skips the maxInFlight gate, so a backend busy with calls never looks dead.
        """
        outgoing = dict(params) if params else {}
        request_id = next(self._ids)
        token = f"gw-{request_id}" if sink is not None and sink.wants_progress else None
        outgoing["_meta"] = stamp_meta(self.protocol_version, client_meta, token, client_capabilities)
        return await self.send(
            method, outgoing, request_id=request_id, timeout=timeout, sink=sink, token=token, control=control
        )

    async def send(
        self,
        method: str,
        params: Params | dict[str, Any] | None,
        *,
        request_id: RequestId | None = None,
        timeout: float | None = None,
        sink: CallSink | None = None,
        token: str | None = None,
        control: bool = False,
    ) -> Message:
        """Send params exactly as given (no stamping); used for handshakes and by `request`.

        Unless `control`, the call holds one of the backend's maxInFlight slots, queueing for one
        if need be (BackendBusy when the queue is full); its timeout covers the wait and the answer.
        """
        if not self.alive:
            raise BackendUnavailable(self.server, f"backend {self.server!r} is not connected: {self.lost_reason}")
        limit = timeout if timeout is not None else self.spec.timeout
        deadline = asyncio.get_running_loop().time() + limit
        if not control:
            await self.calls.enter(deadline)
        try:
            if request_id is None:
                request_id = next(self._ids)
            body = encode(
                Request(id=request_id, method=method, params=Raw(encode(params)) if params is not None else UNSET)
            )
            pending = PendingCall(sink)
            self._pending[request_id] = pending
            if token is not None and sink is not None:
                self._progress[token] = sink
            try:
                async with asyncio.timeout_at(deadline):
                    return await self._exchange(request_id, method, params, body, pending)
            except TimeoutError:
                self._spawn(self._cancel(request_id, f"timed out after {limit:g}s"))
                raise BackendTimeout(
                    self.server, f"backend {self.server!r} did not answer {method} within {limit:g}s (its timeout)"
                ) from None
            except asyncio.CancelledError:
                self._spawn(self._cancel(request_id, "the client cancelled the request"))
                raise
            finally:
                self._pending.pop(request_id, None)
                if pending.future.done() and not pending.future.cancelled():
                    pending.future.exception()  # seen: over HTTP the call raised its own error, not awaiting this
                if token is not None:
                    self._progress.pop(token, None)
        finally:
            if not control:
                self.calls.leave()

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        await self._send_message(
            encode(Notification(method=method, params=raw(params) if params is not None else UNSET))
        )

    async def aclose(self) -> None:
        """Close the transport, fail what is in flight, stop background tasks."""
        self._lose("connection closed by the gateway", notify=False)
        pending = [*self._tasks, *self._answering.values()]
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=2)
        await self.close_transport()

    # -- for subclasses ----------------------------------------------------------------------

    async def open_transport(self) -> None:
        raise NotImplementedError

    async def close_transport(self) -> None:
        raise NotImplementedError

    async def _exchange(
        self, request_id: RequestId, method: str, params: Any, body: bytes, pending: PendingCall
    ) -> Message:
        """Deliver one request and return its response (stream transports: write, await)."""
        await self._send_message(body)
        return await pending.future

    async def _send_message(self, body: bytes) -> None:
        """Deliver a notification or a response to a server request."""
        raise NotImplementedError

    async def _cancel(self, request_id: RequestId, reason: str) -> None:
        """Tell the backend to stop working on a request the caller gave up on."""
        with contextlib.suppress(GatewayError, OSError):
            await self.notify("notifications/cancelled", {"requestId": request_id, "reason": reason})

    def start_listening(self) -> None:
        """Start whatever listens for the backend's unsolicited notifications."""
        if self.stateless:
            self._restart_listener()

    async def watch_resource(self, uri: str) -> None:
        """Ask for `notifications/resources/updated` about `uri` (2026-07-28: re-listen)."""
        if uri not in self._watched:
            self._watched.add(uri)
            self._restart_listener()

    def _restart_listener(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
        task = asyncio.ensure_future(self._listen_forever())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        self._listener = task

    def _listen_filter(self) -> dict[str, Any]:
        """The 2026-07-28 `subscriptions/listen` filter this backend can honour."""
        wanted: dict[str, Any] = {}
        for kind in LIST_KINDS:
            section = self.capabilities.get(kind.capability)
            if isinstance(section, dict) and section.get("listChanged"):
                wanted[kind.listen_flag] = True
        if self._watched:
            wanted["resourceSubscriptions"] = sorted(self._watched)
        return wanted

    async def _listen_forever(self) -> None:
        """Keep the backend's notification stream open while the connection lives."""
        failures = 0
        while self.alive:
            try:
                opened = await self._listen_once()
            except asyncio.CancelledError:
                raise
            except (GatewayError, OSError) as exc:
                log.debug("notification stream to %s failed: %s", self.server, exc)
                opened, failures = False, failures + 1
                if failures >= 3:
                    self._lose(f"stopped answering its notification stream ({exc})")
                    return
            if opened is None:
                return  # nothing to listen for, or the backend offers no such stream
            if opened:
                failures = 0
            await asyncio.sleep(_LISTEN_BACKOFF[min(failures, len(_LISTEN_BACKOFF) - 1)])

    async def _listen_once(self) -> bool | None:
        """One listen stream until it ends: True if it opened, None if there is nothing to hear."""
        wanted = self._listen_filter()
        if not wanted:
            return None
        await self.request("subscriptions/listen", {"notifications": raw(wanted)}, timeout=_FOREVER, control=True)
        return True

    def _dispatch(self, message: Message, via: PendingCall | None = None) -> None:
        """Route one message from the backend; `via` is the call whose stream carried it."""
        kind = message.kind
        if kind == "notification":
            self._on_backend_notification(message, via)
            return
        request_id = message.id
        if not isinstance(request_id, int | str):
            return  # a response to nothing we sent (id null): nobody waits for it
        if kind == "response":
            pending = self._pending.get(request_id)
            if pending is not None and not pending.future.done():
                pending.future.set_result(message)
            return
        task = asyncio.ensure_future(self._answer(message, via))
        self._answering[request_id] = task
        task.add_done_callback(lambda _t: self._answering.pop(request_id, None))

    def _lose(self, reason: str, *, notify: bool = True) -> None:
        """Mark the connection dead and fail every call waiting on it."""
        if self.lost_reason is not None:
            return
        self.lost_reason = reason
        error = BackendUnavailable(self.server, f"backend {self.server!r} {reason}")
        for pending in self._pending.values():
            if not pending.future.done():
                pending.future.set_exception(error)
        if notify and self.on_lost is not None:
            self.on_lost(self, reason)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- internals ---------------------------------------------------------------------------

    def _on_backend_notification(self, message: Message, via: PendingCall | None) -> None:
        method = message.method
        assert isinstance(method, str)
        try:
            params = decode_params(message.params)
        except GatewayError:
            log.warning("backend %s sent %s with malformed params; ignored", self.server, method)
            return
        if method == "notifications/progress":
            token = params.get(v.PROGRESS_TOKEN)
            sink = self._progress.get(msgspec.json.decode(token)) if token is not None else None
            if sink is not None:
                self._spawn(sink.notify(method, params))
            return
        if method == "notifications/cancelled":
            # The backend withdrew a question it asked a client: stop waiting (the client is told).
            request_id = params.get("requestId")
            task = self._answering.get(msgspec.json.decode(request_id)) if request_id is not None else None
            if task is not None:
                task.cancel()
                return
        if method == "notifications/message":
            sink = self._call_sink(via)
            if sink is not None:
                self._spawn(sink.notify(method, params))
                return
        if self.on_notification is not None:
            self.on_notification(self, method, params)

    def _call_sink(self, via: PendingCall | None) -> CallSink | None:
        """The caller a message belongs to: the call whose stream carried it, else the only one."""
        if via is not None:
            return via.sink
        sinks = [p.sink for p in self._pending.values() if p.sink is not None]
        return sinks[0] if len(sinks) == 1 else None

    async def _answer(self, message: Message, via: PendingCall | None) -> None:
        """Answer a backend's request, through the calling client when one can be found."""
        method = message.method
        assert isinstance(method, str) and message.id is not None and message.id is not UNSET
        sink = self._call_sink(via)
        try:
            if sink is not None:
                result = await sink.ask(method, message.params if message.params is not UNSET else _EMPTY_RESULT)
            elif method == "ping":
                result = _EMPTY_RESULT
            elif method == "roots/list":
                result = _NO_ROOTS
            else:
                raise GatewayError(
                    f"the gateway cannot route {method} to a client: it is not part of a call in progress"
                    " (or several calls are in progress on this connection)",
                    code=METHOD_NOT_FOUND,
                )
            body = encode(ResultResponse(id=message.id, result=result))
        except GatewayError as exc:
            body = encode(ErrorResponse(id=message.id, error={"code": exc.code, "message": exc.message}))
        except Exception as exc:  # a client that vanished mid-question must not wedge the backend
            log.warning("answering %s from backend %s failed: %s", method, self.server, exc)
            body = encode(ErrorResponse(id=message.id, error={"code": -32603, "message": f"gateway error: {exc}"}))
        try:
            await self._send_message(body)
        except (GatewayError, OSError) as exc:
            log.warning("could not deliver the answer to %s to backend %s: %s", method, self.server, exc)

"""An in-process MCP backend for tests: each method is a plain handler function.

    async def call_tool(call: Call) -> dict[str, Any]:
        await call.progress(1, total=2)          # on this call's stream: over HTTP the answer becomes SSE
        answer = await call.ask("elicitation/create", {"message": "sure?"})
        return {"content": [{"type": "text", "text": answer["action"]}]}

    async with FakeBackend({"tools/call": call_tool}, era="2025-11-25") as backend:
        conn = await connect(backend.spec("fake"))

`era` is the protocol version it speaks. "2026-07-28" answers `server/discover` and holds
`subscriptions/listen` streams open; a handshake version answers `initialize` and, over
streamable HTTP, mints an `Mcp-Session-Id` that later requests must carry (400 without one,
404 for an unknown one) and serves the GET stream, unless `mint_sessions=False` (a server
without sessions). `transport` is "streamable-http", "sse" (the 2024-11-05 HTTP+SSE
transport) or "stdio": the gateway then starts `stdio_relay.py`, a child process that carries
its lines to and from this object.

A handler returns the result, raises `RpcError` to answer with an error, returns `HttpAnswer`
for any HTTP answer at all (garbage included), or raises `Drop` to die mid-answer. The fake
checks nothing a test did not ask for; it records every message that arrived (`received`), and
the calls whose client stopped waiting (`abandoned`), for the test to assert on. A handler that
raises anything else gets an internal error answer, and the exception fails the test on exit.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from shared.config import ServerSpec
from tests.fakes.http_server import HttpReply, HttpRequest, HttpServer

__all__ = ["STATELESS", "Call", "Drop", "FakeBackend", "Handler", "HttpAnswer", "Received", "RpcError"]

STATELESS = "2026-07-28"
RELAY = Path(__file__).with_name("stdio_relay.py")
SERVER_INFO = "io.modelcontextprotocol/serverInfo"

Handler = Callable[["Call"], Awaitable[Any]]
_T = TypeVar("_T")


class RpcError(Exception):
    """Raise in a handler to answer with this JSON-RPC error (over HTTP with `status`)."""

    def __init__(self, code: int, message: str, data: Any = None, *, status: int = 200) -> None:
        super().__init__(message)
        self.error = {"code": code, "message": message, **({"data": data} if data is not None else {})}
        self.status = status


class Drop(Exception):
    """Raise in a handler to die mid-answer: the connection carrying the answer closes (stdio: the process exits)."""

    def __init__(self, exit_code: int = 1) -> None:
        super().__init__(f"dropped (exit code {exit_code})")
        self.exit_code = exit_code


@dataclass(frozen=True)
class HttpAnswer:
    """Return from a handler to answer its POST with exactly this (streamable HTTP only)."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain"


@dataclass(frozen=True)
class Received:
    """One JSON-RPC message that reached the fake, with the HTTP headers that carried it ({} over stdio)."""

    message: dict[str, Any]
    headers: dict[str, str]

    @property
    def method(self) -> str | None:
        return self.message.get("method")

    @property
    def params(self) -> dict[str, Any]:
        return self.message.get("params") or {}

    @property
    def meta(self) -> dict[str, Any]:
        return self.params.get("_meta") or {}


class Call:
    """One request being served: what it carries, and its way back to the client."""

    def __init__(self, backend: FakeBackend, message: dict[str, Any], headers: dict[str, str], outlet: _Outlet) -> None:
        self.backend = backend
        self.method: str = message["method"]
        self.id: Any = message["id"]
        self.params: dict[str, Any] = message.get("params") or {}
        self.headers = headers
        self.response_headers = outlet.headers  # HTTP headers of the answer (e.g. Mcp-Session-Id)
        self._outlet = outlet

    @property
    def arguments(self) -> dict[str, Any]:
        return self.params.get("arguments") or {}

    def stream(self) -> None:
        """Start the answer as an event stream now (HTTP), before anything is sent on it."""
        self._outlet.open()

    async def notify(self, method: str, params: dict[str, Any] | None = None) -> None:
        """A notification on this call's stream; yields once so the client can see it before the handler goes on."""
        self._outlet.send(_encode(_message(method=method, params=params)))
        await asyncio.sleep(0)

    async def progress(self, progress: float, total: float | None = None) -> None:
        """`notifications/progress` for the token this request carried."""
        token = (self.params.get("_meta") or {}).get("progressToken")
        params = {"progressToken": token, "progress": progress}
        if total is not None:
            params["total"] = total
        await self.notify("notifications/progress", params)

    async def ask(self, method: str, params: dict[str, Any] | None = None) -> Any:
        """A request to the client on this call's stream; its result (RpcError when it answers with an error)."""
        ask_id = f"ask-{next(self.backend._ids)}"
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.backend._asks[ask_id] = future
        self._outlet.send(_encode(_message(id=ask_id, method=method, params=params or {})))
        answer = await future
        if "error" in answer:
            error = answer["error"]
            raise RpcError(error["code"], error["message"], error.get("data"))
        return answer["result"]

    def send_raw(self, data: bytes) -> None:
        """Bytes on this call's stream as they are: one event's data over HTTP, one line over stdio."""
        self._outlet.send(data)


class FakeBackend:
    """One MCP server for one test, entered with `async with` (see the module docstring)."""

    def __init__(
        self,
        handlers: Mapping[str, Handler] | None = None,
        *,
        era: str = STATELESS,
        transport: str = "streamable-http",
        capabilities: dict[str, Any] | None = None,
        sse: bool = False,
        mint_sessions: bool = True,
        name: str = "fake",
    ) -> None:
        self.era = era
        self.transport = transport
        self.sse = sse  # answer every POST as an event stream, not only those a handler sent something on
        self.mint_sessions = mint_sessions and era != STATELESS  # False: a handshake-era server without sessions
        self.capabilities = capabilities if capabilities is not None else {"tools": {"listChanged": True}}
        self.info = {"name": name, "version": "1.0"}
        defaults: dict[str, Handler] = {"ping": _empty}
        if era == STATELESS:
            defaults |= {"server/discover": self._discover, "subscriptions/listen": self._listen}
        else:
            defaults["initialize"] = self._initialize
        self.handlers = {**defaults, **(handlers or {})}
        self.received: list[Received] = []
        self.abandoned: list[Any] = []  # ids of calls whose client closed the stream or cancelled them
        self.sessions: set[str] = set()
        self.errors: list[BaseException] = []
        self.port = 0
        self._streams: list[_Outlet] = []  # where unsolicited notifications go (one entry per holder)
        self._asks: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._running: dict[Any, asyncio.Task[Any]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._ids = itertools.count(1)
        self._changed = asyncio.Event()
        self._http: HttpServer | None = None
        self._relay_server: asyncio.Server | None = None
        self._relays: list[asyncio.StreamWriter] = []
        self._legacy_stream: _EventStream | None = None

    # -- for tests ----------------------------------------------------------------------------

    def spec(self, name: str = "fake", **fields: Any) -> ServerSpec:
        """A ServerSpec the gateway's connection classes can open to this backend."""
        where: dict[str, Any] = {"type": self.transport}
        if self.transport == "stdio":
            where |= {"command": sys.executable, "args": (str(RELAY), str(self.port))}
        else:
            where["url"] = f"http://127.0.0.1:{self.port}{'/sse' if self.transport == 'sse' else '/mcp'}"
        return ServerSpec(name=name, **{**where, **fields})

    @property
    def methods(self) -> list[str]:
        """The methods of every request and notification received, in order."""
        return [r.method for r in self.received if r.method is not None]

    @property
    def listening(self) -> bool:
        """Whether the client holds a stream that unsolicited notifications reach."""
        return bool(self._streams)

    def requests(self, method: str) -> list[Received]:
        return [r for r in self.received if r.method == method]

    async def eventually(self, check: Callable[[], _T], timeout: float = 5.0) -> _T:
        """Wait until `check()` is truthy (re-checked whenever something arrives or a call ends); return it."""
        async with asyncio.timeout(timeout):
            while not (value := check()):
                await self._changed.wait()
        return value

    async def wait_for(self, method: str, timeout: float = 5.0) -> Received:
        """The first message with that method, once it has arrived."""
        found = await self.eventually(lambda: self.requests(method), timeout)
        return found[0]

    async def notify_all(self, method: str, params: dict[str, Any] | None = None) -> None:
        """An unsolicited notification on every open stream (listen, GET, the SSE stream, stdio)."""
        payload = _encode(_message(method=method, params=params))
        for stream in dict.fromkeys(self._streams):
            stream.send(payload)
        await asyncio.sleep(0)

    def write_stderr(self, text: str) -> None:
        """A line on the stdio backend process's stderr."""
        for writer in self._relays:
            writer.write(_encode({"relay": "stderr", "text": text}) + b"\n")

    # -- lifetime -----------------------------------------------------------------------------

    async def __aenter__(self) -> FakeBackend:
        if self.transport == "stdio":
            self._relay_server = await asyncio.start_server(self._on_relay, "127.0.0.1", 0)
            self.port = self._relay_server.sockets[0].getsockname()[1]
        else:
            self._http = await HttpServer(self._on_http).__aenter__()
            self.port = self._http.port
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=5)
        if self._http is not None:
            await self._http.__aexit__(*exc)
        if self._relay_server is not None:
            for writer in self._relays:
                writer.close()
            self._relay_server.close()
            await self._relay_server.wait_closed()
        if self.errors and exc == (None, None, None):
            raise self.errors[0]

    # -- transports ---------------------------------------------------------------------------

    async def _on_http(self, request: HttpRequest, reply: HttpReply) -> None:
        if self.transport == "sse":
            await self._on_legacy_http(request, reply)
            return
        session = request.headers.get("mcp-session-id")
        if request.method == "DELETE":
            reply.send(200 if session in self.sessions else 404)
            self.sessions.discard(session or "")
            return
        if request.method == "GET":
            if not self.mint_sessions:
                reply.send(405)
            elif self._session_ok(session, reply):
                reply.start(200, {"content-type": "text/event-stream"})
                await self._hold(_EventStream(reply))
            return
        try:
            message = json.loads(request.body)
        except ValueError:
            reply.send(400, b"the body is not JSON")
            return
        self._record(message, request.headers)
        if self.mint_sessions and message.get("method") != "initialize" and not self._session_ok(session, reply):
            return
        await self._route(message, request.headers, _PostAnswer(reply, sse=self.sse))
        if reply.state == "new":
            reply.send(202)

    def _session_ok(self, session: str | None, reply: HttpReply) -> bool:
        if session in self.sessions:
            return True
        status, text = (400, "Mcp-Session-Id header required") if session is None else (404, "session not found")
        reply.send(status, _encode(_message(id=None, error={"code": -32600, "message": text})), _JSON)
        return False

    async def _on_legacy_http(self, request: HttpRequest, reply: HttpReply) -> None:
        if request.method == "GET":
            reply.start(200, {"content-type": "text/event-stream"})
            reply.write(b"event: endpoint\ndata: /message?session=1\n\n")
            self._legacy_stream = _EventStream(reply)
            await self._hold(self._legacy_stream)
            return
        message = json.loads(request.body)
        self._record(message, request.headers)
        reply.send(202)
        assert self._legacy_stream is not None, "a POST before the SSE stream was opened"
        self._spawn(self._route(message, request.headers, self._legacy_stream))

    async def _on_relay(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        lines = _Lines(writer)
        self._relays.append(writer)
        self._streams.append(lines)
        self._touch()
        try:
            while line := await reader.readline():
                message = json.loads(line)
                self._record(message, {})
                self._spawn(self._route(message, {}, lines))
        finally:
            self._streams.remove(lines)

    # -- messages -----------------------------------------------------------------------------

    def _record(self, message: dict[str, Any], headers: dict[str, str]) -> None:
        self.received.append(Received(message, headers))
        self._touch()

    async def _route(self, message: dict[str, Any], headers: dict[str, str], outlet: _Outlet) -> None:
        """Resolve a client's answer, act on a notification, or serve a request through its handler."""
        method = message.get("method")
        if method is None:
            future = self._asks.pop(str(message.get("id")), None)
            if future is not None and not future.done():
                future.set_result(message)
            return
        if "id" not in message:
            if method == "notifications/cancelled":
                task = self._running.get((message.get("params") or {}).get("requestId"))
                if task is not None:
                    task.cancel()
            return
        call = Call(self, message, headers, outlet)
        task = asyncio.current_task()
        assert task is not None
        self._running[call.id] = task
        try:
            result = await self.handlers.get(method, _unknown)(call)
        except RpcError as exc:
            outlet.answer(_encode(_message(id=call.id, error=exc.error)), exc.status)
        except Drop as exc:
            outlet.drop(exc.exit_code)
        except asyncio.CancelledError:
            self.abandoned.append(call.id)
            self._touch()
            raise
        except Exception as exc:
            self.errors.append(exc)
            outlet.answer(_encode(_message(id=call.id, error={"code": -32603, "message": repr(exc)})), 500)
        else:
            if isinstance(result, HttpAnswer):
                outlet.answer_http(result)
            else:
                outlet.answer(_encode(_message(id=call.id, result=result)), 200)
        finally:
            self._running.pop(call.id, None)

    async def _hold(self, stream: _Outlet) -> None:
        """Keep a stream for unsolicited notifications open until the client closes it."""
        self._streams.append(stream)
        self._touch()
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            self._streams.remove(stream)
            self._touch()

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _touch(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- default handlers ---------------------------------------------------------------------

    async def _discover(self, call: Call) -> dict[str, Any]:
        return {
            "resultType": "complete",
            "supportedVersions": [self.era],
            "capabilities": self.capabilities,
            "_meta": {SERVER_INFO: self.info},
        }

    async def _initialize(self, call: Call) -> dict[str, Any]:
        if self.transport == "streamable-http" and self.mint_sessions:
            session = f"session-{next(self._ids)}"
            self.sessions.add(session)
            call.response_headers["mcp-session-id"] = session
        return {"protocolVersion": self.era, "capabilities": self.capabilities, "serverInfo": self.info}

    async def _listen(self, call: Call) -> None:
        call.stream()
        await self._hold(call._outlet)


async def _empty(call: Call) -> dict[str, Any]:
    return {}


async def _unknown(call: Call) -> None:
    raise RpcError(-32601, f"Method not found: {call.method}")


# -- outlets: the way back to the client --------------------------------------------------------

_JSON = {"content-type": "application/json"}
_EVENT_STREAM = {"content-type": "text/event-stream"}


class _Outlet:
    """Where a call's messages and answer go."""

    def __init__(self) -> None:
        self.headers: dict[str, str] = {}

    def open(self) -> None:
        """Start the answer as a stream (HTTP); nothing to do elsewhere."""

    def send(self, payload: bytes) -> None:
        raise NotImplementedError

    def answer(self, payload: bytes, status: int) -> None:
        self.send(payload)

    def answer_http(self, answer: HttpAnswer) -> None:
        raise TypeError("HttpAnswer is for requests POSTed over streamable HTTP")

    def drop(self, exit_code: int) -> None:
        raise NotImplementedError


class _PostAnswer(_Outlet):
    """A POST's answer: JSON, unless something was sent before it (then an event stream)."""

    def __init__(self, reply: HttpReply, *, sse: bool) -> None:
        super().__init__()
        self.reply = reply
        self.sse = sse

    def open(self) -> None:
        if self.reply.state == "new":
            self.reply.start(200, {**_EVENT_STREAM, **self.headers})

    def send(self, payload: bytes) -> None:
        self.open()
        self.reply.write(_event(payload))

    def answer(self, payload: bytes, status: int) -> None:
        if self.reply.state == "streaming" or (self.sse and status == 200):
            self.send(payload)
            self.reply.end()
        else:
            self.reply.send(status, payload, {**_JSON, **self.headers})

    def answer_http(self, answer: HttpAnswer) -> None:
        self.reply.send(answer.status, answer.body, {"content-type": answer.content_type, **self.headers})

    def drop(self, exit_code: int) -> None:
        self.reply.close()


class _EventStream(_Outlet):
    """A standing event stream: the 2025-11-25 GET stream, the HTTP+SSE transport's stream."""

    def __init__(self, reply: HttpReply) -> None:
        super().__init__()
        self.reply = reply

    def send(self, payload: bytes) -> None:
        self.reply.write(_event(payload))

    def drop(self, exit_code: int) -> None:
        self.reply.close()


class _Lines(_Outlet):
    """The stdio relay: one message per line; a `relay` line tells the relay process what to do."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        super().__init__()
        self.writer = writer

    def send(self, payload: bytes) -> None:
        self.writer.write(payload + b"\n")

    def drop(self, exit_code: int) -> None:
        self.send(_encode({"relay": "exit", "code": exit_code}))


def _message(**fields: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", **{k: v for k, v in fields.items() if v is not None or k == "id"}}


def _encode(value: Any) -> bytes:
    return json.dumps(value).encode()


def _event(payload: bytes) -> bytes:
    return b"event: message\ndata: " + payload + b"\n\n"

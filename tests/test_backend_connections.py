"""shared/backends/base.py and its transports (streamable_http.py, sse.py, stdio.py) against a fake backend.

Each behaviour runs on every transport and era the fake speaks: streamable HTTP in both eras,
the HTTP+SSE transport (2025-11-25 only) and stdio in both eras. The connection classes are the
real ones, opened with `connect` (negotiation included); only the backend is a fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from msgspec import Raw

from shared.backends.base import BackendConnection
from shared.backends.factory import connect
from shared.protocol import versions as v
from shared.protocol.errors import BackendError, BackendTimeout, BackendUnavailable, InvalidParams
from shared.protocol.jsonrpc import Message, Params, raw
from tests.fakes.backend import STATELESS, Call, Drop, FakeBackend, HttpAnswer, Received

HANDSHAKE = "2025-11-25"
TRANSPORTS_AND_ERAS = {
    "http-2026": ("streamable-http", STATELESS),
    "http-2025": ("streamable-http", HANDSHAKE),
    "sse-2025": ("sse", HANDSHAKE),
    "stdio-2026": ("stdio", STATELESS),
    "stdio-2025": ("stdio", HANDSHAKE),
}


def kinds(*, era: str | None = None, streams_only: bool = False) -> list[Any]:
    """(transport, era) parameters; `streams_only`: those where one stream carries every call."""
    return [
        pytest.param(kind, id=name)
        for name, kind in TRANSPORTS_AND_ERAS.items()
        if (era is None or kind[1] == era) and not (streams_only and kind[0] == "streamable-http")
    ]


KINDS = kinds()


class Caller:
    """The client side of one call, as a CallSink: keeps what the backend sent and answers its questions."""

    def __init__(self, answers: dict[str, Any] | None = None, *, wants_progress: bool = True) -> None:
        self.wants_progress = wants_progress
        self.answers = answers or {}
        self.notifications: list[tuple[str, dict[str, Any]]] = []
        self.notified = asyncio.Event()  # what the connection hands to a sink arrives in a task of its own
        self.questions: list[tuple[str, Any]] = []

    async def notify(self, method: str, params: Params) -> None:
        self.notifications.append((method, {key: msgspec.json.decode(value) for key, value in params.items()}))
        self.notified.set()

    async def ask(self, method: str, params: Raw) -> Raw:
        self.questions.append((method, msgspec.json.decode(params)))
        if method not in self.answers:
            raise InvalidParams(f"this caller cannot answer {method}")
        return raw(self.answers[method])


class Inbox:
    """What reaches the connection owner's on_notification and on_lost."""

    def __init__(self) -> None:
        self.notifications: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
        self.lost: list[str] = []

    def on_notification(self, conn: BackendConnection, method: str, params: Params) -> None:
        self.notifications.put_nowait((method, {key: msgspec.json.decode(value) for key, value in params.items()}))

    def on_lost(self, conn: BackendConnection, reason: str) -> None:
        self.lost.append(reason)


@contextlib.asynccontextmanager
async def opened(backend: FakeBackend, inbox: Inbox | None = None, **spec: Any) -> AsyncIterator[BackendConnection]:
    inbox = inbox or Inbox()
    conn = await connect(backend.spec("fake", **spec), on_notification=inbox.on_notification, on_lost=inbox.on_lost)
    try:
        yield conn
    finally:
        await conn.aclose()


def result(message: Message) -> Any:
    assert isinstance(message.result, Raw), message.error
    return msgspec.json.decode(message.result)


def tool_call(name: str, **arguments: Any) -> Params:
    return {"name": raw(name), "arguments": raw(arguments)}


async def the_call(backend: FakeBackend, name: str) -> Received:
    """The tools/call for tool `name` as the backend received it."""
    calls = await backend.eventually(lambda: [r for r in backend.requests("tools/call") if r.params["name"] == name])
    return calls[0]


# -- multiplexing -------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_concurrent_requests_answered_out_of_order_reach_their_own_callers(kind: tuple[str, str]) -> None:
    gates = {name: asyncio.Event() for name in "abc"}

    async def gated(call: Call) -> dict[str, Any]:
        await gates[call.params["name"]].wait()
        return {"tool": call.params["name"]}

    transport, era = kind
    async with FakeBackend({"tools/call": gated}, era=era, transport=transport) as backend, opened(backend) as conn:
        calls = {name: asyncio.ensure_future(conn.request("tools/call", tool_call(name))) for name in "abc"}
        await backend.eventually(lambda: len(backend.requests("tools/call")) == 3)
        for name in "cba":
            gates[name].set()
            assert result(await asyncio.wait_for(calls[name], 5)) == {"tool": name}
            assert all(not calls[other].done() for other in "abc" if other < name)


# -- envelope stamping --------------------------------------------------------------------------


@pytest.mark.parametrize("kind", kinds(era=STATELESS))
async def test_requests_to_a_2026_backend_carry_the_protocol_fields_in_meta(kind: tuple[str, str]) -> None:
    transport, era = kind
    async with FakeBackend({"tools/call": _ok}, era=era, transport=transport) as backend, opened(backend) as conn:
        client_meta = {"com.example/trace": raw("t-1"), v.PROTOCOL_VERSION: raw("1999-01-01"), v.LOG_LEVEL: raw("info")}
        await conn.request(
            "tools/call", tool_call("echo"), client_meta=client_meta, client_capabilities=raw({"sampling": {}})
        )
        received = await the_call(backend, "echo")
    assert received.meta == {
        "com.example/trace": "t-1",
        v.LOG_LEVEL: "info",
        v.PROTOCOL_VERSION: STATELESS,
        v.CLIENT_INFO: v.GATEWAY_INFO,
        v.CLIENT_CAPABILITIES: {"sampling": {}},
    }
    if transport == "streamable-http":
        headers = received.headers
        assert (headers["mcp-method"], headers["mcp-name"], headers["mcp-protocol-version"]) == (
            "tools/call",
            "echo",
            STATELESS,
        )
        assert "mcp-session-id" not in headers


@pytest.mark.parametrize("kind", kinds(era=HANDSHAKE))
async def test_requests_to_a_2025_backend_carry_no_protocol_fields(kind: tuple[str, str]) -> None:
    transport, era = kind
    async with FakeBackend({"tools/call": _ok}, era=era, transport=transport) as backend, opened(backend) as conn:
        client_meta = {"com.example/trace": raw("t-1"), v.LOG_LEVEL: raw("info"), v.PROTOCOL_VERSION: raw(STATELESS)}
        await conn.request("tools/call", tool_call("echo"), client_meta=client_meta)
        received = await the_call(backend, "echo")
        sessions = set(backend.sessions)
    assert received.meta == {"com.example/trace": "t-1"}
    if transport == "streamable-http":
        assert {received.headers["mcp-session-id"]} == sessions
        assert received.headers["mcp-protocol-version"] == HANDSHAKE
        assert "mcp-method" not in received.headers


# -- messages about a call ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_progress_reaches_the_caller_of_the_call_it_is_about(kind: tuple[str, str]) -> None:
    both_started = asyncio.Event()

    async def with_progress(call: Call) -> dict[str, Any]:
        await both_started.wait()
        await call.progress(0.5, total=1)
        return {}

    transport, era = kind
    backend = FakeBackend({"tools/call": with_progress}, era=era, transport=transport)
    async with backend, opened(backend) as conn:
        first, second, silent = Caller(), Caller(), Caller(wants_progress=False)
        calls = [
            conn.request("tools/call", tool_call("one"), sink=first, client_meta={v.PROGRESS_TOKEN: raw("client-1")}),
            conn.request("tools/call", tool_call("two"), sink=second, client_meta={v.PROGRESS_TOKEN: raw("client-2")}),
            conn.request("tools/call", tool_call("three"), sink=silent),
        ]
        pending = asyncio.gather(*calls)
        await backend.eventually(lambda: len(backend.requests("tools/call")) == 3)
        both_started.set()
        await asyncio.wait_for(pending, 5)
        await asyncio.wait_for(asyncio.gather(first.notified.wait(), second.notified.wait()), 5)
        tokens = {name: (await the_call(backend, name)).meta.get(v.PROGRESS_TOKEN) for name in ("one", "two", "three")}
    assert tokens["one"] != tokens["two"] and tokens["three"] is None
    assert not {"client-1", "client-2"} & set(tokens.values())  # the gateway's own tokens go to the backend
    for caller, name in ((first, "one"), (second, "two")):
        progress = {"progressToken": tokens[name], "progress": 0.5, "total": 1}
        assert caller.notifications == [("notifications/progress", progress)]
    assert silent.notifications == []


@pytest.mark.parametrize("kind", KINDS)
async def test_a_log_message_during_a_call_reaches_its_caller(kind: tuple[str, str]) -> None:
    async def logging_tool(call: Call) -> dict[str, Any]:
        await call.notify("notifications/message", {"level": "info", "data": "working"})
        return {}

    transport, era = kind
    async with FakeBackend({"tools/call": logging_tool}, era=era, transport=transport) as backend:
        inbox = Inbox()
        async with opened(backend, inbox) as conn:
            caller = Caller()
            await conn.request("tools/call", tool_call("log"), sink=caller)
            await asyncio.wait_for(caller.notified.wait(), 5)
    assert caller.notifications == [("notifications/message", {"level": "info", "data": "working"})]
    assert inbox.notifications.empty()


@pytest.mark.parametrize("kind", KINDS)
async def test_a_backend_question_is_answered_through_the_calling_sink(kind: tuple[str, str]) -> None:
    async def asking(call: Call) -> dict[str, Any]:
        answer = await call.ask("sampling/createMessage", {"messages": [], "maxTokens": 5})
        return {"sampled": answer}

    transport, era = kind
    async with FakeBackend({"tools/call": asking}, era=era, transport=transport) as backend, opened(backend) as conn:
        caller = Caller({"sampling/createMessage": {"model": "m", "content": {"type": "text", "text": "hi"}}})
        reply = await asyncio.wait_for(conn.request("tools/call", tool_call("ask"), sink=caller), 5)
    assert result(reply) == {"sampled": {"model": "m", "content": {"type": "text", "text": "hi"}}}
    assert caller.questions == [("sampling/createMessage", {"messages": [], "maxTokens": 5})]


@pytest.mark.parametrize("kind", KINDS)
async def test_a_question_the_caller_cannot_answer_gets_an_error_answer(kind: tuple[str, str]) -> None:
    async def asking(call: Call) -> dict[str, Any]:
        await call.ask("elicitation/create", {"message": "sure?"})
        return {}

    transport, era = kind
    async with FakeBackend({"tools/call": asking}, era=era, transport=transport) as backend, opened(backend) as conn:
        reply = await asyncio.wait_for(conn.request("tools/call", tool_call("ask"), sink=Caller()), 5)
    assert isinstance(reply.error, Raw)
    assert msgspec.json.decode(reply.error) == {
        "code": -32602,
        "message": "this caller cannot answer elicitation/create",
    }


# -- failures -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_a_backend_dying_mid_call_fails_the_call_with_backend_unavailable(kind: tuple[str, str]) -> None:
    async def dying(call: Call) -> None:
        await call.progress(0.1)
        raise Drop(exit_code=3)

    transport, era = kind
    async with FakeBackend({"tools/call": dying}, era=era, transport=transport) as backend, opened(backend) as conn:
        with pytest.raises(BackendUnavailable, match="backend 'fake'") as failure:
            await asyncio.wait_for(conn.request("tools/call", tool_call("die"), sink=Caller()), 5)
        assert failure.value.server == "fake"
        assert failure.value.message.count("'fake'") == 1, failure.value.message
        if transport == "stdio":
            assert "exited with code 3" in failure.value.message
    assert len(backend.requests("tools/call")) == 1  # a call the backend may have acted on is not sent again


@pytest.mark.parametrize("kind", kinds(streams_only=True))
async def test_after_a_stream_backend_died_calls_fail_at_once_and_the_owner_is_told(kind: tuple[str, str]) -> None:
    async def dying(call: Call) -> None:
        raise Drop(exit_code=3)

    transport, era = kind
    async with FakeBackend({"tools/call": dying}, era=era, transport=transport) as backend:
        inbox = Inbox()
        async with opened(backend, inbox) as conn:
            with pytest.raises(BackendUnavailable):
                await asyncio.wait_for(conn.request("tools/call", tool_call("die")), 5)
            assert not conn.alive and len(inbox.lost) == 1
            with pytest.raises(BackendUnavailable, match="backend 'fake' is not connected"):
                await conn.request("tools/list")


@pytest.mark.parametrize("kind", KINDS)
async def test_a_call_over_its_timeout_fails_with_backend_timeout_and_is_cancelled(kind: tuple[str, str]) -> None:
    async def stalling(call: Call) -> None:
        await asyncio.Event().wait()

    transport, era = kind
    async with FakeBackend({"tools/call": stalling}, era=era, transport=transport) as backend, opened(backend) as conn:
        with pytest.raises(BackendTimeout, match=r"backend 'fake' did not answer tools/call within 0.2s"):
            await conn.request("tools/call", tool_call("slow"), timeout=0.2)
        call_id = (await the_call(backend, "slow")).message["id"]
        await backend.eventually(lambda: call_id in backend.abandoned)
        if transport == "streamable-http" and era == STATELESS:
            assert result(await conn.request("ping")) == {}
            assert backend.requests("notifications/cancelled") == []  # closing the stream was the cancellation
        else:
            cancelled = await backend.wait_for("notifications/cancelled")
            assert cancelled.params["requestId"] == call_id
            assert result(await conn.request("ping")) == {}


@pytest.mark.parametrize("kind", KINDS)
async def test_a_list_change_reaches_the_owners_on_notification(kind: tuple[str, str]) -> None:
    transport, era = kind
    async with FakeBackend(era=era, transport=transport) as backend:
        inbox = Inbox()
        async with opened(backend, inbox):
            await backend.eventually(lambda: backend.listening)
            await backend.notify_all("notifications/tools/list_changed")
            method, _ = await asyncio.wait_for(inbox.notifications.get(), 5)
    assert method == "notifications/tools/list_changed"
    if era == STATELESS:
        listen = await backend.wait_for("subscriptions/listen")
        assert listen.params["notifications"] == {"toolsListChanged": True}


# -- what only one transport does ---------------------------------------------------------------


async def test_a_2025_http_backend_ending_the_session_marks_the_connection_lost() -> None:
    async with FakeBackend({"tools/call": _ok}, era=HANDSHAKE) as backend:
        inbox = Inbox()
        async with opened(backend, inbox) as conn:
            backend.sessions.clear()
            with pytest.raises(BackendUnavailable, match="ended the gateway's session"):
                await conn.request("tools/call", tool_call("echo"))
            assert not conn.alive and inbox.lost


async def test_losing_a_connection_under_a_call_logs_no_unretrieved_error(caplog: pytest.LogCaptureFixture) -> None:
    """The call raised its own error; asyncio must not log the same loss again as never retrieved."""
    async with FakeBackend({"tools/call": _ok}, era=HANDSHAKE) as backend, opened(backend) as conn:
        backend.sessions.clear()
        with pytest.raises(BackendUnavailable):
            await conn.request("tools/call", tool_call("echo"))
    gc.collect()
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == []


async def test_closing_a_2025_http_connection_ends_its_session() -> None:
    async with FakeBackend(era=HANDSHAKE) as backend:
        async with opened(backend):
            (session,) = backend.sessions
        assert backend.sessions == set()
    assert session


@pytest.mark.parametrize("era", [STATELESS, HANDSHAKE])
async def test_an_http_answer_that_is_not_json_rpc_fails_naming_the_status(era: str) -> None:
    async def broken(call: Call) -> HttpAnswer:
        return HttpAnswer(502, b"<html>Bad Gateway</html>", "text/html")

    async with FakeBackend({"tools/call": broken}, era=era) as backend, opened(backend) as conn:
        with pytest.raises(BackendError, match="backend 'fake' answered HTTP 502: <html>Bad Gateway</html>"):
            await conn.request("tools/call", tool_call("echo"))


@pytest.mark.parametrize("kind", KINDS)
async def test_a_malformed_message_on_the_stream_is_skipped(kind: tuple[str, str]) -> None:
    async def noisy(call: Call) -> dict[str, Any]:
        call.send_raw(b"{this is not json")
        return {"fine": True}

    transport, era = kind
    async with FakeBackend({"tools/call": noisy}, era=era, transport=transport) as backend, opened(backend) as conn:
        assert result(await asyncio.wait_for(conn.request("tools/call", tool_call("x")), 5)) == {"fine": True}


async def test_stdio_backend_stderr_is_logged_under_the_server_name(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aggregator.backend")
    heard = LogLine("warming up the cache")
    log = logging.getLogger("aggregator.backend")
    log.addHandler(heard)
    try:
        async with FakeBackend(transport="stdio") as backend, opened(backend):
            backend.write_stderr("warming up the cache")
            await asyncio.wait_for(heard.seen.wait(), 5)
    finally:
        log.removeHandler(heard)
    assert heard.record is not None and heard.record.levelno == logging.INFO
    assert (heard.record.__dict__["server"], heard.record.__dict__["stream"]) == ("fake", "stderr")


class LogLine(logging.Handler):
    """Catches the log record whose message is `text`."""

    def __init__(self, text: str) -> None:
        super().__init__(logging.DEBUG)
        self.text = text
        self.record: logging.LogRecord | None = None
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage() == self.text:
            self.record = record
            self.seen.set()


async def test_a_stdio_command_that_cannot_start_names_the_command() -> None:
    async with FakeBackend(transport="stdio") as backend:
        with pytest.raises(BackendUnavailable, match="cannot start backend 'fake': /nonexistent/mcp-server"):
            await connect(backend.spec("fake", command="/nonexistent/mcp-server"))


async def test_an_sse_url_that_answers_an_error_fails_naming_the_status() -> None:
    async with FakeBackend(era=HANDSHAKE) as backend:  # streamable HTTP: a GET without a session is refused
        with pytest.raises(BackendError, match="backend 'fake' answered HTTP 400"):
            await connect(backend.spec("fake", type="sse"))


async def _ok(call: Call) -> dict[str, Any]:
    return {"content": []}

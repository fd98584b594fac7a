"""aggregator/input_required.py: questions crossing between the eras, with real connections to a fake backend.

InputBroker: a 2025-11-25 backend asks mid-call while serving a 2026-07-28 client, who gets an
InputRequiredResult and answers by retrying. drive_input_required: a 2026-07-28 backend's
input_required result is asked of a 2025-11-25 client and the backend retried.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest
from msgspec import Raw

from aggregator.auth.principal import Principal
from aggregator.calls import CallContext
from aggregator.input_required import STATE_PREFIX, InputBroker, drive_input_required, is_gateway_state
from aggregator.relay import RelaySink
from shared.backends.base import BackendConnection
from shared.backends.factory import connect
from shared.protocol.errors import MISSING_CLIENT_CAPABILITY, InvalidParams
from shared.protocol.jsonrpc import Message, Params, raw
from shared.records import SessionRecord
from tests.fakes.backend import STATELESS, Call, FakeBackend, Handler

HANDSHAKE = "2025-11-25"
BINDING = "tools/call:x_fake_deploy"
CONFIRM = {"message": "Deploy to production?", "requestedSchema": {"type": "object", "properties": {}}}


def client_2026(subject: str | None = "alice", capabilities: dict[str, Any] | None = None) -> CallContext:
    """A 2026-07-28 caller: its capabilities travel with each request."""
    declared = capabilities if capabilities is not None else {"elicitation": {}, "sampling": {}}
    return CallContext(
        request_id=7,
        method="tools/call",
        protocol_version=STATELESS,
        client_capabilities_raw=raw(declared),
        principal=Principal(subject=subject) if subject is not None else None,
    )


@contextlib.asynccontextmanager
async def handshake_backend(tool: Handler) -> AsyncIterator[tuple[FakeBackend, BackendConnection]]:
    async with FakeBackend({"tools/call": tool}, era=HANDSHAKE) as backend:
        conn = await connect(backend.spec("fake"))
        try:
            yield backend, conn
        finally:
            await conn.aclose()


@contextlib.asynccontextmanager
async def opened_broker(**options: Any) -> AsyncIterator[InputBroker]:
    broker = InputBroker(**options)
    try:
        yield broker
    finally:
        await broker.aclose()


async def call_through(broker: InputBroker, conn: BackendConnection, ctx: CallContext) -> Message | Raw:
    """Start tools/call on a handshake-era backend for a 2026-07-28 caller, as the gateway does."""
    sink = RelaySink(ctx, queue_asks=True)
    task = asyncio.ensure_future(conn.request("tools/call", {"name": raw("deploy")}, sink=sink, client_meta=ctx.meta))
    return await broker.run(ctx, task, sink, BINDING)


def input_required(outcome: Message | Raw) -> dict[str, Any]:
    assert isinstance(outcome, Raw), outcome
    decoded = msgspec.json.decode(outcome)
    assert decoded["resultType"] == "input_required"
    assert isinstance(decoded, dict)
    return decoded


def retry(result: dict[str, Any], answers: dict[str, Any]) -> Params:
    return {"name": raw("deploy"), "requestState": raw(result["requestState"]), "inputResponses": raw(answers)}


def answer_of(outcome: Message | Raw) -> Any:
    assert isinstance(outcome, Message) and isinstance(outcome.result, Raw), outcome
    return msgspec.json.decode(outcome.result)


async def asks_to_confirm(call: Call) -> dict[str, Any]:
    answer = await call.ask("elicitation/create", CONFIRM)
    return {"content": [{"type": "text", "text": f"deploy: {answer['action']}"}]}


# -- InputBroker ----------------------------------------------------------------------------------


async def test_a_question_from_a_handshake_backend_becomes_input_required_with_a_sealed_state() -> None:
    async with handshake_backend(asks_to_confirm) as (backend, conn), opened_broker() as broker:
        result = input_required(await call_through(broker, conn, client_2026()))
        assert len(broker) == 1
        assert backend.abandoned == []  # the backend call waits for the answer
    assert result["inputRequests"] == {"gw-1": {"method": "elicitation/create", "params": CONFIRM}}
    assert result["requestState"].startswith(STATE_PREFIX)
    assert is_gateway_state({"requestState": raw(result["requestState"])})
    assert not is_gateway_state({"requestState": raw("a-backend-s-own-state")})


async def test_a_retry_with_input_responses_resumes_the_paused_call() -> None:
    async with handshake_backend(asks_to_confirm) as (backend, conn), opened_broker() as broker:
        result = input_required(await call_through(broker, conn, client_2026()))
        outcome = await broker.resume(client_2026(), retry(result, {"gw-1": {"action": "accept"}}), BINDING)
        assert len(broker) == 0
    assert answer_of(outcome) == {"content": [{"type": "text", "text": "deploy: accept"}]}
    assert len(backend.requests("tools/call")) == 1  # resumed, not sent again


async def test_a_call_that_asks_nothing_returns_the_backend_answer() -> None:
    async def plain(call: Call) -> dict[str, Any]:
        return {"content": []}

    async with handshake_backend(plain) as (_, conn), opened_broker() as broker:
        assert answer_of(await call_through(broker, conn, client_2026())) == {"content": []}
        assert len(broker) == 0


async def test_several_questions_asked_at_once_come_in_one_round() -> None:
    async def asks_two(call: Call) -> dict[str, Any]:
        confirm, sample = await asyncio.gather(
            call.ask("elicitation/create", CONFIRM), call.ask("sampling/createMessage", {"messages": []})
        )
        return {"confirm": confirm, "sample": sample}

    async with handshake_backend(asks_two) as (_, conn), opened_broker() as broker:
        result = input_required(await call_through(broker, conn, client_2026()))
        methods = {key: request["method"] for key, request in result["inputRequests"].items()}
        answers = {
            key: {"action": "accept"} if method == "elicitation/create" else {"model": "m"}
            for key, method in methods.items()
        }
        outcome = await broker.resume(client_2026(), retry(result, answers), BINDING)
    assert sorted(methods.values()) == ["elicitation/create", "sampling/createMessage"]
    assert answer_of(outcome) == {"confirm": {"action": "accept"}, "sample": {"model": "m"}}


async def test_a_question_left_unanswered_is_asked_again_under_a_new_state() -> None:
    async def asks_two(call: Call) -> dict[str, Any]:
        confirm, sample = await asyncio.gather(
            call.ask("elicitation/create", CONFIRM), call.ask("sampling/createMessage", {"messages": []})
        )
        return {"confirm": confirm, "sample": sample}

    async with handshake_backend(asks_two) as (_, conn), opened_broker() as broker:
        first = input_required(await call_through(broker, conn, client_2026()))
        keys = {request["method"]: key for key, request in first["inputRequests"].items()}
        partial = retry(first, {keys["elicitation/create"]: {"action": "accept"}})
        second = input_required(await broker.resume(client_2026(), partial, BINDING))
        assert list(second["inputRequests"]) == [keys["sampling/createMessage"]]
        assert second["requestState"] != first["requestState"]
        with pytest.raises(InvalidParams, match="finished or expired"):
            await broker.resume(client_2026(), partial, BINDING)  # the first state was used up
        rest = retry(second, {keys["sampling/createMessage"]: {"model": "m"}})
        outcome = await broker.resume(client_2026(), rest, BINDING)
    assert answer_of(outcome) == {"confirm": {"action": "accept"}, "sample": {"model": "m"}}


async def test_a_question_after_an_answer_starts_another_round() -> None:
    async def asks_twice(call: Call) -> dict[str, Any]:
        first = await call.ask("elicitation/create", CONFIRM)
        second = await call.ask("elicitation/create", {**CONFIRM, "message": "Really?"})
        return {"answers": [first["action"], second["action"]]}

    async with handshake_backend(asks_twice) as (_, conn), opened_broker() as broker:
        first = input_required(await call_through(broker, conn, client_2026()))
        second = input_required(
            await broker.resume(client_2026(), retry(first, {"gw-1": {"action": "accept"}}), BINDING)
        )
        assert second["inputRequests"] == {
            "gw-2": {"method": "elicitation/create", "params": {**CONFIRM, "message": "Really?"}}
        }
        outcome = await broker.resume(client_2026(), retry(second, {"gw-2": {"action": "decline"}}), BINDING)
    assert answer_of(outcome) == {"answers": ["accept", "decline"]}


def _tampered(state: str) -> str:
    return state[:-1] + ("0" if state[-1] != "0" else "1")


@pytest.mark.parametrize(
    ("case", "ctx", "binding"),
    [
        ("tampered", client_2026(), BINDING),
        ("another caller", client_2026(subject="mallory"), BINDING),
        ("another tool", client_2026(), "tools/call:x_fake_delete"),
    ],
    ids=["tampered", "another-caller", "another-tool"],
)
async def test_a_request_state_not_minted_for_this_call_and_caller_is_refused(
    case: str, ctx: CallContext, binding: str
) -> None:
    async with handshake_backend(asks_to_confirm) as (_, conn), opened_broker() as broker:
        result = input_required(await call_through(broker, conn, client_2026()))
        forged = {**result, "requestState": _tampered(result["requestState"])} if case == "tampered" else result
        with pytest.raises(InvalidParams, match="requestState failed verification"):
            await broker.resume(ctx, retry(forged, {"gw-1": {"action": "accept"}}), binding)
        assert len(broker) == 1  # the rightful caller can still answer
        outcome = await broker.resume(client_2026(), retry(result, {"gw-1": {"action": "decline"}}), BINDING)
    assert answer_of(outcome)["content"][0]["text"] == "deploy: decline"


async def test_a_request_state_from_another_gateway_is_refused() -> None:
    async with handshake_backend(asks_to_confirm) as (_, conn), opened_broker() as broker, opened_broker() as other:
        result = input_required(await call_through(broker, conn, client_2026()))
        with pytest.raises(InvalidParams, match="requestState failed verification"):
            await other.resume(client_2026(), retry(result, {"gw-1": {"action": "accept"}}), BINDING)


async def test_an_expired_pause_cancels_the_backend_call() -> None:
    async with handshake_backend(asks_to_confirm) as (backend, conn), opened_broker(ttl=0.1) as broker:
        result = input_required(await call_through(broker, conn, client_2026()))
        call_id = backend.requests("tools/call")[0].message["id"]
        assert await backend.eventually(lambda: call_id in backend.abandoned)
        assert len(broker) == 0
        with pytest.raises(InvalidParams, match="finished or expired; send the request again"):
            await broker.resume(client_2026(), retry(result, {"gw-1": {"action": "accept"}}), BINDING)


async def test_an_expired_pause_answers_the_backend_s_question_with_an_error() -> None:
    async with handshake_backend(asks_to_confirm) as (backend, conn), opened_broker(ttl=0.1) as broker:
        input_required(await call_through(broker, conn, client_2026()))

        def error_answer() -> dict[str, Any] | None:
            answers = [r.message for r in backend.received if r.method is None and "error" in r.message]
            return answers[0] if answers else None

        answer = await backend.eventually(error_answer)
    assert str(answer["id"]).startswith("ask-") and "no answer from the client" in answer["error"]["message"]


async def test_closing_the_broker_cancels_paused_calls() -> None:
    async with handshake_backend(asks_to_confirm) as (backend, conn):
        broker = InputBroker()
        input_required(await call_through(broker, conn, client_2026()))
        await broker.aclose()
        assert len(broker) == 0
        call_id = backend.requests("tools/call")[0].message["id"]
        assert await backend.eventually(lambda: call_id in backend.abandoned)


async def test_a_caller_that_goes_away_while_waiting_cancels_the_backend_call() -> None:
    started = asyncio.Event()

    async def slow(call: Call) -> None:
        started.set()
        await asyncio.Event().wait()

    async with handshake_backend(slow) as (backend, conn), opened_broker() as broker:
        waiting = asyncio.ensure_future(call_through(broker, conn, client_2026()))
        await asyncio.wait_for(started.wait(), 5)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        call_id = backend.requests("tools/call")[0].message["id"]
        assert await backend.eventually(lambda: call_id in backend.abandoned)


async def test_a_caller_without_the_capability_is_not_asked_and_the_backend_is_told() -> None:
    async with handshake_backend(asks_to_confirm) as (_, conn), opened_broker() as broker:
        outcome = await call_through(broker, conn, client_2026(capabilities={"sampling": {}}))
        assert len(broker) == 0
    assert isinstance(outcome, Message) and isinstance(outcome.error, Raw)
    assert msgspec.json.decode(outcome.error)["code"] == MISSING_CLIENT_CAPABILITY


# -- drive_input_required -----------------------------------------------------------------------


class Client2025:
    """A 2025-11-25 client's stream (a ClientChannel): answers the gateway's questions from a table."""

    def __init__(self, answers: dict[str, Any]) -> None:
        self.answers = answers
        self.asked: list[tuple[str, Any]] = []

    async def notify(self, method: str, params: Raw) -> None:
        pass

    async def request(self, method: str, params: Raw) -> Raw:
        self.asked.append((method, msgspec.json.decode(params)))
        return raw(self.answers[method])


def client_2025(channel: Client2025) -> CallContext:
    session = SessionRecord(id="s-1", protocol_version=HANDSHAKE, client_capabilities={"elicitation": {}})
    return CallContext(request_id=3, method="tools/call", protocol_version=HANDSHAKE, session=session, channel=channel)


@contextlib.asynccontextmanager
async def stateless_backend(tool: Handler) -> AsyncIterator[tuple[FakeBackend, BackendConnection]]:
    async with FakeBackend({"tools/call": tool}, era=STATELESS) as backend:
        conn = await connect(backend.spec("fake"))
        try:
            yield backend, conn
        finally:
            await conn.aclose()


async def drive(conn: BackendConnection, ctx: CallContext, params: Params) -> Message:
    """Call tools/call on a 2026-07-28 backend for a 2025-11-25 caller, as the gateway does."""
    sink = RelaySink(ctx)

    async def again(retry_params: Params) -> Message:
        return await conn.request("tools/call", retry_params, sink=sink, client_meta=ctx.meta)

    return await drive_input_required(await again(params), params, sink, again)


def needs_input(requests: dict[str, Any], state: str | None) -> dict[str, Any]:
    result: dict[str, Any] = {"resultType": "input_required", "inputRequests": requests}
    if state is not None:
        result["requestState"] = state
    return result


async def test_input_requests_of_a_2026_backend_are_asked_of_a_2025_client_and_the_backend_retried() -> None:
    async def confirming(call: Call) -> dict[str, Any]:
        if "inputResponses" not in call.params:
            return needs_input({"confirm": {"method": "elicitation/create", "params": CONFIRM}}, "backend-state-1")
        return {"resultType": "complete", "content": [], "structuredContent": call.params["inputResponses"]}

    channel = Client2025({"elicitation/create": {"action": "accept", "content": {}}})
    async with stateless_backend(confirming) as (backend, conn):
        reply = await drive(conn, client_2025(channel), {"name": raw("deploy"), "arguments": raw({"env": "prod"})})
    assert answer_of(reply)["structuredContent"] == {"confirm": {"action": "accept", "content": {}}}
    assert channel.asked == [("elicitation/create", CONFIRM)]
    first, second = backend.requests("tools/call")
    assert "requestState" not in first.params
    assert second.params["requestState"] == "backend-state-1"
    assert second.params["arguments"] == {"env": "prod"} and second.params["name"] == "deploy"


async def test_every_input_request_of_a_round_is_answered_in_one_retry() -> None:
    async def asking_two(call: Call) -> dict[str, Any]:
        if "inputResponses" not in call.params:
            requests = {
                "confirm": {"method": "elicitation/create", "params": CONFIRM},
                "draft": {"method": "sampling/createMessage", "params": {"messages": []}},
            }
            return needs_input(requests, None)
        return {"resultType": "complete", "content": [], "structuredContent": call.params["inputResponses"]}

    channel = Client2025({"elicitation/create": {"action": "accept"}, "sampling/createMessage": {"model": "m"}})
    ctx = client_2025(channel)
    assert ctx.session is not None
    ctx.session.client_capabilities["sampling"] = {}
    async with stateless_backend(asking_two) as (backend, conn):
        reply = await drive(conn, ctx, {"name": raw("deploy")})
    assert answer_of(reply)["structuredContent"] == {"confirm": {"action": "accept"}, "draft": {"model": "m"}}
    assert len(backend.requests("tools/call")) == 2


async def test_a_backend_state_from_an_earlier_round_is_not_sent_again() -> None:
    async def two_rounds(call: Call) -> dict[str, Any]:
        rounds = len(call.backend.requests("tools/call"))
        if rounds == 1:
            return needs_input({"a": {"method": "elicitation/create", "params": CONFIRM}}, "round-1")
        if rounds == 2:
            return needs_input({"b": {"method": "elicitation/create", "params": CONFIRM}}, None)
        return {"resultType": "complete", "content": []}

    channel = Client2025({"elicitation/create": {"action": "accept"}})
    async with stateless_backend(two_rounds) as (backend, conn):
        await drive(conn, client_2025(channel), {"name": raw("deploy")})
    states = [r.params.get("requestState") for r in backend.requests("tools/call")]
    assert states == [None, "round-1", None]


async def test_a_complete_result_is_returned_untouched_even_if_it_mentions_input_required() -> None:
    async def chatty(call: Call) -> dict[str, Any]:
        return {"resultType": "complete", "content": [{"type": "text", "text": '"input_required" is a result type'}]}

    channel = Client2025({})
    async with stateless_backend(chatty) as (backend, conn):
        reply = await drive(conn, client_2025(channel), {"name": raw("deploy")})
    assert answer_of(reply)["content"][0]["text"] == '"input_required" is a result type'
    assert channel.asked == [] and len(backend.requests("tools/call")) == 1


async def test_a_backend_that_keeps_asking_is_given_up_on() -> None:
    async def insatiable(call: Call) -> dict[str, Any]:
        return needs_input({"again": {"method": "elicitation/create", "params": CONFIRM}}, "more")

    channel = Client2025({"elicitation/create": {"action": "accept"}})
    async with stateless_backend(insatiable) as (backend, conn):
        with pytest.raises(InvalidParams, match="still asked for input after 10 rounds"):
            await drive(conn, client_2025(channel), {"name": raw("deploy")})
    assert len(backend.requests("tools/call")) == 11

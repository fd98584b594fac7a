"""Multi round-trip requests (MRTR) across protocol eras.

2026-07-28 clients cannot be asked questions mid-call; they get an `InputRequiredResult` and
retry with `inputResponses`. Two bridges follow:

- A 2025-11-25 backend asks mid-call (sampling, elicitation, roots) while serving a
  2026-07-28 client: the backend call is kept waiting (`InputBroker`), the client gets the
  questions and a signed `requestState`, and its retry answers them and resumes the call.
- A 2026-07-28 backend returns `input_required` to a 2025-11-25 client: the gateway asks
  the client on its stream and retries the backend with the answers (`drive_input_required`).

State minted here starts with `mcpgw2.` and is sealed (state_seal.py) to the call, the request
and the caller; any other `requestState` belongs to a backend and passes through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from aggregator.calls import CallContext
from aggregator.relay import Ask, RelaySink
from aggregator.replica_link import LinkMessage, LinkTimeout, ReplicaLink
from aggregator.state_seal import StateSeal
from shared.protocol.errors import GatewayError, InvalidParams
from shared.protocol.jsonrpc import Message, Params, decode_message, encode, raw
from shared.store.memory import MemoryKeyStore

__all__ = ["STATE_PREFIX", "InputBroker", "drive_input_required", "is_gateway_state"]

STATE_PREFIX = "mcpgw2."
_MAX_ROUNDS = 10


def is_gateway_state(params: Params) -> bool:
    state = params.get("requestState")
    return state is not None and bytes(state).startswith(b'"' + STATE_PREFIX.encode())


@dataclass(slots=True)
class _Suspended:
    task: asyncio.Task[Message]
    sink: RelaySink
    binding: str
    id: str = ""  # minted anew each time the call pauses, so an answered requestState cannot be replayed
    asks: dict[str, Ask] = field(default_factory=dict)
    expiry: asyncio.TimerHandle | None = None


class _Resume(msgspec.Struct, kw_only=True):
    """A client's retry for a call paused on another replica, as the link carries it."""

    call_id: str
    answers: bytes
    subject: str | None = None


class _Outcome(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What the replica holding the call answers: the backend's response, new questions, or an error."""

    response: bytes = b""
    input_required: bytes = b""
    error: str = ""


class InputBroker:
    """Backend calls paused until a 2026-07-28 client brings the answers they wait for.

    The client's retry may reach any replica: the sealed requestState opens everywhere (keys
    from the store), and a replica that does not hold the paused call passes the answers over
    the replica link to the one that does, and relays what comes back.
    """

    def __init__(self, *, seal: StateSeal | None = None, link: ReplicaLink | None = None, ttl: float = 300.0) -> None:
        self.ttl = ttl
        self.link = link
        self.tag = link.tag if link is not None else secrets.token_hex(4)
        self.seal = seal or StateSeal(MemoryKeyStore(), name="requestState", tag=self.tag)
        self._calls: dict[str, _Suspended] = {}
        self._ids = itertools.count(1)
        self._keys = itertools.count(1)
        if link is not None:
            link.on_request("resume", self._resume_for_another_replica)

    def __len__(self) -> int:
        return len(self._calls)

    async def run(self, ctx: CallContext, task: asyncio.Task[Message], sink: RelaySink, binding: str) -> Message | Raw:
        """The backend's response, or an InputRequiredResult (Raw) when it asked something first."""
        return await self._wait(ctx.subject, _Suspended(task, sink, binding))

    async def resume(
        self, ctx: CallContext, params: Params, binding: str, *, timeout: float | None = None
    ) -> Message | Raw:
        """Answer a paused call's questions from the client's retry and wait on it again, wherever it is.

        `timeout` bounds the wait for another replica holding the call (default: the pause's ttl).
        """
        call_id = await self._verify(msgspec.json.decode(params["requestState"]), binding, ctx.subject)
        answers = bytes(params["inputResponses"]) if "inputResponses" in params else b"{}"
        if self.link is None or self.link.mine(call_id):
            return await self._resume(call_id, answers, ctx.subject)
        request = _Resume(call_id=call_id, answers=answers, subject=ctx.subject)
        message = LinkMessage(kind="resume", body=msgspec.msgpack.encode(request))
        try:
            reply = await self.link.request(call_id, message, timeout=self.ttl if timeout is None else timeout)
        except LinkTimeout as exc:
            raise InvalidParams(f"the call of this requestState is out of reach ({exc}); send it again") from None
        outcome = msgspec.msgpack.decode(reply, type=_Outcome)
        if outcome.error:
            raise InvalidParams(outcome.error)
        if outcome.input_required:
            return Raw(outcome.input_required)
        answer = decode_message(outcome.response)
        assert isinstance(answer, Message)
        return answer

    async def _resume_for_another_replica(self, message: LinkMessage) -> bytes:
        request = msgspec.msgpack.decode(message.body, type=_Resume)
        try:
            result = await self._resume(request.call_id, request.answers, request.subject)
        except InvalidParams as exc:
            return msgspec.msgpack.encode(_Outcome(error=exc.message))
        if isinstance(result, Raw):
            return msgspec.msgpack.encode(_Outcome(input_required=bytes(result)))
        return msgspec.msgpack.encode(_Outcome(response=encode(result)))

    async def _resume(self, call_id: str, answers_json: bytes, subject: str | None) -> Message | Raw:
        call = self._calls.pop(call_id, None)
        if call is None:
            raise InvalidParams("requestState refers to a call that finished or expired; send the request again")
        if call.expiry is not None:
            call.expiry.cancel()
        answers = _decode_object(Raw(answers_json))
        for key, ask in list(call.asks.items()):
            if key in answers and not ask.future.done():
                ask.future.set_result(raw(answers[key]))
                del call.asks[key]
        return await self._wait(subject, call)

    async def _wait(self, subject: str | None, call: _Suspended) -> Message | Raw:
        """Until the backend answers (its response) or asks something new (the client is asked)."""
        asks = call.sink.asks
        assert asks is not None
        try:
            while not call.asks or all(a.future.done() for a in call.asks.values()):
                if not asks and not call.task.done():
                    await _either(call.task, call.sink)
                if call.task.done():
                    return call.task.result()
                for ask in asks:
                    call.asks[f"gw-{next(self._keys)}"] = ask
                asks.clear()
        except BaseException:
            call.task.cancel()
            raise
        return await self._suspend(subject, call)

    async def _suspend(self, subject: str | None, call: _Suspended) -> Raw:
        call.id = f"gw-{self.tag}-{next(self._ids)}-{secrets.token_hex(6)}"  # names this replica
        self._calls[call.id] = call
        call.expiry = asyncio.get_running_loop().call_later(self.ttl, self._expire, call.id)
        requests = {key: {"method": ask.method, "params": _decode_object(ask.params)} for key, ask in call.asks.items()}
        state = STATE_PREFIX + await self.seal.seal(_bound(call.id, call.binding, subject))
        return raw({"resultType": "input_required", "inputRequests": requests, "requestState": state})

    def _expire(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None:
            _abandon(call, f"the client did not answer within {self.ttl:.0f}s")

    async def _verify(self, state: Any, binding: str, subject: str | None) -> str:
        """The call id inside a requestState sealed for this request and caller, or InvalidParams."""
        if isinstance(state, str) and state.startswith(STATE_PREFIX):
            message = await self.seal.open(state[len(STATE_PREFIX) :])
            if message is not None:
                call_id = message.partition("|")[0]
                if call_id and message == _bound(call_id, binding, subject):
                    return call_id
        raise InvalidParams("requestState failed verification (tampered, for another request, or another caller)")

    async def aclose(self) -> None:
        for call in self._calls.values():
            _abandon(call, "the gateway is stopping")
            if call.expiry is not None:
                call.expiry.cancel()
        self._calls.clear()


async def _either(task: asyncio.Task[Message], sink: RelaySink) -> None:
    """Wait for the task to end or the sink to receive a question: one future, no helper task
    (this is every 2026-07-28 client's call to an older backend, the common case answering at once)."""
    wake = asyncio.get_running_loop().create_future()

    def rouse(_: object = None) -> None:
        if not wake.done():
            wake.set_result(None)

    task.add_done_callback(rouse)
    sink.on_ask = rouse
    try:
        await wake
    finally:
        task.remove_done_callback(rouse)
        sink.on_ask = None


def _abandon(call: _Suspended, reason: str) -> None:
    """Nobody will bring answers: the backend's questions get an error, and its call is cancelled."""
    for ask in call.asks.values():
        if not ask.future.done():
            ask.future.set_exception(GatewayError(f"no answer from the client: {reason}"))
    call.task.cancel()


def _bound(call_id: str, binding: str, subject: str | None) -> str:
    """What a requestState vouches for: this call, this request (method and target), this caller."""
    return f"{call_id}|{binding}|{subject or ''}"


async def drive_input_required(
    reply: Message,
    params: Params,
    sink: RelaySink,
    send: Callable[[Params], Awaitable[Message]],
) -> Message:
    """Answer a 2026-07-28 backend's input requests through a 2025-11-25 client, then retry."""
    for _ in range(_MAX_ROUNDS):
        if reply.result is UNSET or b'"input_required"' not in bytes(reply.result):
            return reply
        result = _decode_object(reply.result)
        if result.get("resultType") != "input_required":
            return reply
        answers: dict[str, Any] = {}
        for key, request in (result.get("inputRequests") or {}).items():
            answer = await sink.ask(str(request.get("method")), raw(request.get("params") or {}))
            answers[key] = msgspec.json.decode(answer)
        retry = dict(params)
        retry["inputResponses"] = raw(answers)
        retry.pop("requestState", None)
        if "requestState" in result:
            retry["requestState"] = raw(result["requestState"])
        reply = await send(retry)
    raise InvalidParams(f"the backend still asked for input after {_MAX_ROUNDS} rounds; giving up")


def _decode_object(value: Raw | None) -> dict[str, Any]:
    if value is None:
        return {}
    with contextlib.suppress(msgspec.DecodeError):
        decoded = msgspec.json.decode(value)
        if isinstance(decoded, dict):
            return decoded
    return {}

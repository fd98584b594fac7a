"""Multi round-trip requests (MRTR) across protocol eras.

2026-07-28 clients cannot be asked questions mid-call; they get an `InputRequiredResult` and
retry with `inputResponses`. Two bridges follow:

- A 2025-11-25 backend asks mid-call (sampling, elicitation, roots) while serving a
  2026-07-28 client: the backend call is kept waiting (`InputBroker`), the client gets the
  questions and a signed `requestState`, and its retry answers them and resumes the call.
- A 2026-07-28 backend returns `input_required` to a 2025-11-25 client: the gateway asks
  the client on its stream and retries the backend with the answers (`drive_input_required`).

State minted here starts with `mcpgw1.` and carries an HMAC binding it to the call and the
caller; any other `requestState` belongs to a backend and passes through untouched.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import itertools
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from aggregator.calls import CallContext
from aggregator.relay import Ask, RelaySink
from shared.protocol.errors import InvalidParams
from shared.protocol.jsonrpc import Message, Params, raw

__all__ = ["STATE_PREFIX", "InputBroker", "drive_input_required", "is_gateway_state"]

STATE_PREFIX = "mcpgw1."
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


class InputBroker:
    """Backend calls paused until a 2026-07-28 client brings the answers they wait for."""

    def __init__(self, *, ttl: float = 300.0, secret: bytes | None = None) -> None:
        self.ttl = ttl
        self._secret = secret or secrets.token_bytes(32)
        self._calls: dict[str, _Suspended] = {}
        self._ids = itertools.count(1)
        self._keys = itertools.count(1)

    def __len__(self) -> int:
        return len(self._calls)

    async def run(self, ctx: CallContext, task: asyncio.Task[Message], sink: RelaySink, binding: str) -> Message | Raw:
        """The backend's response, or an InputRequiredResult (Raw) when it asked something first."""
        return await self._wait(ctx, _Suspended(task, sink, binding))

    async def resume(self, ctx: CallContext, params: Params, binding: str) -> Message | Raw:
        """Answer a paused call's questions from the client's retry and wait on it again."""
        state = msgspec.json.decode(params["requestState"])
        call = self._calls.get(self._verify(state, binding, ctx))
        if call is None:
            raise InvalidParams("requestState refers to a call that finished or expired; send the request again")
        answers = _decode_object(params.get("inputResponses"))
        for key, ask in list(call.asks.items()):
            if key in answers and not ask.future.done():
                ask.future.set_result(raw(answers[key]))
                del call.asks[key]
        del self._calls[call.id]
        if call.expiry is not None:
            call.expiry.cancel()
        return await self._wait(ctx, call)

    async def _wait(self, ctx: CallContext, call: _Suspended) -> Message | Raw:
        asks = call.sink.asks
        assert asks is not None
        waiter: asyncio.Task[Ask] | None = None
        try:
            while not call.asks or all(a.future.done() for a in call.asks.values()):
                waiter = asyncio.ensure_future(asks.get())
                done, _ = await asyncio.wait({call.task, waiter}, return_when=asyncio.FIRST_COMPLETED)
                if call.task in done:
                    return call.task.result()
                ask = waiter.result()
                waiter = None
                call.asks[f"gw-{next(self._keys)}"] = ask
                while not asks.empty():
                    call.asks[f"gw-{next(self._keys)}"] = asks.get_nowait()
        except BaseException:
            call.task.cancel()
            raise
        finally:
            if waiter is not None:
                waiter.cancel()
        return self._suspend(ctx, call)

    def _suspend(self, ctx: CallContext, call: _Suspended) -> Raw:
        call.id = f"{next(self._ids)}-{secrets.token_hex(8)}"
        self._calls[call.id] = call
        call.expiry = asyncio.get_running_loop().call_later(self.ttl, self._expire, call.id)
        requests = {key: {"method": ask.method, "params": _decode_object(ask.params)} for key, ask in call.asks.items()}
        return raw({"resultType": "input_required", "inputRequests": requests, "requestState": self._sign(call, ctx)})

    def _expire(self, call_id: str) -> None:
        call = self._calls.pop(call_id, None)
        if call is not None:
            call.task.cancel()

    def _sign(self, call: _Suspended, ctx: CallContext) -> str:
        return f"{STATE_PREFIX}{call.id}.{self._mac(call.id, call.binding, ctx)}"

    def _verify(self, state: Any, binding: str, ctx: CallContext) -> str:
        if isinstance(state, str) and state.startswith(STATE_PREFIX):
            call_id, _, mac = state[len(STATE_PREFIX) :].rpartition(".")
            if call_id and hmac.compare_digest(mac, self._mac(call_id, binding, ctx)):
                return call_id
        raise InvalidParams("requestState failed verification (tampered, for another request, or another caller)")

    def _mac(self, call_id: str, binding: str, ctx: CallContext) -> str:
        message = f"{call_id}|{binding}|{ctx.subject or ''}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()[:32]

    async def aclose(self) -> None:
        for call in self._calls.values():
            call.task.cancel()
            if call.expiry is not None:
                call.expiry.cancel()
        self._calls.clear()


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

"""ClientRequests: the requests still open between the gateway and its clients, in both directions.

Server-to-client: `ask` puts a backend's question (sampling, elicitation, roots) to a client
and waits, bounded, for `answered`, which may be called on any replica: ids minted here name
this replica, so an answer that lands elsewhere is sent back over the replica link.
Client-to-server: `track` records a request being served so that the client's
`notifications/cancelled` can `cancel` it. Every transport calls these four; none keeps its own table.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import msgspec
from msgspec import UNSET, Raw

from aggregator.replica_link import LinkMessage, ReplicaLink
from shared.protocol.errors import GatewayError, error_from_wire
from shared.protocol.jsonrpc import Message, Notification, Request, RequestId, decode_message, encode

__all__ = ["ClientRequests", "Deliver"]

log = logging.getLogger("aggregator.requests")

Deliver = Callable[[bytes], None]
"""Puts one encoded message on the client's stream."""

_ANSWER_TIMEOUT = 300.0  # a person may be answering an elicitation


class ClientRequests:
    def __init__(self, link: ReplicaLink, *, answer_timeout: float = _ANSWER_TIMEOUT) -> None:
        self.link = link
        self.answer_timeout = answer_timeout
        self._asked: dict[tuple[str, RequestId], asyncio.Future[Message]] = {}
        self._serving: dict[tuple[str, RequestId], asyncio.Task[Any]] = {}
        self._counter = itertools.count(1)
        link.on("answer", self._forwarded_answer)

    # -- server to client -------------------------------------------------------------------

    async def ask(self, session_id: str, method: str, params: Raw, deliver: Deliver) -> Raw:
        """Send `method` to the client with `deliver`; its result, or GatewayError (its error, or a timeout)."""
        request_id = f"gw-{self.link.tag}-{next(self._counter)}"
        key = (session_id, request_id)
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._asked[key] = future
        try:
            deliver(encode(Request(id=request_id, method=method, params=params)))
            answer = await asyncio.wait_for(future, self.answer_timeout)
        except TimeoutError:
            _withdraw(deliver, request_id, "timed out")
            raise GatewayError(f"the client did not answer {method} within {self.answer_timeout:.0f}s") from None
        except asyncio.CancelledError:
            _withdraw(deliver, request_id, "the backend withdrew the request")
            raise
        finally:
            self._asked.pop(key, None)
        if answer.error is not UNSET:
            raise error_from_wire(answer.error, who="the client")
        if answer.result is UNSET:  # pragma: no cover - decode_message guarantees one of the two
            raise GatewayError("the client answered without a result")
        return answer.result

    async def answered(self, session_id: str, message: Message) -> None:
        """A client's response arrived here: resolve the question, on this replica or the one that asked."""
        if (session_id, message.id) in self._asked or self.link.mine(message.id):
            self._resolve(session_id, message)
            return
        await self.link.send(message.id, LinkMessage(kind="answer", session=session_id, body=encode(message)))

    def _resolve(self, session_id: str, message: Message) -> None:
        if not isinstance(message.id, int | str):
            return
        future = self._asked.get((session_id, message.id))
        if future is not None and not future.done():
            future.set_result(message)

    def _forwarded_answer(self, message: LinkMessage) -> None:
        decoded = decode_message(message.body)
        if isinstance(decoded, Message) and message.session is not None:
            self._resolve(message.session, decoded)

    # -- client to server -------------------------------------------------------------------

    @contextlib.contextmanager
    def track(self, session_id: str, request_id: RequestId, task: asyncio.Task[Any]) -> Iterator[None]:
        """While the block runs, the client's `notifications/cancelled` for `request_id` cancels `task`."""
        key = (session_id, request_id)
        self._serving[key] = task
        try:
            yield
        finally:
            if self._serving.get(key) is task:
                del self._serving[key]

    def cancel(self, session_id: str, message: Message) -> bool:
        """Act on a client's `notifications/cancelled`; False when it names nothing being served."""
        request_id, reason = _cancelled(message)
        task = self._serving.get((session_id, request_id)) if request_id is not None else None
        if task is None:
            return False
        log.info("client cancelled request %s: %s", request_id, reason)
        task.cancel()
        return True

    def cancel_all(self) -> None:
        """Stop serving every request (the gateway is stopping)."""
        for task in list(self._serving.values()):
            task.cancel()


def _cancelled(message: Message) -> tuple[RequestId | None, str]:
    """The request id and reason of a `notifications/cancelled`; id None when absent or not an id."""
    try:
        params = msgspec.json.decode(message.params) if message.params is not UNSET else {}
    except msgspec.DecodeError:
        return None, ""
    if not isinstance(params, dict):
        return None, ""
    request_id = params.get("requestId")
    reason = params.get("reason")
    valid = isinstance(request_id, int | str) and not isinstance(request_id, bool)
    return (request_id if valid else None), (reason if isinstance(reason, str) else "no reason given")


def _withdraw(deliver: Deliver, request_id: str, reason: str) -> None:
    """Tell the client to stop working on a request of ours nobody waits for any more."""
    params = msgspec.json.encode({"requestId": request_id, "reason": reason})
    with contextlib.suppress(Exception):  # the stream may be gone: the notification is best effort
        deliver(encode(Notification(method="notifications/cancelled", params=Raw(params))))

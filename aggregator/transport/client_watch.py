"""ClientWatch: learning that a request's client hung up, as cheaply as the server allows.

A 2026-07-28 client cancels a call by closing its connection, and a stream ends when its client
leaves. Under the gateway's own server the connection says so itself (`Exchange.on_disconnect`):
no task, no timer. Under another ASGI server (tests' in-process clients) a task waits in
`receive` for `http.disconnect`, started after `delay` so that quick calls never pay for it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aggregator.http_exchange import exchange_of
from aggregator.transport.http_common import Receive, wait_disconnect

__all__ = ["ClientWatch"]


class ClientWatch:
    """Calls `on_gone` once if the client of `receive` disconnects before `stop`; `gone` says whether it did."""

    def __init__(self, receive: Receive, on_gone: Callable[[], object], *, delay: float = 0.0) -> None:
        self.gone = False
        self._on_gone = on_gone
        self._receive = receive
        self._watcher: asyncio.Task[None] | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._exchange = exchange_of(receive)
        if self._exchange is not None:
            self._exchange.on_disconnect = self._left
        elif delay > 0:
            self._timer = asyncio.get_running_loop().call_later(delay, self._start)
        else:
            self._start()

    def _start(self) -> None:
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        await wait_disconnect(self._receive)
        self._left()

    def _left(self) -> None:
        self.gone = True
        self._on_gone()

    def stop(self) -> None:
        if self._exchange is not None:
            self._exchange.on_disconnect = None
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()

"""Reconnect now (shared/reconnect.py): a request on the MessageBus reaches the supervisor, which
reopens a live backend's connection, or retries a down one at once instead of waiting out its backoff."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from shared.config import ServerSpec
from shared.pool import SessionConnectionPool
from shared.reconnect import follow_reconnects, request_reconnect
from shared.store.memory import MemoryStores
from worker.supervisor import BackendSupervisor

# The time server, once the flag file exists; before that, a process that exits at once.
_GATED = (
    "import os, runpy, sys; os.path.exists(sys.argv.pop(1)) or sys.exit(3); "
    "runpy.run_module('mcp_server_time', run_name='__main__')"
)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.02)


def _state(stores: MemoryStores, want: str, attempts: int = 0) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        record = await stores.capabilities.get("gated")
        return record is not None and record.state == want and record.attempts >= attempts

    return check


async def test_a_request_reconnects_a_live_backend_and_retries_a_down_one_without_waiting(tmp_path: Path) -> None:
    flag = tmp_path / "up"
    spec = ServerSpec(name="gated", type="stdio", command=sys.executable, args=("-c", _GATED, str(flag)))
    stores = MemoryStores()
    pool = SessionConnectionPool({"gated": spec})
    supervisor = BackendSupervisor([spec], pool, stores, health_interval=60)
    pool.on_lost = supervisor.connection_lost
    tasks = [
        asyncio.create_task(supervisor.run()),
        asyncio.create_task(follow_reconnects(stores.messages, supervisor.reconnect)),
    ]
    try:
        await _until(_state(stores, "down", attempts=4), 15, "a backoff of seconds")
        flag.touch()
        await asyncio.sleep(0.1)
        await request_reconnect(stores.messages, "gated")
        await _until(_state(stores, "up"), 3, "up, well within the backoff it would have waited")

        first = pool.snapshot()["gated"]
        await request_reconnect(stores.messages, "gated")

        async def replaced() -> bool:
            return pool.snapshot().get("gated") not in (None, first)

        await _until(replaced, 5, "a fresh connection")
        assert not first.alive
        await _until(_state(stores, "up"), 3, "up again")
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await pool.drain_all()

"""A cluster whose Redis goes away, or comes back empty: 2025-11-25 sessions survive both.

Sessions opened while Redis is away live on the replica that opened them and are written to
Redis when it returns; when Redis comes back without its data, replicas write back the
sessions they serve, so clients keep working (no 404) within seconds.
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from loadtest.cluster import LocalCluster

CONFIG = {
    # Replicas confirm a cached session with Redis every 2 s (a quarter of the idle timeout).
    "aggregator": {"sessionIdleTimeout": 8, "healthCheckInterval": 2},
    "mcpServers": [{"name": "time", "type": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]}],
}
HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
CALL = {"name": "x_time_get_current_time", "arguments": {"timezone": "UTC"}}


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster(CONFIG, replicas=2, workers=1, lock_ttl=2.0) as running:
        yield running


async def open_session(http: httpx.AsyncClient, base: str) -> str:
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    response = await http.post(f"{base}/mcp", json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
    assert response.status_code == 200, response.text
    session = response.headers["mcp-session-id"]
    note = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    assert (await http.post(f"{base}/mcp", json=note, headers={"mcp-session-id": session})).status_code == 202
    return session


async def call(http: httpx.AsyncClient, base: str, session: str) -> int:
    """The HTTP status of one tools/call in the session (200 only when the call succeeded)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": CALL}
    response = await http.post(f"{base}/mcp", json=body, headers={"mcp-session-id": session})
    if response.status_code == 200 and "result" not in response.json():
        return 599
    return response.status_code


async def test_sessions_survive_redis_losing_its_data(cluster: LocalCluster) -> None:
    bases = [cluster.replica_url(i) for i in range(2)]
    async with httpx.AsyncClient(timeout=10, headers=HEADERS) as http:
        session = await open_session(http, bases[0])
        assert [await call(http, base, session) for base in bases] == [200, 200]
        cluster.restart_redis()  # SIGKILL and start again: every key is gone
        back = time.monotonic()
        seen: list[int] = []
        while time.monotonic() - back < 5.0:  # longer than the 2 s touch interval
            seen += [await call(http, base, session) for base in bases]
            await asyncio.sleep(0.25)
        assert 404 not in seen, seen
        assert seen[-2:] == [200, 200], seen


async def test_sessions_opened_while_redis_is_away_live_locally_then_join_the_store(cluster: LocalCluster) -> None:
    bases = [cluster.replica_url(i) for i in range(2)]
    cluster.processes["redis"].stop(signal.SIGKILL)
    try:
        async with httpx.AsyncClient(timeout=10, headers=HEADERS) as http:
            session = await open_session(http, bases[0])
            assert await call(http, bases[0], session) == 200
            ready = (await http.get(f"{bases[0]}/readyz")).json()
            assert ready["sessions"]["local_only"] == 1
            assert any("live on this replica only" in reason for reason in ready["reasons"]), ready
    finally:
        cluster.restart_redis()
    async with httpx.AsyncClient(timeout=10, headers=HEADERS) as http:
        deadline = time.monotonic() + 5
        while (await http.get(f"{bases[0]}/readyz")).json()["sessions"]["local_only"]:
            assert time.monotonic() < deadline, "the session never reached the store"
            await asyncio.sleep(0.2)
        assert await call(http, bases[1], session) == 200  # the other replica finds it in the store

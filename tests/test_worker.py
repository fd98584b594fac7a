"""The worker: leader election, fencing, no hot loop, orderly stop."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import time
import uuid

import pytest
import redis.asyncio as aioredis

from shared.config_types import WorkflowSpec, WorkflowStep
from shared.events import ToolUpdateEvent
from shared.records import ServerRecord
from shared.store.protocols import FencedOut
from shared.store.redis import open_redis_stores
from tests.gateway_process import BIN, ROOT
from tests.redis_server import RedisServer
from worker.leader import LeaderLock, LeadershipLost


async def test_only_one_worker_leads_and_a_stale_leader_is_fenced_out(redis_server: RedisServer) -> None:
    namespace = f"lead-{uuid.uuid4().hex[:6]}"
    stores = await open_redis_stores(redis_server.url, namespace=namespace)
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        first = LeaderLock(client, namespace=namespace, worker_id="a", ttl=0.3)
        second = LeaderLock(client, namespace=namespace, worker_id="b", ttl=0.3)
        assert await first.try_acquire()
        assert not await second.try_acquire()
        stale = stores.fenced(first.key, first.value)  # type: ignore[arg-type]
        await stale.capabilities.put(ServerRecord(server="s"))
        await asyncio.sleep(0.4)  # first is paused past its TTL
        assert await second.try_acquire() and (second.fence or 0) > (first.fence or 0)
        with pytest.raises(LeadershipLost):
            await first.renew()
        with pytest.raises(FencedOut):
            await stale.capabilities.put(ServerRecord(server="s", state="down"))
        with pytest.raises(FencedOut):
            await stale.events.publish(ToolUpdateEvent(type="deregistered", server="s"))
        with pytest.raises(FencedOut):
            await stale.workflows.publish([])
        current = stores.fenced(second.key, second.value)  # type: ignore[arg-type]
        await current.capabilities.put(ServerRecord(server="s", state="down"))
        assert (await stores.capabilities.get("s")).state == "down"  # type: ignore[union-attr]
        workflow = WorkflowSpec(name="w", steps=(WorkflowStep(id="a", tool="x_s_t"),))
        await current.workflows.publish([workflow])
        assert await stores.workflows.definitions() == [workflow]
    finally:
        await client.aclose()
        await stores.aclose()


async def test_fencing_tokens_keep_growing_when_the_store_lost_its_data(redis_server: RedisServer) -> None:
    namespace = f"fence-{uuid.uuid4().hex[:6]}"
    client = aioredis.Redis.from_url(redis_server.url)
    try:
        first = LeaderLock(client, namespace=namespace, worker_id="a", ttl=5)
        assert await first.try_acquire()
        await client.delete(first.key, first.fence_key)  # what a Redis restart without persistence does
        second = LeaderLock(client, namespace=namespace, worker_id="b", ttl=5)
        assert await second.try_acquire()
        assert (second.fence or 0) > (first.fence or 0)
    finally:
        await client.aclose()


def test_worker_with_nothing_to_supervise_holds_the_lease_and_stops_cleanly(redis_server: RedisServer) -> None:
    namespace_env = {"PATH": str(BIN) + ":/usr/bin:/bin"}
    process = subprocess.Popen(
        [
            str(BIN / "aggregator-worker"),
            "-c",
            str(ROOT / "tests" / "data" / "empty.yaml"),
            "--redis-url",
            redis_server.url,
            "--lock-ttl",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=namespace_env,
    )
    time.sleep(2.5)
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=15)
    assert process.returncode == 0, output
    assert output.count("elected leader") == 1, output
    assert "stopping" in output

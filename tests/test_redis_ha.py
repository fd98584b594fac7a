"""Redis without a single point of failure: the gateway on Sentinel and on Redis Cluster, for real.

The store conformance suite runs on both shapes too (the `stores` fixture); here: passwords, and
a SIGKILLed master under load from SDK clients of both protocol versions (loadtest/failover.py,
which prints the same figures for docs/performance.md).
"""

from __future__ import annotations

import asyncio

import pytest

from loadtest.failover import run_failover
from shared.events import ToolUpdateEvent
from shared.store.protocols import StoreUnavailable
from shared.store.redis import RedisStores, open_redis_stores
from tests.redis_topologies import RedisClusterTopology, start_cluster, start_sentinel

PASSWORD = "pw with:odd@chars"


@pytest.mark.parametrize("shape", ["sentinel", "cluster"])
async def test_a_password_from_the_url_or_the_environment_and_never_in_an_error(
    shape: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    topology = start_sentinel(password=PASSWORD) if shape == "sentinel" else start_cluster(password=PASSWORD)
    try:
        with_password = topology.url
        without = with_password.replace(with_password.split("//")[1].split("@")[0] + "@", "")
        stores = await open_redis_stores(with_password)
        await stores.blocks.set("x_a_b", True)
        await stores.aclose()
        with pytest.raises(StoreUnavailable) as refused:
            await open_redis_stores(without, connect_timeout=2.0)
        assert "AGGREGATOR_REDIS_URL" in str(refused.value)
        monkeypatch.setenv("AGGREGATOR_REDIS_PASSWORD", "wrong-" + PASSWORD)
        with pytest.raises(StoreUnavailable) as wrong:
            await open_redis_stores(without, connect_timeout=2.0)
        assert PASSWORD not in str(wrong.value) and "pw with" not in str(wrong.value)
        monkeypatch.setenv("AGGREGATOR_REDIS_PASSWORD", PASSWORD)
        stores = await open_redis_stores(without)
        assert await stores.blocks.all() == {"x_a_b": True}
        await stores.aclose()
    finally:
        topology.stop()


@pytest.mark.parametrize("shape", ["sentinel", "cluster"])
def test_killing_the_redis_master_under_load_loses_nothing(shape: str) -> None:
    report = run_failover(shape, load=6)
    print(report.table())
    assert report.calls > 100 and report.lists > 100 and report.session_calls > 50, report.table()
    assert report.call_failures == 0 and report.list_failures == 0, report.table()
    assert report.session_failures == 0, report.table()
    assert report.promotion_s < 15
    assert all(report.degraded_seen) and len(report.degraded_seen) == 2, report.table()
    assert all(delay <= 5.0 for delay in report.ok_after_promotion_s), report.table()
    assert report.sessions_lost_by_redis == 2
    assert report.sessions_kept == report.sessions == report.sessions_in_store_after, report.table()
    assert report.block_visible_s <= 1.0, report.table()
    assert report.list_change_visible_s <= 5.0, report.table()
    assert report.fences and report.fences == sorted(report.fences), report.table()


async def test_a_cluster_without_sharded_pub_sub_still_carries_events(cluster_redis: RedisClusterTopology) -> None:
    """Redis Cluster before 7 (no SPUBLISH): classic pub/sub, which the cluster broadcasts to every node."""
    sharded = await open_redis_stores(cluster_redis.url, namespace="classic-check")
    assert sharded.sharded  # this Redis has it; now play one that has not
    classic = RedisStores(sharded.client, namespace="classic-check", where=sharded.where, sharded=False)
    try:
        async with classic.events.subscribe() as events, classic.messages.subscribe("a", "b") as messages:
            published = await classic.events.publish(ToolUpdateEvent(type="tool_block_changed", tool="x"))
            assert await asyncio.wait_for(anext(events), 5) == published
            await classic.messages.publish("b", b"hello")
            assert await asyncio.wait_for(anext(messages), 5) == ("b", b"hello")
    finally:
        await sharded.aclose()

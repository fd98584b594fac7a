"""RedisPubSub: publish and subscribe through either client shape, sharded where a cluster has it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterPubSub, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from shared.store.redis_replies import as_bytes, text, translated
from shared.store.redis_url import REDIS_FAILURES, RedisClient

__all__ = ["RedisPubSub"]


class RedisPubSub:
    """Publish and subscribe on the client's shape: sharded on a Redis Cluster that has it (7+).

    Sharded channels live on the master of their slot (and follow it across failovers), so a
    cluster does not broadcast every message to every node; classic pub/sub does that, which is
    what a single Redis or a Sentinel-managed master offers anyway.
    """

    def __init__(self, client: RedisClient, where: str, *, sharded: bool) -> None:
        self.client = client
        self.where = where
        self.sharded = sharded
        self.command = "SPUBLISH" if sharded else "PUBLISH"

    async def publish(self, channel: str, payload: bytes) -> None:
        with translated(self.where):
            await self.client.execute_command(self.command, channel, payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, channels: list[str]) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
        """Yield an endless iterator of (channel, payload); a lost connection raises StoreUnavailable."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        with translated(self.where):
            if isinstance(self.client, RedisCluster):
                # A (re)subscription follows the slots as they are now: after a failover the
                # client's map may still name the dead master, and pub/sub never refreshes it.
                await self.client.nodes_manager.initialize()
            await (pubsub.ssubscribe(*channels) if self.sharded else pubsub.subscribe(*channels))
        retries = _without_retries(pubsub)

        async def receive() -> dict[str, Any] | None:
            message: dict[str, Any] | None
            if self.sharded and isinstance(pubsub, ClusterPubSub):
                message = await pubsub.get_sharded_message(ignore_subscribe_messages=True, timeout=30.0)
            else:
                message = await pubsub.get_message(timeout=30.0)
            return message

        async def messages() -> AsyncIterator[tuple[str, bytes]]:
            while True:
                with translated(self.where):
                    message = await receive()
                if message is not None and message["type"] in ("message", "smessage"):
                    yield text(message["channel"]), as_bytes(message["data"])

        try:
            yield messages()
        finally:
            for connection, retry in retries:
                connection.retry = retry
            with contextlib.suppress(*REDIS_FAILURES):
                await pubsub.aclose()


def _without_retries(pubsub: PubSub | ClusterPubSub) -> list[tuple[Any, Retry]]:
    """Make a lost subscription raise instead of silently reconnecting; return what to restore.

    redis-py would reconnect and resubscribe under us, and messages published meanwhile would be
    lost unnoticed: the follower must see the failure to reload what it missed (a store that
    restarted empty, a failover). The connections go back to the pool with their retries.
    """
    subscriptions = list(pubsub.node_pubsub_mapping.values()) if isinstance(pubsub, ClusterPubSub) else [pubsub]
    changed = []
    for subscription in subscriptions:
        connection = getattr(subscription, "connection", None)  # None until it subscribed
        if connection is not None:
            changed.append((connection, connection.retry))
            connection.retry = Retry(NoBackoff(), 0)
    return changed

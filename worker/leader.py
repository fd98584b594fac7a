"""Leader election for workers: a Redis lock with a TTL and a fencing token.

The lock value is `{fence}:{worker id}`, where `fence` comes from a counter that only grows, even
across a Redis that lost its data (it never falls below the server's clock in microseconds).
The holder renews the TTL every third of it; a standby tries to take the lock as often. A
holder that finds its value gone raises LeadershipLost and must stop at once; the stores it
writes through check the same value (see `RedisStores.fenced`), so a stale leader that was
paused past its TTL cannot overwrite its successor's work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from shared.store.redis_keys import RedisKeys
from shared.store.redis_url import REDIS_FAILURES, RedisClient

__all__ = ["LeaderLock", "LeadershipLost"]

log = logging.getLogger("worker.leader")

# Take the lock if free, with a fresh fencing token. The token is at least the server's time in
# microseconds, so it keeps growing even after Redis lost the counter (a restart without persistence).
# KEYS[1] = lock, KEYS[2] = fence counter; ARGV[1] = worker id, ARGV[2] = ttl ms
# Returns the lock value taken, or false when another worker holds it.
_ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local now = redis.call('TIME')
local now_us = tonumber(now[1]) * 1000000 + tonumber(now[2])
local fence = redis.call('INCR', KEYS[2])
if fence < now_us then
  fence = now_us
  redis.call('SET', KEYS[2], string.format('%.0f', fence))
end
local value = string.format('%.0f', fence) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], value, 'PX', ARGV[2])
return value
"""

# Extend the lock only while we still hold it.
# KEYS[1] = lock; ARGV[1] = our lock value, ARGV[2] = ttl ms. Returns 1, or 0 when lost.
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# Release the lock only if we hold it. KEYS[1] = lock; ARGV[1] = our value. Returns 1 or 0.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeadershipLost(Exception):
    """This worker no longer holds the lock; stop doing leader work."""


class LeaderLock:
    def __init__(self, client: RedisClient, *, namespace: str, worker_id: str, ttl: float = 10.0) -> None:
        keys = RedisKeys(namespace)
        self.client = client
        self.key = keys.leader()
        self.fence_key = keys.fence()  # same hash slot as the lock: one script touches both
        self.worker_id = worker_id
        self.ttl_ms = int(ttl * 1000)
        self.value: str | None = None
        self._acquire = client.register_script(_ACQUIRE)
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)

    @property
    def fence(self) -> int | None:
        return int(self.value.split(":", 1)[0]) if self.value else None

    async def try_acquire(self) -> bool:
        value = await self._acquire(keys=[self.key, self.fence_key], args=[self.worker_id, self.ttl_ms])
        if value:
            self.value = value.decode() if isinstance(value, bytes) else str(value)
            return True
        return False

    async def renew(self) -> None:
        if self.value is None or not await self._renew(keys=[self.key], args=[self.value, self.ttl_ms]):
            self.value = None
            raise LeadershipLost("the leader lock expired or was taken by another worker")

    async def release(self) -> None:
        if self.value is not None:
            with contextlib.suppress(*REDIS_FAILURES):
                await self._release(keys=[self.key], args=[self.value])
            self.value = None

    @contextlib.asynccontextmanager
    async def leadership(self) -> AsyncIterator[asyncio.Task[None]]:
        """Wait until elected; yield the renewal task, which fails with LeadershipLost on loss."""
        interval = self.ttl_ms / 3000
        while True:
            try:
                if await self.try_acquire():
                    break
            except REDIS_FAILURES as exc:
                log.warning("cannot reach Redis for the leader lock (%s); retrying", exc)
            await asyncio.sleep(interval)
        log.info("elected leader with fencing token %s", self.fence, extra={"fence": self.fence})
        renewer = asyncio.create_task(self._keep(interval), name="leader-renew")
        try:
            yield renewer
        finally:
            renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError, LeadershipLost):
                await renewer
            await self.release()

    async def _keep(self, interval: float) -> None:
        failures = 0
        while True:
            await asyncio.sleep(interval)
            try:
                await self.renew()
                failures = 0
            except REDIS_FAILURES as exc:
                failures += 1
                log.warning("could not renew the leader lock (%s)", exc)
                if failures * interval * 1000 >= self.ttl_ms:
                    self.value = None
                    raise LeadershipLost("Redis unreachable for a whole lock TTL") from exc

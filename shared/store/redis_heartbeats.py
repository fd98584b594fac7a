"""RedisHeartbeatStore: the processes' heartbeats in two control-plane keys, expired by the server's clock.

    {ns}:beats          hash  process id -> Heartbeat JSON
    {ns}:beats:until    zset  process id, scored by its deadline (server time, ms)

Both keys share the control hash slot, so one script writes a record with its deadline and one
reads the live ones (dropping the lapsed) on a Redis Cluster too. A field of a hash cannot
expire on every Redis this supports (HPEXPIRE came with 7.4), hence the deadline index; both
keys expire whole once nobody has beaten for a TTL.
"""

from __future__ import annotations

import logging

import msgspec

from shared.records import Heartbeat
from shared.store.redis_keys import RedisKeys
from shared.store.redis_replies import text, translated
from shared.store.redis_url import RedisClient

__all__ = ["RedisHeartbeatStore"]

log = logging.getLogger("shared.store")

# KEYS[1] = records hash, KEYS[2] = deadlines zset; ARGV[1] = id, ARGV[2] = record, ARGV[3] = ttl ms
_BEAT = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[3])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], now_ms + ttl, ARGV[1])
for _, key in ipairs(KEYS) do
  if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, ttl) end
end
return 1
"""

# KEYS[1] = records hash, KEYS[2] = deadlines zset. Drops lapsed records; returns the rest (HGETALL).
_LIVE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now_ms)
if #lapsed > 0 then
  redis.call('HDEL', KEYS[1], unpack(lapsed))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now_ms)
end
return redis.call('HGETALL', KEYS[1])
"""

_decoder = msgspec.json.Decoder(Heartbeat)
_encode = msgspec.json.Encoder().encode


class RedisHeartbeatStore:
    def __init__(self, client: RedisClient, keys: RedisKeys, where: str) -> None:
        self.client = client
        self.where = where
        self._keys = [keys.heartbeats(), keys.heartbeat_deadlines()]
        self._beat = client.register_script(_BEAT)
        self._live = client.register_script(_LIVE)

    async def beat(self, record: Heartbeat, *, ttl: float) -> None:
        with translated(self.where):
            await self._beat(keys=self._keys, args=[record.id, _encode(record), max(1, int(ttl * 1000))])

    async def all(self) -> list[Heartbeat]:
        with translated(self.where):
            flat = await self._live(keys=self._keys)
        records = {text(flat[i]): flat[i + 1] for i in range(0, len(flat), 2)}
        found = []
        for beat_id in sorted(records):
            try:
                found.append(_decoder.decode(records[beat_id]))
            except msgspec.DecodeError:  # its ValidationError too
                log.warning("skipped a heartbeat this version cannot read (from %s)", beat_id)
        return found

    async def remove(self, beat_id: str) -> None:
        with translated(self.where):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hdel(self._keys[0], beat_id)
                pipe.zrem(self._keys[1], beat_id)
                await pipe.execute()

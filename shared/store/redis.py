"""The cluster stores: every Protocol of protocols.py on Redis (redis-py asyncio, one pool).

One Redis, a Sentinel-managed master or a Redis Cluster (see redis_url.py), with one key layout
(namespace `ns`, default `mcpagg`; `{ns}` is a hash tag: those keys share one slot, see
redis_keys.py and docs/architecture.md):

    {ns}:cap:global             hash  server -> ServerRecord JSON (shared backends)
    ns:cap:{scope}              hash  a user's records, expiring after the last write
    ns:session:{id}             str   SessionRecord JSON, expires after the idle timeout
    {ns}:blocks                 hash  exposed tool -> "1" blocked / "0" allowed
    ns:rl:{key}                 zset  attempt timestamps of one sliding window, expires with it
    {ns}:auth:{server}          hash  auth counters and last-event times
    {ns}:auth:servers           set   servers with auth counters
    {ns}:events:version         str   the registry event counter
    {ns}:events:epoch           str   a random id set once: a new one means the store lost its data
    {ns}:leader, {ns}:leader:fence    the worker's leader lock and fencing counter (worker/leader.py)
    {ns}:events                 pub/sub channel of ToolUpdateEvents
    {ns}:msg:{channel}          pub/sub channels between replicas (MessageBus)
    ns:key:{name}:{id}          str   a shared secret (KeyStore), expires with its period
    ns:val:{key}                str   a ValueStore value (bytes as given), expires after its ttl
    {ns}:beats, {ns}:beats:until      processes' heartbeats and their deadlines (redis_heartbeats.py)

Pub/sub is sharded (SPUBLISH/SSUBSCRIBE) on a Redis Cluster of version 7 or later, classic
elsewhere. Redis errors leave this module as StoreUnavailable, naming where Redis is (never its
password) and the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any

import msgspec

from shared.events import ToolUpdateEvent, decode_event, encode_event
from shared.records import ServerRecord, SessionRecord
from shared.store.protocols import (
    AUTH_COUNTERS,
    AUTH_TIMESTAMPS,
    GLOBAL_SCOPE,
    AuthEvent,
    AuthServerMetrics,
    StoreUnavailable,
)
from shared.store.redis_heartbeats import RedisHeartbeatStore
from shared.store.redis_keys import RedisKeys
from shared.store.redis_part import RedisPart
from shared.store.redis_pubsub import RedisPubSub
from shared.store.redis_replies import as_bytes, text, translated
from shared.store.redis_scripts import ALLOW, FENCED_PUT, PUBLISH, REMAINING, SHARED_KEY, TAKE
from shared.store.redis_url import RedisClient, close_client, parse_redis_url
from shared.store.redis_workflows import RedisWorkflowStore

__all__ = ["RedisStores", "open_redis_stores"]

_record_decoder = msgspec.json.Decoder(ServerRecord)
_session_decoder = msgspec.json.Decoder(SessionRecord)
_encode = msgspec.json.Encoder().encode


class RedisCapabilityStore(RedisPart):
    def __init__(self, client: RedisClient, keys: RedisKeys, where: str, fence: tuple[str, str] | None = None) -> None:
        super().__init__(client, keys, where, fence)
        self._fenced_put = client.register_script(FENCED_PUT)

    async def put(self, record: ServerRecord, *, scope: str = GLOBAL_SCOPE, ttl: float | None = None) -> None:
        key = self.keys.capabilities(scope)
        if self.fence is not None and scope == GLOBAL_SCOPE:
            with translated(self.where):
                await self._fenced_put(keys=[self.fence[0], key], args=[self.fence[1], record.server, _encode(record)])
            return
        with translated(self.where):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, record.server, _encode(record))
                if scope != GLOBAL_SCOPE and ttl is not None:
                    pipe.pexpire(key, int(ttl * 1000))
                await pipe.execute()

    async def get(self, server: str, *, scope: str = GLOBAL_SCOPE) -> ServerRecord | None:
        with translated(self.where):
            data = await self.client.hget(self.keys.capabilities(scope), server)
        return _record_decoder.decode(data) if data is not None else None

    async def list(self, *, scope: str = GLOBAL_SCOPE) -> list[ServerRecord]:
        with translated(self.where):
            data = await self.client.hgetall(self.keys.capabilities(scope))
        return [_record_decoder.decode(data[name]) for name in sorted(data)]

    async def delete(self, server: str, *, scope: str = GLOBAL_SCOPE) -> None:
        key = self.keys.capabilities(scope)
        with translated(self.where):
            if self.fence is not None and scope == GLOBAL_SCOPE:
                await self._fenced_put(keys=[self.fence[0], key], args=[self.fence[1], server, ""])
            else:
                await self.client.hdel(key, server)


class RedisSessionStore(RedisPart):
    async def create(self, record: SessionRecord, *, ttl: float) -> None:
        with translated(self.where):
            await self.client.set(self.keys.session(record.id), _encode(record), px=int(ttl * 1000))

    async def restore(self, record: SessionRecord, *, ttl: float) -> bool:
        with translated(self.where):
            key = self.keys.session(record.id)
            return bool(await self.client.set(key, _encode(record), px=int(ttl * 1000), nx=True))

    async def get(self, session_id: str) -> SessionRecord | None:
        with translated(self.where):
            data = await self.client.get(self.keys.session(session_id))
        return _session_decoder.decode(data) if data is not None else None

    async def touch(self, session_id: str, *, ttl: float) -> bool:
        with translated(self.where):
            return bool(await self.client.pexpire(self.keys.session(session_id), int(ttl * 1000)))

    async def delete(self, session_id: str) -> bool:
        with translated(self.where):
            return bool(await self.client.delete(self.keys.session(session_id)))


class RedisBlockStore(RedisPart):
    async def set(self, tool: str, blocked: bool | None) -> None:
        with translated(self.where):
            if blocked is None:
                await self.client.hdel(self.keys.blocks(), tool)
            else:
                await self.client.hset(self.keys.blocks(), tool, "1" if blocked else "0")

    async def all(self) -> dict[str, bool]:
        with translated(self.where):
            data = await self.client.hgetall(self.keys.blocks())
        return {text(tool): text(value) == "1" for tool, value in data.items()}


class RedisRateLimiter(RedisPart):
    def __init__(self, client: RedisClient, keys: RedisKeys, where: str) -> None:
        super().__init__(client, keys, where)
        self._allow = client.register_script(ALLOW)
        self._remaining = client.register_script(REMAINING)

    async def allow(self, key: str, *, limit: int, window: float) -> bool:
        with translated(self.where):
            result = await self._allow(
                keys=[self.keys.window(key)], args=[limit, max(1, int(window * 1000)), uuid.uuid4().hex]
            )
        return bool(result == 1)

    async def remaining(self, key: str, *, limit: int, window: float) -> int:
        with translated(self.where):
            return int(await self._remaining(keys=[self.keys.window(key)], args=[limit, max(1, int(window * 1000))]))

    async def reset(self, key: str) -> None:
        with translated(self.where):
            await self.client.delete(self.keys.window(key))


class RedisAuthMetrics(RedisPart):
    async def record(self, server: str, event: AuthEvent, *, at: float | None = None) -> None:
        key = self.keys.auth(server)
        with translated(self.where):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.sadd(self.keys.auth_servers(), server)
                pipe.hincrby(key, AUTH_COUNTERS[event], 1)
                if event in AUTH_TIMESTAMPS:
                    pipe.hset(key, AUTH_TIMESTAMPS[event], repr(time.time() if at is None else at))
                await pipe.execute()

    async def server(self, server: str) -> AuthServerMetrics | None:
        with translated(self.where):
            data = await self.client.hgetall(self.keys.auth(server))
        return _metrics(server, data) if data else None

    async def all(self) -> list[AuthServerMetrics]:
        with translated(self.where):
            names = sorted(text(n) for n in await self.client.smembers(self.keys.auth_servers()))
        found = [await self.server(name) for name in names]
        return [m for m in found if m is not None]


def _metrics(server: str, data: Mapping[bytes | str, bytes | str]) -> AuthServerMetrics:
    fields: dict[str, float | int] = {}
    for raw_key, raw_value in data.items():
        name = text(raw_key)
        fields[name] = float(raw_value) if name.startswith("last_") else int(raw_value)
    return msgspec.convert({"server_name": server, **fields}, AuthServerMetrics)


class RedisEventBus(RedisPart):
    def __init__(
        self,
        client: RedisClient,
        keys: RedisKeys,
        where: str,
        fence: tuple[str, str] | None = None,
        *,
        pubsub: RedisPubSub,
    ) -> None:
        super().__init__(client, keys, where, fence)
        self._publish = client.register_script(PUBLISH)
        self.pubsub = pubsub

    async def publish(self, event: ToolUpdateEvent) -> ToolUpdateEvent:
        body = encode_event(msgspec.structs.replace(event, version=0))  # version 0 is omitted
        with translated(self.where):
            lock, value = self.fence or (self.keys.version(), "")
            published = await self._publish(
                keys=[self.keys.version(), lock, self.keys.events()], args=[self.pubsub.command, body, value]
            )
        return decode_event(published)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[ToolUpdateEvent]]:
        async with self.pubsub.subscribe([self.keys.events()]) as messages:

            async def events() -> AsyncIterator[ToolUpdateEvent]:
                async for _, payload in messages:
                    yield decode_event(payload)

            yield events()

    async def version(self) -> int:
        with translated(self.where):
            value = await self.client.get(self.keys.version())
        return int(value) if value is not None else 0

    async def epoch(self) -> str:
        with translated(self.where):
            await self.client.set(self.keys.epoch(), uuid.uuid4().hex, nx=True)
            value = await self.client.get(self.keys.epoch())
        return text(value) if value is not None else ""


class RedisMessageBus(RedisPart):
    def __init__(self, client: RedisClient, keys: RedisKeys, where: str, *, pubsub: RedisPubSub) -> None:
        super().__init__(client, keys, where)
        self.pubsub = pubsub

    async def publish(self, channel: str, payload: bytes) -> None:
        await self.pubsub.publish(self.keys.message(channel), payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
        prefix = len(self.keys.message(""))
        async with self.pubsub.subscribe([self.keys.message(c) for c in channels]) as messages:

            async def named() -> AsyncIterator[tuple[str, bytes]]:
                async for channel, payload in messages:
                    yield channel[prefix:], payload

            yield named()


class RedisKeyStore(RedisPart):
    def __init__(self, client: RedisClient, keys: RedisKeys, where: str) -> None:
        super().__init__(client, keys, where)
        self._shared_key = client.register_script(SHARED_KEY)

    async def shared_key(self, name: str, key_id: str, *, ttl: float) -> bytes:
        with translated(self.where):
            key = await self._shared_key(
                keys=[self.keys.shared_key(name, key_id)], args=[secrets.token_bytes(32), max(1, int(ttl * 1000))]
            )
        return bytes(key)


class RedisValueStore(RedisPart):
    def __init__(self, client: RedisClient, keys: RedisKeys, where: str) -> None:
        super().__init__(client, keys, where)
        self._take = client.register_script(TAKE)

    async def put(self, key: str, value: bytes, *, ttl: float) -> None:
        with translated(self.where):
            await self.client.set(self.keys.value(key), value, px=_milliseconds(ttl))

    async def get(self, key: str) -> bytes | None:
        with translated(self.where):
            value = await self.client.get(self.keys.value(key))
        return as_bytes(value) if value is not None else None

    async def take(self, key: str) -> bytes | None:
        with translated(self.where):
            value = await self._take(keys=[self.keys.value(key)])
        return as_bytes(value) if value is not None else None

    async def delete(self, key: str) -> bool:
        with translated(self.where):
            return bool(await self.client.delete(self.keys.value(key)))

    async def put_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        with translated(self.where):
            return bool(await self.client.set(self.keys.value(key), value, px=_milliseconds(ttl), nx=True))


def _milliseconds(ttl: float) -> int:
    """A ttl as Redis wants it: whole milliseconds, at least one."""
    return max(1, int(ttl * 1000))


class RedisStores:
    kind = "redis"

    def __init__(
        self,
        client: RedisClient,
        *,
        namespace: str,
        where: str,
        sharded: bool = False,
        fence: tuple[str, str] | None = None,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.sharded = sharded
        keys = RedisKeys(namespace)
        pubsub = RedisPubSub(client, where, sharded=sharded)
        self.capabilities = RedisCapabilityStore(client, keys, where, fence)
        self.sessions = RedisSessionStore(client, keys, where)
        self.blocks = RedisBlockStore(client, keys, where)
        self.rate_limiter = RedisRateLimiter(client, keys, where)
        self.auth_metrics = RedisAuthMetrics(client, keys, where)
        self.events = RedisEventBus(client, keys, where, fence, pubsub=pubsub)
        self.messages = RedisMessageBus(client, keys, where, pubsub=pubsub)
        self.keys = RedisKeyStore(client, keys, where)
        self.values = RedisValueStore(client, keys, where)
        self.heartbeats = RedisHeartbeatStore(client, keys, where)
        self.workflows = RedisWorkflowStore(client, keys, where, fence)
        self.where = where
        self._owns_client = fence is None

    def fenced(self, lock_key: str, lock_value: str) -> RedisStores:
        """The same stores on the same pool, whose control-plane writes need the leader lock."""
        return RedisStores(
            self.client, namespace=self.namespace, where=self.where, sharded=self.sharded, fence=(lock_key, lock_value)
        )

    async def ping(self) -> None:
        with translated(self.where):
            await self.client.ping()

    async def aclose(self) -> None:
        if self._owns_client:
            await close_client(self.client)


async def open_redis_stores(url: str, *, namespace: str = "mcpagg", connect_timeout: float = 5.0) -> RedisStores:
    """Connect (one pool for the process) and check the server answers.

    The URL's form picks one Redis, Sentinel or Redis Cluster (redis_url.py); a bad URL or an
    unreachable Redis is a StoreUnavailable that says where (never the password) and what to fix.
    """
    try:
        target = parse_redis_url(url)
    except ValueError as exc:
        raise StoreUnavailable(f"bad Redis URL: {exc}; fix --redis-url / AGGREGATOR_REDIS_URL") from None
    where = target.describe()
    client = target.client(timeout=connect_timeout)
    try:
        await asyncio.wait_for(_ping(client, where), connect_timeout)
        sharded = target.mode == "cluster" and await _has_sharded_pubsub(client, where)
    except (StoreUnavailable, TimeoutError) as exc:
        await close_client(client)
        raise StoreUnavailable(
            f"cannot reach Redis at {where} ({exc or 'timed out'}); start it or fix --redis-url / AGGREGATOR_REDIS_URL"
        ) from None
    return RedisStores(client, namespace=namespace, where=where, sharded=sharded)


async def _ping(client: RedisClient, where: str) -> None:
    with translated(where):
        await client.ping()


async def _has_sharded_pubsub(client: RedisClient, where: str) -> bool:
    """Sharded pub/sub came with Redis 7 (and Valkey 7.2); older clusters broadcast instead."""
    with translated(where):
        info = await client.execute_command("INFO", "server")
    versions = (
        [node.get("redis_version", "0") for node in info.values()]
        if _per_node(info)
        else [info.get("redis_version", "0")]
    )
    return all(int(str(v).split(".")[0]) >= 7 for v in versions)


def _per_node(info: Mapping[str, Any]) -> bool:
    return bool(info) and all(isinstance(v, Mapping) for v in info.values())

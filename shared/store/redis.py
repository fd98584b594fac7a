"""The cluster stores: every Protocol of protocols.py on one Redis (redis-py asyncio, one pool).

Key layout (all under the namespace, default `mcpagg`; see docs/architecture.md):

    {ns}:cap:{scope}            hash  server -> ServerRecord JSON (non-global scopes expire)
    {ns}:session:{id}           str   SessionRecord JSON, expires after the idle timeout
    {ns}:blocks                 hash  exposed tool -> "1" blocked / "0" allowed
    {ns}:rl:{key}               zset  attempt timestamps of one sliding window, expires with it
    {ns}:auth:{server}          hash  auth counters and last-event times
    {ns}:auth:servers           set   servers with auth counters
    {ns}:events:version         str   the registry event counter
    {ns}:events:epoch           str   a random id set once: a new one means the store lost its data
    {ns}:events                 pub/sub channel of ToolUpdateEvents
    {ns}:msg:{channel}          pub/sub channels between replicas (MessageBus)
    {ns}:key:{name}:{id}        str   a shared secret (KeyStore), expires with its period
    {ns}:val:{key}              str   a ValueStore value (bytes as given), expires after its ttl

Redis errors leave this module as StoreUnavailable, naming the URL's host and the cause.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from urllib.parse import urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from shared.events import ToolUpdateEvent, decode_event, encode_event
from shared.records import ServerRecord, SessionRecord
from shared.store.protocols import (
    AUTH_COUNTERS,
    AUTH_TIMESTAMPS,
    GLOBAL_SCOPE,
    AuthEvent,
    AuthServerMetrics,
    FencedOut,
    StoreUnavailable,
)
from shared.store.redis_keys import RedisKeys
from shared.store.redis_scripts import ALLOW, FENCED_PUT, PUBLISH, REMAINING, SHARED_KEY, TAKE

__all__ = ["RedisStores", "open_redis_stores"]

_record_decoder = msgspec.json.Decoder(ServerRecord)
_session_decoder = msgspec.json.Decoder(SessionRecord)
_encode = msgspec.json.Encoder().encode


def _text(value: bytes | str) -> str:
    """A reply as text (the client returns bytes; its type stubs allow str)."""
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    """A reply as bytes (the client returns bytes; its type stubs allow str)."""
    return value.encode() if isinstance(value, str) else value


@contextlib.contextmanager
def _translated(where: str) -> Iterator[None]:
    """Redis errors leave as StoreUnavailable naming `where`, or FencedOut for a stale leader's write."""
    try:
        yield
    except ResponseError as exc:
        if str(exc).startswith("FENCED"):
            raise FencedOut(str(exc)) from exc
        raise StoreUnavailable(f"Redis at {where} refused a command: {exc}") from exc
    except RedisError as exc:
        raise StoreUnavailable(f"Redis at {where} failed: {exc or type(exc).__name__}") from exc
    except OSError as exc:
        raise StoreUnavailable(f"Redis at {where} is unreachable: {exc}") from exc


class _Part:
    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, where: str, fence: tuple[str, str] | None = None
    ) -> None:
        self.client = client
        self.keys = keys
        self.where = where
        self.fence = fence  # (lock key, our lock value) for a control plane's writes


class RedisCapabilityStore(_Part):
    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, where: str, fence: tuple[str, str] | None = None
    ) -> None:
        super().__init__(client, keys, where, fence)
        self._fenced_put = client.register_script(FENCED_PUT)

    async def put(self, record: ServerRecord, *, scope: str = GLOBAL_SCOPE, ttl: float | None = None) -> None:
        key = self.keys.capabilities(scope)
        if self.fence is not None and scope == GLOBAL_SCOPE:
            with _translated(self.where):
                await self._fenced_put(keys=[self.fence[0], key], args=[self.fence[1], record.server, _encode(record)])
            return
        with _translated(self.where):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(key, record.server, _encode(record))
                if scope != GLOBAL_SCOPE and ttl is not None:
                    pipe.pexpire(key, int(ttl * 1000))
                await pipe.execute()

    async def get(self, server: str, *, scope: str = GLOBAL_SCOPE) -> ServerRecord | None:
        with _translated(self.where):
            data = await self.client.hget(self.keys.capabilities(scope), server)
        return _record_decoder.decode(data) if data is not None else None

    async def list(self, *, scope: str = GLOBAL_SCOPE) -> list[ServerRecord]:
        with _translated(self.where):
            data = await self.client.hgetall(self.keys.capabilities(scope))
        return [_record_decoder.decode(data[name]) for name in sorted(data)]

    async def delete(self, server: str, *, scope: str = GLOBAL_SCOPE) -> None:
        key = self.keys.capabilities(scope)
        with _translated(self.where):
            if self.fence is not None and scope == GLOBAL_SCOPE:
                await self._fenced_put(keys=[self.fence[0], key], args=[self.fence[1], server, ""])
            else:
                await self.client.hdel(key, server)


class RedisSessionStore(_Part):
    async def create(self, record: SessionRecord, *, ttl: float) -> None:
        with _translated(self.where):
            await self.client.set(self.keys.session(record.id), _encode(record), px=int(ttl * 1000))

    async def get(self, session_id: str) -> SessionRecord | None:
        with _translated(self.where):
            data = await self.client.get(self.keys.session(session_id))
        return _session_decoder.decode(data) if data is not None else None

    async def touch(self, session_id: str, *, ttl: float) -> bool:
        with _translated(self.where):
            return bool(await self.client.pexpire(self.keys.session(session_id), int(ttl * 1000)))

    async def delete(self, session_id: str) -> bool:
        with _translated(self.where):
            return bool(await self.client.delete(self.keys.session(session_id)))


class RedisBlockStore(_Part):
    async def set(self, tool: str, blocked: bool | None) -> None:
        with _translated(self.where):
            if blocked is None:
                await self.client.hdel(self.keys.blocks(), tool)
            else:
                await self.client.hset(self.keys.blocks(), tool, "1" if blocked else "0")

    async def all(self) -> dict[str, bool]:
        with _translated(self.where):
            data = await self.client.hgetall(self.keys.blocks())
        return {_text(tool): _text(value) == "1" for tool, value in data.items()}


class RedisRateLimiter(_Part):
    def __init__(self, client: aioredis.Redis, keys: RedisKeys, where: str) -> None:
        super().__init__(client, keys, where)
        self._allow = client.register_script(ALLOW)
        self._remaining = client.register_script(REMAINING)

    async def allow(self, key: str, *, limit: int, window: float) -> bool:
        with _translated(self.where):
            result = await self._allow(
                keys=[self.keys.window(key)], args=[limit, max(1, int(window * 1000)), uuid.uuid4().hex]
            )
        return bool(result == 1)

    async def remaining(self, key: str, *, limit: int, window: float) -> int:
        with _translated(self.where):
            return int(await self._remaining(keys=[self.keys.window(key)], args=[limit, max(1, int(window * 1000))]))

    async def reset(self, key: str) -> None:
        with _translated(self.where):
            await self.client.delete(self.keys.window(key))


class RedisAuthMetrics(_Part):
    async def record(self, server: str, event: AuthEvent, *, at: float | None = None) -> None:
        key = self.keys.auth(server)
        with _translated(self.where):
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.sadd(self.keys.auth_servers(), server)
                pipe.hincrby(key, AUTH_COUNTERS[event], 1)
                if event in AUTH_TIMESTAMPS:
                    pipe.hset(key, AUTH_TIMESTAMPS[event], repr(time.time() if at is None else at))
                await pipe.execute()

    async def server(self, server: str) -> AuthServerMetrics | None:
        with _translated(self.where):
            data = await self.client.hgetall(self.keys.auth(server))
        return _metrics(server, data) if data else None

    async def all(self) -> list[AuthServerMetrics]:
        with _translated(self.where):
            names = sorted(_text(n) for n in await self.client.smembers(self.keys.auth_servers()))
        found = [await self.server(name) for name in names]
        return [m for m in found if m is not None]


def _metrics(server: str, data: Mapping[bytes | str, bytes | str]) -> AuthServerMetrics:
    fields: dict[str, float | int] = {}
    for raw_key, raw_value in data.items():
        name = _text(raw_key)
        fields[name] = float(raw_value) if name.startswith("last_") else int(raw_value)
    return msgspec.convert({"server_name": server, **fields}, AuthServerMetrics)


class RedisEventBus(_Part):
    def __init__(
        self, client: aioredis.Redis, keys: RedisKeys, where: str, fence: tuple[str, str] | None = None
    ) -> None:
        super().__init__(client, keys, where, fence)
        self._publish = client.register_script(PUBLISH)

    async def publish(self, event: ToolUpdateEvent) -> ToolUpdateEvent:
        body = encode_event(msgspec.structs.replace(event, version=0))  # version 0 is omitted
        with _translated(self.where):
            lock, value = self.fence or (self.keys.version(), "")
            published = await self._publish(keys=[self.keys.version(), lock], args=[self.keys.events(), body, value])
        return decode_event(published)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[ToolUpdateEvent]]:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        with _translated(self.where):
            await pubsub.subscribe(self.keys.events())

        async def events() -> AsyncIterator[ToolUpdateEvent]:
            while True:
                with _translated(self.where):
                    message = await pubsub.get_message(timeout=30.0)
                if message is not None and message["type"] == "message":
                    yield decode_event(message["data"])

        try:
            yield events()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def version(self) -> int:
        with _translated(self.where):
            value = await self.client.get(self.keys.version())
        return int(value) if value is not None else 0

    async def epoch(self) -> str:
        with _translated(self.where):
            await self.client.set(self.keys.epoch(), uuid.uuid4().hex, nx=True)
            value = await self.client.get(self.keys.epoch())
        return _text(value) if value is not None else ""


class RedisMessageBus(_Part):
    async def publish(self, channel: str, payload: bytes) -> None:
        with _translated(self.where):
            await self.client.publish(self.keys.message(channel), payload)

    @contextlib.asynccontextmanager
    async def subscribe(self, *channels: str) -> AsyncIterator[AsyncIterator[tuple[str, bytes]]]:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        prefix = len(self.keys.message(""))
        with _translated(self.where):
            await pubsub.subscribe(*(self.keys.message(c) for c in channels))

        async def messages() -> AsyncIterator[tuple[str, bytes]]:
            while True:
                with _translated(self.where):
                    message = await pubsub.get_message(timeout=30.0)
                if message is not None and message["type"] == "message":
                    yield message["channel"].decode()[prefix:], message["data"]

        try:
            yield messages()
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()


class RedisKeyStore(_Part):
    def __init__(self, client: aioredis.Redis, keys: RedisKeys, where: str) -> None:
        super().__init__(client, keys, where)
        self._shared_key = client.register_script(SHARED_KEY)

    async def shared_key(self, name: str, key_id: str, *, ttl: float) -> bytes:
        with _translated(self.where):
            key = await self._shared_key(
                keys=[self.keys.shared_key(name, key_id)], args=[secrets.token_bytes(32), max(1, int(ttl * 1000))]
            )
        return bytes(key)


class RedisValueStore(_Part):
    def __init__(self, client: aioredis.Redis, keys: RedisKeys, where: str) -> None:
        super().__init__(client, keys, where)
        self._take = client.register_script(TAKE)

    async def put(self, key: str, value: bytes, *, ttl: float) -> None:
        with _translated(self.where):
            await self.client.set(self.keys.value(key), value, px=_milliseconds(ttl))

    async def get(self, key: str) -> bytes | None:
        with _translated(self.where):
            value = await self.client.get(self.keys.value(key))
        return _bytes(value) if value is not None else None

    async def take(self, key: str) -> bytes | None:
        with _translated(self.where):
            value = await self._take(keys=[self.keys.value(key)])
        return _bytes(value) if value is not None else None

    async def delete(self, key: str) -> bool:
        with _translated(self.where):
            return bool(await self.client.delete(self.keys.value(key)))

    async def put_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        with _translated(self.where):
            return bool(await self.client.set(self.keys.value(key), value, px=_milliseconds(ttl), nx=True))


def _milliseconds(ttl: float) -> int:
    """A ttl as Redis wants it: whole milliseconds, at least one."""
    return max(1, int(ttl * 1000))


class RedisStores:
    kind = "redis"

    def __init__(
        self, client: aioredis.Redis, *, namespace: str, where: str, fence: tuple[str, str] | None = None
    ) -> None:
        self.client = client
        self.namespace = namespace
        keys = RedisKeys(namespace)
        self.capabilities = RedisCapabilityStore(client, keys, where, fence)
        self.sessions = RedisSessionStore(client, keys, where)
        self.blocks = RedisBlockStore(client, keys, where)
        self.rate_limiter = RedisRateLimiter(client, keys, where)
        self.auth_metrics = RedisAuthMetrics(client, keys, where)
        self.events = RedisEventBus(client, keys, where, fence)
        self.messages = RedisMessageBus(client, keys, where)
        self.keys = RedisKeyStore(client, keys, where)
        self.values = RedisValueStore(client, keys, where)
        self.where = where
        self._owns_client = fence is None

    def fenced(self, lock_key: str, lock_value: str) -> RedisStores:
        """The same stores on the same pool, whose control-plane writes need the leader lock."""
        return RedisStores(self.client, namespace=self.namespace, where=self.where, fence=(lock_key, lock_value))

    async def ping(self) -> None:
        with _translated(self.where):
            await self.client.ping()

    async def aclose(self) -> None:
        if self._owns_client:
            await self.client.aclose()


async def open_redis_stores(url: str, *, namespace: str = "mcpagg", connect_timeout: float = 5.0) -> RedisStores:
    """Connect (one pool for the process) and check the server answers."""
    parts = urlsplit(url)
    where = f"{parts.hostname or 'localhost'}:{parts.port or 6379}"
    client = aioredis.Redis.from_url(
        url,
        socket_connect_timeout=connect_timeout,
        socket_timeout=connect_timeout,
        health_check_interval=15,
        max_connections=256,
    )
    stores = RedisStores(client, namespace=namespace, where=where)
    try:
        await asyncio.wait_for(stores.ping(), connect_timeout)
    except (StoreUnavailable, TimeoutError) as exc:
        await client.aclose()
        raise StoreUnavailable(
            f"cannot reach Redis at {where} ({exc}); start it or fix --redis-url / AGGREGATOR_REDIS_URL"
        ) from None
    return stores

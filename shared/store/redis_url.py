"""RedisTarget: where the cluster's Redis is, read from one URL, and the client that reaches it.

Three shapes of deployment, one setting (`--redis-url` / `AGGREGATOR_REDIS_URL`):

    redis://[user:password@]host:6379[/db]           one Redis (rediss:// for TLS; unix:// too)
    redis+sentinel://[user:password@]h1:26379[,h2:26379...]/service[/db]
                                                     the master of `service`, found through the
                                                     sentinels and followed across failovers
    redis+cluster://[user:password@]h1:6379[,h2:6379...]
                                                     a cluster-mode Redis (slots discovered,
                                                     MOVED/ASK followed by redis-py)

`rediss+sentinel://` and `rediss+cluster://` speak TLS to the data nodes. The password may come
from AGGREGATOR_REDIS_PASSWORD instead of the URL (a URL without secrets can live in plain
config); sentinels that need one of their own read AGGREGATOR_REDIS_SENTINEL_PASSWORD. Nothing
here ever renders the password: `describe()` is what logs, errors and /readyz show.
"""

from __future__ import annotations

import os
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

import msgspec
import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

__all__ = ["REDIS_FAILURES", "RedisClient", "RedisTarget", "close_client", "parse_redis_url"]

RedisClient = aioredis.Redis | RedisCluster
"""A client of either shape; both take the same commands, scripts and pub/sub calls we use."""

REDIS_FAILURES = (RedisError, RedisClusterException, OSError)
"""What a Redis call of either client raises when Redis is away or refuses (a cluster's own errors
that are not RedisErrors included, e.g. no reachable node)."""

_MODES: dict[str, tuple[Literal["single", "sentinel", "cluster"], bool]] = {
    "redis": ("single", False),
    "rediss": ("single", True),
    "unix": ("single", False),
    "redis+sentinel": ("sentinel", False),
    "rediss+sentinel": ("sentinel", True),
    "redis+cluster": ("cluster", False),
    "rediss+cluster": ("cluster", True),
}


class RedisTarget(msgspec.Struct, frozen=True):
    mode: Literal["single", "sentinel", "cluster"]
    url: str
    """The URL as given (may hold a password: never show it; `describe()` is for showing)."""
    nodes: tuple[tuple[str, int], ...]
    tls: bool = False
    username: str | None = None
    password: str | None = None
    service: str | None = None
    db: int = 0
    sentinel_password: str | None = None

    def describe(self) -> str:
        """Where this is, for people: hosts and service, never credentials."""
        hosts = ",".join(f"{host}:{port}" for host, port in self.nodes)
        if self.mode == "sentinel":
            return f"sentinel {hosts}/{self.service}"
        if self.mode == "cluster":
            return f"cluster {hosts}"
        return hosts

    def client(self, *, timeout: float, max_connections: int = 256) -> RedisClient:
        """A client for this target (lazy: it connects on its first command)."""
        common: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "socket_connect_timeout": timeout,
            "socket_timeout": timeout,
            # A pooled connection may have died with its server (a restart, a failover): try the
            # command again on a fresh one. redis-py retries by default only when not built from
            # a URL; say it for every shape.
            "retry": Retry(ExponentialWithJitterBackoff(base=0.05, cap=0.5), 3),
        }
        if self.mode != "cluster":
            common["retry_on_error"] = [RedisConnectionError, RedisTimeoutError]
        if self.mode == "cluster":
            return RedisCluster(
                startup_nodes=[ClusterNode(host, port) for host, port in self.nodes],
                ssl=self.tls,
                max_connections=max_connections,
                **common,
            )
        if self.mode == "sentinel":
            assert self.service is not None
            sentinels = Sentinel(
                list(self.nodes),
                sentinel_kwargs={
                    "password": self.sentinel_password,
                    "socket_connect_timeout": timeout,
                    "socket_timeout": timeout,
                },
                db=self.db,
                ssl=self.tls,
                health_check_interval=15,
                max_connections=max_connections,
                **common,
            )
            master: aioredis.Redis = sentinels.master_for(self.service, redis_class=aioredis.Redis)
            return master
        password = None if urlsplit(self.url).password else self.password  # the URL's own wins
        return aioredis.Redis.from_url(
            self.url,
            **{**common, "password": password},
            health_check_interval=15,
            max_connections=max_connections,
        )


def parse_redis_url(url: str, environ: dict[str, str] | None = None) -> RedisTarget:
    """Read a Redis URL (see the module docstring); ValueError names what is wrong and the forms allowed."""
    env = os.environ if environ is None else environ
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _MODES:
        raise ValueError(
            f"unsupported Redis URL scheme {scheme + '://' if scheme else '(none)'}; "
            "use redis://, rediss://, unix://, redis+sentinel:// or redis+cluster://"
        )
    mode, tls = _MODES[scheme]
    netloc = parts.netloc.rpartition("@")[2]
    base = RedisTarget(
        mode=mode,
        url=url,
        nodes=(),
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else env.get("AGGREGATOR_REDIS_PASSWORD") or None,
        sentinel_password=env.get("AGGREGATOR_REDIS_SENTINEL_PASSWORD") or None,
    )
    if mode == "single":
        node = ("unix", 0) if scheme == "unix" else (parts.hostname or "localhost", _port(parts.port, 6379))
        return msgspec.structs.replace(base, nodes=(node,))
    default_port = 26379 if mode == "sentinel" else 6379
    nodes = tuple(_node(item, default_port, scheme) for item in netloc.split(",") if item)
    if not nodes:
        raise ValueError(f"{scheme}:// needs at least one host:port, e.g. {scheme}://10.0.0.1:{default_port}")
    path = [segment for segment in parts.path.split("/") if segment]
    if mode == "cluster":
        if path:
            raise ValueError("redis+cluster:// takes no path: a cluster-mode Redis has only database 0")
        return msgspec.structs.replace(base, nodes=nodes)
    if not path or len(path) > 2:
        raise ValueError(
            "redis+sentinel:// needs the monitored service's name as its path: "
            "redis+sentinel://host:26379[,host:port...]/<service>[/<db>]"
        )
    db = path[1] if len(path) == 2 else "0"
    if not db.isdigit():
        raise ValueError(f"the database in a redis+sentinel:// URL must be a number, not {db!r}")
    return msgspec.structs.replace(base, nodes=nodes, service=unquote(path[0]), db=int(db))


def _node(item: str, default_port: int, scheme: str) -> tuple[str, int]:
    if item.startswith("["):  # [IPv6]:port
        host, _, rest = item[1:].partition("]")
        port = rest.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    if not host:
        raise ValueError(f"a host in the {scheme}:// URL is empty: {item!r}")
    if port and not port.isdigit():
        raise ValueError(f"the port of {item!r} in the {scheme}:// URL is not a number")
    return host, _port(int(port) if port else None, default_port)


def _port(port: int | None, default: int) -> int:
    if port is None:
        return default
    if not 0 < port < 65536:
        raise ValueError(f"a port in the Redis URL is not between 1 and 65535: {port}")
    return port


async def close_client(client: RedisClient) -> None:
    """Close the client and, for Sentinel, the connections to the sentinels it asked."""
    await client.aclose()
    pool = getattr(client, "connection_pool", None)
    manager = getattr(pool, "sentinel_manager", None)
    for sentinel in getattr(manager, "sentinels", ()):
        await sentinel.aclose()

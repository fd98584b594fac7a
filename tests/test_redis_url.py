"""The Redis URL forms (one Redis, Sentinel, Cluster): what each is read as, and what is refused."""

from __future__ import annotations

import pytest

from shared.store.protocols import StoreUnavailable
from shared.store.redis import open_redis_stores
from shared.store.redis_url import parse_redis_url


def test_one_redis_keeps_its_url_and_defaults() -> None:
    target = parse_redis_url("redis://cache.internal/2", {})
    assert (target.mode, target.nodes, target.tls, target.password) == (
        "single",
        (("cache.internal", 6379),),
        False,
        None,
    )
    assert parse_redis_url("rediss://:pw@10.0.0.1:6380/0", {}).tls
    assert parse_redis_url("unix:///run/redis.sock", {}).describe() == "unix:0"


def test_sentinel_url_names_the_sentinels_the_service_and_the_database() -> None:
    target = parse_redis_url("redis+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2,[::1]:26380/mymaster/3", {})
    assert target.mode == "sentinel"
    assert target.nodes == (("10.0.0.1", 26379), ("10.0.0.2", 26379), ("::1", 26380))
    assert (target.service, target.db, target.username, target.password) == ("mymaster", 3, "app", "s3cret")
    assert target.describe() == "sentinel 10.0.0.1:26379,10.0.0.2:26379,::1:26380/mymaster"


def test_cluster_url_lists_seed_nodes() -> None:
    target = parse_redis_url("rediss+cluster://10.0.0.1:7000,10.0.0.2:7001", {})
    assert (target.mode, target.tls, target.nodes) == ("cluster", True, (("10.0.0.1", 7000), ("10.0.0.2", 7001)))
    assert target.describe() == "cluster 10.0.0.1:7000,10.0.0.2:7001"


def test_password_from_the_environment_unless_the_url_has_one() -> None:
    env = {"AGGREGATOR_REDIS_PASSWORD": "from-env", "AGGREGATOR_REDIS_SENTINEL_PASSWORD": "sentinel-pw"}
    assert parse_redis_url("redis+cluster://h:7000", env).password == "from-env"
    assert parse_redis_url("redis+cluster://:in%40url@h:7000", env).password == "in@url"
    assert parse_redis_url("redis+sentinel://h/m", env).sentinel_password == "sentinel-pw"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:6379", "unsupported Redis URL scheme http://"),
        ("redis+sentinel://h:26379", "needs the monitored service's name"),
        ("redis+sentinel://h:26379/m/x", "must be a number"),
        ("redis+cluster://h:7000/1", "takes no path"),
        ("redis+cluster://", "needs at least one host:port"),
        ("redis+cluster://h:port", "is not a number"),
        ("redis+cluster://h:70000", "not between 1 and 65535"),
        ("redis+sentinel://h1,,:26379/m", "is empty"),
    ],
)
def test_bad_urls_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url, {})


async def test_errors_name_where_redis_is_never_the_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGGREGATOR_REDIS_PASSWORD", "env-secret-1")
    for url in ("redis+sentinel://:url-secret-2@127.0.0.1:1/mymaster", "redis+cluster://:url-secret-2@127.0.0.1:1"):
        with pytest.raises(StoreUnavailable) as caught:
            await open_redis_stores(url, connect_timeout=1.0)
        message = str(caught.value)
        assert "127.0.0.1:1" in message and "AGGREGATOR_REDIS_URL" in message
        assert "secret" not in message
    with pytest.raises(StoreUnavailable, match="bad Redis URL: unsupported Redis URL scheme"):
        await open_redis_stores("htp://:url-secret-2@h")

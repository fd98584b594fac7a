"""The Sentinel and Cluster test topologies are real: plain redis-py finds masters through them,
data replicates, a killed master is replaced within seconds, and passwords are enforced.

Kill tests start topologies of their own so the session fixtures stay healthy for other tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel

from tests.redis_topologies import (
    HOST,
    RedisClusterTopology,
    SentinelTopology,
    start_cluster,
    start_sentinel,
)

PASSWORD = "s3cret pass:word"
NO_RETRY = Retry(NoBackoff(), 0)  # a refusal must surface at once, not after backoff


@contextmanager
def sentinel_client(topology: SentinelTopology, **kwargs: Any) -> Iterator[Sentinel]:
    """A Sentinel client over the three sentinels; `kwargs` go to the master/replica connections only."""
    sentinel = Sentinel([(HOST, port) for port in topology.sentinel_ports], socket_timeout=1, **kwargs)
    try:
        yield sentinel
    finally:
        for client in sentinel.sentinels:
            client.close()


@contextmanager
def cluster_client(topology: RedisClusterTopology, **kwargs: Any) -> Iterator[RedisCluster]:
    nodes = [ClusterNode(HOST, port) for port in topology.master_ports]
    client = RedisCluster(startup_nodes=nodes, socket_timeout=1, **kwargs)
    try:
        yield client
    finally:
        client.close()


def key() -> str:
    return f"topo-{uuid.uuid4().hex[:8]}"


def test_sentinel_master_serves_writes_that_reach_the_replica(sentinel_redis: SentinelTopology) -> None:
    ports = ",".join(f"{HOST}:{port}" for port in sentinel_redis.sentinel_ports)
    assert sentinel_redis.url == f"redis+sentinel://{ports}/mymaster"
    with sentinel_client(sentinel_redis) as sentinel:
        assert sentinel.discover_master("mymaster") == (HOST, sentinel_redis.master_port())
        [(_, replica_port)] = sentinel.discover_slaves("mymaster")
        master = sentinel.master_for("mymaster")
        replica = redis.Redis(port=replica_port, socket_timeout=1)
        try:
            name = key()
            master.set(name, "value")
            assert master.get(name) == b"value"
            assert master.wait(1, 2000) == 1  # the replica acknowledged the write
            assert replica.get(name) == b"value"
            assert replica.role()[0] == b"slave"
        finally:
            master.close()
            replica.close()


def test_a_killed_sentinel_master_is_replaced_within_seconds() -> None:
    topology = start_sentinel()
    try:
        with sentinel_client(topology) as sentinel:
            master = sentinel.master_for("mymaster")
            try:
                name = key()
                master.set(name, "before")
                assert master.wait(1, 2000) == 1
                old = topology.kill_master()
                elapsed = topology.wait_for_promotion(old)
                assert elapsed < 10
                assert topology.master_port() != old
                # The same client follows the sentinels to the promoted replica, which kept the data.
                assert master.get(name) == b"before"
                master.set(name, "after")
                assert sentinel.discover_master("mymaster") == (HOST, topology.master_port())

                topology.restart_killed()  # the old master comes back as a replica of the new one
                assert master.wait(1, 2000) == 1
                revived = redis.Redis(port=old, socket_timeout=1)
                try:
                    assert revived.role()[0] == b"slave"
                    assert revived.get(name) == b"after"
                finally:
                    revived.close()
            finally:
                master.close()
    finally:
        topology.stop()


def test_sentinel_data_nodes_refuse_clients_without_the_password() -> None:
    topology = start_sentinel(password=PASSWORD)
    try:
        ports = ",".join(f"{HOST}:{port}" for port in topology.sentinel_ports)
        assert topology.url == f"redis+sentinel://:s3cret%20pass%3Aword@{ports}/mymaster"
        with sentinel_client(topology) as sentinel:  # the sentinels themselves ask for no password
            assert sentinel.discover_master("mymaster") == (HOST, topology.master_port())
            for password in (None, "wrong"):
                refused = sentinel.master_for("mymaster", password=password, retry=NO_RETRY)
                try:
                    with pytest.raises(redis.AuthenticationError):
                        refused.set(key(), "x")
                finally:
                    refused.close()
            master = sentinel.master_for("mymaster", password=PASSWORD)
            replica = sentinel.slave_for("mymaster", password=PASSWORD)
            try:
                name = key()
                master.set(name, "value")
                assert master.wait(1, 2000) == 1
                assert replica.get(name) == b"value"
            finally:
                master.close()
                replica.close()
    finally:
        topology.stop()


def test_cluster_spreads_keys_over_three_masters(cluster_redis: RedisClusterTopology) -> None:
    ports = ",".join(f"{HOST}:{port}" for port in cluster_redis.master_ports)
    assert cluster_redis.url == f"redis+cluster://{ports}"
    with cluster_client(cluster_redis) as cluster:
        assert {node.port for node in cluster.get_primaries()} == set(cluster_redis.master_ports)
        flags = [str(node["flags"]) for node in cluster.cluster_nodes().values()]
        assert sum("slave" in f for f in flags) == 3 and sum("master" in f for f in flags) == 3
        owners: dict[int, str] = {}
        for name in (f"spread-{i}" for i in range(30)):
            assert cluster.cluster_keyslot(name) == cluster.keyslot(name)  # the server's CLUSTER KEYSLOT agrees
            node = cluster.get_node_from_key(name)
            cluster.set(name, name)
            owners.setdefault(node.port, name)
        assert set(owners) == set(cluster_redis.master_ports)
        for port, name in owners.items():
            direct = redis.Redis(port=port, socket_timeout=1)  # no redirection: the key lives on that master
            try:
                assert direct.get(name) == name.encode()
            finally:
                direct.close()


def test_a_killed_cluster_master_is_replaced_within_seconds() -> None:
    topology = start_cluster()
    try:
        with cluster_client(topology) as cluster:
            names = [f"failover-{i}" for i in range(30)]
            for name in names:
                cluster.set(name, "before")
            for port in topology.master_ports:
                direct = redis.Redis(port=port, socket_timeout=1)
                try:
                    assert direct.wait(1, 2000) == 1
                finally:
                    direct.close()

            old = topology.kill_master_with_replica()
            elapsed = topology.wait_for_promotion(old)
            assert elapsed < 10
            _, slots = topology.killed[old]
            moved = [name for name in names if any(a <= cluster.keyslot(name) <= b for a, b in slots)]
            assert moved
            # The same client finds the promoted replica, which kept the data and takes writes.
            for name in moved:
                assert cluster.get(name) == b"before"
                cluster.set(name, "after")
                assert cluster.get_node_from_key(name).port != old
                assert cluster.get(name) == b"after"
    finally:
        topology.stop()


def test_cluster_nodes_refuse_clients_without_the_password() -> None:
    topology = start_cluster(password=PASSWORD)
    try:
        ports = ",".join(f"{HOST}:{port}" for port in topology.master_ports)
        assert topology.url == f"redis+cluster://:s3cret%20pass%3Aword@{ports}"
        for port in topology.nodes:
            anonymous = redis.Redis(port=port, socket_timeout=1, retry=NO_RETRY)
            try:
                with pytest.raises(redis.AuthenticationError):
                    anonymous.ping()
            finally:
                anonymous.close()
        with cluster_client(topology, password=PASSWORD) as cluster:
            name = key()
            cluster.set(name, "value")
            assert cluster.get(name) == b"value"
    finally:
        topology.stop()

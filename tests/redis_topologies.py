"""Real Redis high-availability setups for the suite: Sentinel (master, replica, three sentinels) and Cluster.

They are built from `tests.redis_server` processes (free ports, a temporary folder each, removed on
stop), so tests can prove that clients follow a failover instead of trusting a mock. Every start
waits until the topology is fully formed (replication up, sentinels aware of each other, all slots
served) so a kill right after start really exercises the failover path. Any failure while starting
stops what already runs before re-raising.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from urllib.parse import quote

import redis
from redis.crc import key_slot

from tests.ports import free_port
from tests.redis_server import RedisServer, start_redis

__all__ = ["ClusterNodeInfo", "NotReady", "RedisClusterTopology", "SentinelTopology", "start_cluster", "start_sentinel"]

HOST = "127.0.0.1"
SLOTS = 16384
POLL = 0.05
# Replicas sync at once (Redis 7 waits 5 s by default for more replicas to share one diskless transfer).
DATA_NODE_ARGS = ("--repl-diskless-sync-delay", "0")


class NotReady(RuntimeError):
    """A topology is not (or no longer) in the state asked about."""


def _wait(check: Callable[[], bool], what: str, timeout: float, servers: list[RedisServer]) -> None:
    """Poll `check` (a Redis error counts as "not yet") until true, or fail with the servers' logs."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (redis.RedisError, NotReady) as error:
            last_error = error
        time.sleep(POLL)
    logs = "\n".join(f"--- port {s.port}\n{s.log()[-1500:]}" for s in servers)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last error: {last_error})\n{logs}")


def _ask(server: RedisServer, *command: str) -> object:
    """One command on a fresh short-lived connection (a killed peer must not hang us)."""
    client = server.client(socket_timeout=1)
    try:
        return client.execute_command(*command)
    finally:
        client.close()


def _text(reply: object) -> str:
    return reply.decode() if isinstance(reply, bytes) else str(reply)


def _fields(reply: object) -> dict[str, str]:
    """CLUSTER INFO text as a dict (sent as two words, redis-py leaves the reply raw)."""
    pairs = (line.split(":", 1) for line in _text(reply).splitlines() if ":" in line and not line.startswith("#"))
    return {key: value for key, value in pairs}


def _replica_synced(server: RedisServer) -> bool:
    client = server.client(socket_timeout=1)
    try:
        return client.info("replication").get("master_link_status") == "up"
    finally:
        client.close()


def _quoted(value: str) -> str:
    """A value for a redis config file line, whatever it holds."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _url(scheme: str, password: str | None, ports: list[int], path: str = "") -> str:
    auth = f":{quote(password, safe='')}@" if password else ""
    return f"{scheme}://{auth}" + ",".join(f"{HOST}:{port}" for port in ports) + path


@dataclass
class SentinelTopology:
    """One master, one replica and three sentinels (quorum 2) watching `service`."""

    service: str = "mymaster"
    password: str | None = None
    nodes: dict[int, RedisServer] = field(default_factory=dict)  # data nodes by port
    sentinels: list[RedisServer] = field(default_factory=list)
    killed: dict[int, float] = field(default_factory=dict)  # port -> monotonic time of the SIGKILL

    @property
    def sentinel_ports(self) -> list[int]:
        return [s.port for s in self.sentinels]

    @property
    def url(self) -> str:
        return _url("redis+sentinel", self.password, self.sentinel_ports, f"/{self.service}")

    def master_port(self, sentinel: RedisServer | None = None) -> int:
        """The master's port as a sentinel reports it (the first that answers, unless one is named)."""
        errors: list[Exception] = []
        for candidate in [sentinel] if sentinel else self.sentinels:
            try:
                reply = _ask(candidate, "SENTINEL", "get-master-addr-by-name", self.service)
            except redis.RedisError as error:
                errors.append(error)
                continue
            if isinstance(reply, list | tuple) and len(reply) == 2:
                return int(reply[1])
            errors.append(RuntimeError(f"sentinel {candidate.port} answered {reply!r}"))
        raise NotReady(f"no sentinel reported the master of {self.service}: {errors}")

    def _is_master(self, port: int) -> bool:
        node = self.nodes.get(port)
        if node is None or node.process.poll() is not None:
            return False
        role = _ask(node, "ROLE")
        return isinstance(role, list) and _text(role[0]) == "master"

    def kill_master(self) -> int:
        """SIGKILL the current master (as a crash would) and return its port."""
        port = self.master_port()
        self.nodes[port].kill()
        self.killed[port] = time.monotonic()
        return port

    def wait_for_promotion(self, old_port: int, timeout: float = 15.0) -> float:
        """Seconds from the kill of `old_port` (or from this call) until every sentinel names another
        master that answers ROLE as master."""
        start = self.killed.get(old_port, time.monotonic())

        def promoted() -> bool:
            ports = {self.master_port(s) for s in self.sentinels}
            return len(ports) == 1 and old_port not in ports and self._is_master(ports.pop())

        _wait(promoted, f"sentinels to promote a new master instead of {old_port}", timeout, self._all())
        return time.monotonic() - start

    def restart_killed(self, timeout: float = 10.0) -> None:
        """Start every killed node again, on its port, as a replica of the current master, and wait for its sync."""
        master = self.master_port()
        for port in list(self.killed):
            if port == master:
                raise RuntimeError(f"sentinels still name the killed node {port} as master")
            self.nodes[port].stop()  # its folder: a crashed node comes back empty
            self.nodes[port] = start_redis(
                port, *DATA_NODE_ARGS, "--replicaof", HOST, str(master), password=self.password
            )
            del self.killed[port]
            node = self.nodes[port]
            _wait(partial(_replica_synced, node), f"{port} to sync from {master}", timeout, self._all())

    def _all(self) -> list[RedisServer]:
        return [*self.nodes.values(), *self.sentinels]

    def stop(self) -> None:
        """Stop sentinels first (so they do not react to the nodes going away), then the data nodes."""
        for server in self._all()[::-1]:
            server.stop()


def start_sentinel(password: str | None = None, service: str = "mymaster", timeout: float = 20.0) -> SentinelTopology:
    """Start master, replica, then three sentinels; return once replication is up and the sentinels
    know the master, the replica and each other (a failover needs all three)."""
    topology = SentinelTopology(service, password)
    try:
        master = start_redis(None, *DATA_NODE_ARGS, password=password)
        topology.nodes[master.port] = master
        replica = start_redis(None, *DATA_NODE_ARGS, "--replicaof", HOST, str(master.port), password=password)
        topology.nodes[replica.port] = replica
        # Before the sentinels start: they list replicas from the master's INFO, refreshed only every 10 s.
        _wait(lambda: _replica_synced(replica), "the replica to sync", timeout, topology._all())
        config = [
            "sentinel resolve-hostnames no",
            f"sentinel monitor {service} {HOST} {master.port} 2",
            f"sentinel down-after-milliseconds {service} 1000",
            f"sentinel failover-timeout {service} 3000",
            f"sentinel parallel-syncs {service} 1",
        ]
        if password is not None:
            config.append(f"sentinel auth-pass {service} {_quoted(password)}")
        for _ in range(3):
            topology.sentinels.append(start_redis(None, "--sentinel", config=config))

        def formed() -> bool:
            for sentinel in topology.sentinels:
                if topology.master_port(sentinel) != master.port:
                    return False
                replicas = _ask(sentinel, "SENTINEL", "REPLICAS", service)
                others = _ask(sentinel, "SENTINEL", "SENTINELS", service)
                if not isinstance(replicas, list) or len(replicas) != 1:
                    return False
                if not isinstance(others, list) or len(others) != 2:
                    return False
            return True

        _wait(formed, "the sentinels to know the master, the replica and each other", timeout, topology._all())
    except BaseException:
        topology.stop()
        raise
    return topology


@dataclass(frozen=True)
class ClusterNodeInfo:
    """One line of CLUSTER NODES, as seen by one node."""

    id: str
    port: int
    flags: frozenset[str]
    master_id: str | None
    slots: tuple[tuple[int, int], ...]
    connected: bool

    @property
    def is_master(self) -> bool:
        return "master" in self.flags and not self.flags & {"fail", "fail?", "noaddr", "handshake"}


def _cluster_nodes(server: RedisServer) -> list[ClusterNodeInfo]:
    nodes = []
    for line in _text(_ask(server, "CLUSTER", "NODES")).splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split(",")[0].split("@")[0]
        slots = []
        for item in parts[8:]:
            if item.startswith("["):  # a slot being migrated: not served yet
                continue
            first, _, last = item.partition("-")
            slots.append((int(first), int(last or first)))
        nodes.append(
            ClusterNodeInfo(
                id=parts[0],
                port=int(address.rsplit(":", 1)[1]),
                flags=frozenset(parts[2].split(",")),
                master_id=None if parts[3] == "-" else parts[3],
                slots=tuple(slots),
                connected=parts[7] == "connected",
            )
        )
    return nodes


def _owner(nodes: list[ClusterNodeInfo], slot: int) -> ClusterNodeInfo | None:
    for node in nodes:
        if node.is_master and any(first <= slot <= last for first, last in node.slots):
            return node
    return None


@dataclass
class RedisClusterTopology:
    """A Redis Cluster of `masters` masters with `replicas_per_master` replicas each."""

    password: str | None = None
    nodes: dict[int, RedisServer] = field(default_factory=dict)
    master_ports: list[int] = field(default_factory=list)  # at creation, by slot range
    killed: dict[int, tuple[float, tuple[tuple[int, int], ...]]] = field(default_factory=dict)  # port -> (time, slots)

    @property
    def url(self) -> str:
        return _url("redis+cluster", self.password, self.master_ports)

    def live(self) -> list[RedisServer]:
        return [node for node in self.nodes.values() if node.process.poll() is None]

    def cluster_nodes(self) -> list[ClusterNodeInfo]:
        """The cluster as the first live node sees it."""
        return _cluster_nodes(self.live()[0])

    def kill_master_with_replica(self, holding: str | None = None) -> int:
        """SIGKILL a master that has an in-sync replica (so the cluster can fail over); return its port.

        With `holding`, the master of that key's slot (it must have an in-sync replica)."""
        view = self.cluster_nodes()
        slot = key_slot(holding.encode()) if holding is not None else None
        for master in (node for node in view if node.is_master and node.slots):
            if slot is not None and not any(first <= slot <= last for first, last in master.slots):
                continue
            replicas = [n for n in view if n.master_id == master.id and n.connected and n.port in self.nodes]
            if any(_replica_synced(self.nodes[r.port]) for r in replicas):
                self.nodes[master.port].kill()
                self.killed[master.port] = (time.monotonic(), master.slots)
                return master.port
        raise RuntimeError("no master with an in-sync replica to kill")

    def wait_for_promotion(self, old_port: int, timeout: float = 15.0) -> float:
        """Seconds from the kill of `old_port` until every surviving node reports cluster_state:ok and
        another master serving the killed master's slots."""
        if old_port not in self.killed:
            raise ValueError(f"{old_port} was not killed by kill_master_with_replica()")
        killed_at, slots = self.killed[old_port]

        def promoted() -> bool:
            for server in self.live():
                if _fields(_ask(server, "CLUSTER", "INFO")).get("cluster_state") != "ok":
                    return False
                view = _cluster_nodes(server)
                for first, _ in slots:
                    owner = _owner(view, first)
                    if owner is None or owner.port == old_port:
                        return False
            return True

        _wait(promoted, f"the cluster to promote a replica of {old_port}", timeout, list(self.nodes.values()))
        return time.monotonic() - killed_at

    def stop(self) -> None:
        for server in self.nodes.values():
            server.stop()


def start_cluster(
    masters: int = 3, replicas_per_master: int = 1, password: str | None = None, timeout: float = 30.0
) -> RedisClusterTopology:
    """Start the nodes, join them with `redis-cli --cluster create`, and return once every node
    reports cluster_state:ok with all 16384 slots and every replica has synced."""
    cli = shutil.which("redis-cli")
    if cli is None:
        raise RuntimeError("redis-cli is not installed; run ./scripts/test.sh (it installs Debian's redis-server)")
    count = masters * (1 + replicas_per_master)
    topology = RedisClusterTopology(password)
    try:
        for _ in range(count):
            port = free_port()
            # An explicit bus port: the default (port + 10000) may be taken, or above 65535.
            bus = next(p for p in iter(free_port, None) if p != port)
            node = start_redis(
                port,
                *DATA_NODE_ARGS,
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(bus),
                "--cluster-config-file",
                "nodes.conf",  # relative to --dir: the node's own temporary folder
                "--cluster-node-timeout",
                "1000",
                password=password,
            )
            topology.nodes[node.port] = node
        command = [cli, "--cluster", "create", *(f"{HOST}:{port}" for port in topology.nodes)]
        command += ["--cluster-replicas", str(replicas_per_master), "--cluster-yes"]
        if password is not None:
            command += ["-a", password, "--no-auth-warning"]
        created = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed ({created.returncode}):\n{created.stdout}")

        def formed() -> bool:
            for server in topology.nodes.values():
                info = _fields(_ask(server, "CLUSTER", "INFO"))
                if info.get("cluster_state") != "ok" or info.get("cluster_slots_ok") != str(SLOTS):
                    return False
                if info.get("cluster_known_nodes") != str(count):
                    return False
            view = topology.cluster_nodes()
            replicas = [n for n in view if n.master_id is not None]
            return len(replicas) == masters * replicas_per_master and all(
                _replica_synced(topology.nodes[r.port]) for r in replicas
            )

        _wait(formed, "cluster_state:ok on every node and the replicas in sync", timeout, topology.live())
        owners = sorted((n for n in topology.cluster_nodes() if n.is_master), key=lambda n: n.slots)
        topology.master_ports = [n.port for n in owners]
    except BaseException:
        topology.stop()
        raise
    return topology

"""Redis failover under load: what the cluster loses when the Redis master is SIGKILLed.

    python -m loadtest.failover [--topology sentinel|cluster|both] [--load 6]

Starts a Sentinel-managed master/replica pair (or a three-master Redis Cluster with a replica
per master), a worker, two gateway replicas behind haproxy and a shared SDK backend; keeps SDK
clients of both protocol versions calling through the balancer; SIGKILLs the Redis master (on
the cluster: the master of the control plane's slot, the one with the most to lose) and
measures, then prints one table per topology:

- failed stateless `tools/call` / `tools/list` and failed session calls during the whole run;
- whether each replica's /readyz said `degraded` while there was no master, and how long after
  the promotion it said `ok` again;
- 2025-11-25 sessions opened before the failover that still work after it, including sessions
  whose records the promoted node lacks (on Sentinel deleted from the replica between the kill
  and its promotion, on the cluster right after the promotion: the effect of a write that was
  acknowledged by the old master and never replicated);
- how long a tool blocked after the failover takes to vanish from both replicas' tools/list,
  and how long a backend's new tool takes to appear on both;
- the worker's fencing tokens, which must never go backwards.

tests/test_failover.py runs the same scenario and asserts on the report.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import re
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import redis
from mcp import Client

from loadtest.cluster import LocalCluster
from tests.redis_topologies import RedisClusterTopology, SentinelTopology, start_cluster, start_sentinel
from tests.servers.launch import run_http_server

__all__ = ["FailoverReport", "run_failover"]

TOKEN = "failover-admin-token"
ECHO = "x_tb_echo"
BLOCKED = "x_tb_whoami"
LOST_SESSIONS = 2  # of the sessions opened before the failover, how many the promoted node loses


@dataclass
class FailoverReport:
    topology: str
    calls: int = 0
    call_failures: int = 0
    lists: int = 0
    list_failures: int = 0
    session_calls: int = 0
    session_failures: int = 0
    promotion_s: float = 0.0
    degraded_seen: list[bool] = field(default_factory=list)
    """Per replica: /readyz said degraded between the kill and the promotion."""
    ok_after_promotion_s: list[float] = field(default_factory=list)
    """Per replica: from the promotion to its first /readyz `ok`."""
    sessions: int = 0
    sessions_lost_by_redis: int = 0
    sessions_kept: int = 0
    sessions_in_store_after: int = 0
    """Of the sessions opened before the failover, how many the store holds at the end (any replica can serve)."""
    block_visible_s: float = 0.0
    list_change_visible_s: float = 0.0
    fences: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def table(self) -> str:
        rows = [
            ("stateless tools/call: failed / made", f"{self.call_failures} / {self.calls}"),
            ("stateless tools/list: failed / made", f"{self.list_failures} / {self.lists}"),
            ("2025-11-25 session calls: failed / made", f"{self.session_failures} / {self.session_calls}"),
            ("master killed -> replica promoted", f"{self.promotion_s:.2f} s"),
            ("/readyz degraded while no master (per replica)", ", ".join(map(str, self.degraded_seen))),
            ("promotion -> /readyz ok (per replica)", ", ".join(f"{s:.2f} s" for s in self.ok_after_promotion_s)),
            (
                "sessions kept (of them lost by Redis)",
                f"{self.sessions_kept} / {self.sessions} ({self.sessions_lost_by_redis})",
            ),
            ("of them in the store again at the end", f"{self.sessions_in_store_after}"),
            ("tool blocked after failover -> gone on both replicas", f"{self.block_visible_s * 1000:.0f} ms"),
            ("backend's new tool -> listed on both replicas", f"{self.list_change_visible_s * 1000:.0f} ms"),
            ("worker fencing tokens (in order)", " <= ".join(str(f) for f in self.fences) or "-"),
        ]
        width = max(len(name) for name, _ in rows)
        lines = [f"## {self.topology}"] + [f"{name:<{width}}  {value}" for name, value in rows]
        lines += [f"error sample: {error}" for error in self.errors[:5]]
        return "\n".join(lines)


class _Load:
    """SDK clients of both protocol versions calling through the balancer until stopped."""

    def __init__(self, url: str, report: FailoverReport, clients: int) -> None:
        self.url = url
        self.report = report
        self.clients = clients
        self.running = True

    async def _stateless(self) -> None:
        async with Client(self.url, mode="2026-07-28") as client:
            while self.running:
                await self._count(lambda: client.call_tool(ECHO, {"text": "hi"}), "calls", "call_failures")
                await self._count(client.list_tools, "lists", "list_failures")

    async def _session(self) -> None:
        async with Client(self.url, mode="legacy") as client:
            while self.running:
                await self._count(lambda: client.call_tool(ECHO, {"text": "hi"}), "session_calls", "session_failures")

    async def _count(self, call: Callable[[], Awaitable[Any]], made: str, failed: str) -> None:
        setattr(self.report, made, getattr(self.report, made) + 1)
        try:
            result = await asyncio.wait_for(call(), 10)
            if getattr(result, "is_error", False):
                raise RuntimeError(f"tool error: {result}")
        except Exception as exc:
            setattr(self.report, failed, getattr(self.report, failed) + 1)
            self.report.errors.append(f"{made}: {type(exc).__name__}: {exc}"[:300])
        await asyncio.sleep(0.02)

    async def run(self) -> None:
        loops = [self._stateless() for _ in range(self.clients - self.clients // 3)]
        loops += [self._session() for _ in range(self.clients // 3)]
        await asyncio.gather(*loops)


class _Readiness:
    """Each replica's /readyz status every 100 ms, with when it was seen."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.seen: list[list[tuple[float, str]]] = [[] for _ in range(cluster.replicas)]
        self.running = True

    async def run(self) -> None:
        async with httpx.AsyncClient(timeout=2) as http:
            while self.running:
                for index, seen in enumerate(self.seen):
                    try:
                        status = (await http.get(f"{self.cluster.replica_url(index)}/readyz")).json()["status"]
                    except (httpx.HTTPError, ValueError, KeyError):
                        status = "unreachable"
                    seen.append((time.monotonic(), status))
                await asyncio.sleep(0.1)

    def degraded_between(self, start: float, end: float) -> list[bool]:
        return [any(start <= at <= end and status == "degraded" for at, status in seen) for seen in self.seen]

    def ok_after(self, promoted: float) -> list[float]:
        """Per replica, how long after `promoted` it said ok and kept saying so to the end."""
        delays = []
        for seen in self.seen:
            settled = promoted
            for at, status in seen:
                if at >= promoted and status != "ok":
                    settled = at
            delays.append(max(0.0, settled - promoted))
        return delays


async def _tools_on_both(cluster: LocalCluster) -> list[set[str]]:
    names = []
    for index in range(cluster.replicas):
        async with Client(f"{cluster.replica_url(index)}/mcp", mode="2026-07-28") as client:
            names.append({tool.name for tool in (await client.list_tools()).tools})
    return names


async def _until(check: Callable[[list[set[str]]], bool], cluster: LocalCluster, timeout: float = 15.0) -> float:
    start = time.monotonic()
    while not check(await _tools_on_both(cluster)):
        if time.monotonic() - start > timeout:
            raise TimeoutError("the change did not reach both replicas within 15 s")
        await asyncio.sleep(0.02)
    return time.monotonic() - start


def _kill_master(topology: SentinelTopology | RedisClusterTopology, lost: list[bytes]) -> tuple[int, int]:
    """SIGKILL the master (on a cluster, the one holding the control plane's keys); its port, and
    how many of `lost` the replica about to be promoted lost.

    On Sentinel the replica loses them between the kill and its promotion (a write on a replica
    stays local): exactly a write the old master acknowledged and never replicated, and before
    any gateway replica can see the new master. A cluster replica takes no writes, so there the
    keys are deleted once the new master serves (`_forget`)."""
    if isinstance(topology, SentinelTopology):
        master = topology.master_port()
        replica = redis.Redis(port=next(port for port in topology.nodes if port != master))
        try:
            replica.config_set("replica-read-only", "no")
            port = topology.kill_master()
            deleted = sum(int(replica.delete(key)) for key in lost)
            replica.config_set("replica-read-only", "yes")
        finally:
            replica.close()
        return port, deleted
    return topology.kill_master_with_replica(holding="{mcpagg}:leader"), 0


def _on_master(topology: SentinelTopology | RedisClusterTopology, work: Callable[[Any], Any]) -> Any:
    """Run `work` with a client of the current master (of every master, on a cluster)."""
    client: redis.Redis | redis.RedisCluster
    if isinstance(topology, SentinelTopology):
        client = redis.Redis(port=topology.master_port())
    else:
        client = redis.RedisCluster(host="127.0.0.1", port=topology.live()[0].port)
    try:
        return work(client)
    finally:
        client.close()


def _session_keys(client: redis.Redis | redis.RedisCluster) -> list[bytes]:
    return sorted(client.scan_iter(match="mcpagg:session:*"))


def _fences(cluster: LocalCluster) -> list[int]:
    text = "".join(p.log.read_text(errors="replace") for n, p in cluster.processes.items() if n.startswith("worker"))
    return [int(f) for f in re.findall(r"elected leader with fencing token (\d+)", text)]


async def _scenario(topology: SentinelTopology | RedisClusterTopology, report: FailoverReport, load: int) -> None:
    with run_http_server("tests.servers.toolbox", "--name", "tb", "--transport", "streamable-http") as backend:
        config = {
            "aggregator": {"healthCheckInterval": 2},
            "mcpServers": [{"name": "tb", "type": "streamable-http", "url": backend.url}],
        }
        with LocalCluster(
            config,
            replicas=2,
            workers=1,
            lock_ttl=3.0,
            external_redis=topology.url,
            env={"AGGREGATOR_ADMIN_TOKEN": TOKEN},
        ) as cluster:
            async with contextlib.AsyncExitStack() as stack:
                sessions = [
                    await stack.enter_async_context(Client(f"{cluster.replica_url(i % 2)}/mcp", mode="legacy"))
                    for i in range(6)
                ]
                for session in sessions:
                    await session.call_tool(ECHO, {"text": "before"})
                report.sessions = len(sessions)
                held = await asyncio.to_thread(_on_master, topology, _session_keys)
                traffic, readiness = _Load(cluster.url, report, load), _Readiness(cluster)
                tasks = [asyncio.create_task(traffic.run()), asyncio.create_task(readiness.run())]
                await asyncio.sleep(2.0)
                killed_at = time.monotonic()
                old, lost = await asyncio.to_thread(_kill_master, topology, held[:LOST_SESSIONS])
                report.promotion_s = await asyncio.to_thread(topology.wait_for_promotion, old)
                promoted_at = killed_at + report.promotion_s
                report.sessions_lost_by_redis = lost or await asyncio.to_thread(
                    _on_master, topology, lambda client: sum(client.delete(key) for key in held[:LOST_SESSIONS])
                )
                await asyncio.sleep(5.5)  # readiness settles; load keeps running
                async with httpx.AsyncClient(timeout=5, headers={"authorization": f"Bearer {TOKEN}"}) as admin:
                    blocked = await admin.post(f"{cluster.replica_url(0)}/admin/tools/{BLOCKED}/block")
                    blocked.raise_for_status()
                    report.block_visible_s = await _until(lambda both: all(BLOCKED not in n for n in both), cluster)
                    (await admin.post(f"{cluster.replica_url(0)}/admin/tools/{BLOCKED}/reset")).raise_for_status()
                fresh = f"fresh_{uuid.uuid4().hex[:8]}"
                async with Client(f"{cluster.replica_url(0)}/mcp", mode="2026-07-28") as actor:
                    await actor.call_tool("x_tb_add_tool", {"tool": fresh})
                report.list_change_visible_s = await _until(
                    lambda both: all(f"x_tb_{fresh}" in n for n in both), cluster
                )
                traffic.running = readiness.running = False
                await asyncio.gather(*tasks)
                report.degraded_seen = readiness.degraded_between(killed_at, promoted_at)
                report.ok_after_promotion_s = readiness.ok_after(promoted_at)
                report.sessions_in_store_after = await asyncio.to_thread(
                    _on_master, topology, lambda client: sum(client.exists(key) for key in held)
                )
                for session in sessions:
                    with contextlib.suppress(Exception):
                        result = await asyncio.wait_for(session.call_tool(ECHO, {"text": "after"}), 10)
                        report.sessions_kept += not result.is_error
            report.fences = _fences(cluster)


def run_failover(topology: str, *, load: int = 6) -> FailoverReport:
    """Run the scenario on a fresh topology ("sentinel" or "cluster") and return what it measured."""
    report = FailoverReport(topology)
    started = start_sentinel() if topology == "sentinel" else start_cluster(masters=3, replicas_per_master=1)
    try:
        asyncio.run(_scenario(started, report, load))
    finally:
        started.stop()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description="SIGKILL the Redis master under load and measure what is lost.")
    parser.add_argument("--topology", choices=("sentinel", "cluster", "both"), default="both")
    parser.add_argument("--load", type=int, default=6, help="concurrent SDK clients (a third hold sessions)")
    args = parser.parse_args()
    # The SDK client logs a traceback when a notification reaches a session it is closing; noise here.
    logging.getLogger("mcp.client.streamable_http").setLevel(logging.CRITICAL)
    for kind in ("sentinel", "cluster") if args.topology == "both" else (args.topology,):
        print(
            f"==> {kind}: starting Redis, a worker, two replicas and haproxy; killing the master under load", flush=True
        )
        print(run_failover(kind, load=args.load).table(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

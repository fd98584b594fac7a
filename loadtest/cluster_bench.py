"""Cluster benchmark: throughput with 1 and 2 replicas, CPU and Redis commands per call, and how
fast a backend's list change reaches every replica.

    python loadtest/cluster_bench.py [--duration 8] [--connections 16] [--rounds 2] [--changes 50] [--write-docs]

Everything runs on this machine in one run: an echo backend, a toolbox backend (for list
changes), Redis, one worker, two replicas, and two haproxy instances (both replicas / replica 0
only). wrk is the load generator.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
import redis

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest.cluster import LocalCluster
from loadtest.report import cpu_seconds, machine, write_block
from loadtest.wrk import WrkResult, require_wrk, run_wrk
from tests.servers.launch import run_http_server

MODERN = "2026-07-28"
META = {"io.modelcontextprotocol/protocolVersion": MODERN, "io.modelcontextprotocol/clientCapabilities": {}}


def redis_calls(client: redis.Redis) -> int:
    return sum(int(stat["calls"]) for stat in client.info("commandstats").values())


def measure(cluster: LocalCluster, url: str, tool: str, replicas: list[int], args: argparse.Namespace) -> dict:
    pids = [cluster.processes[f"replica-{i}"].pid for i in replicas]
    store = redis.Redis(port=cluster.redis_port)
    cpu0, calls0 = [cpu_seconds(p) for p in pids], redis_calls(store)
    result = run_wrk(url, tool, seconds=args.duration, connections=args.connections)
    cpu1, calls1 = [cpu_seconds(p) for p in pids], redis_calls(store) - 1  # minus our INFO
    used = sum(b - a for a, b in zip(cpu0, cpu1, strict=True))
    per_call = result.requests or 1
    return {"wrk": result, "cpu_us": used / per_call * 1e6, "redis_per_call": (calls1 - calls0 - 1) / per_call}


async def rpc(http: httpx.AsyncClient, url: str, method: str, params: dict, name: str | None = None) -> dict:
    headers = {"accept": "application/json, text/event-stream", "mcp-protocol-version": MODERN, "mcp-method": method}
    if name:
        headers["mcp-name"] = name
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": {**params, "_meta": META}}
    response = await http.post(url, json=body, headers=headers)
    return dict(response.json())


async def call(http: httpx.AsyncClient, url: str, tool: str, arguments: dict) -> dict:
    return await rpc(http, url, "tools/call", {"name": tool, "arguments": arguments}, tool)


async def propagation(cluster: LocalCluster, backend_url: str, changes: int) -> list[float]:
    """Seconds from a backend's tools/list change until every replica lists the new tool."""
    latencies = []
    replicas = [f"{cluster.replica_url(i)}/mcp" for i in range(cluster.replicas)]
    async with httpx.AsyncClient(timeout=10) as http:

        async def until_listed(url: str, exposed: str) -> float:
            while True:
                reply = await rpc(http, url, "tools/list", {})
                if any(tool["name"] == exposed for tool in reply["result"]["tools"]):
                    return time.perf_counter()
                await asyncio.sleep(0.001)

        for index in range(changes):
            tool = f"probe{index}"
            await call(http, backend_url, "add_tool", {"tool": tool})
            changed = time.perf_counter()
            seen = await asyncio.wait_for(asyncio.gather(*(until_listed(u, f"x_tb_{tool}") for u in replicas)), 30)
            latencies.append(max(seen) - changed)
            await call(http, backend_url, "remove_tool", {"tool": tool})
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--changes", type=int, default=50)
    parser.add_argument("--write-docs", action="store_true")
    args = parser.parse_args()
    require_wrk()
    with ExitStack() as stack:
        echo = stack.enter_context(run_http_server("tests.servers.echo"))
        toolbox = stack.enter_context(
            run_http_server("tests.servers.toolbox", "--name", "tb", "--transport", "streamable-http")
        )
        config = {
            "aggregator": {"healthCheckInterval": 30},
            "mcpServers": [
                {"name": "echo", "type": "streamable-http", "url": echo.url},
                {"name": "tb", "type": "streamable-http", "url": toolbox.url},
            ],
        }
        cluster = stack.enter_context(LocalCluster(config, replicas=2, workers=1, log_level="warning"))
        one = cluster.add_balancer("haproxy-one", [0])
        print(f"cluster up (logs in {cluster.workdir}); {args.rounds} rounds of {args.duration:g}s", flush=True)
        rows: dict[str, list[dict]] = {"direct": [], "1 replica": [], "2 replicas": []}
        for round_ in range(args.rounds):
            direct = run_wrk(echo.url, "echo", seconds=args.duration, connections=args.connections)
            rows["direct"].append({"wrk": direct})
            rows["1 replica"].append(measure(cluster, f"http://127.0.0.1:{one}/mcp", "x_echo_echo", [0], args))
            rows["2 replicas"].append(measure(cluster, cluster.url, "x_echo_echo", [0, 1], args))
            print(f"  round {round_ + 1} done", flush=True)
        latencies = asyncio.run(propagation(cluster, toolbox.url, args.changes))
    report = render(rows, latencies, args)
    print(report)
    if args.write_docs:
        write_docs(report)
    failed = any(r["wrk"].errors for runs in rows.values() for r in runs)
    return 1 if failed else 0


def render(rows: dict[str, list[dict]], latencies: list[float], args: argparse.Namespace) -> str:
    def median(runs: list[dict], pick) -> float:  # type: ignore[no-untyped-def]
        return statistics.median(pick(r) for r in runs)

    lines = [
        f"Throughput (wrk, {args.connections} connections, {args.duration:g} s x {args.rounds} rounds, medians):",
        "",
        "| path | rps | p50 ms | p99 ms | errors | gateway CPU per call | Redis commands per call |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, runs in rows.items():
        wrk: list[WrkResult] = [r["wrk"] for r in runs]
        cpu = f"{median(runs, lambda r: r['cpu_us']):.0f} µs" if "cpu_us" in runs[0] else "—"
        redis_cmds = f"{median(runs, lambda r: r['redis_per_call']):.3f}" if "redis_per_call" in runs[0] else "—"
        lines.append(
            f"| {label} | {statistics.median(w.rps for w in wrk):.0f} | {statistics.median(w.p50_ms for w in wrk):.2f} "
            f"| {statistics.median(w.p99_ms for w in wrk):.2f} | {sum(w.errors for w in wrk)} | {cpu} | {redis_cmds} |"
        )
    ms = [value * 1000 for value in latencies]
    lines += [
        "",
        f"List-change propagation ({len(ms)} changes; backend change -> new tools/list served by both replicas):",
        "",
        "| p50 | p90 | p99 | max |",
        "|---|---|---|---|",
        "| " + " | ".join(f"{v:.1f} ms" for v in (*(percentile(ms, q) for q in (0.5, 0.9, 0.99)), max(ms))) + " |",
    ]
    return "\n".join(lines)


def write_docs(report: str) -> None:
    write_block(
        "cluster-bench",
        "## Cluster: replicas, Redis, propagation\n\n"
        f"{machine()} Everything runs on one machine (backends, Redis, worker, replicas, haproxy, wrk), so the "
        "2-replica row shows what a second replica costs on shared cores, not how a cluster scales across "
        "machines.\n\n"
        f"Command: `python loadtest/cluster_bench.py --write-docs`\n\n{report}",
    )


if __name__ == "__main__":
    raise SystemExit(main())

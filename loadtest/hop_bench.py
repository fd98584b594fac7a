"""Hop benchmark: what forwarding through the gateway costs when the backend is not the bottleneck.

    python loadtest/bench.py --hop [--duration 2] [--connections 16] [--rounds 5] [--write-docs]
    python loadtest/bench.py --hop --smoke   # 1 s per run, one round, no warm-up, only the --connections level

The backend is `tests/servers/cheap.py` (canned answers, tens of thousands of calls per second),
one per protocol version: 2026-07-28 (stateless) and 2025-11-25 (a session). Paths, every one
measured in every round, in the same order:

- each backend directly, the client speaking the backend's version;
- haproxy (http mode, keep-alive on both sides, one thread) in front of each: a compiled hop;
- the gateway (`aggregator serve`, embedded store, `--log-level warning`; one per backend)
  for each client version x backend version: four paths.

A 2025-11-25 client calls within a session opened before the runs (initialize, then
notifications/initialized), all connections sharing it. Each path runs at 1 connection and at
`--connections`, with one wrk thread. CPU per call is user + system time from /proc/<pid>/stat
over the run divided by completed calls, for each process on the path; the report adds the
kernel's share of it and the load that other processes put on the machine meanwhile (from
/proc/stat), since every number here moves with it. Goals: the gateway's CPU
per forwarded call <= 100 µs at `--connections`, the p50 it adds at 1 connection <= 0.2 ms
(against the same backend directly). A missed goal is reported, not fatal; a failed request is.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from loadtest.processes import PREFIX, SERVER, Child, announced, start, start_gateway, start_haproxy
from loadtest.report import cpu_times, machine, machine_busy, own_cpu, write_block
from loadtest.wrk import WrkResult, run_wrk

__all__ = ["bench", "render", "write_docs"]

GOAL_GATEWAY_CPU_US, GOAL_ADDED_P50_MS = 100.0, 0.2
STATELESS, HANDSHAKE = "2026-07-28", "2025-11-25"
VERSIONS = (STATELESS, HANDSHAKE)
TOOL = "echo"
ROLES = ("gateway", "backend", "haproxy")


@dataclass(frozen=True)
class Route:
    """One path: how the calls travel (direct, haproxy, gateway) and the versions at both ends."""

    via: str
    client: str
    backend: str

    @property
    def name(self) -> str:
        return f"{self.via} {self.client[:4]}>{self.backend[:4]}"


ROUTES = [
    route
    for backend in VERSIONS
    for route in (
        Route("direct", backend, backend),
        Route("haproxy", backend, backend),
        *(Route("gateway", client, backend) for client in VERSIONS),
    )
]


@dataclass(frozen=True)
class Target:
    """Where a route's wrk runs go, with what, and the processes whose CPU they cost."""

    url: str
    tool: str
    pids: dict[str, int]
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """One wrk run of one route at one concurrency, with µs of CPU per completed call by role."""

    route: Route
    connections: int
    wrk: WrkResult
    cpu_us: dict[str, float]
    system_us: dict[str, float]
    """Of cpu_us, the time spent in the kernel (socket reads and writes, mostly)."""
    elsewhere: float
    """Cores busy meanwhile with anything but this benchmark (its servers, wrk, itself): other users' load."""


def negotiated(gateway: Child) -> str:
    """The protocol version the gateway speaks with its backend, from /readyz."""
    base = gateway.url.rsplit("/", 1)[0]
    with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
        return str(json.load(response)["backends"][SERVER]["protocol"])


def open_session(url: str) -> str:
    """A 2025-11-25 session at `url` (initialize, then notifications/initialized); its Mcp-Session-Id."""
    headers = {"accept": "application/json, text/event-stream"}
    params = {"protocolVersion": HANDSHAKE, "capabilities": {}, "clientInfo": {"name": "bench", "version": "1"}}
    try:
        with httpx.Client(timeout=10, headers=headers) as http:
            hello = http.post(url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": params})
            session = hello.headers.get("mcp-session-id")
            if hello.status_code != 200 or not session:
                raise RuntimeError(f"initialize at {url} answered HTTP {hello.status_code}: {hello.text[:300]}")
            done = http.post(
                url,
                json={"jsonrpc": "2.0", "method": "notifications/initialized"},
                headers={"mcp-session-id": session, "mcp-protocol-version": HANDSHAKE},
            )
    except httpx.HTTPError as error:
        raise RuntimeError(f"cannot open a session at {url}: {error}") from None
    if done.status_code != 202:
        raise RuntimeError(f"notifications/initialized at {url} answered HTTP {done.status_code}: {done.text[:300]}")
    return session


def measure(route: Route, target: Target, connections: int, seconds: float, servers: list[int]) -> Run:
    """One wrk run, with the CPU time (utime + stime) of each process on the path read before and after."""
    before = {role: cpu_times(pid) for role, pid in target.pids.items()}
    busy, own, started = machine_busy(), own_cpu(servers), time.monotonic()
    result = run_wrk(
        target.url,
        target.tool,
        seconds=seconds,
        connections=connections,
        threads=1,
        headers=target.headers,
        version=route.client,
    )
    elsewhere = (machine_busy() - busy - (own_cpu(servers) - own)) / (time.monotonic() - started)
    after = {role: cpu_times(pid) for role, pid in target.pids.items()}
    per_call = 1e6 / max(1, result.requests)
    used = {role: (sum(after[role]) - sum(before[role])) * per_call for role in target.pids}
    system = {role: (after[role][1] - before[role][1]) * per_call for role in target.pids}
    return Run(route, connections, result, used, system, max(0.0, elsewhere))


def levels(args: argparse.Namespace) -> tuple[int, ...]:
    return (args.connections,) if args.smoke else (1, args.connections)


def bench(args: argparse.Namespace) -> tuple[list[Run], str]:
    """Start backends, haproxy and gateways, warm up, run the interleaved rounds; the runs and server noise."""
    if shutil.which("haproxy") is None:
        raise RuntimeError("haproxy is not installed: run `apt-get install -y haproxy`")
    with tempfile.TemporaryDirectory(prefix="hop-bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        backends = {
            version: stack.enter_context(
                start(
                    f"cheap-{version}",
                    [sys.executable, "-m", "tests.servers.cheap", "--port", "0", "--version", version],
                    workdir,
                    announced,
                )
            )
            for version in VERSIONS
        }
        haproxy, proxied = start_haproxy(
            stack, workdir, {version: backend.url for version, backend in backends.items()}
        )
        gateways = {
            version: start_gateway(stack, f"gateway-{version}", workdir, backends[version]) for version in VERSIONS
        }
        for version, gateway in gateways.items():
            if (spoken := negotiated(gateway)) != version:
                raise RuntimeError(f"the gateway in front of the {version} backend negotiated {spoken}")
        children = [*backends.values(), haproxy, *gateways.values()]
        servers = [child.process.pid for child in children]
        for child in children:
            print(f"{child.name:20} pid {child.process.pid:7}  {child.url}")
        targets: dict[Route, Target] = {}
        for route in ROUTES:
            backend = backends[route.backend]
            pids = {"backend": backend.process.pid}
            if route.via == "direct":
                url, tool = backend.url, TOOL
            elif route.via == "haproxy":
                url, tool, pids["haproxy"] = proxied[route.backend], TOOL, haproxy.process.pid
            else:
                gateway = gateways[route.backend]
                url, tool, pids["gateway"] = gateway.url, f"{PREFIX}_{SERVER}_{TOOL}", gateway.process.pid
            headers = {"Mcp-Session-Id": open_session(url)} if route.client == HANDSHAKE else {}
            targets[route] = Target(url, tool, pids, headers)
        print(
            f"wrk -t1 at {' and '.join(map(str, levels(args)))} connection(s), "
            f"{args.rounds} round(s) of {args.duration} s per path",
            flush=True,
        )
        if not args.smoke:
            for route, target in targets.items():  # warm-up: connections, pools, caches
                warm = measure(route, target, args.connections, 1, servers)
                if warm.wrk.errors:
                    raise RuntimeError(f"warm-up on {route.name} failed {warm.wrk.errors} times: {warm.wrk.first_bad}")
        marks = {child.name: len(child.output()) for child in children}
        runs: list[Run] = []
        for round_ in range(1, args.rounds + 1):
            for connections in levels(args):
                for route, target in targets.items():
                    runs.append(run := measure(route, target, connections, args.duration, servers))
                    cpu = "  ".join(f"{role} {us:5.0f} µs" for role, us in run.cpu_us.items())
                    print(
                        f"  round {round_} c{connections:<3} {route.name:22} {run.wrk.rps:7.0f} rps  "
                        f"p50 {run.wrk.p50_ms:5.2f} ms  p99 {run.wrk.p99_ms:6.2f} ms  errors {run.wrk.errors}  {cpu}  "
                        f"elsewhere {run.elsewhere:.2f} cores",
                        flush=True,
                    )
        noise = "".join(
            f"{child.name}: {line}\n" for child in children for line in child.output()[marks[child.name] :].splitlines()
        )
        return runs, noise


@dataclass(frozen=True)
class Row:
    """Medians over the rounds of one route at one concurrency."""

    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_us: dict[str, float]
    system_share: dict[str, float]


def summarise(runs: list[Run]) -> dict[tuple[int, Route], Row]:
    rows = {}
    for key in dict.fromkeys((run.connections, run.route) for run in runs):
        rs = [run for run in runs if (run.connections, run.route) == key]
        rows[key] = Row(
            rps=statistics.median(r.wrk.rps for r in rs),
            p50_ms=statistics.median(r.wrk.p50_ms for r in rs),
            p99_ms=statistics.median(r.wrk.p99_ms for r in rs),
            errors=sum(r.wrk.errors for r in rs),
            cpu_us={role: statistics.median(r.cpu_us[role] for r in rs) for role in rs[0].cpu_us},
            system_share={
                role: statistics.median(r.system_us[role] / r.cpu_us[role] if r.cpu_us[role] else 0.0 for r in rs)
                for role in rs[0].cpu_us
            },
        )
    return rows


def added_p50(rows: dict[tuple[int, Route], Row], connections: int, route: Route) -> float:
    """The route's p50 minus the p50 of its backend called directly, at the same concurrency."""
    direct = rows[connections, Route("direct", route.backend, route.backend)]
    return rows[connections, route].p50_ms - direct.p50_ms


def render(runs: list[Run], args: argparse.Namespace) -> tuple[str, bool]:
    """Tables per concurrency, the goals with PASS/MISS, and whether every request succeeded."""
    rows = summarise(runs)
    clean = not any(row.errors for row in rows.values())
    lines = [
        f"wrk -t1 --latency, {args.duration} s per run, {args.rounds} interleaved round(s); medians over rounds; "
        "CPU = user + system per completed call of each process on the path; added p50 = p50 minus the same "
        "backend's p50 called directly. Client → backend versions: 2026 = 2026-07-28 (stateless), "
        "2025 = 2025-11-25 (a session).",
    ]
    for connections in levels(args):
        lines += [
            "",
            f"**{connections} connection{'s' if connections > 1 else ''}:**",
            "",
            "| path | client → backend | rps | p50 ms | p99 ms | added p50 ms | errors "
            "| gateway CPU/call | backend CPU/call | haproxy CPU/call |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for route in ROUTES:
            row = rows[connections, route]
            added = f"{added_p50(rows, connections, route):+.3f}" if route.via != "direct" else "—"
            cpu = " | ".join(f"{row.cpu_us[role]:.0f} µs" if role in row.cpu_us else "—" for role in ROLES)
            lines.append(
                f"| {route.via} | {route.client[:4]} → {route.backend[:4]} | {row.rps:.0f} | {row.p50_ms:.3f} "
                f"| {row.p99_ms:.3f} | {added} | {row.errors} | {cpu} |"
            )
    gateways = [route for route in ROUTES if route.via == "gateway"]
    top, low = args.connections, 1

    def verdict(ok: bool) -> str:
        return ("PASS" if ok else "MISS") if clean else "void: requests failed"

    def each(values: dict[Route, float], unit: str, digits: int) -> str:
        return ", ".join(f"{r.client[:4]} → {r.backend[:4]} {v:.{digits}f}{unit}" for r, v in values.items())

    cpu = {route: rows[top, route].cpu_us["gateway"] for route in gateways}
    lines += [
        "",
        f"- gateway CPU per forwarded call at {top} connections <= {GOAL_GATEWAY_CPU_US:.0f} µs: "
        f"**{verdict(max(cpu.values()) <= GOAL_GATEWAY_CPU_US)}** ({each(cpu, ' µs', 0)})",
    ]
    if (low, ROUTES[0]) in rows:
        added = {route: added_p50(rows, low, route) for route in gateways}
        lines.append(
            f"- p50 added by the gateway at 1 connection <= {GOAL_ADDED_P50_MS} ms: "
            f"**{verdict(max(added.values()) <= GOAL_ADDED_P50_MS)}** ({each(added, ' ms', 3)})"
        )
    else:
        lines.append(f"- p50 added by the gateway at 1 connection <= {GOAL_ADDED_P50_MS} ms: not measured (--smoke)")
    proxies = [route for route in ROUTES if route.via == "haproxy"]
    reference = {route: rows[top, route].cpu_us["haproxy"] for route in proxies}
    ratio = {
        r: cpu[r] / max(0.1, rows[top, Route("haproxy", r.backend, r.backend)].cpu_us["haproxy"]) for r in gateways
    }
    lines.append(
        f"- reference, haproxy's CPU per call at {top} connections: {each(reference, ' µs', 0)}"
        + (
            "; p50 it adds at 1 connection: "
            + each({route: added_p50(rows, low, route) for route in proxies}, " ms", 3)
            if (low, ROUTES[0]) in rows
            else ""
        )
        + f". The gateway spends {_span(ratio.values())}x the CPU per call haproxy "
        "spends in front of the same backend."
    )
    shares = {
        role: [row.system_share[role] for (c, _), row in rows.items() if c == top and role in row.system_share]
        for role in ROLES
    }
    lines.append(
        f"- of that CPU, system time (the kernel: socket reads and writes, wake-ups) at {top} connections: "
        + ", ".join(f"{role} {100 * min(v):.0f}-{100 * max(v):.0f}%" for role, v in shares.items())
    )
    elsewhere = sorted(run.elsewhere for run in runs)
    lines.append(
        f"- other load on the machine during the runs (cores busy with anything but this benchmark, of "
        f"{len(os.sched_getaffinity(0))}): median {statistics.median(elsewhere):.2f}, max {elsewhere[-1]:.2f}"
    )
    if not clean:
        first = next(r.wrk for r in runs if r.wrk.errors)
        failed = ", ".join(f"{route.name} c{c} {row.errors}" for (c, route), row in rows.items() if row.errors)
        lines.append(
            f"- **FAILED REQUESTS** ({failed}): these numbers are not results. "
            f"First bad response: `{first.first_bad or 'socket error or timeout'}`"
        )
    return "\n".join(lines), clean


def _span(values: Iterable[float]) -> str:
    """`4-5`, or `5` when the extremes round alike."""
    numbers = list(values)
    low, high = f"{min(numbers):.0f}", f"{max(numbers):.0f}"
    return low if low == high else f"{low}-{high}"


def command(args: argparse.Namespace) -> str:
    if args.smoke:
        return "python loadtest/bench.py --hop --smoke"
    flags = f"--duration {args.duration} --connections {args.connections} --rounds {args.rounds}"
    return f"python loadtest/bench.py --hop {flags} --write-docs"


def write_docs(report: str, args: argparse.Namespace) -> None:
    """Replace the `hop` block of docs/performance.md (the rest of the file is left alone)."""
    version = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout.split(" ", 3)[2]
    write_block(
        "hop",
        "## The hop alone: a backend that is not the bottleneck\n\n"
        "What the gateway's forwarding costs when the backend answers in microseconds: `tests/servers/cheap.py` "
        "(asyncio + httptools, canned answers with only the JSON-RPC id spliced in), one per protocol version, "
        "called by wrk directly, through haproxy "
        f"{version} (http mode, keep-alive on both sides, one thread: what a compiled hop costs) and through the "
        "gateway (`aggregator serve`, embedded store, `--log-level warning`) for each client version x backend "
        "version. Backends, haproxy, gateways and wrk share the machine's cores. Every response is checked "
        "(HTTP 200, a JSON-RPC `result`, no `isError`); any failure voids the run.\n\n"
        f"{machine()}\n\n"
        f"Command: `{command(args)}`\n\n"
        f"{report}",
    )

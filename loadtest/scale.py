"""One replica, a large fleet: 100 backends x 50 tools, 10,000 sessions and 2,000 open streams on one gateway.

    python loadtest/scale.py [--servers 100] [--tools 50] [--sessions 10000] [--streams 2000] [--write-docs]
    python loadtest/scale.py --smoke      # fewer rounds, 1,000 sessions, 200 streams: proves it runs (~20 s)

Starts `python -m tests.servers.fleet` (one process serving `--servers` 2025-11-25 MCP servers
on `/s/{i}/mcp`, `--tools` tools each, able to change one server's tool list and send
`notifications/tools/list_changed`) and `aggregator serve` (embedded store, `--log-level warning`,
`maxStreams` raised above `--streams`) in front of all of them, on free ports. Measures:

- registration, in process: what `ServerRegistry.update` costs for each backend's record as
  the fleet registers one by one, and for one backend's list change at full size;
- from starting the gateway process to its `tools/list` (2026-07-28) enumerating every tool;
- a full `tools/list` enumeration over all pages, and the first page alone (p50, p99);
- one backend's list change: from the backend's change (it sends `list_changed`) to the
  gateway's `notifications/tools/list_changed` on a client's `subscriptions/listen` stream
  (applied), and to the new tool on the first page of `tools/list` (visible);
- memory (`loadtest/scale_memory.py`): RSS per 2025-11-25 session, per open GET stream and per
  open `subscriptions/listen` stream, one list change fanned out to every open stream, and
  (unless `--no-trace`: a second gateway, under tracemalloc) what dominates each.

Requests are raw HTTP/1.1 on keep-alive sockets (`loadtest/rawhttp.py`): latencies are the
gateway's, not a client library's. Exits 1 if a step fails.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest.bench import Child, announced, start  # noqa: E402
from loadtest.mcp_wire import first_page_names, list_all, list_page, listen_request  # noqa: E402
from loadtest.rawhttp import Connection, request_bytes  # noqa: E402
from loadtest.report import machine, write_block  # noqa: E402
from loadtest.scale_memory import MemoryResults, measure_memory, render_memory, render_sites, trace_memory  # noqa: E402
from tests.ports import free_port  # noqa: E402

GOAL_STARTUP_S, GOAL_FULL_MS, GOAL_FIRST_MS, GOAL_CHANGE_MS = 5.0, 25.0, 3.0, 10.0
PREFIX = "x"


@dataclass
class FleetResults:
    servers: int
    tools: int
    listening_s: float = 0.0
    listed_s: float = 0.0
    pages: int = 0
    full_ms: list[float] = field(default_factory=list)
    first_ms: list[float] = field(default_factory=list)
    applied_ms: list[float] = field(default_factory=list)
    visible_ms: list[float] = field(default_factory=list)
    registration_ms: list[float] = field(default_factory=list)
    change_in_process_ms: float = 0.0


def server_name(index: int) -> str:
    return f"s{index:03d}"


def gateway_config(port: int, fleet_url: str, servers: int, max_streams: int) -> dict[str, Any]:
    return {
        "aggregator": {"host": "127.0.0.1", "port": port, "prefix": PREFIX, "maxStreams": max_streams},
        "mcpServers": [
            {"name": server_name(i), "type": "streamable-http", "url": f"{fleet_url}/s/{i}/mcp"} for i in range(servers)
        ],
    }


def start_gateway(
    stack: contextlib.ExitStack, workdir: Path, config: dict[str, Any], name: str, argv: list[str]
) -> Child:
    """Started, not yet ready: the caller times how long readiness takes."""
    path = workdir / f"{name}.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    command = [*argv, "serve", "-c", str(path), "--log-level", "warning"]
    return stack.enter_context(start(name, command, workdir, lambda _: "started"))


def wait_listed(child: Child, port: int, expected: int, timeout: float = 60.0) -> tuple[float, float, int]:
    """Poll until the gateway answers and until tools/list holds `expected` tools: both times, and the pages."""
    began, listening = time.perf_counter(), 0.0
    deadline = began + timeout
    while time.perf_counter() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"gateway exited with {child.process.returncode}:\n{child.tail()}")
        try:
            conn = Connection("127.0.0.1", port, timeout=10)
        except OSError:
            time.sleep(0.01)
            continue
        try:
            listening = listening or time.perf_counter()
            tools, pages = list_all(conn)
        finally:
            conn.close()
        if tools >= expected:
            return listening, time.perf_counter(), pages
        time.sleep(0.01)
    raise RuntimeError(f"gateway did not list {expected} tools within {timeout:g} s:\n{child.tail()}")


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def time_lists(port: int, rounds: int, expected: int, results: FleetResults) -> None:
    conn = Connection("127.0.0.1", port)
    try:
        for _ in range(3):  # warm: the pages are encoded once per catalog, then served from the cache
            list_all(conn)
        for _ in range(rounds):
            began = time.perf_counter()
            tools, _ = list_all(conn)
            results.full_ms.append((time.perf_counter() - began) * 1000)
            if tools != expected:
                raise RuntimeError(f"tools/list enumerated {tools} tools, expected {expected}")
        for _ in range(rounds):
            began = time.perf_counter()
            list_page(conn)
            results.first_ms.append((time.perf_counter() - began) * 1000)
    finally:
        conn.close()


def time_changes(port: int, fleet_port: int, changes: int, results: FleetResults) -> None:
    """Change s000's tool list `changes` times; the added tool sorts first, onto page 1."""
    stream, lists, control = (Connection("127.0.0.1", p) for p in (port, port, fleet_port))
    try:
        headers, body = listen_request(7)
        stream.send(request_bytes("POST", "/mcp", f"127.0.0.1:{port}", headers, body))
        status, _ = stream.read_head()
        if status != 200:
            raise RuntimeError(f"subscriptions/listen answered HTTP {status}")
        stream.until(b"notifications/subscriptions/acknowledged")
        for _ in range(changes):
            time.sleep(0.05)  # the backend's and the gateway's loops idle, as between real changes
            began = time.perf_counter()
            answer = control.request("POST", "/control/0/change", {}, b"")
            added = f"{PREFIX}_{server_name(0)}_{json.loads(answer.body)['added']}"
            stream.until(b"notifications/tools/list_changed")
            applied = time.perf_counter()
            names = first_page_names(lists)
            visible = time.perf_counter()
            if added not in names:
                raise RuntimeError(f"{added} is not on the first page after list_changed: {names[:3]}")
            results.applied_ms.append((applied - began) * 1000)
            results.visible_ms.append((visible - began) * 1000)
    finally:
        for conn in (stream, lists, control):
            conn.close()


def registration_cost(servers: int, tools: int, results: FleetResults) -> None:
    """`ServerRegistry.update` per backend as the fleet registers one by one, then one list change."""
    from aggregator.registry import ServerRegistry
    from shared.config import AggregatorSettings, ServerSpec
    from shared.records import ServerRecord
    from tests.servers.fleet import tool

    specs = [
        ServerSpec(name=server_name(i), type="streamable-http", url=f"http://127.0.0.1:9/s/{i}/mcp")
        for i in range(servers)
    ]
    registry = ServerRegistry(AggregatorSettings(prefix=PREFIX), specs)

    def record(index: int, *extra: dict[str, Any]) -> ServerRecord:
        listed = [tool(j) for j in range(tools)] + list(extra)
        return ServerRecord(server=server_name(index), state="up", tools=listed, updated_at=time.time())

    for index in range(servers):
        fresh = record(index)  # each update gets a new record, as from the store
        began = time.perf_counter()
        registry.update(fresh)
        results.registration_ms.append((time.perf_counter() - began) * 1000)
    samples = []
    for change in range(5):
        fresh = record(0, {**tool(0), "name": f"added_{change}"})
        began = time.perf_counter()
        registry.update(fresh)
        samples.append((time.perf_counter() - began) * 1000)
    results.change_in_process_ms = statistics.median(samples)
    if len(registry.catalog.tools) != servers * tools + 1:
        raise RuntimeError(f"the registry lists {len(registry.catalog.tools)} tools, not {servers * tools + 1}")


@dataclass
class Setup:
    args: argparse.Namespace
    workdir: Path
    fleet: Child
    fleet_port: int

    def config(self, port: int, servers: int) -> dict[str, Any]:
        return gateway_config(port, f"http://127.0.0.1:{self.fleet_port}", servers, 2 * self.args.streams + 100)


def run_fleet(setup: Setup, results: FleetResults) -> MemoryResults:
    """The main gateway: startup, lists, list changes, then memory under sessions and streams."""
    args = setup.args
    expected = args.servers * args.tools
    with contextlib.ExitStack() as stack:
        port = free_port()
        began = time.perf_counter()
        gateway = start_gateway(
            stack, setup.workdir, setup.config(port, args.servers), "gateway", [sys.executable, "-m", "aggregator"]
        )
        listening, listed, results.pages = wait_listed(gateway, port, expected)
        results.listening_s, results.listed_s = listening - began, listed - began
        print(f"  gateway (pid {gateway.process.pid}) listed {expected:,} tools {results.listed_s:.2f} s after start")
        time_lists(port, args.rounds, expected, results)
        print(f"  tools/list: {args.rounds} full enumerations and first pages timed", flush=True)
        time_changes(port, setup.fleet_port, args.changes, results)
        print(f"  {args.changes} list changes timed; opening {args.sessions:,} sessions, {args.streams:,} streams")
        memory = asyncio.run(
            measure_memory(gateway.process.pid, port, setup.fleet_port, args.sessions, args.streams, args.concurrency)
        )
        print(f"  sessions opened in {memory.open_seconds:.1f} s; streams measured", flush=True)
        if "Traceback" in gateway.output():
            raise RuntimeError(f"the gateway logged an exception:\n{gateway.tail()}")
        return memory


def run_traced(setup: Setup, memory: MemoryResults) -> None:
    """A second gateway under tracemalloc (fewer backends: sessions and streams do not depend on them)."""
    args = setup.args
    folder = setup.workdir / "snapshots"
    folder.mkdir()
    servers = min(args.servers, 10)
    with contextlib.ExitStack() as stack:
        port = free_port()
        argv = [sys.executable, "-m", "loadtest.traced_gateway", str(folder)]
        gateway = start_gateway(stack, setup.workdir, setup.config(port, servers), "traced", argv)
        wait_listed(gateway, port, servers * args.tools, timeout=120)
        asyncio.run(trace_memory(folder, port, args.trace_sessions, args.trace_streams, memory))
    print(
        f"  traced gateway: {args.trace_sessions:,} sessions, {args.trace_streams:,} streams of each kind", flush=True
    )


def bench(args: argparse.Namespace) -> tuple[FleetResults, MemoryResults]:
    results = FleetResults(args.servers, args.tools)
    registration_cost(args.servers, args.tools, results)
    print(f"registration in process: {sum(results.registration_ms):.0f} ms for {args.servers} backends", flush=True)
    with tempfile.TemporaryDirectory(prefix="scale-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        fleet_argv = [sys.executable, "-m", "tests.servers.fleet", "--servers", str(args.servers)]
        fleet = stack.enter_context(start("fleet", [*fleet_argv, "--tools", str(args.tools)], workdir, announced))
        setup = Setup(args, workdir, fleet, int(fleet.url.rsplit(":", 1)[1]))
        print(f"fleet of {args.servers} servers x {args.tools} tools at {fleet.url} (pid {fleet.process.pid})")
        memory = run_fleet(setup, results)
        if args.trace:
            run_traced(setup, memory)
        return results, memory


def render(results: FleetResults, memory: MemoryResults, args: argparse.Namespace) -> str:
    n, expected = results.servers, results.servers * results.tools
    reg = results.registration_ms

    def verdict(value: float, goal: float, unit: str) -> str:
        return f"{'met' if value <= goal else 'NOT met'} (goal <= {goal:g} {unit})"

    def p50_p99(values: list[float]) -> str:
        return f"p50 {statistics.median(values):.2f} ms, p99 {percentile(values, 0.99):.2f} ms"

    full, first, visible = (statistics.median(v) for v in (results.full_ms, results.first_ms, results.visible_ms))
    middle = reg[len(reg) // 2]
    lines = [
        "| measure | result | goal |",
        "|---|---|---|",
        f"| registering the backends, in process (`ServerRegistry.update`): backend 1, {len(reg) // 2 + 1} and "
        f"{n}; all {n} | {reg[0]:.2f}, {middle:.2f}, {reg[-1]:.2f} ms; {sum(reg):.0f} ms | — |",
        f"| one backend's list change at {expected + 1:,} tools, in process | {results.change_in_process_ms:.2f} ms "
        "| — |",
        f"| gateway process start to all {expected:,} tools listed (to its first answer) | {results.listed_s:.2f} s "
        f"({results.listening_s:.2f} s) | "
        f"{verdict(results.listed_s, GOAL_STARTUP_S, 's')} |",
        f"| `tools/list`, all {results.pages} pages ({args.rounds} rounds) | {p50_p99(results.full_ms)} | "
        f"{verdict(full, GOAL_FULL_MS, 'ms')} |",
        f"| `tools/list`, first page ({args.rounds} rounds) | {p50_p99(results.first_ms)} | "
        f"{verdict(first, GOAL_FIRST_MS, 'ms')} |",
        f"| one backend's list change to `list_changed` on a listen stream ({args.changes} changes) | "
        f"{p50_p99(results.applied_ms)} | — |",
        f"| ... and to the new tool on `tools/list`'s first page | {p50_p99(results.visible_ms)} | "
        f"{verdict(visible, GOAL_CHANGE_MS, 'ms')} |",
        *render_memory(memory),
    ]
    if memory.sites:
        lines += render_sites(memory)
    return "\n".join(lines)


def command(args: argparse.Namespace) -> str:
    if args.smoke:
        return "python loadtest/scale.py --smoke"
    return (
        f"python loadtest/scale.py --servers {args.servers} --tools {args.tools} --sessions {args.sessions} "
        f"--streams {args.streams} --write-docs"
    )


def write_docs(report: str, args: argparse.Namespace) -> None:
    write_block(
        "scale",
        "## One replica, a large fleet\n\n"
        f"One gateway (`aggregator serve`, embedded store, `--log-level warning`) in front of {args.servers} "
        f"MCP servers of {args.tools} tools each (`tests/servers/fleet.py`: one process serving every server "
        "on its own URL path, 2025-11-25 Streamable HTTP, tools of about 380 bytes), then "
        f"{args.sessions:,} 2025-11-25 sessions and {args.streams:,} open streams on it. Requests are raw "
        "HTTP/1.1 on keep-alive sockets (`loadtest/rawhttp.py`); lists are 2026-07-28 `tools/list` with the "
        "default page size (500). Memory is the growth of the gateway's anonymous RSS divided by the count; "
        "the tracemalloc tables come from a second gateway (10 backends) run under tracemalloc "
        f"({args.trace_sessions:,} sessions, {args.trace_streams:,} streams of each kind).\n\n"
        f"{machine()}\n\n"
        f"Command: `{command(args)}`\n\n"
        f"{report}\n",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--servers", type=int, default=100)
    parser.add_argument("--tools", type=int, default=50, help="tools per server (default 50)")
    parser.add_argument("--rounds", type=int, default=200, help="timed tools/list enumerations (default 200)")
    parser.add_argument("--changes", type=int, default=50, help="timed list changes (default 50)")
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--streams", type=int, default=2_000)
    parser.add_argument("--concurrency", type=int, default=32, help="connections opening sessions (default 32)")
    parser.add_argument("--no-trace", dest="trace", action="store_false", help="skip the tracemalloc run")
    parser.add_argument("--trace-sessions", type=int, default=2_000, help="sessions on the traced gateway")
    parser.add_argument("--trace-streams", type=int, default=1_000, help="streams of each kind on the traced gateway")
    parser.add_argument("--write-docs", action="store_true", help="update the scale block of docs/performance.md")
    parser.add_argument("--smoke", action="store_true", help="fewer rounds, sessions and streams: proves it runs")
    args = parser.parse_args()
    if args.smoke:
        args.rounds, args.changes, args.sessions, args.streams = 20, 10, 1000, 200
        args.trace_sessions, args.trace_streams = 200, 50
    if args.streams > args.sessions or args.trace_streams > args.trace_sessions:
        parser.error("GET streams are opened on sessions: --streams must not exceed --sessions (and likewise traced)")
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop the servers on these too, not only on Ctrl-C
        signal.signal(sig, lambda number, _frame: sys.exit(128 + number))
    try:
        results, memory = bench(args)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError) as error:
        print(f"scale: {error}", file=sys.stderr)
        return 1
    report = render(results, memory, args)
    print(f"\n{report}")
    if args.write_docs:
        write_docs(report, args)
        print("\ndocs/performance.md updated")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Forwarding benchmark: one echo backend, called directly and through the gateway, same run.

    python loadtest/bench.py [--duration 8] [--connections 16] [--rounds 3] [--write-docs] [--smoke]

wrk drives both paths at the same concurrency, interleaved (direct, gateway, direct, ...) so
noise on the machine hits both alike. Reports rps, p50, p99, errors, the gateway/direct
ratio, the p50 the hop adds, and the gateway's CPU time per call. Goals: ratio >= 0.9 and
added p50 <= 0.5 ms.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest.report import cpu_seconds, machine, write_block
from loadtest.wrk import WrkResult, require_wrk, run_wrk
from tests.gateway_process import run_gateway
from tests.servers.launch import run_http_server

GOAL_RATIO, GOAL_ADDED_P50 = 0.9, 0.5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-docs", action="store_true")
    parser.add_argument("--smoke", action="store_true", help="1 s, 1 round, 4 connections: proves it runs")
    args = parser.parse_args()
    if args.smoke:
        args.duration, args.rounds, args.connections = 1, 1, 4
    require_wrk()
    direct: list[WrkResult] = []
    gateway_runs: list[WrkResult] = []
    cpu: list[float] = []
    with ExitStack() as stack:
        echo = stack.enter_context(run_http_server("tests.servers.echo"))
        config = {"mcpServers": [{"name": "echo", "type": "streamable-http", "url": echo.url, "timeout": 30}]}
        gateway = stack.enter_context(run_gateway(config, args=("--log-level", "warning")))
        print(f"backend {echo.url}, gateway {gateway.url}; {args.rounds} rounds of {args.duration:g}s", flush=True)
        run_wrk(echo.url, "echo", seconds=1, connections=args.connections)  # warm-up, both paths
        run_wrk(gateway.url, "x_echo_echo", seconds=1, connections=args.connections)
        for round_ in range(args.rounds):
            direct.append(run_wrk(echo.url, "echo", seconds=args.duration, connections=args.connections))
            before = cpu_seconds(gateway.process.pid)
            result = run_wrk(gateway.url, "x_echo_echo", seconds=args.duration, connections=args.connections)
            cpu.append((cpu_seconds(gateway.process.pid) - before) / max(1, result.requests) * 1e6)
            gateway_runs.append(result)
            print(f"  round {round_ + 1}: direct {direct[-1].rps:.0f} rps, gateway {result.rps:.0f} rps", flush=True)
    report = render(direct, gateway_runs, cpu, args)
    print(report)
    if args.write_docs:
        write_docs(report, args)
    return 1 if any(r.errors for r in (*direct, *gateway_runs)) else 0


def render(direct: list[WrkResult], through: list[WrkResult], cpu: list[float], args: argparse.Namespace) -> str:
    def row(label: str, runs: list[WrkResult]) -> tuple[str, float, float]:
        rps = statistics.median(r.rps for r in runs)
        p50 = statistics.median(r.p50_ms for r in runs)
        p99 = statistics.median(r.p99_ms for r in runs)
        errors = sum(r.errors for r in runs)
        return f"| {label} | {rps:.0f} | {p50:.2f} | {p99:.2f} | {errors} |", rps, p50

    direct_row, direct_rps, direct_p50 = row("backend directly", direct)
    gateway_row, gateway_rps, gateway_p50 = row("through the gateway", through)
    ratio = gateway_rps / direct_rps if direct_rps else 0.0
    added = gateway_p50 - direct_p50
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    return "\n".join(
        [
            f"wrk -t{args.threads} -c{args.connections}, {args.duration:g} s per run, {args.rounds} interleaved rounds"
            " (medians):",
            "",
            "| path | rps | p50 ms | p99 ms | errors |",
            "|---|---|---|---|---|",
            direct_row,
            gateway_row,
            "",
            f"- gateway/direct ratio: **{ratio:.2f}** (goal >= {GOAL_RATIO}: {verdict(ratio >= GOAL_RATIO)})",
            f"- p50 added by the hop: **{added:.2f} ms** (goal <= {GOAL_ADDED_P50} ms: "
            f"{verdict(added <= GOAL_ADDED_P50)})",
            f"- gateway CPU per forwarded call: **{statistics.median(cpu):.0f} µs** (user + system)",
        ]
    )


def write_docs(report: str, args: argparse.Namespace) -> None:
    write_block(
        "bench",
        "## Forwarding: one backend, direct vs through the gateway\n\n"
        f"{machine()} The backend is the official SDK's MCPServer (`tests/servers/echo.py`, streamable HTTP, "
        "2026-07-28 stateless JSON); the gateway runs on the embedded store with `--log-level warning`. Backend, "
        "gateway and wrk share the machine's cores.\n\n"
        f"Command: `python loadtest/bench.py --duration {args.duration:g} --rounds {args.rounds} --write-docs`\n\n"
        f"{report}",
    )


if __name__ == "__main__":
    raise SystemExit(main())

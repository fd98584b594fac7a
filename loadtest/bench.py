"""Forwarding benchmark: one echo backend, called directly and through the gateway, same run.

    python loadtest/bench.py [--duration 8] [--connections 16] [--threads 2] [--rounds 3] [--write-docs]
    python loadtest/bench.py --smoke      # 1 s, 1 round, 4 connections: proves it runs end to end
    python loadtest/bench.py --oauth      # adds a third path: a gateway that checks OAuth tokens
    python loadtest/bench.py --hop        # the hop alone: a cheap backend, haproxy, four gateway paths

Starts `python -m tests.servers.echo` and `aggregator serve` (embedded store, `--log-level
warning`) on free ports, then drives both paths with wrk (`loadtest/tools_call.lua`) at the
same concurrency, interleaved (direct, gateway, direct, ...) so noise on the machine hits both
alike. Reports rps, p50, p99, failed requests, the gateway/direct ratio, the p50 the hop adds
and the CPU time each process spends per call. Goals: ratio >= 0.9, added p50 <= 0.5 ms.

`--oauth` also starts the test authorization server (`tests.servers.auth_server`, tokens living
an hour) and a second gateway with `aggregator.oauth` set, in front of the same backend; one token
is signed in for before the runs and wrk sends it as `Authorization: Bearer`, every round running
direct, gateway, gateway with OAuth. The difference in gateway CPU per call between the two
gateways is what the token check costs the hot path (the verified token is cached).
`--hop` runs the benchmark of `loadtest/hop_bench.py` instead (its docstring says what it
measures): the gateway's cost when the backend is not the bottleneck, against haproxy's.
Exits 1 if any request failed, 2 if wrk is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest import hop_bench
from loadtest.processes import PREFIX, SERVER, Child, announced, start, start_gateway
from loadtest.report import cpu_seconds, machine, write_block
from loadtest.wrk import WrkResult, require_wrk, run_wrk

GOAL_RATIO, GOAL_ADDED_P50_MS = 0.9, 0.5
TOOL = "echo"
LABELS = {"direct": "backend directly", "gateway": "through the gateway", "oauth": "through the gateway, OAuth on"}
TOKEN_TTL = 3600  # seconds: no token expires during a benchmark, so every call after the first hits the cache


@dataclass(frozen=True)
class Target:
    """Where one path's wrk runs go: URL, tool name, headers, and the gateway whose CPU they cost."""

    url: str
    tool: str
    gateway: Child
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """One wrk run on one path, with the CPU each server spent per completed call (µs)."""

    path: str
    wrk: WrkResult
    gateway_cpu_us: float
    backend_cpu_us: float


def bearer_token(issuer: str, audience: str) -> str:
    """An access token for `audience`: alice signed in at `issuer` (authorization code + PKCE)."""
    from tests.oauth_flows import sign_in  # here, not at the top: it imports the MCP SDK (1.5 s), only --oauth needs it

    async def sign_alice_in() -> str:
        async with httpx.AsyncClient(timeout=10) as http:
            return str((await sign_in(http, issuer, user="alice", resource=audience))["access_token"])

    try:
        return asyncio.run(sign_alice_in())
    except (AssertionError, httpx.HTTPError) as error:  # sign_in asserts each step's answer
        raise RuntimeError(f"cannot get a token from {issuer}: {error}") from None


def measure(path: str, target: Target, backend: Child, args: argparse.Namespace) -> Run:
    """One wrk run, with the servers' CPU time (utime + stime) read before and after."""
    pids = (target.gateway.process.pid, backend.process.pid)
    before = [cpu_seconds(pid) for pid in pids]
    result = run_wrk(
        target.url,
        target.tool,
        seconds=args.duration,
        connections=args.connections,
        threads=args.threads,
        headers=target.headers,
    )
    used = [cpu_seconds(pid) - b for pid, b in zip(pids, before, strict=True)]
    calls = max(1, result.requests)
    return Run(path, result, used[0] / calls * 1e6, used[1] / calls * 1e6)


def bench(args: argparse.Namespace) -> tuple[list[Run], str]:
    """Start the servers, warm up, run the interleaved rounds; returns the runs and server log noise."""
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp, contextlib.ExitStack() as stack:
        workdir = Path(tmp)
        backend = stack.enter_context(
            start("backend", [sys.executable, "-m", "tests.servers.echo", "--port", "0"], workdir, announced)
        )
        gateway = start_gateway(stack, "gateway", workdir, backend)
        children = [backend, gateway]
        tool = f"{PREFIX}_{SERVER}_{TOOL}"
        paths = {"direct": Target(backend.url, TOOL, gateway), "gateway": Target(gateway.url, tool, gateway)}
        print(f"backend {backend.url} (pid {backend.process.pid}), gateway {gateway.url} (pid {gateway.process.pid})")
        if args.oauth:
            idp_argv = [sys.executable, "-m", "tests.servers.auth_server", "--port", "0", "--issuer-name", "corp"]
            idp = stack.enter_context(start("idp", [*idp_argv, "--token-ttl", str(TOKEN_TTL)], workdir, announced))
            guarded = start_gateway(stack, "gateway-oauth", workdir, backend, oauth={"issuer": idp.url})
            token = bearer_token(idp.url, audience=guarded.url)  # the gateway's default audience: its /mcp URL
            paths["oauth"] = Target(guarded.url, tool, guarded, {"Authorization": f"Bearer {token}"})
            children += [idp, guarded]
            print(f"authorization server {idp.url}, gateway with OAuth {guarded.url} (pid {guarded.process.pid})")
        print(f"wrk -t{args.threads} -c{args.connections}, {args.rounds} round(s) of {args.duration} s", flush=True)
        for path, target in paths.items():  # warm-up: connections, pools, caches (and the issuer's keys)
            warm = run_wrk(
                target.url,
                target.tool,
                seconds=1,
                connections=args.connections,
                threads=args.threads,
                headers=target.headers,
            )
            if warm.errors:
                raise RuntimeError(f"warm-up on the {path} path failed {warm.errors} times: {warm.first_bad}")
        marks = {child.name: len(child.output()) for child in children}
        runs: list[Run] = []
        for round_ in range(1, args.rounds + 1):
            for path, target in paths.items():
                runs.append(run := measure(path, target, backend, args))
                print(
                    f"  round {round_} {path:8} {run.wrk.rps:7.0f} rps  p50 {run.wrk.p50_ms:6.2f} ms  "
                    f"p99 {run.wrk.p99_ms:7.2f} ms  errors {run.wrk.errors}",
                    flush=True,
                )
        noise = "".join(
            f"{child.name}: {line}\n" for child in children for line in child.output()[marks[child.name] :].splitlines()
        )
        return runs, noise


def render(runs: list[Run], args: argparse.Namespace) -> tuple[str, bool]:
    """The results table and verdict lines (markdown); also whether every request succeeded."""
    by_path = {path: rs for path in LABELS if (rs := [r for r in runs if r.path == path])}
    rps = {path: statistics.median(r.wrk.rps for r in rs) for path, rs in by_path.items()}
    p50 = {path: statistics.median(r.wrk.p50_ms for r in rs) for path, rs in by_path.items()}
    errors = {path: sum(r.wrk.errors for r in rs) for path, rs in by_path.items()}
    lines = [
        f"wrk -t{args.threads} -c{args.connections} --latency, {args.duration} s per run, "
        f"{args.rounds} interleaved round(s); medians over rounds, CPU = user + system per completed call:",
        "",
        "| path | rps | rps per round | p50 ms | p99 ms | errors | backend CPU/call | gateway CPU/call |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for path, rs in by_path.items():
        gateway_cpu = f"{statistics.median(r.gateway_cpu_us for r in rs):.0f} µs" if path != "direct" else "—"
        lines.append(
            f"| {LABELS[path]} | {rps[path]:.0f} | {', '.join(f'{r.wrk.rps:.0f}' for r in rs)} | {p50[path]:.2f} "
            f"| {statistics.median(r.wrk.p99_ms for r in rs):.2f} | {errors[path]} "
            f"| {statistics.median(r.backend_cpu_us for r in rs):.0f} µs | {gateway_cpu} |"
        )
    ratio, added = rps["gateway"] / rps["direct"] if rps["direct"] else 0.0, p50["gateway"] - p50["direct"]
    clean = not any(errors.values())

    def verdict(ok: bool) -> str:
        return ("met" if ok else "NOT met") if clean else "void: requests failed"

    lines += [
        "",
        f"- gateway/direct ratio (rps): **{ratio:.2f}** (goal >= {GOAL_RATIO}: {verdict(ratio >= GOAL_RATIO)})",
        f"- p50 added by the gateway: **{added:.2f} ms** (goal <= {GOAL_ADDED_P50_MS} ms: "
        f"{verdict(added <= GOAL_ADDED_P50_MS)})",
    ]
    busy = {path: statistics.median(r.backend_cpu_us * r.wrk.rps / 1e6 for r in rs) for path, rs in by_path.items()}
    gateway_busy = {
        path: statistics.median(r.gateway_cpu_us * r.wrk.rps / 1e6 for r in rs) for path, rs in by_path.items()
    }
    lines.append(
        f"- CPU busy (cores): backend {busy['direct']:.2f} direct, {busy['gateway']:.2f} behind the gateway"
        + (f", {busy['oauth']:.2f} behind the gateway with OAuth" if "oauth" in busy else "")
        + f"; gateway {gateway_busy['gateway']:.2f}"
        + (f", gateway with OAuth {gateway_busy['oauth']:.2f}" if "oauth" in gateway_busy else "")
        + (
            ". The backend is one process and saturated on both paths, so the ratio shows that the gateway keeps "
            "up with it, not what the hop costs; the gateway's CPU per call is that cost."
            if min(busy.values()) >= 0.85
            else "."
        )
    )
    if "oauth" in by_path:
        per_round = [
            oauth.gateway_cpu_us - plain.gateway_cpu_us
            for plain, oauth in zip(by_path["gateway"], by_path["oauth"], strict=True)
        ]
        lines.append(
            f"- token check: **{statistics.median(per_round):+.0f} µs** gateway CPU per call (oauth on vs off, "
            f"same run; per round: {', '.join(f'{d:+.0f}' for d in per_round)} µs); p50 "
            f"{p50['oauth'] - p50['gateway']:+.2f} ms"
        )
    if not clean:
        first = next(r.wrk for r in runs if r.wrk.errors)
        failed = ", ".join(f"{path} {count}" for path, count in errors.items())
        lines += [
            f"- **FAILED REQUESTS** ({failed}): these rates are "
            f"not results. First bad response: `{first.first_bad or 'socket error or timeout'}`"
        ]
    return "\n".join(lines), clean


def command(args: argparse.Namespace) -> str:
    if args.smoke:
        return "python loadtest/bench.py --smoke"
    flags = f"--duration {args.duration} --connections {args.connections} --threads {args.threads}"
    return f"python loadtest/bench.py {flags} --rounds {args.rounds} --write-docs"


def write_docs(report: str, args: argparse.Namespace) -> None:
    """Replace the `bench` block of docs/performance.md (the rest of the file is left alone)."""
    write_block(
        "bench",
        "## Forwarding: one backend, direct vs through the gateway\n\n"
        "What one forwarding hop costs: the same MCP `tools/call` (2026-07-28, stateless) sent by wrk to the "
        "official SDK's MCPServer directly (`tests/servers/echo.py`, streamable HTTP, JSON responses) and "
        "through the gateway (`aggregator serve`, embedded store, `--log-level warning`) in front of it. "
        "Backend, gateway and wrk share the machine's cores. Every response is checked (HTTP 200, a "
        "JSON-RPC `result`, no `isError`); any failure voids the run.\n\n"
        f"{machine()}\n\n"
        f"Command: `{command(args)}`\n\n"
        f"{report}\n\n"
        "### How to reproduce\n\n"
        "```sh\n"
        "apt-get install -y wrk        # the load generator (the benchmark checks for it)\n"
        f".venv/bin/{command(args)}\n"
        "```\n\n"
        "It starts the echo backend and the gateway on free ports, warms both paths up for 1 s, runs "
        "direct and gateway runs alternately, stops both servers and prints the table above; "
        "`--write-docs` replaces this block. Run it on an otherwise idle machine; the ratio, the added p50 and "
        "the CPU per call are the numbers to compare, absolute rates move with the machine. "
        "`--connections 1 --threads 1` shows the latency the hop adds without queueing at the backend.",
    )


def measure_and_render(args: argparse.Namespace) -> tuple[str, bool, str]:
    """Run the chosen benchmark: its report, whether every request succeeded, the servers' output meanwhile."""
    if args.hop:
        hop_runs, noise = hop_bench.bench(args)
        return (*hop_bench.render(hop_runs, args), noise)
    runs, noise = bench(args)
    return (*render(runs, args), noise)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--duration", type=int, help="seconds per wrk run (default 8; --hop: 2)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections, both paths (default 16)")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2; --hop: always 1)")
    parser.add_argument("--rounds", type=int, help="interleaved direct/gateway rounds (default 3; --hop: 5)")
    parser.add_argument(
        "--write-docs", action="store_true", help="update this benchmark's block of docs/performance.md"
    )
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="1 s, 1 round, 4 connections (--hop: one level, no warm-up): proves it runs",
    )
    parser.add_argument("--oauth", action="store_true", help="add a gateway that checks OAuth tokens (a third path)")
    parser.add_argument("--hop", action="store_true", help="the hop alone, cheap backend (loadtest/hop_bench.py)")
    args = parser.parse_args()
    if args.oauth and args.write_docs:
        parser.error("--write-docs records the forwarding benchmark without --oauth; note OAuth results by hand")
    if args.oauth and args.hop:
        parser.error("--hop measures the gateway without OAuth")
    if args.duration is None:
        args.duration = 2 if args.hop else 8
    if args.rounds is None:
        args.rounds = 5 if args.hop else 3
    if args.smoke:
        args.duration, args.rounds = 1, 1
        args.connections = args.connections if args.hop else 4  # --hop --smoke keeps the goal's concurrency
    args.threads = max(1, min(args.threads, args.connections))  # wrk wants connections >= threads
    require_wrk()
    for sig in (signal.SIGTERM, signal.SIGHUP):  # stop the servers on these too, not only on Ctrl-C
        signal.signal(sig, lambda number, _frame: sys.exit(128 + number))
    try:
        report, clean, noise = measure_and_render(args)
    except KeyboardInterrupt:
        print("interrupted; servers stopped", file=sys.stderr)
        return 130
    except (RuntimeError, OSError, subprocess.TimeoutExpired) as error:
        print(f"bench: {error}", file=sys.stderr)
        return 1
    print(f"\n{report}")
    if noise:
        print(
            f"\nserver output during the runs ({len(noise.splitlines())} lines, last 20):\n"
            + "\n".join(noise.splitlines()[-20:])
        )
    if args.write_docs and clean:
        (hop_bench.write_docs if args.hop else write_docs)(report, args)
        print("\ndocs/performance.md updated")
    elif args.write_docs:
        print("\ndocs/performance.md NOT updated: requests failed", file=sys.stderr)
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())

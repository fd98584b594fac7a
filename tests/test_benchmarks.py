"""The benchmarks run end to end (their numbers live in docs/performance.md, not in tests)."""

from __future__ import annotations

import subprocess
import sys

from tests.gateway_process import ROOT


def run_benchmark(script: str, *args: str, tail: int = 2000) -> str:
    """Run `loadtest/<script>` with `args` to completion; its stdout (the test fails if it fails)."""
    result = subprocess.run(
        [sys.executable, f"loadtest/{script}", *args], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout[-tail:] + result.stderr[-2000:]
    return result.stdout


def test_forwarding_benchmark_smoke_run() -> None:
    stdout = run_benchmark("bench.py", "--smoke")
    assert "| through the gateway |" in stdout and "gateway/direct ratio" in stdout


def test_forwarding_benchmark_with_oauth_reports_what_the_token_check_costs() -> None:
    stdout = run_benchmark("bench.py", "--smoke", "--oauth")
    assert "| through the gateway |" in stdout and "| through the gateway, OAuth on |" in stdout
    assert "token check: " in stdout and "gateway CPU per call (oauth on vs off, same run" in stdout


def test_scale_benchmark_smoke_run() -> None:
    stdout = run_benchmark("scale.py", "--smoke")
    for row in ("tools listed", "`tools/list`, first page", "new tool on `tools/list`", "RSS growth per session"):
        assert row in stdout
    assert "tracemalloc, per GET stream" in stdout


def test_hop_benchmark_smoke_run_measures_every_path() -> None:
    stdout = run_benchmark("bench.py", "--hop", "--smoke", tail=3000)
    table = [line for line in stdout.splitlines() if line.startswith(("| direct ", "| haproxy ", "| gateway "))]
    paths = {tuple(cell.strip() for cell in line.split("|")[1:3]) for line in table}
    versions = ("2026", "2025")
    assert paths == {
        *((via, f"{v} → {v}") for via in ("direct", "haproxy") for v in versions),
        *(("gateway", f"{client} → {backend}") for client in versions for backend in versions),
    }
    assert all(line.split("|")[7].strip() == "0" for line in table), table  # the errors column
    assert "gateway CPU per forwarded call at 16 connections <= 100 µs: **" in stdout


def test_cluster_benchmark_smoke_run() -> None:
    stdout = run_benchmark("cluster_bench.py", "--duration", "1", "--rounds", "1", "--changes", "3")
    assert "| 2 replicas |" in stdout and "List-change propagation (3 changes" in stdout

"""The benchmarks run end to end (their numbers live in docs/performance.md, not in tests)."""

from __future__ import annotations

import subprocess
import sys

from tests.gateway_process import ROOT


def test_forwarding_benchmark_smoke_run() -> None:
    result = subprocess.run(
        [sys.executable, "loadtest/bench.py", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "| through the gateway |" in result.stdout and "gateway/direct ratio" in result.stdout


def test_forwarding_benchmark_with_oauth_reports_what_the_token_check_costs() -> None:
    result = subprocess.run(
        [sys.executable, "loadtest/bench.py", "--smoke", "--oauth"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "| through the gateway |" in result.stdout and "| through the gateway, OAuth on |" in result.stdout
    assert "token check: " in result.stdout and "gateway CPU per call (oauth on vs off, same run" in result.stdout


def test_scale_benchmark_smoke_run() -> None:
    result = subprocess.run(
        [sys.executable, "loadtest/scale.py", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for row in ("tools listed", "`tools/list`, first page", "new tool on `tools/list`", "RSS growth per session"):
        assert row in result.stdout
    assert "tracemalloc, per GET stream" in result.stdout


def test_hop_benchmark_smoke_run_measures_every_path() -> None:
    result = subprocess.run(
        [sys.executable, "loadtest/bench.py", "--hop", "--smoke"], cwd=ROOT, capture_output=True, text=True, timeout=180
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    table = [line for line in result.stdout.splitlines() if line.startswith(("| direct ", "| haproxy ", "| gateway "))]
    paths = {tuple(cell.strip() for cell in line.split("|")[1:3]) for line in table}
    versions = ("2026", "2025")
    assert paths == {
        *((via, f"{v} → {v}") for via in ("direct", "haproxy") for v in versions),
        *(("gateway", f"{client} → {backend}") for client in versions for backend in versions),
    }
    assert all(line.split("|")[7].strip() == "0" for line in table), table  # the errors column
    assert "gateway CPU per forwarded call at 16 connections <= 100 µs: **" in result.stdout


def test_cluster_benchmark_smoke_run() -> None:
    result = subprocess.run(
        [sys.executable, "loadtest/cluster_bench.py", "--duration", "1", "--rounds", "1", "--changes", "3"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "| 2 replicas |" in result.stdout and "List-change propagation (3 changes" in result.stdout

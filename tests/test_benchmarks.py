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

"""Driving `wrk` with MCP tools/call requests (`loadtest/tools_call.lua`) and reading back what it measured.

The Lua script checks every response (HTTP 200, a JSON-RPC `result`, not a tool error) and
prints one JSON line of results in `done()`, so a fast run made of errors is reported as errors.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import shutil
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = ["LUA", "WrkResult", "die_with_parent", "require_wrk", "run_wrk"]

LUA = Path(__file__).resolve().parent / "tools_call.lua"
_MARK = "WRK_JSON "


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: completed requests, its length, latency percentiles and failures by kind."""

    requests: int
    seconds: float
    p50_ms: float
    p99_ms: float
    p90_ms: float = 0.0
    max_ms: float = 0.0
    status_errors: int = 0
    body_errors: int = 0
    socket_errors: int = 0
    timeouts: int = 0
    first_bad: str = ""

    @property
    def errors(self) -> int:
        """Every request that did not end in a good tools/call result."""
        return self.status_errors + self.body_errors + self.socket_errors + self.timeouts

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def die_with_parent() -> None:
    """A `preexec_fn`: the child gets SIGTERM when the process that started it dies (PR_SET_PDEATHSIG)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)


def require_wrk() -> str:
    """wrk's path; without it, say how to install it in one line and exit 2."""
    path = shutil.which("wrk")
    if path is None:
        print("wrk is not installed: run `apt-get install -y wrk`", file=sys.stderr)
        raise SystemExit(2)
    return path


def run_wrk(
    url: str,
    tool: str,
    *,
    seconds: float,
    connections: int,
    threads: int = 2,
    headers: Mapping[str, str] | None = None,
    version: str = "2026-07-28",
) -> WrkResult:
    """Load `url` with tools/call of `tool` for `seconds` (whole seconds, at least 1), `headers` added to each.

    `version` is the client's protocol version; a handshake-era one calls within the session that
    `headers` name (`Mcp-Session-Id`).
    """
    duration = max(1, round(seconds))
    command = [require_wrk(), f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "2s"]
    for name, value in (headers or {}).items():
        command += ["-H", f"{name}: {value}"]
    command += ["--latency", "-s", str(LUA), url, "--", tool, version]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        errors="replace",
        timeout=duration + 60,
        preexec_fn=die_with_parent,  # no threads in the benchmarks
    )
    line = next((ln for ln in result.stdout.splitlines() if ln.startswith(_MARK)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no results (exit {result.returncode}):\n{result.stdout}{result.stderr}")
    data = json.loads(line[len(_MARK) :])
    return WrkResult(
        requests=data["requests"],
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        p90_ms=data["p90_us"] / 1000,
        max_ms=data["max_us"] / 1000,
        status_errors=data["status_errors"],
        body_errors=data["body_errors"],
        socket_errors=data["socket_errors"],
        timeouts=data["timeouts"],
        first_bad=data["first_bad"],
    )

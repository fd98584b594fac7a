"""Run the real gateway (`aggregator serve`) as a child process for end-to-end tests.

`run_gateway` serves HTTP on a free port; `run_stdio_gateway` speaks MCP on the child's stdin and
stdout. Each keeps its config and log in a temporary folder that it removes when it ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

__all__ = ["ROOT", "GatewayProcess", "StdioGatewayProcess", "run_gateway", "run_stdio_gateway"]


@dataclass
class GatewayProcess:
    process: subprocess.Popen[bytes]
    port: int
    config_path: Path
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def ready(self) -> dict:
        return httpx.get(f"{self.base}/readyz", timeout=5).json()

    def wait_for(self, predicate, timeout: float = 20.0, what: str = "condition") -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, ValueError):
                if predicate(self.ready()):
                    return
            time.sleep(0.05)
        raise AssertionError(f"gateway never reached: {what}\n{self.log()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        return _stop(self.process, sig, timeout)


def _environment(env: dict[str, str] | None) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}


def _stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    if process.poll() is None:
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


@contextlib.contextmanager
def run_gateway(
    config: dict,
    *,
    args: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    wait_backends: bool = True,
) -> Iterator[GatewayProcess]:
    """Start `aggregator serve` on a free port with `config`; stop it (SIGTERM) afterwards."""
    port = free_port()
    config = {**config, "aggregator": {**config.get("aggregator", {}), "port": port}}
    with tempfile.TemporaryDirectory(prefix="gw-") as workdir:
        config_path = Path(workdir) / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        log_path = Path(workdir) / "gateway.log"
        full_env = _environment(env)
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(BIN / "aggregator"), "serve", "-c", str(config_path), *args],
                cwd=ROOT,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        gateway = GatewayProcess(process, port, config_path, log_path, full_env)
        try:
            expected = {s["name"] for s in config.get("mcpServers", [])} if wait_backends else set()
            gateway.wait_for(
                lambda r: all(r["backends"].get(n, {}).get("state") == "up" for n in expected),
                what="all backends up",
            )
            yield gateway
        finally:
            gateway.stop()


class StdioGatewayProcess:
    """`aggregator serve --transport stdio`: lines to its stdin, lines from its stdout, its log on stderr."""

    def __init__(self, process: subprocess.Popen[bytes], log_path: Path) -> None:
        self.process = process
        self.log_path = log_path
        self.lines: list[bytes] = []
        self._arrived = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            with self._arrived:
                self.lines.append(line)
                self._arrived.notify_all()

    def send(self, line: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + b"\n")
        self.process.stdin.flush()

    def lines_until_answer(self, request_id: str, timeout: float = 10.0) -> list[bytes]:
        """Every line written up to and including the response to `request_id`; [] if it never came."""
        marker = b'"id":' + json.dumps(request_id).encode()
        deadline = time.monotonic() + timeout
        with self._arrived:
            while True:
                for index, line in enumerate(self.lines):
                    if marker in line.replace(b" ", b""):
                        taken, self.lines = self.lines[: index + 1], self.lines[index + 1 :]
                        return taken
                left = deadline - time.monotonic()
                if left <= 0 or self.process.poll() is not None:
                    return []
                self._arrived.wait(min(left, 0.5))

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """Close stdin (the stdio server's way to end), then SIGTERM if it lingers."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            _stop(self.process)
        self._reader.join(5)
        self.process.stdout.close()
        return self.process.returncode


@contextlib.contextmanager
def run_stdio_gateway(config: dict) -> Iterator[StdioGatewayProcess]:
    """Start `aggregator serve --transport stdio` with `config`; stop it afterwards."""
    with tempfile.TemporaryDirectory(prefix="gw-stdio-") as workdir:
        config_path = Path(workdir) / "config.yaml"
        config_path.write_text(yaml.safe_dump(config))
        log_path = Path(workdir) / "gateway.log"
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                [str(BIN / "aggregator"), "serve", "-c", str(config_path), "--transport", "stdio"],
                cwd=ROOT,
                env=_environment(None),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
            )
        gateway = StdioGatewayProcess(process, log_path)
        try:
            yield gateway
        finally:
            gateway.stop()

"""Run the real gateway (`aggregator serve`) as a child process for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from tests.ports import free_port

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

__all__ = ["ROOT", "GatewayProcess", "run_gateway"]


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
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


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
    workdir = Path(tempfile.mkdtemp(prefix="gw-"))
    config_path = workdir / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = workdir / "gateway.log"
    full_env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **(env or {})}
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

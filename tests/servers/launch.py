"""Start the test servers as real processes on free ports, wait until they listen, always stop them."""

from __future__ import annotations

import contextlib
import os
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

from tests.gateway_process import ROOT, free_port

__all__ = ["RunningServer", "run_http_server"]


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def run_http_server(module: str, *args: str, timeout: float = 20.0) -> Iterator[RunningServer]:
    """`python -m module --port P *args`; yields once it printed `READY <url>`."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", str(port), *args],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    url = None
    while url is None:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, err = process.communicate()
            raise RuntimeError(f"{module} did not start: {err.decode(errors='replace')[-2000:]}")
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            line = process.stdout.readline().decode()
            if line.startswith("READY "):
                url = line.split(" ", 1)[1].strip()
    server = RunningServer(process, url, port)
    try:
        yield server
    finally:
        server.stop()

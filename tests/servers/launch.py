"""Start a test server as a real process, wait until it listens, always stop it.

    server = await start_http_server("tests.servers.toolbox", "--transport", "streamable-http")
    ...
    await server.stop()

    with run_http_server("tests.servers.echo") as server:  # for sync fixtures
        ...

The server gets `--port 0`, binds a free port itself and names it in its `READY <url>` line, so
two servers started at once can never race for one port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO
from urllib.parse import urlsplit

from tests.gateway_process import ROOT

__all__ = ["RunningServer", "run_http_server", "start_http_server"]


@dataclass
class RunningServer:
    process: subprocess.Popen[bytes]
    url: str
    port: int
    stderr: IO[bytes]

    def stop_now(self) -> None:
        """Terminate (kill after 5 s) and reap the process; idempotent."""
        _reap(self.process)
        self.stderr.close()

    async def stop(self) -> None:
        await asyncio.to_thread(self.stop_now)


def _launch(module: str, args: tuple[str, ...]) -> tuple[subprocess.Popen[bytes], IO[bytes]]:
    stderr = tempfile.TemporaryFile()  # noqa: SIM115 - lives as long as the server; closed by stop
    process = subprocess.Popen(
        [sys.executable, "-m", module, "--port", "0", *args],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    return process, stderr


def _reap(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    if process.stdout is not None:
        process.stdout.close()


def _await_ready(module: str, process: subprocess.Popen[bytes], stderr: IO[bytes], timeout: float) -> RunningServer:
    """Block until the process prints `READY <url>`; stop it and raise with its stderr tail otherwise."""
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0 and process.poll() is None:
            if select.select([process.stdout], [], [], min(left, 0.1))[0]:
                line = process.stdout.readline().decode(errors="replace")
                if line.startswith("READY "):
                    url = line.split(" ", 1)[1].strip()
                    return RunningServer(process, url, urlsplit(url).port or 0, stderr)
    except BaseException:
        RunningServer(process, "", 0, stderr).stop_now()
        raise
    why = f"exited with {process.returncode}" if process.returncode is not None else f"not ready after {timeout} s"
    _reap(process)
    stderr.seek(0)
    tail = stderr.read().decode(errors="replace")[-4000:]
    stderr.close()
    raise RuntimeError(f"{module} {why}; stderr:\n{tail}")


async def start_http_server(module: str, *args: str, timeout: float = 20.0) -> RunningServer:
    """Start `python -m module --port 0 *args` (cwd: the repository) and wait for its READY line."""
    process, stderr = _launch(module, args)
    try:
        return await asyncio.to_thread(_await_ready, module, process, stderr, timeout)
    except BaseException:
        process.kill()  # cancelled while waiting: the waiting thread then reaps it
        raise


@contextlib.contextmanager
def run_http_server(module: str, *args: str, timeout: float = 20.0) -> Iterator[RunningServer]:
    """`start_http_server` for sync code: yields the running server, stops it on exit."""
    process, stderr = _launch(module, args)
    server = _await_ready(module, process, stderr, timeout)
    try:
        yield server
    finally:
        server.stop_now()

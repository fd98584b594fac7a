"""A private redis-server for the test suite, on a free port (never the machine's own).

It runs in a temporary folder of its own (nothing is persisted there), removed when it stops.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass

import redis

from tests.ports import free_port

__all__ = ["RedisServer", "start_redis"]


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    workdir: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def restart(self) -> None:
        """Stop and start again on the same port (its data is gone: nothing is persisted)."""
        self.stop()
        started = start_redis(self.port)
        self.process, self.workdir = started.process, started.workdir


def start_redis(port: int | None = None) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; run ./scripts/test.sh (it installs Debian's redis-server)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="redis-")
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", workdir],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    server = RedisServer(process, port, workdir)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                client.ping()
                return server
            except redis.ConnectionError:
                if process.poll() is not None:
                    raise RuntimeError(f"redis-server exited with code {process.returncode} on port {port}") from None
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {port} within 10s")
    except BaseException:
        server.stop()
        raise
    finally:
        client.close()

"""A private redis-server for the test suite, on a free port (never the machine's own).

It runs in a temporary folder of its own (nothing is persisted there), removed when it stops.
`tests/redis_topologies.py` builds Sentinel and Cluster setups out of these same processes.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from tests.ports import free_port

__all__ = ["RedisServer", "start_redis"]


@dataclass
class RedisServer:
    process: subprocess.Popen[bytes]
    port: int
    workdir: str
    args: tuple[str, ...] = ()
    password: str | None = None
    config: tuple[str, ...] = field(default=())

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> redis.Redis:
        """A sync client for this server (its password included); the caller closes it."""
        return redis.Redis(port=self.port, password=self.password, socket_connect_timeout=0.5, **kwargs)

    def kill(self) -> None:
        """SIGKILL, as a crash would; the folder stays until `stop()`."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

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
        started = start_redis(self.port, *self.args, password=self.password, config=self.config)
        self.process, self.workdir = started.process, started.workdir

    def log(self) -> str:
        """What the server printed and logged so far (for error messages)."""
        paths = (Path(self.workdir, name) for name in ("redis.out", "redis.log"))
        return "".join(path.read_text(errors="replace") for path in paths if path.exists())


def start_redis(
    port: int | None = None, *extra_args: str, password: str | None = None, config: Sequence[str] = ()
) -> RedisServer:
    """Start redis-server and return once it answers PING (authenticated when `password` is set).

    `extra_args` go after the defaults on the command line. `config` lines, when given, are
    written to `redis.conf` in the server's folder and passed first (Sentinel needs a writable
    config file). A `password` sets both `requirepass` and `masterauth`, so a node can be
    demoted to a replica of a peer with the same password.
    """
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed; run ./scripts/test.sh (it installs Debian's redis-server)")
    port = port or free_port()
    workdir = tempfile.mkdtemp(prefix="redis-")
    argv = [binary]
    if config:
        conf = Path(workdir, "redis.conf")
        conf.write_text("".join(f"{line}\n" for line in config))
        argv.append(str(conf))
    argv += ["--port", str(port), "--bind", "127.0.0.1", "--dir", workdir, "--logfile", "redis.log"]
    argv += ["--save", "", "--appendonly", "no"]
    if password is not None:
        argv += ["--requirepass", password, "--masterauth", password]
    argv += extra_args
    try:
        with open(Path(workdir, "redis.out"), "wb") as out:  # what it says before its log file opens
            process = subprocess.Popen(argv, cwd=workdir, stdout=out, stderr=subprocess.STDOUT)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    server = RedisServer(process, port, workdir, tuple(extra_args), password, tuple(config))
    client = server.client()
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                client.ping()
                return server
            except redis.ConnectionError:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited with code {process.returncode} on port {port}:\n{server.log()[-2000:]}"
                    ) from None
                time.sleep(0.05)
        raise RuntimeError(f"redis-server did not answer on port {port} within 10s:\n{server.log()[-2000:]}")
    except BaseException:
        server.stop()
        raise
    finally:
        client.close()

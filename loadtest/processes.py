"""Server processes a benchmark starts: each logs to a file, is ready when it says so, and always stops.

Used by `loadtest/bench.py` and `loadtest/hop_bench.py`; haproxy here is a reference hop, not a balancer.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from loadtest.wrk import die_with_parent
from tests.ports import connects, free_port

__all__ = [
    "PREFIX",
    "ROOT",
    "SERVER",
    "Child",
    "announced",
    "gateway_ready",
    "start",
    "start_gateway",
    "start_haproxy",
]

ROOT = Path(__file__).resolve().parent.parent
READY_TIMEOUT = 30.0
PREFIX, SERVER = "x", "echo"  # the gateway's tool prefix and its one backend's name: tools are x_echo_<tool>


@dataclass
class Child:
    """A server process started here; its stdout and stderr go to one log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path
    url: str = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def stop(self) -> None:
        """SIGTERM, SIGKILL after 10 s; always reaped."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextlib.contextmanager
def start(name: str, argv: list[str], workdir: Path, ready: Callable[[Child], str | None]) -> Iterator[Child]:
    """Start `argv`, wait (bounded) until `ready` returns its URL, always stop it afterwards."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGGREGATOR_")} | {"PYTHONUNBUFFERED": "1"}
    log = workdir / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # Ctrl-C reaches this script, which stops the servers in order
            preexec_fn=die_with_parent,  # no threads in this script
        )
    child = Child(name, process, log)
    try:
        deadline = time.monotonic() + READY_TIMEOUT
        while not (url := ready(child)):
            if process.poll() is not None:
                why = f"exited with {process.returncode}"
                raise RuntimeError(f"{name} {why} before it was ready; output:\n{child.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} not ready after {READY_TIMEOUT:g} s; output:\n{child.tail()}")
            time.sleep(0.1)
        child.url = url
        yield child
    finally:
        child.stop()


def announced(child: Child) -> str | None:
    """The URL in the backend's `READY <url>` line, once printed."""
    match = re.search(r"^READY (\S+)$", child.output(), re.MULTILINE)
    return match[1] if match else None


def gateway_ready(port: int) -> Callable[[Child], str | None]:
    """A check that /readyz answers 200 with the echo backend up."""

    def check(_: Child) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                state = json.load(response).get("backends", {}).get(SERVER, {}).get("state")
        except (OSError, ValueError):
            return None
        return f"http://127.0.0.1:{port}/mcp" if state == "up" else None

    return check


def start_gateway(stack: contextlib.ExitStack, name: str, workdir: Path, backend: Child, **settings: Any) -> Child:
    """`aggregator serve` (embedded store) in front of `backend`, `settings` added to its `aggregator` section."""
    port = free_port()
    config = {
        "aggregator": {"host": "127.0.0.1", "port": port, "prefix": PREFIX, **settings},
        "mcpServers": [{"name": SERVER, "type": "streamable-http", "url": backend.url, "timeout": 30}],
    }
    (workdir / f"{name}.yaml").write_text(json.dumps(config))  # JSON is YAML
    argv = [sys.executable, "-m", "aggregator", "serve", "-c", str(workdir / f"{name}.yaml")]
    return stack.enter_context(start(name, [*argv, "--log-level", "warning"], workdir, gateway_ready(port)))


HAPROXY_CONFIG = """\
global
    nbthread 1
    maxconn 4096

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 60s
    timeout server 60s
"""


def start_haproxy(
    stack: contextlib.ExitStack, workdir: Path, upstreams: dict[str, str]
) -> tuple[Child, dict[str, str]]:
    """haproxy (http mode, keep-alive, one thread) with a listener per upstream URL; it and the URL for each name."""
    ports = {name: free_port() for name in upstreams}
    config = HAPROXY_CONFIG + "".join(
        f"\nlisten {name}\n    bind 127.0.0.1:{ports[name]}\n    server upstream {urlsplit(url).netloc}\n"
        for name, url in upstreams.items()
    )
    (workdir / "haproxy.cfg").write_text(config)

    def ready(_: Child) -> str | None:
        listening = all(connects(port) for port in ports.values())
        urls = (f"http://127.0.0.1:{ports[name]}{urlsplit(url).path}" for name, url in upstreams.items())
        return " ".join(urls) if listening else None

    haproxy = stack.enter_context(
        start("haproxy", ["haproxy", "-db", "-f", str(workdir / "haproxy.cfg")], workdir, ready)
    )
    return haproxy, dict(zip(ports, haproxy.url.split(), strict=True))

"""Serving a test server's ASGI app under uvicorn, announcing `READY <url>` on stdout once it listens."""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import socket
from typing import Any

import uvicorn

__all__ = ["add_address_arguments", "listen", "run"]

_UVLOOP = importlib.util.find_spec("uvloop") is not None
_HTTPTOOLS = importlib.util.find_spec("httptools") is not None


def add_address_arguments(parser: argparse.ArgumentParser, *, port_required: bool) -> None:
    """`--host` (default 127.0.0.1) and `--port` (0 picks a free one; READY names the real one)."""
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=port_required, default=0)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port (0: a free port), for a server that must know its own URL before it serves."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock


class _Announcing(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, path: str) -> None:
        super().__init__(config)
        self.path = path

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            port = self.servers[0].sockets[0].getsockname()[1]
            print(f"READY http://{self.config.host}:{port}{self.path}", flush=True)


def run(app: Any, host: str, port: int, path: str, *, sock: socket.socket | None = None) -> None:
    """Serve until stopped (SIGTERM/SIGINT): uvloop and httptools when installed, no access log; on `sock` if given."""
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        http="httptools" if _HTTPTOOLS else "h11",
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=1,  # open SSE and listen streams would hold a graceful stop forever
    )
    serving = _Announcing(config, path).serve(sockets=None if sock is None else [sock])
    if _UVLOOP:
        import uvloop

        uvloop.run(serving)
    else:
        asyncio.run(serving)

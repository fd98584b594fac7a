"""Running the gateway: uvicorn for the HTTP transports, or the stdio loop.

SIGTERM stops accepting connections, ends open streams, lets in-flight requests finish for
`shutdownGrace` seconds, then closes backend connections and child processes.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys

import uvicorn

from aggregator.app import GatewayApp
from shared.config import Config
from shared.telemetry import configure_logging

__all__ = ["serve"]

log = logging.getLogger("aggregator")


class _Server(uvicorn.Server):
    """uvicorn, telling the gateway to end its open streams as soon as shutdown begins."""

    def __init__(self, config: uvicorn.Config, app: GatewayApp) -> None:
        super().__init__(config)
        self.gateway_app = app

    def handle_exit(self, sig: int, frame: object) -> None:
        if self.gateway_app.gateway is not None:
            self.gateway_app.gateway.closing.set()
        super().handle_exit(sig, frame)  # type: ignore[arg-type]
        if sig == signal.SIGTERM:
            # SIGTERM is the orderly stop (Kubernetes, systemd): finish and exit 0, not by the signal.
            self._captured_signals.remove(sig)


async def serve(config: Config, args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    settings = config.aggregator
    admin_token = os.environ.get("AGGREGATOR_ADMIN_TOKEN") or None
    control_plane = not args.redis_url  # a cluster's backends are supervised by aggregator-worker
    if settings.transport == "stdio":
        from aggregator.transport.stdio import serve_stdio

        return await serve_stdio(config, redis_url=args.redis_url, control_plane=control_plane)
    app = GatewayApp(config, redis_url=args.redis_url, control_plane=control_plane, admin_token=admin_token)
    uv_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http="auto",
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        timeout_keep_alive=30,
        proxy_headers=False,
    )
    try:
        sock = _bind(settings.host, settings.port)
    except OSError as exc:
        print(
            f"aggregator: cannot listen on {settings.host}:{settings.port}: {exc.strerror or exc}; "
            "pick another with --port (or stop what holds it)",
            file=sys.stderr,
        )
        return 1
    server = _Server(uv_config, app)
    base = f"http://{settings.host}:{settings.port}"
    log.info(
        "serving MCP at %s/mcp (2026-07-28 and 2025-11-25), legacy SSE at %s/sse; store: %s",
        base,
        base,
        "redis" if args.redis_url else "embedded memory",
    )
    await server.serve(sockets=[sock])
    return 0


def _bind(host: str, port: int) -> socket.socket:
    """Bind before starting anything, so a taken port fails fast with a clear message."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted connections inherit it: without it, a response written as headers + body waits
    # for the client's delayed ACK (40 ms per request on keep-alive connections).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock  # not inheritable: a stdio backend that outlives the gateway must not keep its port

"""Running the gateway: uvicorn's server with the gateway's own HTTP connections, or the stdio loop.

SIGTERM, and SIGINT (Ctrl-C) alike, stop accepting connections, end open streams, let
in-flight requests finish for `shutdownGrace` seconds, then close backend connections and
child processes, and exit 0 without a traceback. A store that cannot be reached at start is
one clear line and exit status 1.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import sys
from types import FrameType

import uvicorn

from aggregator.app import GatewayApp
from aggregator.http_connection import connection_class
from shared.config import Config
from shared.crypto import ENV_VAR as TOKEN_KEY_VARIABLE
from shared.crypto import TokenCipher, TokenKeyInvalid
from shared.store.factory import open_stores
from shared.store.protocols import Stores, StoreUnavailable
from shared.telemetry import configure_logging

__all__ = ["serve"]

log = logging.getLogger("aggregator")


class _Server(uvicorn.Server):
    """uvicorn, telling the gateway to end its open streams as soon as shutdown begins."""

    def __init__(self, config: uvicorn.Config, app: GatewayApp) -> None:
        super().__init__(config)
        self.gateway_app = app
        self.loop: asyncio.AbstractEventLoop | None = None

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.loop = asyncio.get_running_loop()
        await super().startup(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        gateway = self.gateway_app.gateway
        if gateway is not None and self.loop is not None:
            # In a signal handler: the loop ends the open streams (each sends its last event), at once.
            self.loop.call_soon_threadsafe(gateway.end_streams)
        super().handle_exit(sig, frame)
        if sig in (signal.SIGTERM, signal.SIGINT):
            # The orderly stop (Kubernetes, systemd, Ctrl-C): finish and exit 0, not by re-raising
            # the signal (uvicorn's default, which ends in KeyboardInterrupt and a traceback).
            self._captured_signals.remove(sig)


async def serve(config: Config, args: argparse.Namespace) -> int:
    configure_logging(args.log_format, args.log_level)
    try:
        stores = await open_stores(args.redis_url)
    except StoreUnavailable as exc:
        print(f"aggregator: {exc}", file=sys.stderr)
        return 1
    if any(spec.auth is not None for spec in config.mcp_servers):
        try:  # users' tokens are kept encrypted: a bad key must stop the start, not the first sign-in
            await TokenCipher.open(stores.keys, os.environ.get(TOKEN_KEY_VARIABLE))
        except (TokenKeyInvalid, StoreUnavailable) as exc:
            print(f"aggregator: {exc}", file=sys.stderr)
            await stores.aclose()
            return 2
    try:
        return await _serve(config, args, stores)
    finally:
        await stores.aclose()


async def _serve(config: Config, args: argparse.Namespace, stores: Stores) -> int:
    settings = config.aggregator
    admin_token = os.environ.get("AGGREGATOR_ADMIN_TOKEN") or None
    control_plane = not args.redis_url  # a cluster's backends are supervised by aggregator-worker
    if settings.transport == "stdio":
        from aggregator.transport.stdio import serve_stdio

        return await serve_stdio(config, stores, control_plane=control_plane)
    app = GatewayApp(config, stores=stores, control_plane=control_plane, admin_token=admin_token)
    uv_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="auto",
        http=connection_class(settings),  # the gateway's own connections: bounded, one write per response
        ws="none",  # the gateway serves no WebSocket: upgrade requests stay plain HTTP requests
        server_header=False,
        lifespan="on",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.shutdown_grace),
        timeout_keep_alive=settings.keep_alive_timeout,
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

"""Serving a test server's ASGI app under uvicorn, announcing `READY <url>` once it listens."""

from __future__ import annotations

from typing import Any

import uvicorn

__all__ = ["serve"]


class _Announcing(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self.url = url

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets)
        if self.started:
            print(f"READY {self.url}", flush=True)


async def serve(app: Any, host: str, port: int, path: str) -> None:
    """Serve until stopped (uvloop + httptools, no access log)."""
    config = uvicorn.Config(
        app, host=host, port=port, loop="uvloop", http="httptools", log_level="warning", access_log=False, lifespan="on"
    )
    await _Announcing(config, f"http://{host}:{port}{path}").serve()

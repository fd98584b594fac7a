"""`aggregator-worker -c PATH --redis-url URL`: the control plane of a cluster.

Workers elect one leader through a Redis lock; the leader supervises every shared backend and
publishes registry changes, the others wait to take over within one lock TTL. Every flag can
also be given as AGGREGATOR_<NAME>.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from collections.abc import Iterator, Sequence

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from shared.backends.base import BackendConnection
from shared.config import Config, ConfigError, load_config
from shared.heartbeat import VERSION, keep_beating
from shared.pool import SessionConnectionPool
from shared.protocol.jsonrpc import Params
from shared.reconnect import follow_reconnects
from shared.records import Heartbeat
from shared.retry import backoff_delay
from shared.runtime import run
from shared.store.protocols import FencedOut, StoreUnavailable
from shared.store.redis import RedisStores, open_redis_stores
from shared.telemetry import configure_logging
from shared.workflow_files import has_workflows
from worker.leader import LeaderLock, LeadershipLost
from worker.supervisor import BackendSupervisor
from worker.workflows import WorkflowPublisher

__all__ = ["Worker", "main"]

log = logging.getLogger("worker")


class Worker:
    """Standby until elected; then supervise backends until leadership ends or we stop."""

    def __init__(self, config: Config, stores: RedisStores, *, lock_ttl: float) -> None:
        self.config = config
        self.stores = stores
        self.worker_id = f"{socket.gethostname()}-{os.getpid()}"
        self.lock = LeaderLock(stores.client, namespace=stores.namespace, worker_id=self.worker_id, ttl=lock_ttl)
        self.role = "standby"
        self.terms = 0
        self.started_at = time.time()

    def heartbeat(self) -> Heartbeat:
        """What the admin console shows of this worker: alive, its role, and its fencing token while it leads."""
        return Heartbeat(
            id=self.worker_id,
            kind="worker",
            version=VERSION,
            started_at=self.started_at,
            at=time.time(),
            role=self.role,
            fence=self.lock.fence if self.role == "leader" else None,
        )

    async def run(self) -> None:
        while True:
            async with self.lock.leadership() as renewer:
                self.role, self.terms = "leader", self.terms + 1
                try:
                    await self._lead(renewer)
                except* (LeadershipLost, FencedOut) as lost:
                    log.warning("stepping down: %s", lost.exceptions[0])
                finally:
                    self.role = "standby"

    async def _lead(self, renewer: asyncio.Task[None]) -> None:
        assert self.lock.value is not None
        fenced = self.stores.fenced(self.lock.key, self.lock.value)
        specs = {spec.name: spec for spec in self.config.mcp_servers}
        pool = SessionConnectionPool(specs)
        supervisor = BackendSupervisor(
            self.config.mcp_servers,
            pool,
            fenced,
            health_interval=self.config.aggregator.health_check_interval,
            origin=self.worker_id,
        )

        def on_notification(conn: BackendConnection, method: str, params: Params) -> None:
            supervisor.list_changed(conn.server, method)

        pool.on_notification = on_notification
        pool.on_lost = supervisor.connection_lost
        work = [asyncio.create_task(supervisor.run(), name="supervisor")]
        if has_workflows(self.config):
            publisher = WorkflowPublisher(self.config, fenced, origin=self.worker_id)
            work.append(asyncio.create_task(publisher.run(), name="workflows"))
        listening = asyncio.create_task(follow_reconnects(self.stores.messages, supervisor.reconnect))
        try:
            # Lead until the lease is lost (the renewer raises) or supervision fails; with no
            # backends to supervise, keep the lease anyway rather than re-electing in a loop.
            await asyncio.wait({*work, renewer}, return_when=asyncio.FIRST_COMPLETED)
            for task in work:
                if task.done():
                    task.result()
            await renewer
        finally:
            listening.cancel()
            for task in work:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, LeadershipLost, FencedOut):
                    await task
            with contextlib.suppress(asyncio.CancelledError):
                await listening
            await pool.drain_all()


class _HealthServer(uvicorn.Server):
    """uvicorn for /healthz and /readyz, leaving SIGTERM and SIGINT to the worker's own handling."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _health_app(worker: Worker) -> Starlette:
    async def healthz(request: Request) -> JSONResponse:
        return JSONResponse({"status": "alive", "role": worker.role, "worker": worker.worker_id})

    async def readyz(request: Request) -> JSONResponse:
        try:
            await asyncio.wait_for(worker.stores.ping(), 2)
        except (StoreUnavailable, TimeoutError) as exc:
            return JSONResponse({"status": "degraded", "role": worker.role, "error": str(exc)}, status_code=503)
        return JSONResponse({"status": "ok", "role": worker.role, "fence": worker.lock.fence})

    return Starlette(routes=[Route("/healthz", healthz), Route("/readyz", readyz)])


async def _connect(url: str) -> RedisStores:
    """Redis, waited for with backoff: a worker that starts before its Redis keeps trying."""
    failures = 0
    while True:
        try:
            return await open_redis_stores(url)
        except StoreUnavailable as exc:
            failures += 1
            delay = backoff_delay(failures, cap=10.0)
            log.warning("%s; retrying in %.1fs", exc, delay)
            await asyncio.sleep(delay)


async def _serve(config: Config, args: argparse.Namespace) -> int:
    stores = await _connect(args.redis_url)
    worker = Worker(config, stores, lock_ttl=args.lock_ttl)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    tasks = [
        asyncio.create_task(worker.run(), name="worker"),
        asyncio.create_task(keep_beating(stores.heartbeats, worker.heartbeat), name="heartbeat"),
    ]
    health = None
    if args.health_port:
        health = _HealthServer(
            uvicorn.Config(
                _health_app(worker),
                host=args.health_host,
                port=args.health_port,
                log_config=None,
                access_log=False,
                lifespan="off",
            )
        )
        tasks.append(asyncio.create_task(health.serve(), name="health"))
    log.info("worker %s started; waiting to lead (lock TTL %.0fs)", worker.worker_id, args.lock_ttl)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait([stopping, tasks[0]], return_when=asyncio.FIRST_COMPLETED)
    code = 0
    if tasks[0].done() and not tasks[0].cancelled() and tasks[0].exception() is not None:
        log.error("the worker failed; exiting so it is restarted", exc_info=tasks[0].exception())
        code = 1
    log.info("worker %s stopping", worker.worker_id)
    if health is not None:
        health.should_exit = True
    for task in tasks:
        task.cancel()
    stopping.cancel()
    await asyncio.wait(tasks, timeout=15)
    await stores.aclose()
    return code


def main(argv: Sequence[str] | None = None) -> int:
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="aggregator-worker", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "-c",
        "--config",
        default=env("AGGREGATOR_CONFIG"),
        required=env("AGGREGATOR_CONFIG") is None,
        help="path to the YAML config (the gateway's) [AGGREGATOR_CONFIG]",
    )
    parser.add_argument(
        "--redis-url",
        default=env("AGGREGATOR_REDIS_URL"),
        required=env("AGGREGATOR_REDIS_URL") is None,
        help="the cluster's Redis [AGGREGATOR_REDIS_URL]",
    )
    parser.add_argument(
        "--lock-ttl",
        type=float,
        default=float(env("AGGREGATOR_LOCK_TTL", "10")),
        help="leader lock TTL in seconds; a standby takes over within it (default 10) [AGGREGATOR_LOCK_TTL]",
    )
    parser.add_argument(
        "--health-host",
        default=env("AGGREGATOR_HEALTH_HOST", "127.0.0.1"),
        help="address for /healthz and /readyz (default 127.0.0.1) [AGGREGATOR_HEALTH_HOST]",
    )
    parser.add_argument(
        "--health-port",
        type=int,
        default=int(env("AGGREGATOR_HEALTH_PORT", "0")),
        help="port for /healthz and /readyz; 0 turns them off (default) [AGGREGATOR_HEALTH_PORT]",
    )
    parser.add_argument("--log-format", choices=("text", "json"), default=env("AGGREGATOR_LOG_FORMAT", "text"))
    parser.add_argument(
        "--log-level", choices=("debug", "info", "warning", "error"), default=env("AGGREGATOR_LOG_LEVEL", "info")
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_format, args.log_level)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"aggregator-worker: invalid config: {exc}", file=sys.stderr)
        return 2
    for warning in config.warnings:
        log.warning("%s", warning)
    return run(_serve(config, args)) or 0


if __name__ == "__main__":
    raise SystemExit(main())

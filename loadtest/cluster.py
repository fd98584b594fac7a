"""A local cluster on loopback: Redis, workers, aggregator replicas and haproxy in front.

    python -m loadtest.cluster -c examples/cluster.yaml [--replicas 2] [--workers 1] [--port 8080]

starts everything, prints the load-balanced MCP URL and each replica's own, and stops it all on
Ctrl-C. The test
suite and the benchmarks use the same `LocalCluster` class. Needs `redis-server` and `haproxy`
on PATH (Debian packages of those names).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import yaml

from tests.ports import connects, free_port

__all__ = ["LocalCluster", "Process"]

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

_HAPROXY = """\
global
  maxconn 4096
defaults
  mode http
  timeout connect 2s
  timeout client 600s
  timeout server 600s
  timeout http-keep-alive 30s
  option redispatch
  retries 3
  retry-on conn-failure empty-response response-timeout
frontend mcp
  bind 127.0.0.1:{port}
  default_backend replicas
frontend stats
  bind 127.0.0.1:{stats_port}
  stats enable
  stats uri /stats
backend replicas
  balance {balance}
  option httpchk GET /readyz
  http-check expect status 200
{servers}
"""


@dataclass
class Process:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT)

    @property
    def pid(self) -> int:
        assert self.popen is not None
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


@dataclass
class LocalCluster:
    config: dict
    replicas: int = 2
    workers: int = 1
    balance: str = "roundrobin"
    port: int = 0
    lock_ttl: float = 3.0
    workdir: Path = field(init=False, default_factory=lambda: Path(tempfile.mkdtemp(prefix="cluster-")))
    """Configs, logs and Redis's folder; the cluster's own, removed when it exits."""
    log_level: str = "info"
    env: dict[str, str] = field(default_factory=dict)
    expect_up: tuple[str, ...] | None = None
    """Backends that must be up on every replica before the cluster counts as ready (default: all)."""
    external_redis: str | None = None
    """A Redis URL to use (Sentinel, Cluster, ...) instead of starting a redis-server of its own."""
    processes: dict[str, Process] = field(default_factory=dict)
    stats_ports: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.port = self.port or free_port()
        self.redis_port = free_port()
        self.replica_ports = [free_port() for _ in range(self.replicas)]
        self.env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", **self.env}
        self.config_path = self.workdir / "config.yaml"
        self.config_path.write_text(yaml.safe_dump(self.config))

    # -- addresses ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The load-balanced MCP endpoint."""
        return f"http://127.0.0.1:{self.port}/mcp"

    @property
    def redis_url(self) -> str:
        return self.external_redis or f"redis://127.0.0.1:{self.redis_port}/0"

    def replica_url(self, index: int) -> str:
        return f"http://127.0.0.1:{self.replica_ports[index]}"

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, timeout: float = 30.0) -> None:
        for tool in ("redis-server", "haproxy"):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not installed; run `apt-get install -y {tool}`")
        if self.external_redis is None:
            self._start_redis()
        for index in range(self.workers):
            self._add(
                f"worker-{index}",
                [
                    str(BIN / "aggregator-worker"),
                    "-c",
                    str(self.config_path),
                    "--redis-url",
                    self.redis_url,
                    "--lock-ttl",
                    str(self.lock_ttl),
                    "--log-level",
                    self.log_level,
                ],
            )
        for index in range(self.replicas):
            self.start_replica(index)
        self._start_haproxy()
        self.wait_ready(timeout)

    def _add(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, self.workdir / f"{name}.log", self.env)
        process.start()
        self.processes[name] = process
        return process

    def _start_redis(self) -> None:
        self._add(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],
        )
        self._wait(lambda: connects(self.redis_port), "redis-server accepting connections", self.processes["redis"])

    def start_replica(self, index: int) -> Process:
        return self._add(
            f"replica-{index}",
            [
                str(BIN / "aggregator"),
                "serve",
                "-c",
                str(self.config_path),
                "--port",
                str(self.replica_ports[index]),
                "--redis-url",
                self.redis_url,
                "--log-level",
                self.log_level,
            ],
        )

    def _start_haproxy(self) -> None:
        self.add_balancer("haproxy", range(self.replicas), self.port)

    def add_balancer(self, name: str, replicas: range | list[int], port: int | None = None) -> int:
        """Another haproxy in front of some replicas (benchmarks compare 1 and 2); returns its port."""
        port = port or free_port()
        servers = "\n".join(
            f"  server r{i} 127.0.0.1:{self.replica_ports[i]} check inter 500 fall 2 rise 1" for i in replicas
        )
        balance = "hdr(Mcp-Session-Id)" if self.balance == "session" else self.balance
        config = self.workdir / f"{name}.cfg"
        self.stats_ports[name] = free_port()
        config.write_text(
            _HAPROXY.format(port=port, stats_port=self.stats_ports[name], balance=balance, servers=servers)
        )
        self._add(name, ["haproxy", "-f", str(config), "-db"])
        self._wait(lambda: connects(port), f"{name} listening", self.processes[name])
        return port

    def wait_ready(self, timeout: float = 30.0) -> None:
        names = set(self.expect_up) if self.expect_up is not None else {s["name"] for s in self.config["mcpServers"]}

        def ready() -> bool:
            for index in range(self.replicas):
                replica = self.processes[f"replica-{index}"]
                if not replica.alive():
                    raise RuntimeError(f"{replica.name} exited:\n{replica.tail()}")
                response = httpx.get(f"{self.replica_url(index)}/readyz", timeout=2)
                body = response.json()
                if response.status_code != 200 or not all(
                    body["backends"].get(n, {}).get("state") == "up" for n in names
                ):
                    return False
            return self.balanced_replicas("haproxy") == self.replicas

        self._wait(ready, "every replica ready with all backends up, and in the balancer's rotation", None, timeout)

    def balanced_replicas(self, balancer: str = "haproxy") -> int:
        """How many replicas the balancer's health checks currently count as up (from its stats page)."""
        rows = httpx.get(f"http://127.0.0.1:{self.stats_ports[balancer]}/stats;csv", timeout=2).text.splitlines()
        header = rows[0].lstrip("# ").split(",")
        name, server, status = header.index("pxname"), header.index("svname"), header.index("status")
        fields = [row.split(",") for row in rows[1:] if row]
        return sum(
            1
            for row in fields
            if row[name] == "replicas" and row[server] not in ("BACKEND", "FRONTEND") and row[status].startswith("UP")
        )

    def _wait(self, check, what: str, process: Process | None, timeout: float = 15.0) -> None:  # type: ignore[no-untyped-def]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError, OSError, ValueError, KeyError):
                if check():
                    return
            if process is not None and not process.alive():
                raise RuntimeError(f"{process.name} exited while waiting for {what}:\n{process.tail()}")
            time.sleep(0.1)
        logs = "\n".join(f"--- {p.name}\n{p.tail(15)}" for p in self.processes.values())
        raise RuntimeError(f"timed out waiting for {what}\n{logs}")

    def restart(self, name: str) -> Process:
        """Start a stopped (or killed) process again with the same command line and log."""
        process = self.processes[name]
        process.stop()
        process.start()
        return process

    def restart_redis(self, down_for: float = 0.0) -> None:
        """Stop Redis (losing its data, as a crash would) and start it again on the same port."""
        self.processes["redis"].stop(signal.SIGKILL)
        time.sleep(down_for)
        self._start_redis()

    def stop(self) -> None:
        """Stop everything: load balancers, then replicas, then workers, then Redis."""
        rank = {"haproxy": 0, "replica": 1, "worker": 2}
        for name in sorted(self.processes, key=lambda n: rank.get(n.split("-")[0], 3)):
            self.processes[name].stop()

    def __enter__(self) -> LocalCluster:
        try:
            self.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description="Run Redis, workers, aggregator replicas and haproxy on loopback.")
    parser.add_argument("-c", "--config", required=True, help="the gateway config (backends)")
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--port", type=int, default=8080, help="haproxy's port (default 8080)")
    parser.add_argument(
        "--balance",
        choices=("roundrobin", "session"),
        default="session",
        help="roundrobin, or hash on Mcp-Session-Id (default)",
    )
    args = parser.parse_args()
    config = yaml.safe_load(Path(args.config).read_text())
    cluster = LocalCluster(config, replicas=args.replicas, workers=args.workers, balance=args.balance, port=args.port)
    print(
        f"starting {args.replicas} replicas, {args.workers} worker(s), redis and haproxy "
        f"(logs in {cluster.workdir} until it stops)"
    )
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops everything too
    with contextlib.suppress(KeyboardInterrupt), cluster:  # whenever it comes, Ctrl-C stops it all
        for index in range(args.replicas):
            print(
                f"replica {index}: {cluster.replica_url(index)}/mcp  (readiness: {cluster.replica_url(index)}/readyz)"
            )
        print(f"ready: connect MCP clients to {cluster.url}  (Ctrl-C stops everything)", flush=True)
        signal.pause()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

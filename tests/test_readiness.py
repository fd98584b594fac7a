"""/readyz tells the truth about every backend: starting, up, or down with its error and since when.

A bad backend degrades a replica but keeps it in rotation (HTTP 200); in a cluster, a replica
reports its own connections too (its own copy of a stdio backend may fail while the worker's
works), and opens them when it starts rather than on the first call.
"""

from __future__ import annotations

import sys
import time

import httpx
from mcp import Client

from loadtest.cluster import LocalCluster
from tests.gateway_process import run_gateway

PY = sys.executable
BROKEN = {
    "name": "broken",
    "type": "stdio",
    "command": PY,
    "args": ["-c", "import sys; sys.stderr.write('no config for broken'); sys.exit(3)"],
}
TIME = {"name": "time", "type": "stdio", "command": PY, "args": ["-m", "mcp_server_time"]}


def toolbox(name: str) -> list[str]:
    return ["-m", "tests.servers.toolbox", "--name", name]


def test_a_backend_that_never_starts_is_down_with_its_error_since_its_first_failure() -> None:
    with run_gateway({"mcpServers": [TIME, BROKEN]}, wait_backends=False) as gateway:
        gateway.wait_for(lambda r: r["backends"]["broken"]["state"] == "down", what="broken reported down")
        response = httpx.get(f"{gateway.base}/readyz", timeout=5)
        assert response.status_code == 200  # one bad backend must not take the replica out of rotation
        body = response.json()
        broken = body["backends"]["broken"]
        assert "exited with code 3" in broken["error"] and broken["attempts"] >= 1
        assert time.strptime(broken["since"], "%Y-%m-%dT%H:%M:%SZ")
        assert body["status"] == "degraded"
        assert any(reason.startswith("backend broken is down since") for reason in body["reasons"])
        assert body["backends"]["time"]["state"] == "up"
        first_since = broken["since"]
        gateway.wait_for(lambda r: r["backends"]["broken"].get("attempts", 0) >= 2, what="a second failed attempt")
        assert gateway.ready()["backends"]["broken"]["since"] == first_since  # since the first failure


def test_a_replica_whose_own_stdio_copy_fails_reports_it_while_the_worker_s_works() -> None:
    picky = {
        "name": "picky",
        "type": "stdio",
        "command": PY,
        "args": ["-m", "tests.servers.only_under", "aggregator-worker", "--", PY, *toolbox("picky")],
    }
    config = {"aggregator": {"healthCheckInterval": 2}, "mcpServers": [TIME, picky]}
    with LocalCluster(config, replicas=1, workers=1, expect_up=("time",)) as cluster:
        url = f"{cluster.replica_url(0)}/readyz"
        deadline = time.monotonic() + 20
        while True:  # the worker's copy announces its tools; the replica's own copy fails
            body = httpx.get(url, timeout=5).json()
            if body["backends"]["picky"].get("where") == "replica" and body["backends"]["picky"].get("tools"):
                break
            assert time.monotonic() < deadline, body
            time.sleep(0.1)
        entry = body["backends"]["picky"]
        assert entry["state"] == "down" and "exited with code 3" in entry["error"]
        assert entry["tools"] > 0  # the worker's copy works and announced its tools
        assert body["status"] == "degraded"
        assert any("backend picky is down on this replica" in reason for reason in body["reasons"])
        assert httpx.get(url, timeout=5).status_code == 200


async def test_a_cluster_replica_opens_its_stdio_backends_when_it_starts() -> None:
    config = {"mcpServers": [TIME, {"name": "tb", "type": "stdio", "command": PY, "args": toolbox("tb")}]}
    with LocalCluster(config, replicas=1, workers=1) as cluster:
        # Ready means warm: the replica's own processes run before any call reached it.
        async with httpx.AsyncClient(timeout=5) as http:
            body = (await http.get(f"{cluster.replica_url(0)}/readyz")).json()
        assert body["backends"]["time"]["replica"]["state"] == "up"
        assert body["backends"]["tb"]["replica"]["state"] == "up"
        async with Client(f"{cluster.replica_url(0)}/mcp", mode="2026-07-28") as client:
            result = await client.call_tool("x_tb_echo", {"text": "warm"})
        assert result.content[0].text == "warm"  # type: ignore[union-attr]

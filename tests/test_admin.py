"""Run-time tool blocking: the /admin API and `aggregator tools`, behind the admin token."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from mcp import Client, MCPError

from tests.gateway_process import BIN, GatewayProcess, run_gateway
from tests.redis_server import start_redis

TOKEN = "admin-secret"


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    toolbox = {"name": "tb", "type": "stdio", "command": sys.executable, "args": ["-m", "tests.servers.toolbox"]}
    with run_gateway({"mcpServers": [toolbox]}, env={"AGGREGATOR_ADMIN_TOKEN": TOKEN}) as process:
        yield process


@pytest.fixture(autouse=True)
def overrides_cleared(request: pytest.FixtureRequest) -> Iterator[None]:
    """Block overrides a test sets do not outlive it: the module's tests share one gateway."""
    yield
    if "gateway" in request.fixturenames:
        gateway: GatewayProcess = request.getfixturevalue("gateway")
        auth = {"authorization": f"Bearer {TOKEN}"}
        for tool in httpx.get(f"{gateway.base}/admin/tools", headers=auth, timeout=5).json()["tools"]:
            httpx.post(f"{gateway.base}/admin/tools/{tool['name']}/reset", headers=auth, timeout=5).raise_for_status()


def tools_cli(gateway: GatewayProcess, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {**gateway.env, "AGGREGATOR_ADMIN_TOKEN": token or ""}
    return subprocess.run(
        [str(BIN / "aggregator"), "tools", *args, "--url", gateway.base], capture_output=True, text=True, env=env
    )


def test_admin_api_needs_the_token(gateway: GatewayProcess) -> None:
    assert httpx.get(f"{gateway.base}/admin/tools").status_code == 401
    bad = httpx.get(f"{gateway.base}/admin/tools", headers={"authorization": "Bearer nope"})
    assert bad.status_code == 401
    assert tools_cli(gateway, "list", token=None).returncode == 2


async def test_cli_blocks_and_unblocks_a_tool_at_run_time(gateway: GatewayProcess) -> None:
    listed = tools_cli(gateway, "list")
    assert listed.returncode == 0
    assert "BLOCKED  x_tb_kubectl_delete  (on the default denylist" in listed.stdout
    assert "allowed  x_tb_echo" in listed.stdout

    assert tools_cli(gateway, "block", "x_tb_echo").returncode == 0
    async with Client(gateway.url, mode="2026-07-28") as client:
        assert "x_tb_echo" not in {t.name for t in (await client.list_tools()).tools}
        with pytest.raises(MCPError, match="blocked at run time"):
            await client.call_tool("x_tb_echo", {"text": "hi"})

    assert tools_cli(gateway, "unblock", "x_tb_kubectl_delete").returncode == 0
    assert tools_cli(gateway, "reset", "x_tb_echo").returncode == 0
    async with Client(gateway.url, mode="legacy") as client:
        names = {t.name for t in (await client.list_tools()).tools}
        assert {"x_tb_echo", "x_tb_kubectl_delete"} <= names
        result = await client.call_tool("x_tb_kubectl_delete", {"resource": "pods"})
        assert result.content[0].text == "deleted pods"  # type: ignore[union-attr]
    assert tools_cli(gateway, "reset", "x_tb_kubectl_delete").returncode == 0
    assert "BLOCKED  x_tb_kubectl_delete  (on the default denylist" in tools_cli(gateway, "list").stdout


def test_admin_api_is_off_without_a_token() -> None:
    with run_gateway({"mcpServers": []}) as gateway:
        assert httpx.get(f"{gateway.base}/admin/tools", headers={"authorization": "Bearer x"}).status_code == 404


@pytest.mark.filterwarnings("ignore:resources/subscribe is removed")  # deliberately the 2025-11-25 method
async def test_resource_subscribe_accepts_listed_uris_and_rejects_unknown_ones(gateway: GatewayProcess) -> None:
    async with Client(gateway.url, mode="legacy") as client:
        await client.subscribe_resource("toolbox://toolbox/info")
        with pytest.raises(MCPError, match="Resource not found"):
            await client.subscribe_resource("nothing://here")


def test_blocking_while_the_store_is_away_is_a_503_naming_the_cause() -> None:
    redis = start_redis()
    try:
        with run_gateway(
            {"mcpServers": []}, args=("--redis-url", redis.url), env={"AGGREGATOR_ADMIN_TOKEN": TOKEN}
        ) as gateway:
            redis.stop()
            response = httpx.post(
                f"{gateway.base}/admin/tools/x_tb_echo/block", headers={"authorization": f"Bearer {TOKEN}"}, timeout=15
            )
            assert response.status_code == 503
            assert "Redis" in response.json()["error"] and "retry" in response.json()["error"]
            assert "Traceback" not in gateway.log()
    finally:
        redis.stop()

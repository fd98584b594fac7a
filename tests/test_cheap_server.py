"""The hop benchmark's cheap backend is a real MCP server: the SDK client and the gateway both speak to it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from mcp import Client

from tests.gateway_process import GatewayProcess, run_gateway
from tests.servers.launch import RunningServer, run_http_server

VERSIONS = ["2026-07-28", "2025-11-25"]
MODES = ["legacy", "2026-07-28"]


@pytest.fixture(scope="module")
def backends() -> Iterator[dict[str, RunningServer]]:
    with ExitStack() as stack:
        yield {
            version: stack.enter_context(run_http_server("tests.servers.cheap", "--version", version))
            for version in VERSIONS
        }


async def call_echo(url: str, mode: str, tool: str) -> None:
    async with Client(url, mode=mode) as client:
        assert [t.name for t in (await client.list_tools()).tools] == [tool]
        result = await client.call_tool(tool, {"text": "anything"})
        assert not result.is_error and result.content[0].text == "hello"  # type: ignore[union-attr]


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_sdk_client_lists_and_calls_the_echo_tool(backends: dict[str, RunningServer], version: str) -> None:
    mode = "legacy" if version == "2025-11-25" else version
    await call_echo(backends[version].url, mode, "echo")
    await call_echo(backends[version].url, "auto", "echo")  # probes server/discover, falls back on 2025-11-25


@pytest.mark.parametrize("version", VERSIONS)
async def test_the_gateway_forwards_to_it_in_both_client_eras(backends: dict[str, RunningServer], version: str) -> None:
    config = {"mcpServers": [{"name": "cheap", "type": "streamable-http", "url": backends[version].url}]}
    with run_gateway(config) as gateway:
        assert negotiated(gateway) == version
        for mode in MODES:
            await call_echo(gateway.url, mode, "x_cheap_echo")


def negotiated(gateway: GatewayProcess) -> str:
    return str(gateway.ready()["backends"]["cheap"]["protocol"])

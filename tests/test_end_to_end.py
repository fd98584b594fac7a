"""The gateway end to end: official SDK clients in both eras, real backends over every transport.

Backends: mcp-server-time (PyPI, stdio); the reference "everything" server (npm, stdio); the
toolbox over stdio (`alpha`), streamable HTTP (`beta`), HTTP+SSE (`gamma`) and as a 2025-only
HTTP server (`old`); two toolbox instances as the family `kube`; a toolbox with a 1 s timeout
(`slowpoke`).
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Any

import anyio
import httpx
import mcp_types as t
import pytest
from mcp import Client, ClientSession, MCPError, StdioServerParameters
from mcp.client.sse import sse_client

from tests.gateway_process import BIN, ROOT, GatewayProcess, run_gateway
from tests.servers.launch import run_http_server

ERAS = ["legacy", "2026-07-28"]
PY = sys.executable
EVERYTHING = ROOT / ".cache/node/node_modules/.bin/mcp-server-everything"  # installed by scripts/test.sh


def toolbox_stdio(name: str, *extra: str) -> dict[str, Any]:
    return {
        "name": name,
        "type": "stdio",
        "command": PY,
        "args": ["-m", "tests.servers.toolbox", "--name", name, *extra],
    }


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    with ExitStack() as stack:
        beta = stack.enter_context(
            run_http_server("tests.servers.toolbox", "--name", "beta", "--transport", "streamable-http")
        )
        gamma = stack.enter_context(run_http_server("tests.servers.toolbox", "--name", "gamma", "--transport", "sse"))
        old = stack.enter_context(
            run_http_server("tests.servers.toolbox", "--name", "old", "--transport", "streamable-http", "--legacy-only")
        )
        config = {
            "aggregator": {"healthCheckInterval": 1},
            "mcpServers": [
                {"name": "time", "type": "stdio", "command": PY, "args": ["-m", "mcp_server_time"]},
                {"name": "everything", "type": "stdio", "command": str(EVERYTHING), "args": ["stdio"]},
                toolbox_stdio("alpha"),
                {"name": "beta", "type": "streamable-http", "url": beta.url},
                {"name": "gamma", "type": "sse", "url": gamma.url},
                {"name": "old", "type": "streamable-http", "url": old.url},
                {**toolbox_stdio("kube-eu"), "family": {"name": "kube"}},
                {**toolbox_stdio("kube-us"), "family": {"name": "kube"}},
                {**toolbox_stdio("slowpoke"), "timeout": 1},
            ],
        }
        yield stack.enter_context(run_gateway(config))


@pytest.fixture(autouse=True)
def every_backend_up(gateway: GatewayProcess) -> None:
    """Each test starts with every backend up, whichever test ran before (one crashes a backend)."""
    gateway.wait_for(
        lambda r: all(backend["state"] == "up" for backend in r["backends"].values()),
        timeout=30,
        what="every backend up",
    )


def text(result: t.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, t.TextContent))


async def names(client: Client) -> set[str]:
    return {tool.name for tool in (await client.list_tools()).tools}


# -- discovery and naming ------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_tools_of_every_backend_are_listed_under_prefixed_names(gateway: GatewayProcess, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        listed = await names(client)
    assert {"x_time_get_current_time", "x_alpha_echo", "x_beta_echo", "x_gamma_echo", "x_old_echo"} <= listed
    assert "x_kube_whoami" in listed and "x_kube-eu_whoami" not in listed
    assert not any(name.endswith("kubectl_delete") for name in listed)


async def test_backends_are_reached_in_the_protocol_they_speak(gateway: GatewayProcess) -> None:
    backends = gateway.ready()["backends"]
    assert backends["beta"]["protocol"] == "2026-07-28"
    assert backends["alpha"]["protocol"] == "2026-07-28"
    assert backends["old"]["protocol"] == "2025-11-25"
    assert backends["gamma"]["protocol"] == "2025-11-25"


@pytest.mark.parametrize("mode", ERAS)
async def test_calls_reach_every_transport(gateway: GatewayProcess, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        for server in ("alpha", "beta", "gamma", "old"):
            assert text(await client.call_tool(f"x_{server}_whoami", {})) == server
        assert "datetime" in text(await client.call_tool("x_time_get_current_time", {"timezone": "UTC"}))


# -- families and the denylist ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_family_tool_routes_to_the_chosen_instance(gateway: GatewayProcess, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        tool = next(tool for tool in (await client.list_tools()).tools if tool.name == "x_kube_whoami")
        assert tool.input_schema["properties"]["server"]["enum"] == ["kube-eu", "kube-us"]
        assert "server" in tool.input_schema["required"]
        assert text(await client.call_tool("x_kube_whoami", {"server": "kube-us"})) == "kube-us"
        assert text(await client.call_tool("x_kube_echo", {"server": "kube-eu", "text": "hi"})) == "hi"
        with pytest.raises(MCPError, match="one of: kube-eu, kube-us"):
            await client.call_tool("x_kube_whoami", {})


@pytest.mark.parametrize("mode", ERAS)
async def test_blocked_tool_is_refused_with_how_to_allow_it(gateway: GatewayProcess, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        with pytest.raises(MCPError, match=r"blocked.*aggregator tools unblock x_alpha_kubectl_delete"):
            await client.call_tool("x_alpha_kubectl_delete", {"resource": "pods"})
        with pytest.raises(MCPError, match="Unknown tool"):
            await client.call_tool("x_alpha_no_such_tool", {})
        with pytest.raises(MCPError, match=r"blocked.*x_kube_kubectl_delete"):  # the family path too
            await client.call_tool("x_kube_kubectl_delete", {"server": "kube-eu", "resource": "pods"})


# -- failures -------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_slow_backend_times_out_naming_server_and_limit(gateway: GatewayProcess, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        started = time.monotonic()
        result = await client.call_tool("x_slowpoke_slow", {"seconds": 5})
        assert time.monotonic() - started < 4
        assert result.is_error and "slowpoke" in text(result) and "1s" in text(result)
        assert text(await client.call_tool("x_slowpoke_echo", {"text": "still here"})) == "still here"


async def test_backend_dying_mid_call_is_an_error_naming_it_and_it_comes_back(gateway: GatewayProcess) -> None:
    async with Client(gateway.url, mode="2026-07-28") as client:
        result = await client.call_tool("x_alpha_crash", {})
        assert result.is_error and "alpha" in text(result)
        assert text(await client.call_tool("x_beta_echo", {"text": "unaffected"})) == "unaffected"
    gateway.wait_for(lambda r: r["backends"]["alpha"]["state"] == "up", timeout=30, what="alpha back up")
    async with Client(gateway.url, mode="legacy") as client:
        assert "x_alpha_echo" in await names(client)
        assert text(await client.call_tool("x_alpha_echo", {"text": "back"})) == "back"


# -- list changes --------------------------------------------------------------------------------


async def test_backend_list_change_reaches_both_eras(gateway: GatewayProcess) -> None:
    legacy_seen = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, t.ServerNotification) and message.method == "notifications/tools/list_changed":
            legacy_seen.set()

    async with (
        Client(gateway.url, mode="legacy", message_handler=on_message) as legacy,
        Client(gateway.url, mode="2026-07-28") as modern,
    ):
        await legacy.list_tools()
        fresh = f"fresh_{uuid.uuid4().hex[:8]}"  # a tool no earlier test (or run) added
        async with modern.listen(tools_list_changed=True) as events:
            await modern.call_tool("x_beta_add_tool", {"tool": fresh})
            await asyncio.wait_for(anext(aiter(events)), 10)
            await asyncio.wait_for(legacy_seen.wait(), 10)
        assert f"x_beta_{fresh}" in await names(modern)
        assert text(await legacy.call_tool(f"x_beta_{fresh}", {})) == f"{fresh} from beta"
        await modern.call_tool("x_beta_remove_tool", {"tool": fresh})
        deadline = time.monotonic() + 10
        while f"x_beta_{fresh}" in await names(legacy):
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


# -- messages during a call ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("server", ["beta", "old"])
async def test_progress_is_passed_through(gateway: GatewayProcess, mode: str, server: str) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with Client(gateway.url, mode=mode) as client:
        result = await client.call_tool(f"x_{server}_progress", {"steps": 3}, progress_callback=on_progress)
    assert text(result) == "done 3"
    assert seen == [(1, 3), (2, 3), (3, 3)]


async def _elicit(ctx: Any, params: Any) -> t.ElicitResult:
    return t.ElicitResult(action="accept", content={"name": "ada"})


async def _sample(ctx: Any, params: Any) -> t.CreateMessageResult:
    return t.CreateMessageResult(role="assistant", content=t.TextContent(type="text", text="sampled"), model="m")


async def _roots(ctx: Any) -> t.ListRootsResult:
    return t.ListRootsResult(roots=[t.Root(uri="file:///work")])


@pytest.mark.parametrize("mode", ERAS)
@pytest.mark.parametrize("server", ["beta", "old"])
async def test_backend_questions_reach_the_calling_client(gateway: GatewayProcess, mode: str, server: str) -> None:
    async with Client(
        gateway.url, mode=mode, elicitation_callback=_elicit, sampling_callback=_sample, list_roots_callback=_roots
    ) as client:
        assert text(await client.call_tool(f"x_{server}_ask_name", {})) == "hello ada"
        assert text(await client.call_tool(f"x_{server}_sample", {"prompt": "q"})) == "sampled"
        assert text(await client.call_tool(f"x_{server}_list_roots", {})) == "file:///work"


@contextlib.asynccontextmanager
async def client_on(gateway: GatewayProcess, path: str, **callbacks: Any) -> AsyncIterator[Client | ClientSession]:
    """An SDK client with `callbacks` on one of the three client paths: 2026-07-28, 2025-11-25, legacy SSE."""
    if path != "legacy-sse":
        async with Client(gateway.url, mode="legacy" if path == "2025-11-25" else path, **callbacks) as client:
            yield client
        return
    async with sse_client(f"{gateway.base}/sse") as (read, write), ClientSession(read, write, **callbacks) as session:
        await session.initialize()
        yield session


@pytest.mark.parametrize("path", ["2026-07-28", "2025-11-25", "legacy-sse"])
async def test_questions_are_answered_on_every_client_path(gateway: GatewayProcess, path: str) -> None:
    async with client_on(gateway, path, elicitation_callback=_elicit, sampling_callback=_sample) as client:
        with anyio.fail_after(30):
            sampled = await client.call_tool("x_everything_trigger-sampling-request", {"prompt": "q"})
            assert not sampled.is_error and "sampled" in text(sampled)
            for server in ("beta", "old"):  # a 2026-07-28 and a 2025-11-25 backend asking
                assert text(await client.call_tool(f"x_{server}_ask_name", {})) == "hello ada"
                assert text(await client.call_tool(f"x_{server}_sample", {"prompt": "q"})) == "sampled"


@pytest.mark.parametrize("mode", ERAS)
async def test_backend_question_to_a_client_without_the_capability_fails_cleanly(
    gateway: GatewayProcess, mode: str
) -> None:
    async with Client(gateway.url, mode=mode) as client:
        with anyio.fail_after(15):
            try:
                result = await client.call_tool("x_old_ask_name", {})
            except MCPError as exc:
                message = str(exc)
            else:
                assert result.is_error
                message = text(result)
    assert "did not declare the elicitation capability" in message


# -- resources, prompts, completion ---------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_resources_prompts_and_completion(gateway: GatewayProcess, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        uris = {str(r.uri) for r in (await client.list_resources()).resources}
        assert {"toolbox://beta/info", "toolbox://old/info"} <= uris
        templates = {r.uri_template for r in (await client.list_resource_templates()).resource_templates}
        assert "toolbox://beta/items/{item}" in templates
        read = await client.read_resource("toolbox://beta/info")
        assert read.contents[0].text == "info from beta"  # type: ignore[union-attr]
        item = await client.read_resource("toolbox://old/items/7")
        assert item.contents[0].text == "item 7 from old"  # type: ignore[union-attr]
        prompts = {p.name for p in (await client.list_prompts()).prompts}
        assert "x_beta_greet" in prompts
        prompt = await client.get_prompt("x_old_greet", {"who": "bob"})
        assert prompt.messages[0].content.text == "Hello bob from old"  # type: ignore[union-attr]
        completion = await client.complete(
            t.PromptReference(type="ref/prompt", name="x_beta_greet"), {"name": "who", "value": "a"}
        )
        assert completion.completion.values == ["alice"]


# -- other client transports ---------------------------------------------------------------------


async def test_legacy_sse_client(gateway: GatewayProcess) -> None:
    async with sse_client(f"{gateway.base}/sse") as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        listed = {tool.name for tool in (await session.list_tools()).tools}
        assert "x_beta_echo" in listed
        assert text(await session.call_tool("x_gamma_echo", {"text": "over sse"})) == "over sse"


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_stdio_front_end(gateway: GatewayProcess, mode: str) -> None:
    params = StdioServerParameters(
        command=str(BIN / "aggregator"),
        args=["serve", "-c", str(gateway.config_path), "--transport", "stdio"],
        env=gateway.env,
    )
    async with Client(params, mode=mode) as client:
        assert "x_alpha_echo" in await names(client)
        assert text(await client.call_tool("x_alpha_echo", {"text": "stdio"})) == "stdio"


# -- cancellation and pagination ------------------------------------------------------------------


@pytest.mark.parametrize("mode", ERAS)
async def test_cancelled_call_stops_and_the_gateway_carries_on(gateway: GatewayProcess, mode: str) -> None:
    async with Client(gateway.url, mode=mode) as client:
        with anyio.move_on_after(0.5) as scope:
            await client.call_tool("x_beta_slow", {"seconds": 5})
        assert scope.cancelled_caught
        assert text(await client.call_tool("x_beta_echo", {"text": "next"})) == "next"


def test_a_2026_client_hanging_up_mid_call_ends_the_call_at_once(gateway: GatewayProcess) -> None:
    """The connection tells the call its client left: it ends then, not when the backend answers."""
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    params = {"name": "x_beta_slow", "arguments": {"seconds": 5}, "_meta": meta}
    headers = {"accept": "application/json", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"}
    headers["mcp-name"] = "x_beta_slow"
    request = {"jsonrpc": "2.0", "id": "gone", "method": "tools/call", "params": params}
    with pytest.raises(httpx.ReadTimeout):  # the client gives up after 0.3 s and closes its connection
        answer = httpx.post(gateway.url, json=request, headers=headers, timeout=0.3)
        pytest.fail(f"answered before the call could end: {answer.status_code} {answer.text}")
    hung_up = time.monotonic()
    ended = 'mcp_tool_calls_total{outcome="error",server="beta",tool="x_beta_slow"}'
    while ended not in httpx.get(f"{gateway.base}/metrics", timeout=5).text:
        assert time.monotonic() - hung_up < 3, "the call ran on after its client left"
        time.sleep(0.05)


def test_pagination_walks_every_tool(gateway: GatewayProcess) -> None:
    everything, cursor, pages = [], None, 0
    meta = {"io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}
    headers = {"accept": "application/json", "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/list"}
    while True:
        params: dict[str, Any] = {"_meta": meta, **({"cursor": cursor} if cursor else {})}
        body = httpx.post(
            gateway.url, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": params}, headers=headers
        ).json()["result"]
        assert body["resultType"] == "complete" and body["cacheScope"] == "public" and "ttlMs" in body
        everything += [tool["name"] for tool in body["tools"]]
        pages += 1
        cursor = body.get("nextCursor")
        if not cursor:
            break
    assert len(everything) == len(set(everything)) > 20

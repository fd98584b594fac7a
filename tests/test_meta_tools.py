"""Meta-tools end to end: `aggregator.exposure: meta | both`, official SDK clients in both eras, real backends.

Backends: the toolbox over streamable HTTP (`beta`) and as a 2025-11-25-only server (`old`), both
shared by the module's gateways; mcp-server-time over stdio (`time`); two toolbox instances over
stdio as the family `kube`.
One gateway per exposure lives for the module; the meta one also blocks `x_time_convert*` by a
config glob and has the admin API on, for run-time blocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from typing import Any

import anyio
import httpx
import jsonschema
import mcp_types as t
import pytest
from mcp import Client, MCPError

from tests.gateway_process import GatewayProcess, run_gateway
from tests.oauth_flows import connected, sign_in
from tests.servers.launch import RunningServer, run_http_server

ERAS = ["legacy", "2026-07-28"]
PY = sys.executable
ADMIN = {"authorization": "Bearer meta-admin"}
META = {
    "list_tools",
    "describe_tool",
    "call_tool",
    "filter_tools",
    "list_resources",
    "describe_resource",
    "get_resource",
    "list_prompts",
    "describe_prompt",
    "get_prompt",
    "list_core_tools",
}


def toolbox(name: str, **spec: Any) -> dict[str, Any]:
    args = ["-m", "tests.servers.toolbox", "--name", name]
    return {"name": name, "type": "stdio", "command": PY, "args": args, **spec}


@pytest.fixture(scope="module")
def http_backends() -> Iterator[dict[str, RunningServer]]:
    with (
        run_http_server("tests.servers.toolbox", "--name", "beta", "--transport", "streamable-http") as beta,
        run_http_server(
            "tests.servers.toolbox", "--name", "old", "--transport", "streamable-http", "--legacy-only"
        ) as old,
    ):
        yield {"beta": beta, "old": old}


def config(exposure: str, http_backends: dict[str, RunningServer], **aggregator: Any) -> dict[str, Any]:
    return {
        "aggregator": {"exposure": exposure, **aggregator},
        "mcpServers": [
            {"name": "time", "type": "stdio", "command": PY, "args": ["-m", "mcp_server_time"]},
            *({"name": name, "type": "streamable-http", "url": server.url} for name, server in http_backends.items()),
            toolbox("kube-eu", family={"name": "kube"}),
            toolbox("kube-us", family={"name": "kube"}),
        ],
    }


@pytest.fixture(scope="module")
def meta_gateway(http_backends: dict[str, RunningServer]) -> Iterator[GatewayProcess]:
    settings = config("meta", http_backends, denylist={"extra": ["x_time_convert*"]})
    with run_gateway(settings, env={"AGGREGATOR_ADMIN_TOKEN": ADMIN["authorization"][7:]}) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def both_gateway(http_backends: dict[str, RunningServer]) -> Iterator[GatewayProcess]:
    with run_gateway(config("both", http_backends)) as gateway:
        yield gateway


def text(result: t.CallToolResult) -> str:
    return "".join(c.text for c in result.content if isinstance(c, t.TextContent))


async def call(client: Client, tool: str, arguments: dict[str, Any] | None = None) -> t.CallToolResult:
    """`tool` called through the meta-tool call_tool."""
    return await client.call_tool("call_tool", {"name": tool, "arguments": arguments or {}})


async def listed(client: Client) -> set[str]:
    result = await client.call_tool("list_tools", {})
    return {tool["name"] for tool in (result.structured_content or {})["tools"]}


# -- tools/list, and every meta-tool's answer ----------------------------------------------------

CALLS: list[tuple[str, dict[str, Any]]] = [
    ("list_tools", {}),
    ("describe_tool", {"name": "x_beta_echo"}),
    ("call_tool", {"name": "x_beta_echo", "arguments": {"text": "hi"}}),
    ("filter_tools", {"pattern": "*echo"}),
    ("list_resources", {}),
    ("describe_resource", {"uri": "toolbox://beta/info"}),
    ("get_resource", {"uri": "toolbox://beta/info"}),
    ("list_prompts", {}),
    ("describe_prompt", {"name": "x_beta_greet"}),
    ("get_prompt", {"name": "x_beta_greet", "arguments": {"who": "ada"}}),
    ("list_core_tools", {}),
]


@pytest.mark.parametrize("era", ERAS)
@pytest.mark.parametrize("exposure", ["meta", "both"])
async def test_every_meta_tool_answers_json_and_structured_content_that_its_output_schema_describes(
    request: pytest.FixtureRequest, exposure: str, era: str
) -> None:
    gateway: GatewayProcess = request.getfixturevalue(f"{exposure}_gateway")
    async with Client(gateway.url, mode=era) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        assert set(tools) >= META
        if exposure == "meta":
            assert set(tools) == META
        else:
            assert {"x_beta_echo", "x_time_get_current_time", "x_kube_whoami"} <= set(tools)
        answers: dict[str, dict[str, Any]] = {}
        for name, arguments in CALLS:
            result = await client.call_tool(name, arguments)
            assert not result.is_error, (name, text(result))
            schema = tools[name].output_schema
            assert schema is not None, name
            jsonschema.validate(result.structured_content, schema)
            if name != "call_tool":
                assert json.loads(text(result)) == result.structured_content, name
            answers[name] = result.structured_content or {}
    listed_tools = {tool["name"] for tool in answers["list_tools"]["tools"]}
    assert {"x_beta_echo", "x_time_get_current_time", "x_kube_echo"} <= listed_tools
    assert answers["list_tools"]["signInRequired"] == []  # no backend here needs the user's own account
    assert answers["describe_tool"]["tool"]["inputSchema"]["required"] == ["text"]
    assert answers["call_tool"] == {"result": "hi"}  # the backend's own structuredContent
    assert {t["name"] for t in answers["filter_tools"]["tools"]} == {"x_beta_echo", "x_old_echo", "x_kube_echo"}
    assert "toolbox://beta/info" in {r["uri"] for r in answers["list_resources"]["resources"]}
    assert "toolbox://beta/items/{item}" in {r["uriTemplate"] for r in answers["list_resources"]["resourceTemplates"]}
    assert answers["describe_resource"]["resource"]["mimeType"] == "text/plain"
    assert answers["get_resource"]["contents"][0]["text"] == "info from beta"
    assert "x_beta_greet" in {p["name"] for p in answers["list_prompts"]["prompts"]}
    assert answers["describe_prompt"]["prompt"]["arguments"][0]["name"] == "who"
    assert answers["get_prompt"]["messages"][0]["content"]["text"] == "Hello ada from beta"
    assert answers["list_core_tools"] == {"tools": []}


@pytest.mark.parametrize("era", ERAS)
async def test_a_client_that_sees_only_meta_tools_reaches_every_backend_a_family_member_a_resource_and_a_prompt(
    meta_gateway: GatewayProcess, era: str
) -> None:
    async with Client(meta_gateway.url, mode=era) as client:
        names = await listed(client)
        assert {"x_time_get_current_time", "x_beta_whoami", "x_kube_whoami"} <= names
        assert not any(name.endswith(("kubectl_delete", "convert_time")) for name in names)
        for server in ("beta", "old"):
            assert text(await call(client, f"x_{server}_whoami")) == server
        assert "datetime" in text(await call(client, "x_time_get_current_time", {"timezone": "UTC"}))
        for member in ("kube-eu", "kube-us"):
            assert text(await call(client, "x_kube_whoami", {"server": member})) == member
        described = (await client.call_tool("describe_tool", {"name": "x_kube_whoami"})).structured_content or {}
        assert described["tool"]["inputSchema"]["properties"]["server"]["enum"] == ["kube-eu", "kube-us"]
        item = (await client.call_tool("get_resource", {"uri": "toolbox://beta/items/7"})).structured_content or {}
        assert item["contents"][0]["text"] == "item 7 from beta"
        template = await client.call_tool("describe_resource", {"uri": "toolbox://beta/items/7"})
        assert (template.structured_content or {})["resource"]["uriTemplate"] == "toolbox://beta/items/{item}"
        prompt = await client.call_tool("get_prompt", {"name": "x_beta_greet", "arguments": {"who": "bob"}})
        assert (prompt.structured_content or {})["messages"][0]["content"]["text"] == "Hello bob from beta"


@pytest.mark.parametrize("era", ERAS)
async def test_call_tool_answers_the_backends_result_unwrapped(meta_gateway: GatewayProcess, era: str) -> None:
    async with Client(meta_gateway.url, mode=era) as client:
        for tool, arguments in (
            ("x_beta_echo", {"text": "same"}),  # with structuredContent
            ("x_time_get_current_time", {"timezone": "UTC"}),
            ("x_beta_echo", {}),  # a tool error: a missing argument
        ):
            direct = await client.call_tool(tool, arguments)
            meta = await call(client, tool, arguments)
            assert meta.is_error == direct.is_error and meta.content == direct.content
            content = [c.model_dump(by_alias=True, exclude_none=True) for c in direct.content]
            expected = direct.structured_content or {"content": content}
            assert meta.structured_content == expected
        assert (await call(client, "x_beta_echo", {})).is_error


# -- the denylist, word for word ------------------------------------------------------------------


async def admin(gateway: GatewayProcess, action: str | None = None, tool: str = "") -> dict[str, Any]:
    """GET /admin/tools, or POST /admin/tools/{tool}/{action} (block, unblock, reset)."""
    url = f"{gateway.base}/admin/tools"
    async with httpx.AsyncClient(headers=ADMIN, timeout=5) as http:
        response = await (http.get(url) if action is None else http.post(f"{url}/{tool}/{action}"))
    response.raise_for_status()
    return dict(response.json())


async def beta_tools(gateway: GatewayProcess) -> dict[str, str]:
    """Original name -> exposed name of every routed tool of `beta` (blocked ones too)."""
    rows = (await admin(gateway))["tools"]
    return {row["original"]: row["name"] for row in rows if row["servers"] == ["beta"]}


async def refusals(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    """The refusal of a direct call and of call_tool, which must be the same; its message."""
    with pytest.raises(MCPError) as direct:
        await client.call_tool(tool, arguments)
    with pytest.raises(MCPError) as through_meta:
        await call(client, tool, arguments)
    seen = (through_meta.value.code, through_meta.value.message, through_meta.value.data)
    assert seen == (direct.value.code, direct.value.message, direct.value.data)
    return direct.value.message


async def test_blocked_tools_are_refused_through_call_tool_exactly_as_directly(meta_gateway: GatewayProcess) -> None:
    shouting, long_path = "KUBECTL_DELETE", f"tools/{'x' * 50}/uninstall_helm_chart"
    async with Client(meta_gateway.url, mode="2026-07-28") as client:
        for added in (shouting, long_path):
            assert not (await call(client, "x_beta_add_tool", {"tool": added})).is_error
    deadline = time.monotonic() + 10
    while not {shouting, long_path} <= set(await beta_tools(meta_gateway)):
        assert time.monotonic() < deadline, "the tools added at run time never reached the gateway"
        await asyncio.sleep(0.1)
    exposed = await beta_tools(meta_gateway)
    assert len(exposed[long_path]) == 64  # shortened to a stem and a hash
    await admin(meta_gateway, "block", "x_beta_echo")
    cases = [
        ("x_beta_kubectl_delete", {"resource": "pods"}, "on the default denylist"),
        ("x_kube_kubectl_delete", {"server": "kube-eu", "resource": "pods"}, "on the default denylist"),
        ("x_time_convert_time", {"source_timezone": "UTC", "time": "12:00", "target_timezone": "UTC"}, "configured"),
        (exposed[shouting], {}, "on the default denylist"),
        (exposed[long_path], {}, "reads as uninstall_helm_chart"),
        ("x_beta_echo", {"text": "hi"}, "blocked at run time"),
    ]
    try:
        for era in ERAS:
            async with Client(meta_gateway.url, mode=era) as client:
                await wait_until_unlisted(client, "x_beta_echo")
                for tool, arguments, reason in cases:
                    message = await refusals(client, tool, arguments)
                    assert reason in message and f"aggregator tools unblock {tool}" in message
                    assert tool not in await listed(client)
    finally:
        await admin(meta_gateway, "reset", "x_beta_echo")
        async with Client(meta_gateway.url, mode="2026-07-28") as client:
            for added in (shouting, long_path):
                await call(client, "x_beta_remove_tool", {"tool": added})


async def wait_until_unlisted(client: Client, tool: str) -> None:
    deadline = time.monotonic() + 10
    while tool in await listed(client):
        assert time.monotonic() < deadline, f"{tool} stayed listed"
        await asyncio.sleep(0.1)


async def test_meta_tools_refuse_what_the_direct_request_refuses(meta_gateway: GatewayProcess) -> None:
    async with Client(meta_gateway.url, mode="2026-07-28") as client:
        with pytest.raises(MCPError, match="Unknown tool: 'x_beta_nope'"):
            await client.call_tool("describe_tool", {"name": "x_beta_nope"})
        with pytest.raises(MCPError, match="blocked: on the default denylist"):
            await client.call_tool("describe_tool", {"name": "x_beta_kubectl_delete"})
        with pytest.raises(MCPError) as direct:
            await client.read_resource("toolbox://nowhere/x")
        with pytest.raises(MCPError, match="Resource not found") as through_meta:
            await client.call_tool("get_resource", {"uri": "toolbox://nowhere/x"})
        assert through_meta.value.message == direct.value.message
        with pytest.raises(MCPError, match="Unknown prompt: 'x_beta_nope'"):
            await client.call_tool("get_prompt", {"name": "x_beta_nope"})
        with pytest.raises(MCPError, match="Unknown prompt: 'x_beta_nope'"):
            await client.call_tool("describe_prompt", {"name": "x_beta_nope"})
        with pytest.raises(MCPError, match="call list_tools itself"):
            await call(client, "list_tools")
        with pytest.raises(MCPError, match="missing required string 'name'"):
            await client.call_tool("describe_tool", {})


# -- filter_tools -------------------------------------------------------------------------------


async def filtered(client: Client, **arguments: str) -> set[str]:
    result = await client.call_tool("filter_tools", arguments)
    return {tool["name"] for tool in (result.structured_content or {})["tools"]}


async def test_filter_tools_by_glob_description_and_server(meta_gateway: GatewayProcess) -> None:
    async with Client(meta_gateway.url, mode="legacy") as client:
        assert await filtered(client, pattern="*WHOAMI") == {"x_beta_whoami", "x_old_whoami", "x_kube_whoami"}
        assert await filtered(client, pattern="x_?eta_ech?") == {"x_beta_echo"}
        assert await filtered(client, pattern="x_beta_*", description="RETURN THE") == {"x_beta_echo"}
        assert await filtered(client, pattern="*", description="destructive") == set()  # blocked: not there
        assert await filtered(client, pattern="*", server="time") == {"x_time_get_current_time"}
        family = await filtered(client, pattern="*", server="kube-us")
        assert "x_kube_whoami" in family and all(name.startswith("x_kube_") for name in family)
        assert await filtered(client, pattern="[a-z]*") == set()  # only * and ? are special
        assert len(await filtered(client, pattern="*")) == len(await listed(client))


# -- progress, cancellation, list changes --------------------------------------------------------


@pytest.mark.parametrize("era", ERAS)
async def test_progress_and_cancellation_pass_through_call_tool(meta_gateway: GatewayProcess, era: str) -> None:
    seen: list[tuple[float, float | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total))

    async with Client(meta_gateway.url, mode=era) as client:
        arguments = {"name": "x_beta_progress", "arguments": {"steps": 3}}
        result = await client.call_tool("call_tool", arguments, progress_callback=on_progress)
        assert text(result) == "done 3" and seen == [(1, 3), (2, 3), (3, 3)]
        with anyio.move_on_after(0.5) as scope:
            await call(client, "x_beta_slow", {"seconds": 5})
        assert scope.cancelled_caught
        started = time.monotonic()
        assert text(await call(client, "x_beta_echo", {"text": "next"})) == "next"
        assert time.monotonic() - started < 2


async def _elicit(ctx: Any, params: Any) -> t.ElicitResult:
    return t.ElicitResult(action="accept", content={"name": "ada"})


@pytest.mark.parametrize("era", ERAS)
async def test_a_backends_question_reaches_the_client_through_call_tool(meta_gateway: GatewayProcess, era: str) -> None:
    async with Client(meta_gateway.url, mode=era, elicitation_callback=_elicit) as client:
        for server in ("beta", "old"):  # one asks in its result (2026-07-28), the other mid-call (2025-11-25)
            with anyio.fail_after(30):
                assert text(await call(client, f"x_{server}_ask_name")) == "hello ada"


async def test_a_backend_list_change_reaches_meta_clients_of_both_eras(meta_gateway: GatewayProcess) -> None:
    legacy_seen = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, t.ServerNotification) and message.method == "notifications/tools/list_changed":
            legacy_seen.set()

    async with (
        Client(meta_gateway.url, mode="legacy", message_handler=on_message) as legacy,
        Client(meta_gateway.url, mode="2026-07-28") as modern,
    ):
        await legacy.list_tools()
        fresh = f"fresh_{uuid.uuid4().hex[:8]}"
        async with modern.listen(tools_list_changed=True) as events:
            await call(modern, "x_beta_add_tool", {"tool": fresh})
            await asyncio.wait_for(anext(aiter(events)), 10)
            await asyncio.wait_for(legacy_seen.wait(), 10)
        assert f"x_beta_{fresh}" in await listed(legacy)
        assert {tool.name for tool in (await modern.list_tools()).tools} == META  # tools/list itself stays
        assert text(await call(modern, f"x_beta_{fresh}")) == f"{fresh} from beta"
        await call(modern, "x_beta_remove_tool", {"tool": fresh})
        await wait_until_unlisted(legacy, f"x_beta_{fresh}")


# -- servers that need the user to sign in ------------------------------------------------------


@pytest.fixture(scope="module")
def signed_bed() -> Iterator[tuple[GatewayProcess, RunningServer]]:
    """A gateway protected by G, with `web`, a backend where users sign in at S (core_auth_login)."""
    with ExitStack() as stack:
        g = stack.enter_context(run_http_server("tests.servers.auth_server", "--issuer-name", "corp"))
        s = stack.enter_context(run_http_server("tests.servers.auth_server", "--issuer-name", "saas"))
        web = stack.enter_context(run_http_server("tests.servers.protected", "--issuer", s.url, "--name", "web"))
        settings = {
            "aggregator": {"exposure": "meta", "oauth": {"issuer": g.url}},
            "mcpServers": [{"name": "web", "type": "streamable-http", "url": web.url, "auth": {"type": "oauth"}}],
        }
        yield stack.enter_context(run_gateway(settings, wait_backends=False)), g


@contextlib.asynccontextmanager
async def as_alice(bed: tuple[GatewayProcess, RunningServer], http: httpx.AsyncClient) -> AsyncIterator[Client]:
    gateway, g = bed
    token = (await sign_in(http, g.url, user="alice", resource=gateway.url))["access_token"]
    async with connected(gateway.url, token, "2026-07-28") as client:
        yield client


async def test_list_tools_names_the_servers_to_sign_in_to_and_the_call_that_does_it(
    signed_bed: tuple[GatewayProcess, RunningServer],
) -> None:
    async with httpx.AsyncClient(timeout=10) as http:
        async with as_alice(signed_bed, http) as client:
            answer = (await client.call_tool("list_tools", {})).structured_content or {}
            assert answer["tools"] == []
            assert answer["signInRequired"] == [
                {"server": "web", "status": "auth_required", "tool": "core_auth_login", "arguments": {"server": "web"}}
            ]
            core = (await client.call_tool("list_core_tools", {})).structured_content or {}
            assert [tool["name"] for tool in core["tools"]] == ["core_auth_login", "core_auth_logout"]
            login = await call(client, "core_auth_login", {"server": "web"})
            url = (login.structured_content or {})["authorizationUrl"]
            assert url in text(login)
        approved = await http.get(f"{url}&login_hint=alice")  # the browser: S approves, back to the gateway
        assert (await http.get(approved.headers["location"])).status_code == 200
        async with as_alice(signed_bed, http) as client:
            answer = (await client.call_tool("list_tools", {})).structured_content or {}
            assert "x_web_whoami" in {tool["name"] for tool in answer["tools"]}
            assert answer["signInRequired"] == []
            me = await call(client, "x_web_whoami")
            assert (me.structured_content or json.loads(text(me)))["sub"] == "alice"

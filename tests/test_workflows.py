"""Workflows end to end: official SDK clients in both eras, the toolbox and mcp-server-time as backends.

One gateway for the module (no Redis: the control plane runs in the gateway), with the workflows
below in its config and a folder of workflow files that the reload test changes. It runs with
`exposure: both`, so the meta-tools see the workflows too. Reading a run back on another replica
is in test_cluster.py; config errors and `aggregator check` in test_workflow_config.py.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import mcp_types as t
import pytest
import yaml
from mcp import Client, MCPError

from tests.gateway_process import GatewayProcess, run_gateway
from tests.servers.launch import run_http_server

ERAS = ["legacy", "2026-07-28"]


def echo(step: str, text: str, **more: Any) -> dict[str, Any]:
    return {"id": step, "tool": "x_tb_echo", "args": {"text": text}, **more}


WORKFLOWS: list[dict[str, Any]] = [
    {
        "name": "stamp",
        "description": "Say something with the time zone's current time",
        "args": {
            "text": {"type": "string", "required": True, "description": "What to say"},
            "tz": {"type": "string", "default": "UTC"},
        },
        "steps": [
            {"id": "now", "tool": "x_time_get_current_time", "args": {"timezone": "{{ args.tz }}"}, "store": True},
            echo("say", "{{ args.text }} in {{ results.now.timezone }}"),
        ],
    },
    {"name": "stops", "steps": [echo("first", "one"), {"id": "broken", "tool": "x_tb_echo"}, echo("never", "3")]},
    {
        "name": "tolerant",
        "steps": [{"id": "broken", "tool": "x_tb_echo", "allowFailure": True}, echo("after", "still here")],
    },
    {
        "name": "maybe",
        "args": {"loud": {"type": "boolean", "default": False}},
        "steps": [echo("shout", "LOUD", condition="{{ args.loud }}"), echo("whisper", "quiet")],
    },
    {
        "name": "sleepy",
        "steps": [
            echo("before", "before"),
            {"id": "nap", "tool": "x_tb_slow", "args": {"seconds": 5}},
            echo("after", "after"),
        ],
    },
    {"name": "reckless", "steps": [{"id": "wipe", "tool": "x_tb_kubectl_delete", "args": {"resource": "pods"}}]},
]


@pytest.fixture(scope="module")
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="workflows-") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def gateway(folder: Path) -> Iterator[GatewayProcess]:
    with run_http_server("tests.servers.toolbox", "--name", "tb", "--transport", "streamable-http") as toolbox:
        config = {
            "aggregator": {"exposure": "both", "workflowsDir": str(folder)},
            "mcpServers": [
                {"name": "time", "type": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]},
                {"name": "tb", "type": "streamable-http", "url": toolbox.url},
            ],
            "workflows": WORKFLOWS,
        }
        with run_gateway(config) as running:
            yield running


def run_of(result: t.CallToolResult) -> dict[str, Any]:
    """A workflow's answer: the run, as JSON text and the same as structuredContent."""
    text = "".join(c.text for c in result.content if isinstance(c, t.TextContent))
    assert json.loads(text) == result.structured_content
    return result.structured_content or {}


def statuses(run: dict[str, Any]) -> list[tuple[str, str]]:
    return [(step["id"], step["status"]) for step in run["steps"]]


@pytest.mark.parametrize("era", ERAS)
async def test_a_step_passes_its_result_to_the_next_and_the_run_reads_back(gateway: GatewayProcess, era: str) -> None:
    async with Client(gateway.url, mode=era) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        schema = tools["workflow_stamp"].input_schema
        assert schema["required"] == ["text"] and schema["properties"]["tz"] == {"type": "string", "default": "UTC"}
        result = await client.call_tool("workflow_stamp", {"text": "hello", "tz": "Europe/Paris"})
        assert not result.is_error  # the SDK also checked structuredContent against the output schema
        run = run_of(result)
        assert (run["workflow"], run["status"], run["arguments"]) == (
            "stamp",
            "ok",
            {"text": "hello", "tz": "Europe/Paris"},
        )
        assert statuses(run) == [("now", "ok"), ("say", "ok")]
        now, say = run["steps"]
        assert now["tool"] == "x_time_get_current_time" and now["result"]["timezone"] == "Europe/Paris"
        assert say["result"] == {"result": "hello in Europe/Paris"}  # the toolbox's own structuredContent
        assert all(step["durationMs"] >= 0 for step in run["steps"]) and run["durationMs"] >= now["durationMs"]
        read_back = await client.call_tool("core_workflow_execution_get", {"id": run["id"]})
        assert read_back.structured_content == run
        default = run_of(await client.call_tool("workflow_stamp", {"text": "hi"}))
        assert (
            default["arguments"] == {"text": "hi", "tz": "UTC"}
            and default["steps"][1]["result"]["result"] == "hi in UTC"
        )


async def test_a_failing_step_stops_the_run(gateway: GatewayProcess) -> None:
    async with Client(gateway.url, mode="2026-07-28") as client:
        result = await client.call_tool("workflow_stops", {})
        run = run_of(result)
        assert result.is_error and run["status"] == "failed"
        assert statuses(run) == [("first", "ok"), ("broken", "failed"), ("never", "skipped")]
        assert "text" in run["steps"][1]["error"]  # the toolbox's own complaint: the missing argument
        assert run["steps"][2]["reason"] == "step 'broken' failed"


async def test_a_step_that_allows_failure_lets_the_run_go_on(gateway: GatewayProcess) -> None:
    async with Client(gateway.url, mode="legacy") as client:
        result = await client.call_tool("workflow_tolerant", {})
        run = run_of(result)
        assert not result.is_error and run["status"] == "ok"
        assert statuses(run) == [("broken", "failed"), ("after", "ok")]
        assert run["steps"][1]["result"] == {"result": "still here"}


async def test_a_condition_skips_a_step(gateway: GatewayProcess) -> None:
    async with Client(gateway.url, mode="2026-07-28") as client:
        quiet = run_of(await client.call_tool("workflow_maybe", {}))
        assert statuses(quiet) == [("shout", "skipped"), ("whisper", "ok")]
        assert quiet["steps"][0]["reason"] == "its condition was false"
        loud = run_of(await client.call_tool("workflow_maybe", {"loud": True}))
        assert statuses(loud) == [("shout", "ok"), ("whisper", "ok")]


@pytest.mark.parametrize("era", ERAS)
async def test_progress_is_reported_per_step(gateway: GatewayProcess, era: str) -> None:
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        seen.append((progress, total, message))

    async with Client(gateway.url, mode=era) as client:
        result = await client.call_tool("workflow_stamp", {"text": "x"}, progress_callback=on_progress)
    assert not result.is_error
    assert seen == [(1, 2, "now (x_time_get_current_time): ok"), (2, 2, "say (x_tb_echo): ok")]


@pytest.mark.parametrize("era", ERAS)
async def test_cancelling_a_run_cancels_its_step_and_records_the_run_as_cancelled(
    gateway: GatewayProcess, era: str
) -> None:
    async with Client(gateway.url, mode=era) as client:
        before = {run["id"] for run in await runs_of(client, "sleepy")}
        with anyio.move_on_after(1.0) as scope:
            await client.call_tool("workflow_sleepy", {})
        assert scope.cancelled_caught
        started = time.monotonic()
        assert run_of(await client.call_tool("workflow_maybe", {}))["status"] == "ok"
        assert time.monotonic() - started < 2  # the gateway is not stuck in the nap
        deadline = time.monotonic() + 10
        while not (fresh := [run for run in await runs_of(client, "sleepy") if run["id"] not in before]):
            assert time.monotonic() < deadline, "the cancelled run was never recorded"
            await asyncio.sleep(0.1)
        assert fresh[0]["status"] == "cancelled"
        run = (await client.call_tool("core_workflow_execution_get", {"id": fresh[0]["id"]})).structured_content or {}
        assert statuses(run) == [("before", "ok"), ("nap", "failed"), ("after", "skipped")]
        assert run["steps"][1]["error"] == "the run was cancelled"


async def runs_of(client: Client, workflow: str) -> list[dict[str, Any]]:
    listed = await client.call_tool("core_workflow_execution_list", {"name": workflow})
    return list((listed.structured_content or {})["executions"])


async def test_a_workflow_cannot_reach_a_blocked_tool(gateway: GatewayProcess) -> None:
    async with Client(gateway.url, mode="2026-07-28") as client:
        with pytest.raises(MCPError) as direct:
            await client.call_tool("x_tb_kubectl_delete", {"resource": "pods"})
        result = await client.call_tool("workflow_reckless", {})
        run = run_of(result)
        assert result.is_error and statuses(run) == [("wipe", "failed")]
        assert run["steps"][0]["error"] == direct.value.message  # the refusal a direct call gets, word for word
        assert "on the default denylist" in direct.value.message


async def test_arguments_are_checked_against_the_workflows_args(gateway: GatewayProcess) -> None:
    async with Client(gateway.url, mode="legacy") as client:
        with pytest.raises(MCPError, match="workflow 'stamp' needs the argument 'text'"):
            await client.call_tool("workflow_stamp", {})
        with pytest.raises(MCPError, match="has no argument 'colour'"):
            await client.call_tool("workflow_stamp", {"text": "x", "colour": "red"})
        with pytest.raises(MCPError, match="argument 'loud' of workflow 'maybe' must be a boolean"):
            await client.call_tool("workflow_maybe", {"loud": "yes"})


async def test_core_tools_list_and_show_workflows_and_meta_tools_reach_them(gateway: GatewayProcess) -> None:
    async with Client(gateway.url, mode="2026-07-28") as client:
        listed = (await client.call_tool("core_workflow_list", {})).structured_content or {}
        names = [workflow["name"] for workflow in listed["workflows"]]
        assert {"stamp", "stops", "tolerant", "maybe", "sleepy", "reckless"} <= set(names)
        stamp = next(workflow for workflow in listed["workflows"] if workflow["name"] == "stamp")
        assert stamp == {
            "name": "stamp",
            "tool": "workflow_stamp",
            "steps": ["x_time_get_current_time", "x_tb_echo"],
            "description": "Say something with the time zone's current time",
        }
        shown = (await client.call_tool("core_workflow_get", {"name": "stamp"})).structured_content or {}
        assert shown["workflow"]["steps"][0]["store"] is True and shown["workflow"]["args"]["text"]["required"]
        with pytest.raises(MCPError, match="Unknown workflow: 'nope'"):
            await client.call_tool("core_workflow_get", {"name": "nope"})
        with pytest.raises(MCPError, match="Unknown workflow execution: 'nope'"):
            await client.call_tool("core_workflow_execution_get", {"id": "nope"})
        meta = (await client.call_tool("list_tools", {})).structured_content or {}
        assert "workflow_stamp" in {tool["name"] for tool in meta["tools"]}
        described = (await client.call_tool("describe_tool", {"name": "workflow_stamp"})).structured_content or {}
        assert described["tool"]["inputSchema"]["required"] == ["text"]
        through_meta = await client.call_tool("call_tool", {"name": "workflow_stamp", "arguments": {"text": "m"}})
        assert (through_meta.structured_content or {})["status"] == "ok"
        core = (await client.call_tool("list_core_tools", {})).structured_content or {}
        assert {tool["name"] for tool in core["tools"]} == {
            "core_workflow_list",
            "core_workflow_get",
            "core_workflow_execution_list",
            "core_workflow_execution_get",
        }


def write(folder: Path, name: str, content: str) -> None:
    """Replace a file in one step, so the gateway never reads half of it."""
    part = folder / f".{name}.part"
    part.write_text(content)
    os.replace(part, folder / name)


async def test_the_workflow_folder_is_reloaded_and_clients_hear_of_it(gateway: GatewayProcess, folder: Path) -> None:
    legacy_heard = asyncio.Event()

    async def on_message(message: Any) -> None:
        if isinstance(message, t.ServerNotification) and message.method == "notifications/tools/list_changed":
            legacy_heard.set()

    greet = {"name": "greet", "args": {"who": {"type": "string"}}, "steps": [echo("hi", "hi {{ args.who }}")]}
    async with (
        Client(gateway.url, mode="legacy", message_handler=on_message) as legacy,
        Client(gateway.url, mode="2026-07-28") as modern,
    ):
        await legacy.list_tools()
        async with modern.listen(tools_list_changed=True) as events:
            write(folder, "greet.yaml", yaml.safe_dump(greet))
            write(folder, "broken.yaml", "name: broken\nsteps: [{id: a, tool: x_tb_echo, args: {text: '{{ a }'}}]\n")
            await asyncio.wait_for(anext(aiter(events)), 10)
            await asyncio.wait_for(legacy_heard.wait(), 10)
        names = {tool.name for tool in (await modern.list_tools()).tools}
        assert "workflow_greet" in names and "workflow_broken" not in names and "workflow_stamp" in names
        run = run_of(await legacy.call_tool("workflow_greet", {"who": "ada"}))
        assert run["steps"][0]["result"] == {"result": "hi ada"}
        assert "broken.yaml: $.steps[0].args.text: workflow 'broken', step 'a': template syntax error" in gateway.log()

        write(folder, "greet.yaml", yaml.safe_dump({**greet, "steps": [echo("hi", "hello {{ args.who }}")]}))
        deadline = time.monotonic() + 10
        while run_of(await modern.call_tool("workflow_greet", {"who": "bo"}))["steps"][0]["result"] != {
            "result": "hello bo"
        }:
            assert time.monotonic() < deadline, "the edited workflow never replaced the old one"
            await asyncio.sleep(0.2)

        (folder / "greet.yaml").unlink()
        (folder / "broken.yaml").unlink()
        while "workflow_greet" in {tool.name for tool in (await legacy.list_tools()).tools}:
            assert time.monotonic() < deadline + 10, "the removed workflow stayed listed"
            await asyncio.sleep(0.2)
        with pytest.raises(MCPError, match="Unknown tool: 'workflow_greet'"):
            await modern.call_tool("workflow_greet", {"who": "x"})

"""A real cluster on loopback: redis-server, two replicas, two workers, haproxy round-robin.

Clients are the official SDK, through the load balancer, in both protocol eras.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import mcp_types as t
import pytest
import redis
from mcp import Client, MCPError

from loadtest.cluster import LocalCluster
from tests.gateway_process import ROOT
from tests.servers.launch import run_http_server

TOKEN = "cluster-test-token"
CONFIG = {
    "aggregator": {"healthCheckInterval": 2},
    "mcpServers": [
        {"name": "time", "type": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]},
    ],
}
TOOL = "x_time_get_current_time"


STAMP = {
    "name": "stamp",
    "args": {"text": {"type": "string", "required": True}},
    "steps": [
        {"id": "now", "tool": TOOL, "args": {"timezone": "UTC"}, "store": True},
        {"id": "say", "tool": "x_tb_echo", "args": {"text": "{{ args.text }} at {{ results.now.timezone }}"}},
    ],
}


@pytest.fixture(scope="module")
def workflow_folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cluster-workflows-") as path:
        yield Path(path)


@pytest.fixture(scope="module")
def cluster(workflow_folder: Path) -> Iterator[LocalCluster]:
    # A shared HTTP backend: every replica and the worker talk to the same process.
    # And a 2025-11-25-only one, whose questions a 2026-07-28 client answers by retrying.
    with (
        run_http_server("tests.servers.toolbox", "--name", "tb", "--transport", "streamable-http") as toolbox,
        run_http_server(
            "tests.servers.toolbox", "--name", "old", "--transport", "streamable-http", "--legacy-only"
        ) as old,
    ):
        config = {
            "aggregator": {**CONFIG["aggregator"], "workflowsDir": str(workflow_folder)},
            "mcpServers": [
                *CONFIG["mcpServers"],
                {"name": "tb", "type": "streamable-http", "url": toolbox.url},
                {"name": "old", "type": "streamable-http", "url": old.url},
            ],
            "workflows": [STAMP],
        }
        with LocalCluster(
            config, replicas=2, workers=2, lock_ttl=2.0, env={"AGGREGATOR_ADMIN_TOKEN": TOKEN}
        ) as running:
            yield running


@pytest.fixture(autouse=True)
def whole_cluster(cluster: LocalCluster) -> Iterator[None]:
    """Each test starts where the first did: every process running, no tool-block override, every replica ok.

    Tests kill replicas, workers and Redis and block tools; whether they pass or fail, the next
    test does not inherit that.
    """
    yield
    for name, process in cluster.processes.items():
        if not process.alive():
            cluster.restart(name)
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError, ValueError):
            reset = httpx.post(
                f"{cluster.replica_url(0)}/admin/tools/{TOOL}/reset",
                headers={"authorization": f"Bearer {TOKEN}"},
                timeout=5,
            )
            states = [httpx.get(f"{cluster.replica_url(i)}/readyz", timeout=5).json() for i in range(2)]
            if reset.status_code == 200 and all(s["status"] == "ok" for s in states):
                break
        assert time.monotonic() < deadline, "the cluster did not recover after the test"
        time.sleep(0.2)
    cluster.wait_ready()


def leader(cluster: LocalCluster) -> str:
    """The worker holding the leader lock now (its value is `{fence}:{hostname}-{pid}`)."""
    client = redis.Redis(port=cluster.redis_port)
    try:
        value = client.get("{mcpagg}:leader")
    finally:
        client.close()
    assert isinstance(value, bytes), "no worker holds the leader lock"
    pid = int(value.decode().rsplit("-", 1)[1])
    return next(name for name, p in cluster.processes.items() if name.startswith("worker") and p.pid == pid)


def calls_served(cluster: LocalCluster, index: int) -> int:
    text = httpx.get(f"{cluster.replica_url(index)}/metrics", timeout=5).text
    return int(
        sum(float(v) for v in re.findall(r'^mcp_tool_calls_total\{[^}]*outcome="ok"[^}]*\} ([0-9.]+)', text, re.M))
    )


async def admin(cluster: LocalCluster, index: int, action: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=5, headers={"authorization": f"Bearer {TOKEN}"}) as http:
        return await http.post(f"{cluster.replica_url(index)}/admin/tools/{TOOL}/{action}")


async def call_time(client: Client) -> str:
    result = await client.call_tool(TOOL, {"timezone": "UTC"})
    assert not result.is_error, result
    return result.content[0].text  # type: ignore[union-attr]


async def test_a_2025_session_is_served_by_both_replicas(cluster: LocalCluster) -> None:
    before = [calls_served(cluster, i) for i in range(2)]
    async with Client(cluster.url, mode="legacy") as client:
        assert client.protocol_version == "2025-11-25"
        for _ in range(8):
            assert "UTC" in await call_time(client)
    after = [calls_served(cluster, i) for i in range(2)]
    assert all(a > b for a, b in zip(after, before, strict=True)), (before, after)


async def _elicit(ctx: object, params: object) -> t.ElicitResult:
    return t.ElicitResult(action="accept", content={"name": "ada"})


async def _sample(ctx: object, params: object) -> t.CreateMessageResult:
    return t.CreateMessageResult(role="assistant", content=t.TextContent(type="text", text="sampled"), model="m")


async def test_2026_client_answers_a_session_backend_s_questions_through_round_robin(cluster: LocalCluster) -> None:
    # Each answer is a retry that the balancer may send to the other replica than the question's.
    served_before = [calls_served(cluster, i) for i in range(2)]
    async with Client(
        cluster.url, mode="2026-07-28", elicitation_callback=_elicit, sampling_callback=_sample
    ) as client:
        for _ in range(3):
            assert (await client.call_tool("x_old_ask_name", {})).content[0].text == "hello ada"  # type: ignore[union-attr]
            assert (await client.call_tool("x_old_sample", {"prompt": "q"})).content[0].text == "sampled"  # type: ignore[union-attr]
    served_after = [calls_served(cluster, i) for i in range(2)]
    assert all(a > b for a, b in zip(served_after, served_before, strict=True))


async def test_2026_requests_are_served_by_any_replica(cluster: LocalCluster) -> None:
    async with Client(cluster.url, mode="2026-07-28") as client:
        tools = await client.list_tools()
        assert TOOL in [t.name for t in tools.tools]
        for _ in range(4):
            await call_time(client)


async def test_tool_block_on_one_replica_holds_on_the_other_and_notifies_its_clients(cluster: LocalCluster) -> None:
    async with Client(f"{cluster.replica_url(1)}/mcp", mode="2026-07-28") as watcher:
        async with watcher.listen(tools_list_changed=True) as events:
            response = await admin(cluster, 0, "block")
            assert response.status_code == 200
            await asyncio.wait_for(anext(aiter(events)), 10)
        tools = await watcher.list_tools()
        assert TOOL not in [t.name for t in tools.tools]
        with pytest.raises(MCPError, match="is blocked"):
            await watcher.call_tool(TOOL, {"timezone": "UTC"})
    assert (await admin(cluster, 1, "reset")).status_code == 200
    async with Client(f"{cluster.replica_url(0)}/mcp", mode="2026-07-28") as client:
        deadline = time.monotonic() + 10
        while TOOL not in [t.name for t in (await client.list_tools()).tools]:
            assert time.monotonic() < deadline, "unblocking did not reach replica 0"
            await asyncio.sleep(0.1)


async def test_killing_a_replica_mid_run_loses_no_session(cluster: LocalCluster) -> None:
    """A 2025-11-25 session survives SIGKILL of a replica: the other one serves the same session id."""
    headers = {"content-type": "application/json", "accept": "application/json, text/event-stream"}
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    async with httpx.AsyncClient(timeout=10, headers=headers) as http:
        reply = await http.post(cluster.url, json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
        session = {"mcp-session-id": reply.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        await http.post(cluster.url, json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=session)
        failures = 0
        for index in range(1, 31):
            if index == 10:
                cluster.processes["replica-0"].stop(signal.SIGKILL)
            call = {"name": TOOL, "arguments": {"timezone": "UTC"}}
            try:
                reply = await http.post(
                    cluster.url,
                    json={"jsonrpc": "2.0", "id": index, "method": "tools/call", "params": call},
                    headers=session,
                )
                assert reply.status_code == 200 and "result" in reply.json(), reply.text
            except (httpx.TransportError, AssertionError):
                failures += 1  # only a request in flight on the dead replica may fail
        assert failures <= 1
        assert reply.status_code == 200 and "result" in reply.json()


async def test_standby_worker_takes_over_within_one_lock_ttl(cluster: LocalCluster) -> None:
    killed = leader(cluster)
    cluster.processes[killed].stop(signal.SIGKILL)
    standby = next(name for name in cluster.processes if name.startswith("worker") and name != killed)
    deadline = time.monotonic() + cluster.lock_ttl + 5
    while (holder := await asyncio.to_thread(leader_or_none, cluster)) != standby:
        assert time.monotonic() < deadline, (holder, cluster.processes[standby].tail())
        await asyncio.sleep(0.1)
    async with Client(cluster.url, mode="2026-07-28") as client:
        await call_time(client)


def leader_or_none(cluster: LocalCluster) -> str | None:
    try:
        return leader(cluster)
    except (AssertionError, StopIteration):
        return None


async def test_redis_restart_recovers_without_restarting_replicas(cluster: LocalCluster) -> None:
    cluster.restart_redis(down_for=1.0)
    async with Client(f"{cluster.replica_url(0)}/mcp", mode="2026-07-28") as client:
        await call_time(client)  # served from the local registry, store or no store
    deadline = time.monotonic() + 20
    while True:
        async with httpx.AsyncClient(timeout=5) as http:
            states = [(await http.get(f"{cluster.replica_url(i)}/readyz")).json() for i in range(2)]
        if all(s["status"] == "ok" and s["backends"]["time"]["state"] == "up" for s in states):
            break
        assert time.monotonic() < deadline, states
        await asyncio.sleep(0.2)
    async with Client(cluster.url, mode="legacy") as client:  # a new session lives in the new Redis
        await call_time(client)
    for index in range(2):
        log = cluster.processes[f"replica-{index}"].log.read_text()
        assert "registry sync" in log


def test_locust_headless_run_against_the_cluster(cluster: LocalCluster, tmp_path) -> None:
    result = subprocess.run(
        [
            str(ROOT / ".venv" / "bin" / "locust") if (ROOT / ".venv" / "bin" / "locust").exists() else "locust",
            "-f",
            str(ROOT / "loadtest" / "locustfile.py"),
            "--headless",
            "-u",
            "4",
            "-r",
            "4",
            "-t",
            "4s",
            "--host",
            cluster.url.removesuffix("/mcp"),
            "--only-summary",
            "--exit-code-on-error",
            "1",
            "--csv",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        cwd=ROOT,
    )
    logs = "\n".join(f"--- {name}\n{p.tail(20)}" for name, p in cluster.processes.items() if name.startswith("replica"))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:] + logs
    stats = (tmp_path / "run_stats.csv").read_text()
    assert "2026 tools/call" in stats and "2025 tools/call" in stats


JSON_HEADERS = {"content-type": "application/json", "accept": "application/json, text/event-stream"}


async def sse_messages(response: httpx.Response):  # type: ignore[no-untyped-def]
    """JSON-RPC messages from an SSE response (and `endpoint` event data as plain text)."""
    import json

    event = "message"
    async for line in response.aiter_lines():
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
            yield (data if event == "endpoint" else json.loads(data))
            event = "message"


async def test_backend_list_change_reaches_clients_of_both_eras_on_the_other_replica(cluster: LocalCluster) -> None:
    legacy_seen = asyncio.Event()
    fresh = f"fresh_{uuid.uuid4().hex[:8]}"  # a tool no earlier test (or run) added

    async def on_message(message: object) -> None:
        if getattr(message, "method", None) == "notifications/tools/list_changed":
            legacy_seen.set()

    async with (
        Client(f"{cluster.replica_url(1)}/mcp", mode="2026-07-28") as watcher,
        Client(f"{cluster.replica_url(1)}/mcp", mode="legacy", message_handler=on_message) as legacy_watcher,
    ):
        await legacy_watcher.list_tools()
        async with watcher.listen(tools_list_changed=True) as events:
            async with Client(f"{cluster.replica_url(0)}/mcp", mode="legacy") as actor:
                await actor.call_tool("x_tb_add_tool", {"tool": fresh})
            await asyncio.wait_for(anext(aiter(events)), 15)
            await asyncio.wait_for(legacy_seen.wait(), 15)
        deadline = time.monotonic() + 10
        while f"x_tb_{fresh}" not in [t.name for t in (await watcher.list_tools()).tools]:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)


async def test_legacy_sse_post_on_another_replica_reaches_the_stream(cluster: LocalCluster) -> None:
    async with (
        httpx.AsyncClient(timeout=20) as http,
        http.stream("GET", f"{cluster.replica_url(0)}/sse", headers={"accept": "text/event-stream"}) as stream,
    ):
        messages = sse_messages(stream)
        endpoint = await anext(messages)
        post_url = f"{cluster.replica_url(1)}{endpoint}"  # the other replica
        init = {"protocolVersion": "2024-11-05", "capabilities": {}, "clientInfo": {"name": "old", "version": "1"}}
        rpc = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init}
        assert (await http.post(post_url, json=rpc)).status_code == 202
        assert (await anext(messages))["result"]["protocolVersion"] == "2024-11-05"
        await http.post(post_url, json={"jsonrpc": "2.0", "method": "notifications/initialized"})
        call = {"name": "x_tb_echo", "arguments": {"text": "via replica 1"}}
        await http.post(post_url, json={"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": call})
        reply = await anext(messages)
        assert reply["id"] == 2 and reply["result"]["content"][0]["text"] == "via replica 1"


async def test_progress_from_a_call_on_one_replica_reaches_the_session_stream_on_the_other(
    cluster: LocalCluster,
) -> None:
    init = {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}
    async with httpx.AsyncClient(timeout=20) as http:
        reply = await http.post(
            f"{cluster.replica_url(0)}/mcp",
            json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init},
            headers=JSON_HEADERS,
        )
        session = {"mcp-session-id": reply.headers["mcp-session-id"], "mcp-protocol-version": "2025-11-25"}
        get_headers = {**session, "accept": "text/event-stream"}
        async with http.stream("GET", f"{cluster.replica_url(1)}/mcp", headers=get_headers) as stream:
            messages = sse_messages(stream)
            await asyncio.sleep(0.3)  # the stream is registered on replica 1
            call = {"name": "x_tb_progress", "arguments": {"steps": 3}, "_meta": {"progressToken": "p-1"}}
            result = await http.post(
                f"{cluster.replica_url(0)}/mcp",
                json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call},
                headers={**session, "content-type": "application/json", "accept": "application/json"},
            )
            assert result.json()["result"]["content"][0]["text"] == "done 3"
            seen = [await asyncio.wait_for(anext(messages), 10) for _ in range(3)]
    assert [m["params"]["progress"] for m in seen] == [1, 2, 3]
    assert {m["params"]["progressToken"] for m in seen} == {"p-1"}


async def test_replicas_keep_serving_while_redis_is_down_and_say_why(cluster: LocalCluster) -> None:
    cluster.processes["redis"].stop(signal.SIGKILL)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            ready = await http.get(f"{cluster.replica_url(0)}/readyz")
            body = ready.json()
            assert ready.status_code == 200 and body["status"] == "degraded", body
            assert any("store" in reason for reason in body["reasons"])
        async with Client(f"{cluster.replica_url(1)}/mcp", mode="2026-07-28") as client:
            assert TOOL in [t.name for t in (await client.list_tools()).tools]
            assert "UTC" in await call_time(client)
    finally:
        cluster._start_redis()
    deadline = time.monotonic() + 20
    async with httpx.AsyncClient(timeout=5) as http:
        while (await http.get(f"{cluster.replica_url(0)}/readyz")).json()["status"] != "ok":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.2)
    assert "serving the last known registry" in cluster.processes["replica-0"].log.read_text()


async def test_a_workflow_run_on_one_replica_reads_back_on_the_other(cluster: LocalCluster) -> None:
    async with Client(f"{cluster.replica_url(0)}/mcp", mode="2026-07-28") as client:
        result = await client.call_tool("workflow_stamp", {"text": "hello"})
    run = result.structured_content or {}
    assert not result.is_error and run["steps"][1]["result"] == {"result": "hello at UTC"}
    async with Client(f"{cluster.replica_url(1)}/mcp", mode="legacy") as client:
        read_back = await client.call_tool("core_workflow_execution_get", {"id": run["id"]})
        assert read_back.structured_content == run
        listed = await client.call_tool("core_workflow_execution_list", {})
        assert run["id"] in [item["id"] for item in (listed.structured_content or {})["executions"]]


async def test_a_workflow_file_the_worker_reads_reaches_every_replica(
    cluster: LocalCluster, workflow_folder: Path
) -> None:
    (workflow_folder / "shout.yaml").write_text(
        "name: shout\nsteps: [{id: say, tool: x_tb_echo, args: {text: LOUD}}]\n"
    )
    try:
        for index in range(2):
            async with Client(f"{cluster.replica_url(index)}/mcp", mode="2026-07-28") as client:
                deadline = time.monotonic() + 15
                while "workflow_shout" not in [tool.name for tool in (await client.list_tools()).tools]:
                    assert time.monotonic() < deadline, f"replica {index} never served the new workflow" + "".join(
                        f"\n--- {name}\n{p.tail(25)}" for name, p in cluster.processes.items() if name != "haproxy"
                    )
                    await asyncio.sleep(0.2)
                shouted = await client.call_tool("workflow_shout", {})
                assert (shouted.structured_content or {})["status"] == "ok"
    finally:
        (workflow_folder / "shout.yaml").unlink()

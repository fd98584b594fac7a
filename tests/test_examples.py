"""The README's examples run as written: the auth demo (examples/auth_demo.py), the meta-tools and workflows configs."""

from __future__ import annotations

import re
import subprocess
import sys

import yaml
from mcp import Client

from tests.gateway_process import ROOT, run_gateway


def test_the_auth_demo_signs_alice_in_to_the_gateway_and_both_backends() -> None:
    result = subprocess.run(
        [sys.executable, "examples/auth_demo.py"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    assert "x_kube_whoami (her own token, forwarded): sub=alice" in output
    assert "HTTP 200, 'Signed in to saas'" in output
    assert "x_saas_whoami (the token she got by signing in): sub=alice" in output
    assert "auth://status: kube=connected, saas=connected" in output
    assert "eyJ" not in output


async def test_the_meta_tools_example_lists_the_time_tools_and_calls_one() -> None:
    section = (ROOT / "README.md").read_text().split("## Meta-tools", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    with run_gateway(yaml.safe_load(example.group(1))) as gateway:
        async with Client(gateway.url, mode="2026-07-28") as client:
            assert len((await client.list_tools()).tools) == 11
            listed = (await client.call_tool("list_tools", {})).structured_content or {}
            assert "x_time_get_current_time" in {tool["name"] for tool in listed["tools"]}
            answer = await client.call_tool(
                "call_tool", {"name": "x_time_get_current_time", "arguments": {"timezone": "UTC"}}
            )
            assert (answer.structured_content or {})["timezone"] == "UTC"


async def test_the_workflows_example_converts_the_time_it_just_read() -> None:
    section = (ROOT / "README.md").read_text().split("## Workflows", 1)[1]
    example = re.search(r"```yaml\n(.*?)```", section, re.DOTALL)
    assert example is not None
    with run_gateway(yaml.safe_load(example.group(1))) as gateway:
        async with Client(gateway.url, mode="legacy") as client:
            result = await client.call_tool("workflow_meeting-time", {"other": "Asia/Tokyo"})
            run = result.structured_content or {}
            assert not result.is_error, run
            assert [(step["id"], step["status"]) for step in run["steps"]] == [("now", "ok"), ("there", "ok")]
            now, there = (step["result"] for step in run["steps"])
            assert there["source"]["timezone"] == "Europe/London" and there["target"]["timezone"] == "Asia/Tokyo"
            assert there["source"]["datetime"][11:16] == now["datetime"][11:16]  # the time step one read
            same = await client.call_tool("workflow_meeting-time", {"other": "Europe/London"})
            assert (same.structured_content or {})["steps"][1]["status"] == "skipped"  # the condition

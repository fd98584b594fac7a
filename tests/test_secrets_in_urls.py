"""Credentials in a backend URL never reach clients, operators' views or the log.

A URL's userinfo is sent as Basic auth; its query values are shown as ***. Checked where a URL
used to appear: tool-call errors, /readyz, /admin/servers and the gateway's log.
"""

from __future__ import annotations

import httpx
from mcp import Client

from tests.gateway_process import run_gateway
from tests.servers.launch import start_http_server

PASSWORD, KEY = "hunter2-pass", "k3y-s3cret-value"
TOKEN = "secrets-test-admin"


async def test_url_credentials_are_redacted_everywhere_a_url_is_shown() -> None:
    toolbox = await start_http_server("tests.servers.toolbox", "--name", "vault", "--transport", "streamable-http")
    host = toolbox.url.removeprefix("http://")
    url = f"http://ops:${{VAULT_PASS}}@{host}?api_key=${{VAULT_KEY}}&region=eu"
    config = {"mcpServers": [{"name": "vault", "type": "streamable-http", "url": url, "timeout": 5}]}
    env = {"VAULT_PASS": PASSWORD, "VAULT_KEY": KEY, "AGGREGATOR_ADMIN_TOKEN": TOKEN}
    try:
        with run_gateway(config, env=env) as gateway:
            async with Client(gateway.url, mode="2026-07-28") as client:
                assert (await client.call_tool("x_vault_echo", {"text": "in"})).content[0].text == "in"  # type: ignore[union-attr]
                await toolbox.stop()
                failed = await client.call_tool("x_vault_echo", {"text": "out"})
            message = failed.content[0].text  # type: ignore[union-attr]
            assert failed.is_error and "vault" in message and "api_key=***" in message
            gateway.wait_for(lambda r: r["backends"]["vault"]["state"] == "down", what="vault down")
            async with httpx.AsyncClient(timeout=5, headers={"authorization": f"Bearer {TOKEN}"}) as http:
                shown = {
                    "tool error": message,
                    "/readyz": (await http.get(f"{gateway.base}/readyz")).text,
                    "/admin/servers": (await http.get(f"{gateway.base}/admin/servers")).text,
                    "log": gateway.log(),
                }
    finally:
        await toolbox.stop()
    assert "api_key=***" in shown["/readyz"]
    for where, text in shown.items():
        assert PASSWORD not in text and KEY not in text, f"a secret appears in {where}"
        assert "ops:" not in text, f"the URL's user appears in {where}"

"""The gateway protected by OAuth, and users reaching protected backends, on one machine.

    .venv/bin/python examples/auth_demo.py          # a guided run as alice, then everything stops
    .venv/bin/python examples/auth_demo.py --keep   # the same, then stays up for your own client

Starts two local authorization servers (the test suite's auto-approving one stands in for your
identity provider: `corp` protects the gateway, `saas` a backend with accounts of its own), two
protected backends (`kube` accepts corp's tokens for the gateway's audience: single sign-on by
token forwarding; `saas` accepts saas's tokens: users sign in with core_auth_login), and the
gateway. Then, as alice, an official SDK client finds its way in unaided (401, RFC 9728
metadata, dynamic registration, PKCE), calls kube as alice, signs in to saas through the URL
core_auth_login answers (a browser would open it; here httpx follows it), and reads auth://status.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import httpx2
import yaml
from mcp import Client
from mcp.client.auth import OAuthClientProvider
from mcp.client.streamable_http import streamable_http_client

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.ports import free_port  # noqa: E402
from tests.servers.launch import run_http_server  # noqa: E402
from tests.servers.oauth_browser import Browser, MemoryTokenStorage, client_metadata  # noqa: E402


def step(text: str) -> None:
    print(f"==> {text}", flush=True)


@contextlib.contextmanager
def gateway(config: dict[str, Any], port: int) -> Iterator[str]:
    """`aggregator serve` with `config` on `port`, until it reports ready; its URL."""
    with tempfile.TemporaryDirectory(prefix="auth-demo-") as workdir:
        path = Path(workdir) / "config.yaml"
        path.write_text(yaml.safe_dump(config))
        env = {**os.environ, "AGGREGATOR_TOKEN_KEY": "demo-only-key-replace-me-with-32-random-bytes"}
        log = (Path(workdir) / "gateway.log").open("wb")
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "aggregator"), "serve", "-c", str(path), "--log-level", "warning"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                with contextlib.suppress(httpx.HTTPError):
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                if process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the gateway did not start:\n{(Path(workdir) / 'gateway.log').read_text()}")
                time.sleep(0.2)
            yield base
        finally:
            process.terminate()
            process.wait(15)
            log.close()


async def tour(base: str) -> None:
    browser = Browser(login_hint="alice")
    provider = OAuthClientProvider(
        f"{base}/mcp",
        client_metadata(client_name="auth demo"),
        MemoryTokenStorage(),
        redirect_handler=browser.open,
        callback_handler=browser.callback,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=30) as http,
        Client(streamable_http_client(f"{base}/mcp", http_client=http), mode="2026-07-28") as client,
    ):
        step("alice's client signed in to the gateway unaided (RFC 9728 metadata, registration, PKCE)")
        print("    tools:", sorted(tool.name for tool in (await client.list_tools()).tools))
        me = (await client.call_tool("x_kube_whoami", {})).structured_content or {}
        step(f"x_kube_whoami (her own token, forwarded): sub={me.get('sub')} iss={me.get('iss')}")
        login = await client.call_tool("core_auth_login", {"server": "saas"})
        url = (login.structured_content or {})["authorizationUrl"]
        step(f"core_auth_login saas answered a URL to open in a browser:\n    {url[:110]}...")
        async with httpx.AsyncClient(timeout=10) as browser_http:
            approved = await browser_http.get(f"{url}&login_hint=alice")
            page = await browser_http.get(approved.headers["location"])
        title = page.text.split("<h1>")[1].split("</h1>")[0]
        step(f"the browser lands on the gateway's callback: HTTP {page.status_code}, {title!r}")
        for _ in range(50):
            names = sorted(tool.name for tool in (await client.list_tools()).tools)
            if "x_saas_whoami" in names:
                break
            await asyncio.sleep(0.1)
        print("    tools now:", names)
        me = (await client.call_tool("x_saas_whoami", {})).structured_content or {}
        step(f"x_saas_whoami (the token she got by signing in): sub={me.get('sub')} iss={me.get('iss')}")
        status = await client.read_resource("auth://status")
        servers = json.loads(status.contents[0].text)["servers"]  # type: ignore[union-attr]
        step("auth://status: " + ", ".join(f"{entry['name']}={entry['status']}" for entry in servers))


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="stay up after the tour, for your own MCP client")
    parser.add_argument("--port", type=int, default=0, help="the gateway's port (default: a free one)")
    args = parser.parse_args()
    port = args.port or free_port()
    audience = f"http://127.0.0.1:{port}/mcp"
    step("starting two authorization servers and two protected backends")
    with (
        run_http_server("tests.servers.auth_server", "--issuer-name", "corp") as corp,
        run_http_server("tests.servers.auth_server", "--issuer-name", "saas") as saas,
        run_http_server(
            "tests.servers.protected", "--issuer", corp.url, "--audience", audience, "--name", "kube"
        ) as kube,
        run_http_server("tests.servers.protected", "--issuer", saas.url, "--name", "saas") as saas_backend,
    ):
        config = {
            "aggregator": {"port": port, "oauth": {"issuer": corp.url}},
            "mcpServers": [
                {"name": "kube", "type": "streamable-http", "url": kube.url, "auth": {"forwardToken": True}},
                {"name": "saas", "type": "streamable-http", "url": saas_backend.url, "auth": {"type": "oauth"}},
            ],
        }
        print(yaml.safe_dump(config, sort_keys=False), end="")
        step(f"starting the gateway on {audience}")
        with gateway(config, port) as base:
            asyncio.run(tour(base))
            if args.keep:
                step(f"up: connect an MCP client to {audience} (users alice, bob sign in at once); Ctrl-C stops")
                with contextlib.suppress(KeyboardInterrupt):
                    while True:
                        time.sleep(3600)
    step("stopped")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

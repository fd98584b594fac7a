"""The admin console end to end: a real two-replica cluster, driven in Debian's headless Chromium.

Playwright for Python drives /usr/bin/chromium (scripts/test.sh installs it; Playwright's own
browser downloads are never used). The browser talks to replica 0; checks that a change holds
cluster-wide use SDK clients and the CLI on replica 1. Screenshots of every page are saved in a
folder this module prints (set CONSOLE_SCREENSHOTS=DIR to keep them somewhere, e.g. docs/images).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from mcp import Client

from loadtest.cluster import LocalCluster
from tests.gateway_process import BIN, ROOT
from tests.ports import free_port
from tests.servers.launch import RunningServer, start_http_server

pytest.importorskip("playwright")
from playwright.async_api import Browser, Page, async_playwright, expect

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
TOKEN = "console-browser-token"
TOOL = "x_time_get_current_time"
TOOLBOX = ("tests.servers.toolbox", "--name", "tb", "--transport", "streamable-http")

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed")


class Backend:
    """The toolbox over HTTP on a fixed port, so that it can be killed and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.server: RunningServer | None = None

    async def start(self) -> None:
        self.server = await start_http_server(*TOOLBOX, "--port", str(self.port))

    def kill(self) -> None:
        if self.server is not None:
            self.server.stop_now()
            self.server = None


@pytest.fixture(scope="module")
async def backend() -> AsyncIterator[Backend]:
    toolbox = Backend()
    await toolbox.start()
    try:
        yield toolbox
    finally:
        toolbox.kill()


@pytest.fixture(scope="module")
def cluster(backend: Backend) -> Iterator[LocalCluster]:
    config = {
        "aggregator": {"healthCheckInterval": 2},
        "mcpServers": [
            {"name": "time", "type": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]},
            {"name": "tb", "type": "streamable-http", "url": f"http://127.0.0.1:{backend.port}/mcp"},
        ],
    }
    with LocalCluster(config, replicas=2, workers=1, lock_ttl=2.0, env={"AGGREGATOR_ADMIN_TOKEN": TOKEN}) as running:
        yield running


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = Path(os.environ.get("CONSOLE_SCREENSHOTS") or tmp_path_factory.mktemp("console-screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        args = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root without it
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=args)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture(scope="module")
async def page(browser: Browser, cluster: LocalCluster) -> AsyncIterator[Page]:
    context = await browser.new_context(base_url=cluster.replica_url(0), viewport={"width": 1180, "height": 760})
    opened = await context.new_page()
    opened.set_default_timeout(10_000)
    try:
        yield opened
    finally:
        await context.close()


async def test_a_wrong_token_is_refused_then_the_overview_shows_the_cluster(page: Page, shots: Path) -> None:
    await page.goto("/admin/")
    assert page.url.endswith("/admin/ui/sign-in")
    await page.get_by_label("Admin token").fill("not-the-token")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("not the admin token")
    await page.screenshot(path=shots / "console-sign-in.png")
    await page.get_by_label("Admin token").fill(TOKEN)
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    replicas = page.locator("section", has=page.get_by_role("heading", name="Replicas alive")).locator("tbody tr")
    await expect(replicas).to_have_count(2)
    await expect(page.locator(".facts").first).to_contain_text("leads, fencing token")
    await page.screenshot(path=shots / "console-overview.png", full_page=True)


async def test_every_backend_of_the_cluster_is_listed_up(page: Page, shots: Path) -> None:
    await page.goto("/admin/ui/backends")
    for name in ("time", "tb"):
        await expect(page.locator(f'tr[data-backend="{name}"] .state')).to_have_text("up")
    await page.screenshot(path=shots / "console-backends.png", full_page=True)


async def tool_names(url: str) -> list[str]:
    async with Client(url, mode="2026-07-28") as client:
        return [tool.name for tool in (await client.list_tools()).tools]


async def until(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, f"timed out: {what}"
        await asyncio.sleep(0.1)


async def test_a_block_in_the_browser_holds_on_the_other_replica_and_the_cli_s_shows_live(
    page: Page, cluster: LocalCluster, shots: Path
) -> None:
    other = f"{cluster.replica_url(1)}/mcp"
    async with Client(other, mode="2026-07-28") as client:  # a few calls for the Calls page
        for _ in range(5):
            await client.call_tool(TOOL, {"timezone": "UTC"})
            await client.call_tool("x_tb_echo", {"text": "hi"})
    await page.goto("/admin/ui/tools")
    await page.get_by_label("Name contains").fill("current_time")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.locator("table.tools tbody tr")).to_have_count(1)
    await page.goto("/admin/ui/tools")
    row = page.locator(f'tr[data-tool="{TOOL}"]')
    await row.get_by_role("button", name="Block", exact=True).click()
    await expect(row.get_by_role("button", name="Unblock", exact=True)).to_be_visible()
    started = time.monotonic()
    await until(lambda: _absent(other, TOOL), 5, "the block reaching replica 1")
    assert time.monotonic() - started < 2.5  # within a second, plus an SDK client's connect per check
    await page.screenshot(path=shots / "console-tools.png", full_page=True)
    await row.get_by_role("button", name="Unblock", exact=True).click()
    await expect(row.get_by_role("button", name="Block", exact=True)).to_be_visible()
    await until(lambda: _present(other, TOOL), 5, "the unblock reaching replica 1")
    await row.get_by_role("button", name="Reset").click()
    await expect(row.get_by_role("button", name="Reset")).to_have_count(0)

    echo = page.locator('tr[data-tool="x_tb_echo"]')
    await page.goto("/admin/ui/tools?q=echo")
    marker = await _mark(page)
    cli = [str(BIN / "aggregator"), "tools", "block", "x_tb_echo", "--url", cluster.replica_url(1)]
    env = {**os.environ, "AGGREGATOR_ADMIN_TOKEN": TOKEN}
    done = await asyncio.to_thread(subprocess.run, cli, env=env, cwd=ROOT, capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    await expect(echo.locator(".state")).to_have_text("blocked")  # pushed, no reload
    assert await _mark(page, check=marker)
    await echo.get_by_role("button", name="Reset").click()
    await expect(echo.locator(".state")).to_have_text("allowed")


async def _absent(url: str, tool: str) -> bool:
    return tool not in await tool_names(url)


async def _present(url: str, tool: str) -> bool:
    return tool in await tool_names(url)


async def _mark(page: Page, check: str | None = None) -> str | bool:
    """A value kept in the page's window: it survives only while the page is not reloaded."""
    if check is not None:
        return bool(await page.evaluate("(m) => window.__consoleMark === m", check))
    mark = f"m{time.monotonic_ns()}"
    await page.evaluate("(m) => { window.__consoleMark = m }", mark)
    return mark


async def test_a_backend_going_down_shows_live_and_reconnect_now_brings_it_back(
    page: Page, backend: Backend, shots: Path
) -> None:
    await page.goto("/admin/ui/backends")
    state = page.locator('tr[data-backend="tb"] .state')
    await expect(state).to_have_text("up")
    marker = await _mark(page)
    backend.kill()
    await expect(state).to_have_text("down", timeout=15_000)
    assert await _mark(page, check=marker)
    await page.screenshot(path=shots / "console-backend-down.png", full_page=True)
    await asyncio.sleep(3)  # the worker now waits seconds between attempts
    await backend.start()
    started = time.monotonic()
    await page.get_by_role("button", name="Reconnect tb now").click()
    await expect(state).to_have_text("up", timeout=10_000)
    assert time.monotonic() - started < 4.0


async def test_calls_are_charted_and_auth_counters_shown(page: Page, shots: Path) -> None:
    await page.goto("/admin/ui/calls")
    await expect(page.locator("table.calls").first.locator(f"code >> text={TOOL}")).to_be_visible(timeout=15_000)
    await expect(page.locator("svg.spark").first).to_be_visible()
    await page.screenshot(path=shots / "console-calls.png", full_page=True)
    await page.goto("/admin/ui/auth")
    await expect(page.get_by_role("heading", name="Protected backends")).to_be_visible()
    await page.screenshot(path=shots / "console-auth.png", full_page=True)


async def test_a_restarted_replica_appears_without_a_refresh(page: Page, cluster: LocalCluster) -> None:
    await page.goto("/admin/")
    replicas = page.locator("section", has=page.get_by_role("heading", name="Replicas alive")).locator("tbody tr")
    await expect(replicas).to_have_count(2)
    before = set(await replicas.locator("code").all_inner_texts())
    marker = await _mark(page)
    await asyncio.to_thread(cluster.processes["replica-1"].stop)
    await expect(replicas).to_have_count(1)
    await asyncio.to_thread(cluster.restart, "replica-1")
    await expect(replicas).to_have_count(2, timeout=20_000)
    after = set(await replicas.locator("code").all_inner_texts())
    assert len(after - before) == 1  # a new process, a new id
    assert await _mark(page, check=marker)


async def test_sign_out(page: Page) -> None:
    await page.goto("/admin/")
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_label("Admin token")).to_be_visible()
    await page.goto("/admin/ui/tools")
    assert page.url.endswith("/admin/ui/sign-in")

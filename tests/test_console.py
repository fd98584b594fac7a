"""The admin console over plain HTTP: off without a token, sign-in and its limits, the cookie,
CSRF and Origin on every change, sign-out; every page renders without JavaScript.

The browser end to end (a real cluster, headless Chromium) is tests/test_console_browser.py.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import httpx
import pytest

from tests.gateway_process import GatewayProcess, run_gateway

TOKEN = "console-test-token"
TIME = {"name": "time", "type": "stdio", "command": sys.executable, "args": ["-m", "mcp_server_time"]}
TOOL = "x_time_get_current_time"


@pytest.fixture(scope="module")
def gateway() -> Iterator[GatewayProcess]:
    with run_gateway({"mcpServers": [TIME]}, env={"AGGREGATOR_ADMIN_TOKEN": TOKEN}) as running:
        yield running


def origin(gateway: GatewayProcess) -> dict[str, str]:
    return {"origin": gateway.base}


def sign_in(gateway: GatewayProcess, http: httpx.Client) -> str:
    """Sign `http` in; returns the session's CSRF token (read from a page, as a browser would)."""
    reply = http.post("/admin/ui/sign-in", data={"token": TOKEN}, headers=origin(gateway))
    assert reply.status_code == 303 and reply.headers["location"] == "/admin/"
    page = http.get("/admin/ui/tools")
    assert page.status_code == 200
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match
    return match.group(1)


def test_the_console_is_off_without_an_admin_token() -> None:
    with run_gateway({"mcpServers": []}) as bare:
        assert httpx.get(f"{bare.base}/admin/", timeout=5).status_code == 404
        assert httpx.get(f"{bare.base}/admin/ui/sign-in", timeout=5).status_code == 404


def test_sign_in_sets_a_strict_http_only_cookie_secure_behind_https(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.base, timeout=5) as http:
        assert http.get("/admin/").headers["location"] == "/admin/ui/sign-in"  # not signed in yet
        reply = http.post("/admin/ui/sign-in", data={"token": TOKEN}, headers=origin(gateway))
        cookie = reply.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/admin/" in cookie
        assert "secure" not in cookie
        for page in ("/admin/", "/admin/ui/backends", "/admin/ui/tools", "/admin/ui/calls", "/admin/ui/auth"):
            shown = http.get(page)
            assert shown.status_code == 200, (page, shown.text)
            assert "content-security-policy" in shown.headers and "<script" in shown.text
        assert TOOL in http.get("/admin/ui/tools", params={"q": "current"}).text
        assert TOOL not in http.get("/admin/ui/tools", params={"q": "nothing-like-it"}).text
    with httpx.Client(base_url=gateway.base, timeout=5) as http:
        https = {"origin": f"https://127.0.0.1:{gateway.port}", "x-forwarded-proto": "https"}
        reply = http.post("/admin/ui/sign-in", data={"token": TOKEN}, headers=https)
        assert reply.status_code == 303 and "secure" in reply.headers["set-cookie"].lower()


def test_a_wrong_token_is_refused_and_failed_sign_ins_are_rate_limited() -> None:
    # A gateway of its own: the limit is per client address, and every test here is 127.0.0.1.
    with (
        run_gateway({"mcpServers": []}, env={"AGGREGATOR_ADMIN_TOKEN": TOKEN}) as own,
        httpx.Client(base_url=own.base, timeout=5, headers=origin(own)) as http,
    ):
        for _ in range(5):
            reply = http.post("/admin/ui/sign-in", data={"token": "guess"})
            assert reply.status_code == 401 and "not the admin token" in reply.text
            assert "set-cookie" not in reply.headers
        limited = http.post("/admin/ui/sign-in", data={"token": TOKEN})  # even the right one, for now
        assert limited.status_code == 429 and "set-cookie" not in limited.headers


def test_a_change_needs_the_csrf_token_and_this_console_s_origin(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.base, timeout=5) as http:
        csrf = sign_in(gateway, http)
        form = {"tool": TOOL, "next": "/admin/ui/tools"}
        assert http.post("/admin/ui/tools/block", data=form, headers=origin(gateway)).status_code == 403
        wrong = {**form, "csrf": csrf[:-2] + "xx"}
        assert http.post("/admin/ui/tools/block", data=wrong, headers=origin(gateway)).status_code == 403
        signed = {**form, "csrf": csrf}
        for foreign in ("http://evil.example", f"http://localhost:{gateway.port + 1}"):
            assert http.post("/admin/ui/tools/block", data=signed, headers={"origin": foreign}).status_code == 403
        assert http.post("/admin/ui/tools/block", data=signed).status_code == 403  # no Origin at all
        assert "blocked" not in _tool_row(http)
        done = http.post("/admin/ui/tools/block", data=signed, headers=origin(gateway))
        assert done.status_code == 303 and done.headers["location"] == "/admin/ui/tools"
        assert "blocked at run time" in _tool_row(http)
        admin = httpx.get(f"{gateway.base}/admin/tools", headers={"authorization": f"Bearer {TOKEN}"}, timeout=5)
        assert next(t for t in admin.json()["tools"] if t["name"] == TOOL)["blocked"]  # what the CLI sees
        assert http.post("/admin/ui/tools/reset", data=signed, headers=origin(gateway)).status_code == 303
        assert "blocked" not in _tool_row(http)


def test_sign_out_ends_the_session_even_for_a_copied_cookie(gateway: GatewayProcess) -> None:
    with httpx.Client(base_url=gateway.base, timeout=5) as http:
        csrf = sign_in(gateway, http)
        copied = dict(http.cookies)
        reply = http.post("/admin/ui/sign-out", data={"csrf": csrf}, headers=origin(gateway))
        assert reply.status_code == 303 and reply.headers["location"] == "/admin/ui/sign-in"
    with httpx.Client(base_url=gateway.base, timeout=5, cookies=copied) as replay:
        assert replay.get("/admin/").status_code == 303
        assert replay.get("/admin/ui/events", params={"page": "overview"}).status_code == 401


def _tool_row(http: httpx.Client) -> str:
    page = http.get("/admin/ui/tools").text
    return page[page.index(f'data-tool="{TOOL}"') :].split("</tr>")[0]

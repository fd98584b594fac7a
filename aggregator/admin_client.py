"""`aggregator tools ...`: a small client of a running gateway's /admin API."""

from __future__ import annotations

import os
import sys

import httpx

__all__ = ["run_tools_command"]


def run_tools_command(action: str, name: str | None, url: str) -> int:
    token = os.environ.get("AGGREGATOR_ADMIN_TOKEN")
    if not token:
        print("aggregator: set AGGREGATOR_ADMIN_TOKEN to the token the gateway was started with", file=sys.stderr)
        return 2
    if action != "list" and not name:
        print(f"aggregator: `tools {action}` needs a tool name (see `aggregator tools list`)", file=sys.stderr)
        return 2
    headers = {"authorization": f"Bearer {token}"}
    base = url.rstrip("/")
    try:
        with httpx.Client(timeout=10, headers=headers) as client:
            if action == "list":
                response = client.get(f"{base}/admin/tools")
            else:
                response = client.post(f"{base}/admin/tools/{name}/{action}")
    except httpx.HTTPError as exc:
        print(f"aggregator: cannot reach the gateway at {base}: {exc} (is it running? pass --url)", file=sys.stderr)
        return 1
    if response.status_code == 404 and "/admin/" in str(response.url):
        print("aggregator: the admin API is off; start the gateway with AGGREGATOR_ADMIN_TOKEN set", file=sys.stderr)
        return 1
    if response.status_code != 200:
        try:
            reason = response.json().get("error", response.text)
        except ValueError:
            reason = response.text
        print(f"aggregator: the gateway answered {response.status_code}: {reason}", file=sys.stderr)
        return 1
    body = response.json()
    if action == "list":
        for tool in body["tools"]:
            state = "BLOCKED" if tool["blocked"] else "allowed"
            reason = f"  ({tool['reason']})" if tool.get("reason") else ""
            print(f"{state:<8} {tool['name']}{reason}")
    else:
        note = "" if body.get("known") else " (no such tool is listed right now; the override still applies)"
        print(f"{name}: {action} applied{note}")
    return 0

"""The test suite's backend: an official-SDK MCPServer with every behaviour the gateway must carry.

    python -m tests.servers.toolbox --name NAME --transport stdio|sse|streamable-http [--port N] [--legacy-only]

Tools: echo, whoami, kubectl_delete (a destructive name), slow, crash (kills the process
mid-call), add_tool / remove_tool (list changes), progress, ask_name (elicitation), sample
(sampling), list_roots (roots). Each question to the client uses the form of the caller's era:
an `InputRequiredResult` for 2026-07-28, a server-to-client request for 2025-11-25.
Resources `toolbox://NAME/info` and the template `toolbox://NAME/items/{item}`; a prompt
`greet` with argument completion.

`--legacy-only` makes it behave like a server from before 2026-07-28: over HTTP a request that
is not part of an initialized session gets `400` with a plain-text body; over stdio
`server/discover` is an unknown method. HTTP transports print `READY <url>` once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.prompts.base import UserMessage
from mcp_types import (
    CallToolResult,
    Completion,
    CreateMessageRequest,
    CreateMessageRequestParams,
    ElicitRequest,
    ElicitRequestFormParams,
    InputRequiredResult,
    ListRootsRequest,
    PromptReference,
    SamplingMessage,
    TextContent,
)

from tests.servers.http import serve

MODERN = "2026-07-28"


def build(name: str) -> MCPServer:
    server = MCPServer(f"toolbox-{name}", version="1.0.0", instructions=f"Test toolbox {name}.")
    sessions: set[Any] = set()

    async def tell_lists_changed(ctx: Context) -> None:
        await ctx.notify_tools_changed()  # 2026-07-28 subscriptions/listen streams
        for session in list(sessions):  # 2025-11-25 sessions, the caller's and everyone else's
            try:
                await session.send_tool_list_changed()
            except Exception:
                sessions.discard(session)

    def remember(ctx: Context) -> None:
        if ctx.protocol_version != MODERN:
            sessions.add(ctx.session)

    @server.tool()
    def echo(text: str, ctx: Context) -> str:
        """Return the text."""
        remember(ctx)
        return text

    @server.tool()
    def whoami(ctx: Context) -> str:
        """Name this instance (tells family instances apart)."""
        remember(ctx)
        return name

    @server.tool()
    def kubectl_delete(resource: str) -> str:
        """A tool with a destructive name, for the denylist."""
        return f"deleted {resource}"

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        await anyio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool()
    def crash() -> str:
        """Kill this server process mid-call."""
        os._exit(1)

    @server.tool()
    async def add_tool(tool: str, ctx: Context) -> str:
        """Register a new tool at run time and announce the list change."""

        def added() -> str:
            return f"{tool} from {name}"

        server.add_tool(added, name=tool, description=f"Added at run time: {tool}")
        await tell_lists_changed(ctx)
        return f"added {tool}"

    @server.tool()
    async def remove_tool(tool: str, ctx: Context) -> str:
        """Remove a tool added with add_tool and announce the list change."""
        server.remove_tool(tool)
        await tell_lists_changed(ctx)
        return f"removed {tool}"

    @server.tool()
    async def progress(steps: int, ctx: Context) -> str:
        """Report progress `steps` times, then answer."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
            await anyio.sleep(0.02)
        return f"done {steps}"

    @server.tool(structured_output=False)
    async def ask_name(ctx: Context) -> str | CallToolResult | InputRequiredResult:
        """Ask the client for a name (elicitation)."""
        params = ElicitRequestFormParams(
            message="What is your name?",
            requested_schema={"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
        )
        answer = await _ask(ctx, "name", ElicitRequest(params=params))
        if isinstance(answer, InputRequiredResult):
            return answer
        if answer.get("action") != "accept":
            return "declined"
        return f"hello {answer.get('content', {}).get('name')}"

    @server.tool(structured_output=False)
    async def sample(prompt: str, ctx: Context) -> str | InputRequiredResult:
        """Ask the client's model to answer `prompt` (sampling)."""
        params = CreateMessageRequestParams(
            messages=[SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=50
        )
        answer = await _ask(ctx, "sample", CreateMessageRequest(params=params))
        if isinstance(answer, InputRequiredResult):
            return answer
        content = answer.get("content") or {}
        return content.get("text", "") if isinstance(content, dict) else str(content)

    @server.tool(structured_output=False)
    async def list_roots(ctx: Context) -> str | InputRequiredResult:
        """Ask the client for its roots."""
        answer = await _ask(ctx, "roots", ListRootsRequest())
        if isinstance(answer, InputRequiredResult):
            return answer
        return ",".join(str(root["uri"]) for root in answer.get("roots", []))

    @server.resource(f"toolbox://{name}/info", mime_type="text/plain")
    def info() -> str:
        """About this instance."""
        return f"info from {name}"

    @server.resource(f"toolbox://{name}/items/{{item}}", mime_type="text/plain")
    def item(item: str) -> str:
        """One item."""
        return f"item {item} from {name}"

    @server.prompt()
    def greet(who: str) -> list[UserMessage]:
        """Greet someone."""
        return [UserMessage(f"Hello {who} from {name}")]

    @server.completion()
    async def complete(ref: Any, argument: Any, context: Any) -> Completion | None:
        if isinstance(ref, PromptReference) and argument.name == "who":
            names = [n for n in ("alice", "bob", "carol") if n.startswith(argument.value)]
            return Completion(values=names, total=len(names), has_more=False)
        return None

    return server


async def _ask(ctx: Context, key: str, request: Any) -> dict[str, Any] | InputRequiredResult:
    """Put one question to the client in its era's form; the answer as a plain dict."""
    if ctx.protocol_version == MODERN:
        responses = ctx.input_responses or {}
        if key in responses:
            return responses[key].model_dump(by_alias=True, exclude_none=True)
        return InputRequiredResult(input_requests={key: request})
    session = ctx.session
    if isinstance(request, ElicitRequest):
        result = await session.elicit(request.params.message, request.params.requested_schema)
    elif isinstance(request, CreateMessageRequest):
        result = await session.create_message(messages=request.params.messages, max_tokens=request.params.max_tokens)
    else:
        result = await session.list_roots()
    return result.model_dump(by_alias=True, exclude_none=True, mode="json")


def _legacy_http(app: Any) -> Any:
    """Answer like a pre-2026 server: no session and no initialize means 400, not JSON-RPC."""

    async def guarded(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
            if headers.get("mcp-protocol-version") == MODERN:
                body = b"Bad Request: unsupported protocol version"
                await send(
                    {"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"text/plain")]}
                )
                await send({"type": "http.response.body", "body": body})
                return
        await app(scope, receive, send)

    return guarded


async def _run_http(server: MCPServer, transport: str, host: str, port: int, legacy: bool) -> None:
    app = server.sse_app() if transport == "sse" else server.streamable_http_app()
    await serve(_legacy_http(app) if legacy else app, host, port, "/sse" if transport == "sse" else "/mcp")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="toolbox")
    parser.add_argument("--transport", choices=("stdio", "sse", "streamable-http"), default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--legacy-only", action="store_true")
    args = parser.parse_args()
    server = build(args.name)
    if args.transport == "stdio":
        if args.legacy_only:
            _legacy_stdio()
        server.run("stdio")
        return
    asyncio.run(_run_http(server, args.transport, args.host, args.port, args.legacy_only))


def _legacy_stdio() -> None:
    """Answer server/discover as a legacy server would (method not found), then serve normally."""
    import json
    import threading

    read_fd, write_fd = os.pipe()
    real_stdin = sys.stdin.buffer

    def relay() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as pipe:
            for line in real_stdin:
                try:
                    message = json.loads(line)
                except ValueError:
                    message = None
                if isinstance(message, dict) and message.get("method") == "server/discover":
                    reply = {
                        "jsonrpc": "2.0",
                        "id": message.get("id"),
                        "error": {"code": -32601, "message": "Method not found"},
                    }
                    sys.stdout.buffer.write(json.dumps(reply).encode() + b"\n")
                    sys.stdout.buffer.flush()
                    continue
                pipe.write(line)

    threading.Thread(target=relay, daemon=True).start()
    os.dup2(read_fd, 0)
    sys.stdin = os.fdopen(0, "r")


if __name__ == "__main__":
    main()

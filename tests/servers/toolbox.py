"""The test suite's backend: an official-SDK MCPServer with every behaviour the gateway must carry.

    python -m tests.servers.toolbox --name NAME --transport stdio|sse|streamable-http
        [--host 127.0.0.1] [--port N] [--legacy-only]

Tools: echo, whoami (the --name), kubectl_delete (a destructive name), slow, crash (kills the
process mid-call), add_tool / remove_tool (announce a tools list change to every client: 2026-07-28
`subscriptions/listen` streams and 2025-11-25 sessions alike), progress, ask_name (elicitation),
sample (sampling), list_roots (roots). The questions use the SDK's resolvers, which ask in the
caller's era: an `InputRequiredResult` round trip for 2026-07-28, a server-to-client request
for 2025-11-25. Resources `toolbox://NAME/info` and `toolbox://NAME/items/{item}`; a prompt
`greet` whose `who` argument completes.

HTTP transports serve `/mcp` (streamable HTTP) or `/sse` + `/messages/` (HTTP+SSE) and print
`READY <url>` once listening; stdio prints nothing but protocol to stdout.

`--legacy-only` plays a server from before 2026-07-28, which knows only the initialize handshake:
over streamable HTTP a POST with a protocol-version header it does not know (2026-07-28), or
without a session that is not `initialize`, gets `400` with a plain-text body; over stdio and
HTTP+SSE the 2026-07-28 `_meta` envelope is stripped from every request before the SDK reads it,
so `server/discover` is an unknown method (-32601) and anything sent before `initialize` is
refused, just as by a 2025-11-25 server.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from typing import Annotated, Any

import anyio
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import (
    AcceptedElicitation,
    Context,
    Elicit,
    ElicitationResult,
    ListRoots,
    MCPServer,
    Resolve,
    Sample,
    UserMessage,
)
from mcp.server.session import ServerSession
from mcp_types import (
    CLIENT_CAPABILITIES_META_KEY,
    CLIENT_INFO_META_KEY,
    PROTOCOL_VERSION_META_KEY,
    Completion,
    CompletionArgument,
    CreateMessageResult,
    ListRootsResult,
    PromptReference,
    SamplingMessage,
    TextContent,
)
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pydantic import BaseModel
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.servers.http import add_address_arguments, run


class LegacySessions:
    """Middleware keeping the live 2025-11-25 sessions, so list changes reach every one of them.

    A 2026-07-28 client hears of changes on its `subscriptions/listen` stream (the SDK's
    subscription bus); a 2025-11-25 session hears of them on its own standalone channel (the GET
    stream, stdio, the SSE stream), which the SDK only reaches through one of that session's
    requests, so each is kept from its `notifications/initialized` on. The SDK offers no hook
    for a connection's end; a gone session's notification is dropped by the SDK.
    """

    def __init__(self) -> None:
        self.sessions: list[ServerSession] = []

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        result = await call_next(ctx)
        if ctx.method == "notifications/initialized":
            self.sessions.append(ctx.session)
        elif ctx.method == "initialize" and isinstance(result, dict):
            # The SDK advertises `listChanged: false` to handshake clients; these tools do change.
            result.setdefault("capabilities", {}).setdefault("tools", {})["listChanged"] = True
        return result

    async def tools_changed(self) -> None:
        for session in list(self.sessions):
            with anyio.move_on_after(2):
                await session.send_tool_list_changed()


class NameForm(BaseModel):
    name: str


def _ask_name() -> Elicit[NameForm]:
    return Elicit("What is your name?", NameForm)


def _sample(prompt: str) -> Sample:
    return Sample([SamplingMessage(role="user", content=TextContent(type="text", text=prompt))], max_tokens=100)


def _roots() -> ListRoots:
    return ListRoots()


def build(name: str) -> MCPServer:
    """The toolbox called `name`."""
    legacy = LegacySessions()
    server = MCPServer(f"toolbox-{name}", version="1.0.0", instructions=f"Test toolbox {name}.", middleware=[legacy])

    async def tools_changed(ctx: Context) -> None:
        await ctx.notify_tools_changed()
        await legacy.tools_changed()

    @server.tool()
    def echo(text: str) -> str:
        """Return the text."""
        return text

    @server.tool()
    def whoami() -> str:
        """Name this instance (tells family instances apart)."""
        return name

    @server.tool()
    def kubectl_delete(resource: str) -> str:
        """A tool with a destructive name."""
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
        """Register a tool named `tool` at run time and announce the list change."""

        def added() -> str:
            return f"{tool} from {name}"

        server.add_tool(added, name=tool, description=f"Added at run time: {tool}")
        await tools_changed(ctx)
        return f"added {tool}"

    @server.tool()
    async def remove_tool(tool: str, ctx: Context) -> str:
        """Remove a tool added with add_tool and announce the list change."""
        server.remove_tool(tool)
        await tools_changed(ctx)
        return f"removed {tool}"

    @server.tool()
    async def progress(steps: int, ctx: Context) -> str:
        """Report progress `steps` times, then answer."""
        for step in range(1, steps + 1):
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
            await anyio.sleep(0.02)
        return f"done {steps}"

    @server.tool()
    def ask_name(answer: Annotated[ElicitationResult[NameForm], Resolve(_ask_name)]) -> str:
        """Ask the client for a name (elicitation)."""
        return f"hello {answer.data.name}" if isinstance(answer, AcceptedElicitation) else "declined"

    @server.tool()
    def sample(prompt: str, reply: Annotated[CreateMessageResult, Resolve(_sample)]) -> str:
        """Ask the client's model to answer `prompt` (sampling)."""
        contents = reply.content if isinstance(reply.content, list) else [reply.content]
        return "".join(c.text for c in contents if isinstance(c, TextContent))

    @server.tool()
    def list_roots(roots: Annotated[ListRootsResult, Resolve(_roots)]) -> str:
        """The client's roots, comma-separated."""
        return ",".join(str(root.uri) for root in roots.roots)

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
    async def complete(ref: object, argument: CompletionArgument, context: object) -> Completion | None:
        if isinstance(ref, PromptReference) and ref.name == "greet" and argument.name == "who":
            names = [n for n in ("alice", "bob") if n.startswith(argument.value)]
            return Completion(values=names, total=len(names), has_more=False)
        return None

    return server


# -- --legacy-only --------------------------------------------------------------------------------

_ENVELOPE = (PROTOCOL_VERSION_META_KEY, CLIENT_INFO_META_KEY, CLIENT_CAPABILITIES_META_KEY)


def _without_envelope(line: bytes) -> bytes:
    """One JSON-RPC message as a 2025-11-25 server reads it: without the 2026-07-28 `_meta` envelope."""
    try:
        message = json.loads(line)
        meta = message["params"]["_meta"]
    except (ValueError, KeyError, TypeError):
        return line
    if not isinstance(meta, dict) or not any(key in meta for key in _ENVELOPE):
        return line
    for key in _ENVELOPE:
        meta.pop(key, None)
    return json.dumps(message).encode() + (b"\n" if line.endswith(b"\n") else b"")


async def _read_body(receive: Receive) -> bytes:
    body, more = b"", True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    return body


def _replaying(body: bytes, receive: Receive) -> Receive:
    """`receive` with the already-read body put back in front of it."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _bad_request(send: Send, reason: str) -> None:
    await send({"type": "http.response.start", "status": 400, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"Bad Request: {reason}".encode()})


def _legacy_streamable_http(app: ASGIApp) -> ASGIApp:
    """Refuse what a 2025-11-25 streamable HTTP server refuses, with a plain-text 400."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            return await app(scope, receive, send)
        headers = {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in scope["headers"]}
        version = headers.get("mcp-protocol-version")
        if version is not None and version not in HANDSHAKE_PROTOCOL_VERSIONS:
            return await _bad_request(send, f"Unsupported protocol version: {version}")
        if "mcp-session-id" in headers:
            return await app(scope, receive, send)
        body = await _read_body(receive)
        try:
            method = json.loads(body).get("method")
        except (ValueError, AttributeError):
            method = None
        if method != "initialize":
            return await _bad_request(send, "No valid session ID provided")
        return await app(scope, _replaying(body, receive), send)

    return guarded


def _legacy_sse(app: ASGIApp) -> ASGIApp:
    """Strip the 2026-07-28 envelope from every message POSTed to an HTTP+SSE session."""

    async def stripped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            body = _without_envelope(await _read_body(receive))
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
            receive = _replaying(body, receive)
        await app(scope, receive, send)

    return stripped


def _legacy_stdin() -> None:
    """Feed the SDK a stdin without the 2026-07-28 envelope (a relay thread and a pipe)."""
    wire = sys.stdin.buffer
    read_fd, write_fd = os.pipe()

    def relay() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as pipe:
            for line in wire:
                pipe.write(_without_envelope(line))

    threading.Thread(target=relay, name="legacy-stdin", daemon=True).start()
    sys.stdin = open(read_fd, encoding="utf-8")  # noqa: SIM115 - read by the SDK for the process's life


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--name", default="toolbox")
    parser.add_argument("--transport", choices=("stdio", "sse", "streamable-http"), default="stdio")
    parser.add_argument("--legacy-only", action="store_true", help="speak only the 2025-11-25 handshake era")
    add_address_arguments(parser, port_required=False)
    args = parser.parse_args()
    server = build(args.name)
    if args.transport == "stdio":
        if args.legacy_only:
            _legacy_stdin()
        server.run("stdio")
    elif args.transport == "sse":
        app: ASGIApp = server.sse_app(host=args.host)
        run(_legacy_sse(app) if args.legacy_only else app, args.host, args.port, "/sse")
    else:
        app = server.streamable_http_app(host=args.host)
        run(_legacy_streamable_http(app) if args.legacy_only else app, args.host, args.port, "/mcp")


if __name__ == "__main__":
    main()

"""The gateway's OAuth token check timed in process: the real BearerAuth and JwtVerifier, a real issuer.

    python loadtest/token_check.py [--calls 200000] [--tokens 100] [--rounds 5]

Starts the test authorization server (`tests.servers.auth_server`), signs alice in for fresh RS256
tokens, builds the verifier as the gateway does (keys from the issuer's JWKS, found through its
metadata) and times with perf_counter_ns an ASGI request to /mcp through an app that does nothing,
with and without BearerAuth in front:

- cached token: the same valid token on every call, the hot path (verified once, then remembered);
- new token: each token seen for the first time (signature and claims checked), the keys already
  fetched: what the first request of each new token costs.

Prints µs per call, medians over rounds; the token check is the difference to the bare call. The
wire (HTTP parsing, the gateway's other layers) is not in these numbers; `bench.py --oauth` has it.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator.auth.resource_server import BearerAuth, JwtVerifier, issuer_keys  # noqa: E402
from aggregator.transport.http_common import ASGIApp, Scope  # noqa: E402
from tests.oauth_flows import sign_in  # noqa: E402
from tests.servers.launch import run_http_server  # noqa: E402

AUDIENCE = "http://127.0.0.1:8090/mcp"
TOKEN_TTL = 3600
HEADERS = [  # what wrk's tools/call sends (tools_call.lua), the token last: the longest walk to it
    (b"host", b"127.0.0.1:8090"),
    (b"content-type", b"application/json"),
    (b"accept", b"application/json, text/event-stream"),
    (b"mcp-protocol-version", b"2026-07-28"),
    (b"mcp-method", b"tools/call"),
    (b"mcp-name", b"x_echo_echo"),
    (b"content-length", b"300"),
]


async def nothing(scope: Scope, receive: Any, send: Any) -> None:
    """The app behind the middleware: takes the request, answers nothing."""


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def refused(message: dict[str, Any]) -> None:
    """BearerAuth only sends when it refuses the token, which voids the measurement."""
    raise RuntimeError(f"the middleware refused the token: {message.get('status', message)}")


def request(token: str) -> Scope:
    return {
        "type": "http",
        "method": "POST",
        "path": "/mcp",
        "headers": [*HEADERS, (b"authorization", b"Bearer " + token.encode())],
    }


async def ns_per_call(app: ASGIApp, scopes: list[Scope]) -> float:
    """Mean nanoseconds per `await app(scope, ...)`, over `scopes` in order."""
    start = time.perf_counter_ns()
    for scope in scopes:
        await app(scope, receive, refused)
    return (time.perf_counter_ns() - start) / len(scopes)


async def fresh_tokens(http: httpx.AsyncClient, issuer: str, count: int) -> list[str]:
    """`count` distinct access tokens for AUDIENCE (each a new sign-in: its own jti)."""
    return [str((await sign_in(http, issuer, user="alice", resource=AUDIENCE))["access_token"]) for _ in range(count)]


async def measure(issuer: str, args: argparse.Namespace) -> dict[str, list[float]]:
    """Per round: ns per call bare, with a cached token, with a new token."""
    timings: dict[str, list[float]] = {"bare": [], "cached": [], "new": []}
    async with httpx.AsyncClient(timeout=10) as http:
        fetch_keys = issuer_keys(http, issuer, None)

        def guarded() -> tuple[BearerAuth, JwtVerifier]:
            verifier = JwtVerifier(issuer=issuer, audience=AUDIENCE, fetch_keys=fetch_keys)
            return BearerAuth(nothing, verifier, paths=["/mcp"], metadata_url=f"{AUDIENCE}/metadata"), verifier

        print(f"signing in for {args.tokens * args.rounds + 1} tokens ...", flush=True)
        cached = await fresh_tokens(http, issuer, 1)
        batches = [await fresh_tokens(http, issuer, args.tokens) for _ in range(args.rounds)]
        middleware, verifier = guarded()
        await verifier.verify(cached[0])  # fetches the keys and remembers the token
        hot = [request(cached[0])] * args.calls
        for batch in batches:
            timings["bare"].append(await ns_per_call(nothing, hot))
            timings["cached"].append(await ns_per_call(middleware, hot))
            unseen, unseen_verifier = guarded()  # a new verifier, its keys fetched: only the tokens are new
            await unseen_verifier.verify(cached[0])
            timings["new"].append(await ns_per_call(unseen, [request(token) for token in batch]))
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200_000, help="calls per round with the cached token")
    parser.add_argument("--tokens", type=int, default=100, help="new tokens verified per round")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (default 5); medians are reported")
    args = parser.parse_args()
    ttl = str(TOKEN_TTL)
    with run_http_server("tests.servers.auth_server", "--issuer-name", "corp", "--token-ttl", ttl) as idp:
        timings = asyncio.run(measure(idp.url, args))
    us = {kind: statistics.median(values) / 1000 for kind, values in timings.items()}
    spread = {kind: f"{min(values) / 1000:.2f}-{max(values) / 1000:.2f}" for kind, values in timings.items()}
    print(f"\n{args.rounds} rounds: {args.calls} calls with one cached token, {args.tokens} new tokens; µs per call")
    print(f"  bare call, no middleware:       {us['bare']:8.2f}  (rounds {spread['bare']})")
    print(f"  BearerAuth, cached token:       {us['cached']:8.2f}  (rounds {spread['cached']})")
    print(f"  BearerAuth, new token:          {us['new']:8.2f}  (rounds {spread['new']})")
    print(f"token check, cached token (hot path): {us['cached'] - us['bare']:.2f} µs per call")
    print(f"token check, new token (signature):   {us['new'] - us['bare']:.2f} µs per call")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

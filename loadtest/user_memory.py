"""Redis memory per signed-in user: records of protected backends plus their sealed tokens.

    python loadtest/user_memory.py [--users 5000] [--backends 3] [--tools 40]

Starts its own `redis-server` on a free port, then writes what the gateway keeps for each user
with the real code (UserRecords, TokenVault with a TokenCipher): for every (user, backend) a
record that references its lists, and a token set (a ~900-byte access JWT and a refresh token),
all users seeing the same tool list (the common case; one copy of it is stored). Prints Redis's
`used_memory` growth per user, and the size of one shared list. Needs Debian's `redis-server`.
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator.auth.user_records import UserRecords  # noqa: E402
from aggregator.auth.vault import TokenVault  # noqa: E402
from shared.crypto import TokenCipher  # noqa: E402
from shared.oauth.tokens import TokenSet  # noqa: E402
from shared.records import ServerRecord  # noqa: E402
from shared.store.redis import open_redis_stores  # noqa: E402
from tests.ports import free_port  # noqa: E402


def token_set() -> TokenSet:
    return TokenSet(
        access_token="eyJ" + secrets.token_urlsafe(670),  # about 900 bytes, as a signed JWT
        refresh_token=secrets.token_urlsafe(32),
        expires_at=time.time() + 3600,
        issued_at=time.time(),
        issuer="https://idp.example.com",
        client_id="mcp-gateway",
    )


def tool(index: int) -> dict[str, Any]:
    """A tool of realistic size: a description and a small input schema."""
    return {
        "name": f"tool_{index}",
        "description": f"Does thing number {index} to a resource of the cluster and reports what changed. " * 2,
        "inputSchema": {
            "type": "object",
            "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}, "limit": {"type": "integer"}},
            "required": ["name"],
        },
    }


async def measure(args: argparse.Namespace, redis_url: str) -> None:
    stores = await open_redis_stores(redis_url, namespace="mem")
    try:
        records = UserRecords(stores.capabilities, stores.values)
        vault = TokenVault(stores.values, TokenCipher(secrets.token_bytes(32), source="benchmark"))
        tools = [tool(i) for i in range(args.tools)]
        client = stores.client
        used = [int((await client.info("memory"))["used_memory"])]
        started = time.monotonic()
        for what in ("records", "tokens"):
            for user in range(args.users):
                subject = f"user-{user}@example.com"
                for backend in range(args.backends):
                    server = f"backend-{backend}"
                    if what == "records":
                        await records.put(
                            subject, ServerRecord(server=server, state="up", tools=tools, since=time.time())
                        )
                    else:
                        await vault.put(subject, server, token_set(), ttl=30 * 86_400.0)
                if (user + 1) % 1000 == 0:
                    print(f"  {what}: {user + 1} users ({time.monotonic() - started:.0f} s)", flush=True)
            used.append(int((await client.info("memory"))["used_memory"]))
        per_record, per_tokens = ((after - before) / (args.users * args.backends) for before, after in pairwise(used))
        per_user = (used[-1] - used[0]) / args.users
        print(f"users: {args.users}, backends per user: {args.backends}, tools per list: {args.tools}")
        print(f"Redis used_memory growth: {(used[-1] - used[0]) / 1e6:.1f} MB, {per_user:.0f} bytes per user")
        print(f"  per (user, backend): record reference {per_record:.0f} bytes, sealed tokens {per_tokens:.0f} bytes")
        one_list = len(await client.get(await first_list_key(client)) or b"")
        print(f"one shared list ({args.tools} tools) stored once: {one_list} bytes")
    finally:
        await stores.aclose()


async def first_list_key(client: Any) -> str:
    async for key in client.scan_iter(match="mem:val:lists:*"):
        return str(key.decode() if isinstance(key, bytes) else key)
    raise SystemExit("no list was stored")


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--backends", type=int, default=3, help="protected backends each user signed in to")
    parser.add_argument("--tools", type=int, default=40, help="tools in each backend's list")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as workdir:
        redis = subprocess.Popen(
            ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            cwd=workdir,
            stdout=subprocess.DEVNULL,
        )
        try:
            time.sleep(0.5)
            asyncio.run(measure(args, f"redis://127.0.0.1:{port}/0"))
        finally:
            redis.terminate()
            redis.wait(10)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""RedisKeys: the one function that builds each kind of Redis key, all under the namespace.

The layout they make is drawn in the docstring of `shared/store/redis.py` and in docs/architecture.md.
"""

from __future__ import annotations

__all__ = ["RedisKeys"]


class RedisKeys:
    def __init__(self, namespace: str) -> None:
        self.ns = namespace

    def capabilities(self, scope: str) -> str:
        return f"{self.ns}:cap:{scope}"

    def session(self, session_id: str) -> str:
        return f"{self.ns}:session:{session_id}"

    def blocks(self) -> str:
        return f"{self.ns}:blocks"

    def window(self, key: str) -> str:
        return f"{self.ns}:rl:{key}"

    def auth(self, server: str) -> str:
        return f"{self.ns}:auth:{server}"

    def auth_servers(self) -> str:
        return f"{self.ns}:auth:servers"

    def version(self) -> str:
        return f"{self.ns}:events:version"

    def events(self) -> str:
        return f"{self.ns}:events"

    def epoch(self) -> str:
        return f"{self.ns}:events:epoch"

    def message(self, channel: str) -> str:
        return f"{self.ns}:msg:{channel}"

    def shared_key(self, name: str, key_id: str) -> str:
        return f"{self.ns}:key:{name}:{key_id}"

    def value(self, key: str) -> str:
        return f"{self.ns}:val:{key}"

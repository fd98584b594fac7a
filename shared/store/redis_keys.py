"""RedisKeys: the one function that builds each kind of Redis key, all under the namespace.

Two kinds of key, so that the same layout works on one Redis and on Redis Cluster:

- the control plane's keys carry the hash tag `{ns}` and so live in one hash slot: the leader
  lock and its fencing counter, the global capability records, block overrides, auth counters,
  the event counter and epoch, the processes' heartbeats, the workflow definitions, and every
  pub/sub channel. Lua scripts combine them (a fenced write checks the lock and writes a record;
  a publish checks the lock, counts and publishes; a heartbeat writes a record and its deadline),
  and a cluster runs a script only when all its keys share a slot. The channels join them so
  that one sharded subscription, on one node, hears all of them. They are few and small.
- everything per user, per session or per value (`ns:session:…`, `ns:rl:…`, `ns:val:…`, users'
  capability records, workflow runs and each workflow's list of them) has no tag and spreads
  over the cluster's slots; each is read and written one key at a time.

The layout is drawn in the docstring of `shared/store/redis.py` and in docs/architecture.md.
"""

from __future__ import annotations

from shared.store.protocols import GLOBAL_SCOPE

__all__ = ["RedisKeys"]


class RedisKeys:
    def __init__(self, namespace: str) -> None:
        if not namespace or "{" in namespace or "}" in namespace:
            raise ValueError(f"a Redis namespace must be non-empty and hold no braces: {namespace!r}")
        self.ns = namespace
        self._tag = f"{{{namespace}}}"

    def _control(self, name: str) -> str:
        """A control-plane key: in the namespace's one hash slot."""
        return f"{self._tag}:{name}"

    def _own(self, name: str) -> str:
        """A key in a hash slot of its own name."""
        return f"{self.ns}:{name}"

    def capabilities(self, scope: str) -> str:
        if scope == GLOBAL_SCOPE:
            return self._control("cap:global")
        return self._own(f"cap:{scope}")

    def session(self, session_id: str) -> str:
        return self._own(f"session:{session_id}")

    def blocks(self) -> str:
        return self._control("blocks")

    def window(self, key: str) -> str:
        return self._own(f"rl:{key}")

    def auth(self, server: str) -> str:
        return self._control(f"auth:{server}")

    def auth_servers(self) -> str:
        return self._control("auth:servers")

    def version(self) -> str:
        return self._control("events:version")

    def events(self) -> str:
        return self._control("events")

    def epoch(self) -> str:
        return self._control("events:epoch")

    def heartbeats(self) -> str:
        return self._control("beats")

    def heartbeat_deadlines(self) -> str:
        return self._control("beats:until")

    def leader(self) -> str:
        return self._control("leader")

    def fence(self) -> str:
        return self._control("leader:fence")

    def message(self, channel: str) -> str:
        return self._control(f"msg:{channel}")

    def shared_key(self, name: str, key_id: str) -> str:
        return self._own(f"key:{name}:{key_id}")

    def value(self, key: str) -> str:
        return self._own(f"val:{key}")

    def workflows(self) -> str:
        return self._control("workflows")

    def workflow_run(self, run_id: str) -> str:
        return self._own(f"wf:run:{run_id}")

    def workflow_runs(self, workflow: str) -> str:
        return self._own(f"wf:runs:{workflow}")

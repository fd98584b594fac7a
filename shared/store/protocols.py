"""The contracts for every piece of shared state. Routing code sees only these Protocols.

Two implementations exist: `memory` (the embedded default, one process) and `redis` (a
cluster of replicas). `tests/conformance/` runs one suite against both; when they disagree,
the contract here is fixed, not the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Literal, Protocol

import msgspec

from shared.config_types import WorkflowSpec
from shared.events import ToolUpdateEvent
from shared.records import Heartbeat, ServerRecord, SessionRecord, WorkflowExecution

__all__ = [
    "AUTH_COUNTERS",
    "AUTH_TIMESTAMPS",
    "GLOBAL_SCOPE",
    "AuthEvent",
    "AuthMetricsStore",
    "AuthServerMetrics",
    "BlockStore",
    "CapabilityStore",
    "EventBus",
    "FencedOut",
    "HeartbeatStore",
    "KeyStore",
    "MessageBus",
    "RateLimiter",
    "SessionStore",
    "StoreUnavailable",
    "Stores",
    "ValueStore",
    "WorkflowStore",
]

GLOBAL_SCOPE = "*"
"""The capability scope shared by every caller; per-session scopes use the session id."""

AuthEvent = Literal[
    "login_attempt", "login_success", "login_failure", "rate_limit_block", "logout_attempt", "logout_success"
]


class StoreUnavailable(Exception):
    """The backing service (Redis) cannot be reached; the message names where and why."""


AUTH_COUNTERS: dict[str, str] = {
    "login_attempt": "login_attempts",
    "login_success": "login_successes",
    "login_failure": "login_failures",
    "rate_limit_block": "rate_limit_blocks",
    "logout_attempt": "logout_attempts",
    "logout_success": "logout_successes",
}
"""Which AuthServerMetrics counter each AuthEvent increments."""
AUTH_TIMESTAMPS: dict[str, str] = {
    "login_attempt": "last_attempt_at",
    "login_success": "last_success_at",
    "login_failure": "last_failure_at",
}
"""Which AuthServerMetrics time each AuthEvent sets."""


class FencedOut(Exception):
    """A write by a control plane that no longer holds the leader lock was refused."""


class AuthServerMetrics(msgspec.Struct, kw_only=True):
    server_name: str
    login_attempts: int = 0
    login_successes: int = 0
    login_failures: int = 0
    rate_limit_blocks: int = 0
    logout_attempts: int = 0
    logout_successes: int = 0
    last_attempt_at: float | None = None
    last_success_at: float | None = None
    last_failure_at: float | None = None


class CapabilityStore(Protocol):
    """Backend records keyed by (scope, server). A miss returns None; list order is by server name.

    Records in GLOBAL_SCOPE live until deleted; records in other scopes expire after `ttl`.
    """

    async def put(self, record: ServerRecord, *, scope: str = GLOBAL_SCOPE, ttl: float | None = None) -> None: ...

    async def get(self, server: str, *, scope: str = GLOBAL_SCOPE) -> ServerRecord | None: ...

    async def list(self, *, scope: str = GLOBAL_SCOPE) -> list[ServerRecord]: ...

    async def delete(self, server: str, *, scope: str = GLOBAL_SCOPE) -> None: ...


class SessionStore(Protocol):
    """2025-11-25 session records. Each expires `ttl` seconds after its last create or touch."""

    async def create(self, record: SessionRecord, *, ttl: float) -> None: ...

    async def restore(self, record: SessionRecord, *, ttl: float) -> bool:
        """Write the record only if the store has none under its id (a copy the store lost); True if written."""
        ...

    async def get(self, session_id: str) -> SessionRecord | None: ...

    async def touch(self, session_id: str, *, ttl: float) -> bool:
        """Extend the session's life; False when it no longer exists."""
        ...

    async def delete(self, session_id: str) -> bool:
        """End the session; False when it did not exist."""
        ...


class BlockStore(Protocol):
    """Run-time tool-block overrides by exposed tool name: True blocks, False allows."""

    async def set(self, tool: str, blocked: bool | None) -> None:
        """Set an override, or clear it with None."""
        ...

    async def all(self) -> dict[str, bool]: ...


class RateLimiter(Protocol):
    """Sliding-window limits per key, shared by every replica that uses the same store."""

    async def allow(self, key: str, *, limit: int, window: float) -> bool:
        """Record an attempt and return True, or return False (recording nothing) when over the limit."""
        ...

    async def remaining(self, key: str, *, limit: int, window: float) -> int: ...

    async def reset(self, key: str) -> None: ...


class AuthMetricsStore(Protocol):
    """Counters of authentication events per backend server."""

    async def record(self, server: str, event: AuthEvent, *, at: float | None = None) -> None: ...

    async def server(self, server: str) -> AuthServerMetrics | None: ...

    async def all(self) -> list[AuthServerMetrics]:
        """Every server's counters, ordered by server name."""
        ...


class HeartbeatStore(Protocol):
    """Which processes are alive: each writes its Heartbeat every few seconds, and it lapses `ttl` after the last.

    Expiry is judged by the store's clock (on Redis, the server's), so hosts' clocks need not agree.
    """

    async def beat(self, record: Heartbeat, *, ttl: float) -> None:
        """Write (or replace) the record under its id, alive for `ttl` seconds."""
        ...

    async def all(self) -> list[Heartbeat]:
        """Every live record, ordered by id."""
        ...

    async def remove(self, beat_id: str) -> None:
        """Forget a record at once (an orderly stop)."""
        ...


class EventBus(Protocol):
    """Registry-change events with a deployment-wide version counter.

    `publish` assigns the next version and returns the event as delivered. `subscribe` yields
    events published after it was entered, in version order; a subscriber that sees a version
    jump (or a `resync` event) must reload its state from the stores.
    """

    async def publish(self, event: ToolUpdateEvent) -> ToolUpdateEvent: ...

    def subscribe(self) -> AbstractAsyncContextManager[AsyncIterator[ToolUpdateEvent]]: ...

    async def version(self) -> int: ...

    async def epoch(self) -> str:
        """An id of the store's lifetime: it changes when the store lost its data (a restart without persistence)."""
        ...


class MessageBus(Protocol):
    """Fire-and-forget messages between replicas (no history, no ordering across channels).

    Carries what must reach the replica holding a client's stream: a client's answer that
    arrived elsewhere, a legacy SSE POST, a session notification, a resource update.
    `subscribe` yields (channel, payload) for messages published after it was entered.
    """

    async def publish(self, channel: str, payload: bytes) -> None: ...

    def subscribe(self, *channels: str) -> AbstractAsyncContextManager[AsyncIterator[tuple[str, bytes]]]: ...


class KeyStore(Protocol):
    """Secrets every replica shares, each for a limited time (e.g. the keys that seal `requestState`)."""

    async def shared_key(self, name: str, key_id: str, *, ttl: float) -> bytes:
        """Key `key_id` of `name`: 32 random bytes made by the first caller, the same for all until `ttl` ends."""
        ...


class ValueStore(Protocol):
    """Small values every replica shares (OAuth flow state, short locks, sealed tokens).

    Keys are the caller's strings (the store namespaces them); values are bytes. Every value
    expires `ttl` seconds (> 0) after it was last written; an absent or expired key reads as
    None, and `delete` of one returns False. `take` and `put_if_absent` are atomic across
    replicas: of concurrent callers, exactly one takes the value, or sets it.
    """

    async def put(self, key: str, value: bytes, *, ttl: float) -> None: ...

    async def get(self, key: str) -> bytes | None: ...

    async def take(self, key: str) -> bytes | None:
        """Get and delete in one step: exactly one caller gets the value (OAuth `state`, one-time codes)."""
        ...

    async def delete(self, key: str) -> bool:
        """Remove the value; False when there was none."""
        ...

    async def put_if_absent(self, key: str, value: bytes, *, ttl: float) -> bool:
        """Set unless a value is present; True when set (a short lock, e.g. one refresh per token at a time)."""
        ...


class WorkflowStore(Protocol):
    """Workflow definitions as the control plane last published them, and the runs of workflows.

    `publish` replaces every definition at once (a control plane's write, fenced like its
    capability records); before the first, `definitions` is empty. A run recorded with `record`
    is read by id for `ttl` seconds; `executions` lists a workflow's latest `keep` runs, newest
    first, and a run pushed out of them is gone.
    """

    async def publish(self, workflows: Sequence[WorkflowSpec]) -> None: ...

    async def definitions(self) -> list[WorkflowSpec]: ...

    async def record(self, execution: WorkflowExecution, *, keep: int, ttl: float) -> None: ...

    async def execution(self, execution_id: str) -> WorkflowExecution | None: ...

    async def executions(self, workflow: str) -> list[WorkflowExecution]: ...


class Stores(Protocol):
    """Every store one process uses, opened and closed together."""

    @property
    def kind(self) -> str: ...
    @property
    def capabilities(self) -> CapabilityStore: ...
    @property
    def sessions(self) -> SessionStore: ...
    @property
    def blocks(self) -> BlockStore: ...
    @property
    def rate_limiter(self) -> RateLimiter: ...
    @property
    def auth_metrics(self) -> AuthMetricsStore: ...
    @property
    def events(self) -> EventBus: ...
    @property
    def messages(self) -> MessageBus: ...
    @property
    def keys(self) -> KeyStore: ...
    @property
    def values(self) -> ValueStore: ...
    @property
    def heartbeats(self) -> HeartbeatStore: ...
    @property
    def workflows(self) -> WorkflowStore: ...

    async def ping(self) -> None:
        """Raise if the backing service cannot be reached."""
        ...

    async def aclose(self) -> None: ...

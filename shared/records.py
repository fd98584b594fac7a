"""Records kept in the stores: what a backend offers, who a 2025-11-25 session belongs to, how a workflow ran.

They are msgspec Structs so the Redis store can keep them as compact JSON and every replica
decodes them the same way.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "AuthChallenge",
    "BackendState",
    "CallCounts",
    "ExecutionStatus",
    "Heartbeat",
    "ServerRecord",
    "SessionRecord",
    "StepOutcome",
    "StepStatus",
    "WorkflowExecution",
]

BackendState = Literal["up", "down", "auth_required"]
StepStatus = Literal["ok", "failed", "skipped"]
ExecutionStatus = Literal["ok", "failed", "cancelled"]


class AuthChallenge(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a protected backend said when it refused to serve without a user's token (RFC 9728)."""

    resource: str | None = None
    authorization_servers: list[str] = []
    scopes: list[str] = []
    error: str | None = None
    """Why its authorization server could not be found, when it could not."""


class ServerRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One backend's discovered capabilities and health, as the control plane last saw them."""

    server: str
    state: BackendState = "up"
    since: float = 0.0
    """When the backend entered its state (wall clock)."""
    error: str | None = None
    attempts: int = 0
    """While down: failed connection attempts in a row."""
    auth: AuthChallenge | None = None
    """While auth_required: where users get a token for it."""
    lists: str | None = None
    """A per-user record's reference to its lists, stored once by content (their digest)."""
    protocol_version: str | None = None
    transport: str | None = None
    server_info: dict[str, Any] = {}
    capabilities: dict[str, Any] = {}
    instructions: str | None = None
    tools: list[dict[str, Any]] = []
    prompts: list[dict[str, Any]] = []
    resources: list[dict[str, Any]] = []
    resource_templates: list[dict[str, Any]] = []
    updated_at: float = 0.0


class SessionRecord(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A 2025-11-25 session: its negotiated version and what the client declared."""

    id: str
    protocol_version: str
    client_capabilities: dict[str, Any] = {}
    client_info: dict[str, Any] = {}
    subject: str | None = None
    log_level: str | None = None
    subscriptions: list[str] = []
    created_at: float = 0.0


class CallCounts(msgspec.Struct, array_like=True):
    """One (tool, server, outcome)'s tool calls since the process started: a count, and durations per bucket."""

    tool: str
    server: str
    outcome: str
    count: int
    buckets: list[int]
    """Calls per duration bucket (not cumulative), bounded above by `Heartbeat.bounds`, the last one unbounded."""


class Heartbeat(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A process saying it is alive, written every few seconds with a short TTL (see shared/heartbeat.py).

    Replicas include their tool-call counters, so a console on any replica can chart the whole
    cluster's calls; workers say whether they lead, and their fencing token.
    """

    id: str
    kind: Literal["replica", "worker"]
    version: str
    started_at: float
    at: float
    role: str | None = None
    """A worker's: leader or standby."""
    fence: int | None = None
    """The leader's fencing token."""
    in_flight: int = 0
    sessions: int = 0
    """2025-11-25 sessions this replica served lately."""
    streams: int = 0
    """Open client streams on this replica."""
    registry_version: int = 0
    bounds: list[float] = []
    calls: list[CallCounts] = []


class StepOutcome(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """One step of a workflow run: the tool it called, and its result, its error, or why it was skipped."""

    id: str
    tool: str
    status: StepStatus
    duration_ms: float = 0.0
    result: Any = None
    """The tool's structuredContent, else its text parsed as JSON, else its text."""
    error: str | None = None
    reason: str | None = None
    """Why a step was skipped: its condition was false, or the run stopped before it."""


class WorkflowExecution(msgspec.Struct, kw_only=True, omit_defaults=True, rename="camel"):
    """One run of a workflow, as the caller got it back and as any replica reads it afterwards.

    Camel-cased, since clients get it as JSON (the workflow tool's answer, core_workflow_execution_get).
    """

    id: str
    workflow: str
    status: ExecutionStatus
    started_at: float
    """Wall clock, seconds."""
    duration_ms: float
    arguments: dict[str, Any]
    steps: list[StepOutcome]
    subject: str | None = None
    """Who ran it, when the gateway checks tokens: only they read it back."""

"""The configuration's types: one Struct tree, camelCase in the file, every field with a safe default.

Field names follow muster's MCPServer spec where one exists. Everything the file does not say
takes a safe default: bind to localhost, denylist on, 4 MiB body limit, no client authentication.
`shared.config` loads and checks a file into these; import them from there.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

__all__ = [
    "AggregatorSettings",
    "BackendAuth",
    "BackendType",
    "Config",
    "ConfigError",
    "DenylistSettings",
    "Exposure",
    "FamilySpec",
    "OAuthSettings",
    "RateLimitSettings",
    "ServerSpec",
    "TokenExchangeSpec",
    "Transport",
    "WorkflowArg",
    "WorkflowHistory",
    "WorkflowSpec",
    "WorkflowStep",
]

Transport = Literal["streamable-http", "sse", "stdio"]
BackendType = Literal["stdio", "sse", "streamable-http"]
Exposure = Literal["native", "meta", "both"]
"""What tools/list shows: the backends' tools, the meta-tools (aggregator/meta_tools.py) instead, or both."""
ArgType = Literal["string", "number", "integer", "boolean", "object", "array"]
"""A workflow argument's JSON Schema type."""


class ConfigError(Exception):
    """A configuration file that cannot be used; the message names file, field and problem."""


class _Spec(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True, kw_only=True):
    """Config Structs: camelCase keys, unknown keys rejected so a typo fails with its path.

    Subclasses repeat frozen=True so type checkers see it too.
    """


class DenylistSettings(_Spec, frozen=True):
    extra: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()


class OAuthSettings(_Spec, frozen=True):
    """The gateway as an OAuth 2.1 resource server: clients present a JWT from `issuer`."""

    issuer: str
    audience: str | None = None
    """What tokens must be issued for (their `aud`); default: publicUrl + /mcp."""
    jwks_url: str | None = None
    """Where the issuer's signing keys are; default: from its RFC 8414 / OIDC metadata."""
    required_scopes: tuple[str, ...] = ()


class RateLimitSettings(_Spec, frozen=True):
    max_attempts: int = 10
    window: float = 60.0
    """Seconds of the sliding window."""


class WorkflowHistory(_Spec, frozen=True):
    """How many workflow executions the store keeps: the latest `keep` of each workflow, each for `ttl` seconds."""

    keep: int = 20
    ttl: float = 7 * 24 * 3600.0


class AggregatorSettings(_Spec, frozen=True):
    host: str = "127.0.0.1"
    port: int = 8090
    transport: Transport = "streamable-http"
    prefix: str = "x"
    exposure: Exposure = "native"
    yolo: bool = False
    max_tool_name_length: int = 64
    allowed_origins: tuple[str, ...] = ()
    allowed_hosts: tuple[str, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    max_header_bytes: int = 64 * 1024
    header_timeout: float = 10.0
    """Seconds for a request's line and headers to arrive (from connecting, or from its first byte)."""
    body_timeout: float = 30.0
    """Seconds for a request's body to arrive once its headers did."""
    keep_alive_timeout: int = 30
    """Seconds an idle keep-alive connection stays open between requests (whole seconds: uvicorn's unit)."""
    max_streams: int = 1000
    """Open client streams per replica: GET, subscriptions/listen and /sse streams together."""
    max_batch_size: int = 100
    denylist: DenylistSettings = DenylistSettings()
    session_idle_timeout: float = 3600.0
    page_size: int = 500
    list_ttl_ms: int = 0
    health_check_interval: float = 30.0
    shutdown_grace: float = 10.0
    public_url: str | None = None
    """How clients and authorization servers reach the gateway (behind a balancer: its URL)."""
    oauth: OAuthSettings | None = None
    """Absent: clients need no token."""
    auth_rate_limit: RateLimitSettings = RateLimitSettings()
    """Sign-in attempts (core_auth_login) per user per window, across the cluster."""
    workflows_dir: str | None = None
    """A folder of workflow files (one YAML each), re-read when they change; relative to the config file."""
    workflow_history: WorkflowHistory = WorkflowHistory()

    @property
    def base_url(self) -> str:
        """The gateway's public base URL, without a trailing slash."""
        return (self.public_url or f"http://{self.host}:{self.port}").rstrip("/")

    @property
    def audience(self) -> str | None:
        """What client tokens must be issued for, when the gateway checks them."""
        if self.oauth is None:
            return None
        return self.oauth.audience or f"{self.base_url}/mcp"


class FamilySpec(_Spec, frozen=True):
    name: str
    instance_arg: str = "server"


class TokenExchangeSpec(_Spec, frozen=True):
    """RFC 8693: the user's gateway token is exchanged for one of this audience at `token_endpoint`."""

    token_endpoint: str
    audience: str
    client_id: str
    client_secret_env: str | None = None
    """The environment variable holding the client secret (never the secret itself in the file)."""
    scopes: tuple[str, ...] = ()


class BackendAuth(_Spec, frozen=True):
    """A backend that needs a user's token: forwarded, exchanged, or obtained by the user's sign-in."""

    type: Literal["oauth"] = "oauth"
    forward_token: bool = False
    token_exchange: TokenExchangeSpec | None = None
    client_id: str | None = None
    """For sign-in: the gateway's client at the backend's authorization server (else it registers, RFC 7591)."""
    client_secret_env: str | None = None
    scopes: tuple[str, ...] = ()

    @property
    def mode(self) -> Literal["forward", "exchange", "login"]:
        if self.forward_token:
            return "forward"
        return "exchange" if self.token_exchange is not None else "login"


class ServerSpec(_Spec, frozen=True):
    name: str
    type: BackendType
    command: str | None = None
    args: tuple[str, ...] = ()
    env: dict[str, str] = {}
    cwd: str | None = None
    url: str | None = None
    headers: dict[str, str] = {}
    tool_prefix: str | None = None
    family: FamilySpec | None = None
    timeout: float = 60.0
    max_in_flight: int = 128
    """Calls in flight to this backend per replica; more wait in a queue of `max_queued`."""
    max_queued: int = 512
    max_connections: int = 256
    """Sockets to an HTTP backend per replica (calls, its notification stream, answers to its questions)."""
    auth: BackendAuth | None = None

    @property
    def prefix(self) -> str:
        """The name segment this server's tools are exposed under."""
        return self.tool_prefix or self.name


class WorkflowArg(_Spec, frozen=True):
    """One argument of a workflow: a property of its tool's input schema."""

    type: ArgType = "string"
    required: bool = False
    default: Any = None
    """Used when the caller leaves the argument out (None: the argument is null)."""
    description: str | None = None


class WorkflowStep(_Spec, frozen=True):
    """One tool call of a workflow; strings in `args` and `condition` are templates (shared/workflow_templates.py)."""

    id: str
    tool: str
    """The tool's name as clients call it (x_time_get_current_time)."""
    args: dict[str, Any] = {}
    condition: str | None = None
    """A template; a falsy value skips the step."""
    allow_failure: bool = False
    """The run goes on when this step fails."""
    store: bool = False
    """Keep the step's result as `results.<id>` for the templates of later steps."""
    description: str | None = None


class WorkflowSpec(_Spec, frozen=True):
    """A named sequence of tool calls, exposed as the tool `workflow_<name>`."""

    name: str
    steps: tuple[WorkflowStep, ...]
    description: str | None = None
    args: dict[str, WorkflowArg] = {}

    @property
    def tool_name(self) -> str:
        return f"workflow_{self.name}"


class Config(_Spec, frozen=True):
    """The file's settings; `source`, `disabled` and `warnings` are filled in by the loader."""

    aggregator: AggregatorSettings = AggregatorSettings()
    mcp_servers: tuple[ServerSpec, ...] = msgspec.field(default=(), name="mcpServers")
    workflows: tuple[WorkflowSpec, ...] = ()
    source: str = msgspec.field(default="<config>", name="_source")
    disabled: tuple[str, ...] = msgspec.field(default=(), name="_disabled")
    """Servers the file turns off (`disabled: true`); not in mcp_servers."""
    warnings: tuple[str, ...] = msgspec.field(default=(), name="_warnings")
    """Problems that do not stop the gateway, each as 'FILE: $.path: problem'."""

    def server(self, name: str) -> ServerSpec | None:
        return next((s for s in self.mcp_servers if s.name == name), None)

"""Metrics (OpenTelemetry, exported as Prometheus text) and structured logs.

One log line per tool call (`msg="tool call"`: tool, server, outcome, duration_s); arguments
are not logged, and tokens never: the JSON formatter drops any extra field whose name says
it holds a secret.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterable

from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.resources import Resource
from prometheus_client import CollectorRegistry, generate_latest

from shared.call_metrics import CallMetrics

__all__ = ["CALL_LOG", "Telemetry", "configure_logging"]

CALL_LOG = logging.getLogger("aggregator.calls")
_SECRET_WORDS = ("token", "secret", "password", "authorization", "cookie", "credential")
_SECONDS_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0]
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "color_message"}


class Telemetry:
    """The process's meters; `/metrics` renders them."""

    def __init__(self, service: str = "mcp-aggregator") -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        reader = PrometheusMetricReader(registry=self.registry, scope_info_enabled=False)
        self.provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": service}))
        meter = self.provider.get_meter("aggregator")
        self.calls = CallMetrics(
            "mcp_tool_call_duration_seconds", "Tool call duration as seen by the gateway", _SECONDS_BUCKETS
        )
        self.registry.register(self.calls)
        meter.create_observable_counter(
            "mcp.tool_calls", callbacks=[self._observe_calls], description="Tool calls by tool, server and outcome"
        )
        self._auth_events = meter.create_counter(
            "mcp.auth.events", description="Sign-in events by backend and kind (login_attempt, login_success, ...)"
        )
        self._backend_states: Callable[[], Iterable[tuple[str, bool]]] = lambda: ()
        meter.create_observable_gauge(
            "mcp.backend.up", callbacks=[self._observe_backends], description="1 when a backend is connected, else 0"
        )

    def tool_call(self, tool: str, server: str, outcome: str, duration: float) -> None:
        self.calls.record((tool, server, outcome), duration)
        if CALL_LOG.isEnabledFor(logging.INFO):
            CALL_LOG.info(
                "tool call",
                extra={"tool": tool, "server": server, "outcome": outcome, "duration_s": round(duration, 6)},
            )

    def _observe_calls(self, options: CallbackOptions) -> Iterable[Observation]:
        return [
            Observation(count, {"tool": tool, "server": server, "outcome": outcome})
            for (tool, server, outcome), count in list(self.calls.counts.items())
        ]

    def auth_event(self, server: str, event: str) -> None:
        """One sign-in event on this replica (the cluster-wide counts are in the AuthMetrics store)."""
        self._auth_events.add(1, {"server": server, "event": event})

    def watch_backends(self, states: Callable[[], Iterable[tuple[str, bool]]]) -> None:
        self._backend_states = states

    def _observe_backends(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(1 if up else 0, {"server": name}) for name, up in self._backend_states()]

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def shutdown(self) -> None:
        self.provider.shutdown()


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not any(word in key.lower() for word in _SECRET_WORDS):
                line[key] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        extras = [
            f"{k}={v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not any(word in k.lower() for word in _SECRET_WORDS)
        ]
        return f"{base} {' '.join(extras)}" if extras else base


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    """Log to stderr (stdout may be the MCP channel) in text or JSON lines."""
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("uvicorn.access", "httpx", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

"""AuthEvents: sign-in events counted twice: cluster-wide in the AuthMetrics store, per replica as metrics.

The store's counts answer `/admin/auth/metrics` (the seed's AuthMetricsSummary) from any
replica; the OpenTelemetry counter is what /metrics scrapes. Labels are the configured backend
name and the event kind, nothing a client chooses.
"""

from __future__ import annotations

from shared.store.protocols import AuthEvent, AuthMetricsStore, AuthServerMetrics
from shared.telemetry import Telemetry

__all__ = ["AuthEvents"]


class AuthEvents:
    """An AuthMetricsStore that also counts each event in the replica's telemetry."""

    def __init__(self, store: AuthMetricsStore, telemetry: Telemetry) -> None:
        self.store = store
        self.telemetry = telemetry

    async def record(self, server: str, event: AuthEvent, *, at: float | None = None) -> None:
        self.telemetry.auth_event(server, event)
        await self.store.record(server, event, at=at)

    async def server(self, server: str) -> AuthServerMetrics | None:
        return await self.store.server(server)

    async def all(self) -> list[AuthServerMetrics]:
        return await self.store.all()

"""ReplicaBeat: this replica's Heartbeat (shared/heartbeat.py), made from its parts when it is written."""

from __future__ import annotations

import time

from aggregator.notifications import NotificationHub
from aggregator.protocol.sessions import SessionManager
from aggregator.registry_sync import RegistrySync
from shared.call_metrics import CallMetrics
from shared.heartbeat import VERSION
from shared.pool import SessionConnectionPool
from shared.records import CallCounts, Heartbeat

__all__ = ["ReplicaBeat"]


class ReplicaBeat:
    def __init__(
        self,
        replica_id: str,
        *,
        pool: SessionConnectionPool,
        sessions: SessionManager,
        hub: NotificationHub,
        sync: RegistrySync,
        calls: CallMetrics,
    ) -> None:
        self.replica_id = replica_id
        self.started_at = time.time()
        self.pool = pool
        self.sessions = sessions
        self.hub = hub
        self.sync = sync
        self.calls = calls

    def __call__(self) -> Heartbeat:
        return Heartbeat(
            id=self.replica_id,
            kind="replica",
            version=VERSION,
            started_at=self.started_at,
            at=time.time(),
            in_flight=sum(conn.calls.in_flight for conn in self.pool.snapshot().values()),
            sessions=self.sessions.served,
            streams=len(self.hub),
            registry_version=self.sync.version,
            bounds=self.calls.boundaries,
            calls=[CallCounts(*key, count, buckets) for key, count, buckets in self.calls.snapshot()],
        )

"""ClusterWatch: the processes alive (from heartbeats) and the call history, refreshed in the background.

One store read every BEAT_INTERVAL per replica with the console on, whether or not a page is open,
so the Calls page has its minutes of history when someone looks.
"""

from __future__ import annotations

import asyncio
import time

from aggregator.console.calls import CallHistory
from shared.heartbeat import BEAT_INTERVAL
from shared.records import Heartbeat
from shared.store.protocols import HeartbeatStore, StoreUnavailable

__all__ = ["ClusterWatch"]


class ClusterWatch:
    def __init__(self, store: HeartbeatStore, history: CallHistory, *, interval: float = BEAT_INTERVAL) -> None:
        self.store = store
        self.history = history
        self.interval = interval
        self.beats: list[Heartbeat] = []
        self.error: str | None = None
        """Why the heartbeats could not be read last time (the list shown is then the last one read)."""

    async def refresh(self) -> None:
        try:
            self.beats = await asyncio.wait_for(self.store.all(), self.interval)
            self.error = None
        except (StoreUnavailable, TimeoutError) as exc:
            self.error = str(exc) or "timed out"

    async def run(self) -> None:
        """Refresh until cancelled; add an interval to the history every `history.step` seconds."""
        due = time.monotonic()
        while True:
            await self.refresh()
            if time.monotonic() >= due:
                self.history.add(self.beats, time.time())
                due = max(due + self.history.step, time.monotonic() - self.interval)
            await asyncio.sleep(self.interval)

    def replicas(self) -> list[Heartbeat]:
        return [beat for beat in self.beats if beat.kind == "replica"]

    def workers(self) -> list[Heartbeat]:
        return [beat for beat in self.beats if beat.kind == "worker"]

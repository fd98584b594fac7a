"""CallHistory: the cluster's tool calls over the last minutes, from the counters in replicas' heartbeats.

Each replica's heartbeat carries its counts per (tool, server, outcome) and duration buckets
since it started. Every STEP seconds the console takes the difference from the last heartbeat it
saw of each replica, sums them per tool and per backend, and keeps the last KEEP steps: a bounded
ring (a replica's first heartbeat only sets its baseline, and a counter that went backwards
counts from zero). Percentiles are read from the summed buckets, interpolated within a bucket.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

from shared.records import Heartbeat

__all__ = ["KEEP", "STEP", "CallHistory", "CallRow"]

STEP = 6.0
KEEP = 100
"""Ten minutes of STEP-second intervals."""
_RATE_SPAN = 10
"""Intervals in the 'now' rate: the last minute."""

Counters = dict[tuple[str, str, str], tuple[int, list[int]]]


@dataclass(slots=True)
class Tally:
    count: int = 0
    errors: int = 0
    buckets: list[int] = field(default_factory=list)

    def add(self, count: int, errors: int, buckets: list[int]) -> None:
        self.count += count
        self.errors += errors
        if len(self.buckets) < len(buckets):
            self.buckets.extend([0] * (len(buckets) - len(self.buckets)))
        for index, value in enumerate(buckets):
            self.buckets[index] += value


@dataclass(slots=True)
class Step:
    at: float
    tools: dict[str, Tally]
    servers: dict[str, Tally]


@dataclass(frozen=True, slots=True)
class CallRow:
    """One tool's or backend's calls over the window, as the Calls page shows them."""

    name: str
    calls: int
    rate: float
    """Calls per second over the last minute."""
    error_rate: float
    """Share of calls not `ok` over the window (0..1)."""
    p50: float | None
    p99: float | None
    rates: list[float | None]
    """Calls per second in each interval, oldest first; always `keep` long (None before the history began)."""
    errors: list[float | None]
    """Calls not `ok` per second in each interval."""
    p99s: list[float | None]


class CallHistory:
    def __init__(self, *, step: float = STEP, keep: int = KEEP) -> None:
        self.step = step
        self.keep = keep
        self.steps: deque[Step] = deque(maxlen=keep)
        self.bounds: list[float] = []
        self._last: dict[str, Counters] = {}
        self._rows: dict[str, list[CallRow]] = {}
        """Rows as of the last interval, by grouping: pages render every second, intervals come every STEP."""

    def add(self, beats: list[Heartbeat], at: float) -> None:
        """Take one interval's differences from the replicas' heartbeats."""
        tools: dict[str, Tally] = {}
        servers: dict[str, Tally] = {}
        seen: dict[str, Counters] = {}
        for beat in beats:
            if beat.kind != "replica":
                continue
            if beat.bounds and not self.bounds:
                self.bounds = list(beat.bounds)
            current = {(c.tool, c.server, c.outcome): (c.count, c.buckets) for c in beat.calls}
            seen[beat.id] = current
            before = self._last.get(beat.id)
            if before is None:
                continue  # a replica's first heartbeat is its baseline
            for key, (count, buckets) in current.items():
                old_count, old_buckets = before.get(key, (0, []))
                if count < old_count:
                    old_count, old_buckets = 0, []
                delta = [value - (old_buckets[i] if i < len(old_buckets) else 0) for i, value in enumerate(buckets)]
                added, errors = count - old_count, (count - old_count if key[2] != "ok" else 0)
                if added:
                    tools.setdefault(key[0], Tally()).add(added, errors, delta)
                    servers.setdefault(key[1], Tally()).add(added, errors, delta)
        self._last = seen
        self.steps.append(Step(at, tools, servers))
        self._rows.clear()

    def rows(self, by: Literal["tools", "servers"]) -> list[CallRow]:
        """Every name with calls in the window, busiest first."""
        if by not in self._rows:
            names = sorted({name for step in self.steps for name in getattr(step, by)})
            rows = [self._row(name, [getattr(step, by).get(name) for step in self.steps]) for name in names]
            self._rows[by] = sorted(rows, key=lambda row: (-row.calls, row.name))
        return self._rows[by]

    def _row(self, name: str, tallies: list[Tally | None]) -> CallRow:
        whole = Tally()
        for tally in tallies:
            if tally is not None:
                whole.add(tally.count, tally.errors, tally.buckets)
        recent = [t.count for t in tallies[-_RATE_SPAN:] if t is not None]
        span = min(len(tallies), _RATE_SPAN) * self.step
        before: list[None] = [None] * (self.keep - len(tallies))  # a fixed time axis for the charts
        return CallRow(
            name=name,
            calls=whole.count,
            rate=sum(recent) / span if span else 0.0,
            error_rate=whole.errors / whole.count if whole.count else 0.0,
            p50=percentile(self.bounds, whole.buckets, 0.50),
            p99=percentile(self.bounds, whole.buckets, 0.99),
            rates=[*before, *((t.count if t else 0) / self.step for t in tallies)],
            errors=[*before, *((t.errors if t else 0) / self.step for t in tallies)],
            p99s=[*before, *((percentile(self.bounds, t.buckets, 0.99) or 0.0) if t else 0.0 for t in tallies)],
        )


def percentile(bounds: list[float], buckets: list[int], q: float) -> float | None:
    """The q-quantile in seconds of durations counted per bucket (upper bounds `bounds`, then +Inf)."""
    total = sum(buckets)
    if not total or not bounds:
        return None
    rank = q * total
    seen = 0
    for index, count in enumerate(buckets):
        if count and seen + count >= rank:
            if index >= len(bounds):
                return bounds[-1]  # beyond the last bound: say the bound
            low = bounds[index - 1] if index else 0.0
            return low + (bounds[index] - low) * (rank - seen) / count
        seen += count
    return bounds[-1]

"""CallMetrics: tool-call counts and durations, kept in plain dicts on the hot path.

Every forwarded call records one count and one duration. OpenTelemetry's synchronous histogram
costs about 10 µs a call (attribute hashing, locks, per-reader aggregation), a tenth of the whole
hop, so calls are aggregated here with a dict lookup and two integer adds, and read only when
/metrics is scraped: the counts through an OpenTelemetry observable counter, the durations by a
Prometheus collector on the same registry (OpenTelemetry has no observable histogram). Labels
come only from names the catalog knows, so the number of series is bounded by the caller.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterator, Sequence

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

__all__ = ["CallMetrics"]

CallKey = tuple[str, str, str]
"""(tool, server, outcome)"""

_LABELS = ("tool", "server", "outcome")


class _Durations:
    __slots__ = ("buckets", "count", "total")

    def __init__(self, size: int) -> None:
        self.buckets = [0] * size  # per bucket, not cumulative; the last one is +Inf
        self.count = 0
        self.total = 0.0


class CallMetrics(Collector):
    def __init__(self, name: str, description: str, boundaries: Sequence[float]) -> None:
        self.name = name
        self.description = description
        self.boundaries = list(boundaries)
        self._durations: dict[CallKey, _Durations] = {}

    @property
    def counts(self) -> dict[CallKey, int]:
        """Calls so far per key (read at scrape time; a call updates only its _Durations)."""
        return {key: durations.count for key, durations in list(self._durations.items())}

    def record(self, key: CallKey, seconds: float) -> None:
        durations = self._durations.get(key)
        if durations is None:
            durations = self._durations[key] = _Durations(len(self.boundaries) + 1)
        durations.buckets[bisect_left(self.boundaries, seconds)] += 1
        durations.count += 1
        durations.total += seconds

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(self.name, self.description, labels=_LABELS)
        edges = [*(repr(edge) for edge in self.boundaries), "+Inf"]
        for key, durations in list(self._durations.items()):
            cumulative, running = [], 0
            for edge, count in zip(edges, durations.buckets, strict=True):
                running += count
                cumulative.append((edge, running))
            family.add_metric(list(key), cumulative, durations.total)
        yield family

    def snapshot(self) -> list[tuple[CallKey, int, list[int]]]:
        """Every key's count and per-bucket durations so far (copies), for heartbeats."""
        return [(key, d.count, list(d.buckets)) for key, d in list(self._durations.items())]

"""CallHistory: the cluster's calls per interval from replicas' heartbeat counters, and percentiles from buckets."""

from __future__ import annotations

import pytest

from aggregator.console.calls import CallHistory, percentile
from aggregator.console.charts import sparkline
from shared.records import CallCounts, Heartbeat

BOUNDS = [0.01, 0.1, 1.0]


def beat(replica: str, *calls: CallCounts) -> Heartbeat:
    return Heartbeat(id=replica, kind="replica", version="1", started_at=0, at=0, bounds=BOUNDS, calls=list(calls))


def test_intervals_sum_every_replica_s_new_calls_per_tool_and_backend() -> None:
    history = CallHistory(step=10, keep=3)
    history.add([beat("a", CallCounts("t", "s", "ok", 100, [100, 0, 0, 0])), beat("b")], at=0)  # baselines
    history.add(
        [
            beat(
                "a",
                CallCounts("t", "s", "ok", 110, [108, 2, 0, 0]),
                CallCounts("t", "s", "backend_error", 2, [0, 0, 2, 0]),
            ),
            beat("b", CallCounts("u", "s", "ok", 8, [0, 8, 0, 0])),
        ],
        at=10,
    )
    tools = {row.name: row for row in history.rows("tools")}
    assert tools["t"].calls == 12 and tools["t"].error_rate == pytest.approx(2 / 12)
    assert tools["u"].calls == 8 and tools["u"].p50 == pytest.approx(0.01 + 0.09 * 0.5)
    (server,) = history.rows("servers")
    assert server.name == "s" and server.calls == 20
    assert server.rates == [None, 0.0, 2.0] and server.errors == [None, 0.0, 0.2]  # padded to `keep`


def test_a_replica_whose_counters_went_back_counts_from_zero_and_the_ring_is_bounded() -> None:
    history = CallHistory(step=1, keep=2)
    history.add([beat("a", CallCounts("t", "s", "ok", 50, [50, 0, 0, 0]))], at=0)
    history.add([beat("a", CallCounts("t", "s", "ok", 3, [3, 0, 0, 0]))], at=1)
    assert history.rows("tools")[0].calls == 3
    for second in range(2, 6):
        history.add([beat("a", CallCounts("t", "s", "ok", 3, [3, 0, 0, 0]))], at=second)
    assert len(history.steps) == 2 and history.rows("tools") == []


def test_percentiles_interpolate_within_a_bucket_and_stop_at_the_last_bound() -> None:
    assert percentile(BOUNDS, [0, 0, 0, 0], 0.5) is None
    assert percentile(BOUNDS, [10, 0, 0, 0], 0.5) == pytest.approx(0.005)
    assert percentile(BOUNDS, [0, 0, 10, 0], 0.99) == pytest.approx(0.1 + 0.9 * 0.99)
    assert percentile(BOUNDS, [0, 0, 0, 5], 0.5) == 1.0


def test_a_sparkline_is_an_inline_svg_with_an_accessible_label() -> None:
    svg = str(sparkline("t <calls>", ([0, 1, 2], "rate")))
    assert svg.startswith("<svg") and 'aria-label="t &lt;calls&gt;"' in svg and 'class="rate"' in svg
    before_data = str(sparkline("late", ([None, None, 1.0, 2.0], "rate")))
    assert 'points="120.0,' in before_data  # drawn from where the data begins

"""shared/call_metrics.py: tool-call durations aggregated in dicts render as a Prometheus histogram."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest

from shared.call_metrics import CallMetrics


def test_durations_land_in_the_right_buckets_cumulatively_with_sum_and_count() -> None:
    metrics = CallMetrics("calls_seconds", "test", [0.001, 0.01, 0.1])
    registry = CollectorRegistry()
    registry.register(metrics)
    for seconds in (0.0005, 0.001, 0.005, 0.05, 3.0):  # 0.001 sits on an edge: le="0.001" counts it
        metrics.record(("x_a_t", "a", "ok"), seconds)
    metrics.record(("x_a_t", "a", "error"), 0.02)
    text = generate_latest(registry).decode()
    ok = 'outcome="ok",server="a",tool="x_a_t"'
    assert f'calls_seconds_bucket{{le="0.001",{ok}}} 2.0' in text
    assert f'calls_seconds_bucket{{le="0.01",{ok}}} 3.0' in text
    assert f'calls_seconds_bucket{{le="0.1",{ok}}} 4.0' in text
    assert f'calls_seconds_bucket{{le="+Inf",{ok}}} 5.0' in text
    assert f"calls_seconds_count{{{ok}}} 5.0" in text
    assert f"calls_seconds_sum{{{ok}}} 3.0565" in text
    assert 'calls_seconds_count{outcome="error",server="a",tool="x_a_t"} 1.0' in text
    assert metrics.counts == {("x_a_t", "a", "ok"): 5, ("x_a_t", "a", "error"): 1}

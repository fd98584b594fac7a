"""Reconnect backoff is a pure function of the failure count."""

from __future__ import annotations

from shared.retry import backoff_delay


def test_backoff_doubles_and_caps() -> None:
    delays = [backoff_delay(n, base=0.5, cap=8.0, jitter=0) for n in range(1, 8)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_no_failures_no_wait() -> None:
    assert backoff_delay(0) == 0


def test_jitter_stays_within_bounds() -> None:
    assert backoff_delay(3, base=1, jitter=0.2, rand=lambda: 0.0) == 4 * 0.8
    assert backoff_delay(3, base=1, jitter=0.2, rand=lambda: 1.0) == 4 * 1.2

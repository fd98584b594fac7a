"""How long to wait before reconnecting a failed backend: a pure function of the failure count."""

from __future__ import annotations

import random
from collections.abc import Callable

__all__ = ["backoff_delay"]


def backoff_delay(
    failures: int,
    *,
    base: float = 0.5,
    factor: float = 2.0,
    cap: float = 30.0,
    jitter: float = 0.2,
    rand: Callable[[], float] = random.random,
) -> float:
    """Exponential backoff capped at `cap`, spread by +/- `jitter` so replicas do not retry in step."""
    if failures <= 0:
        return 0.0
    delay = min(cap, base * factor ** (failures - 1))
    return max(0.0, delay * (1 + jitter * (2 * rand() - 1)))

"""Running a coroutine as the process's main program, on uvloop when it is installed.

Ctrl-C before the program installed its own signal handling (while it starts) ends it quietly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run"]

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T | None:
    """asyncio.run on uvloop when available (a dependency of uvicorn[standard]); None after Ctrl-C."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is not built for every platform
        runner = asyncio.run
    else:
        runner = uvloop.run
    try:
        return runner(main)
    except KeyboardInterrupt:
        return None

"""redis-py's replies and errors as this project's: text or bytes, and StoreUnavailable / FencedOut."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from redis.exceptions import RedisClusterException, RedisError, ResponseError

from shared.store.protocols import FencedOut, StoreUnavailable

__all__ = ["as_bytes", "text", "translated"]


def text(value: bytes | str) -> str:
    """A reply as text (the client returns bytes; its type stubs allow str)."""
    return value.decode() if isinstance(value, bytes) else value


def as_bytes(value: bytes | str) -> bytes:
    """A reply as bytes (the client returns bytes; its type stubs allow str)."""
    return value.encode() if isinstance(value, str) else value


@contextlib.contextmanager
def translated(where: str) -> Iterator[None]:
    """Redis errors leave as StoreUnavailable naming `where`, or FencedOut for a stale leader's write."""
    try:
        yield
    except ResponseError as exc:
        if str(exc).startswith("FENCED"):
            raise FencedOut(str(exc)) from exc
        raise StoreUnavailable(f"Redis at {where} refused a command: {exc}") from exc
    except (RedisError, RedisClusterException) as exc:
        raise StoreUnavailable(f"Redis at {where} failed: {exc or type(exc).__name__}") from exc
    except OSError as exc:
        raise StoreUnavailable(f"Redis at {where} is unreachable: {exc}") from exc

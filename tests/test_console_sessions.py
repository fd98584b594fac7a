"""Console sessions: a cookie holds only if its signature, its expiry and the store's sign-out list say so."""

from __future__ import annotations

from aggregator.console.sessions import LIFETIME, ConsoleSessions
from shared.store.memory import MemoryStores


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


async def test_a_cookie_holds_until_it_expires_and_never_once_altered() -> None:
    clock = Clock()
    sessions = ConsoleSessions("token", MemoryStores(), clock=clock)
    session, cookie = sessions.issue()
    found = await sessions.find(cookie)
    assert found == session and sessions.csrf_ok(session, session.csrf)
    session_id, expires, signature = cookie.split(".")
    assert await sessions.find(f"{session_id}.{int(expires) + 3600}.{signature}") is None  # a longer life
    assert await sessions.find(f"x{session_id[1:]}.{expires}.{signature}") is None  # another id
    assert await sessions.find("garbage") is None and await sessions.find(None) is None
    assert not sessions.csrf_ok(session, None) and not sessions.csrf_ok(session, session.csrf + "x")
    assert await ConsoleSessions("another token", MemoryStores(), clock=clock).find(cookie) is None
    clock.now += LIFETIME
    assert await sessions.find(cookie) is None


async def test_signing_out_ends_the_session_on_every_replica_sharing_the_store() -> None:
    stores = MemoryStores()
    here, there = ConsoleSessions("token", stores), ConsoleSessions("token", stores)
    session, cookie = here.issue()
    assert await there.find(cookie) == session
    await here.sign_out(session)
    assert await there.find(cookie) is None


async def test_only_the_admin_token_matches_and_failures_are_limited_per_address() -> None:
    sessions = ConsoleSessions("token", MemoryStores())
    assert sessions.token_matches("token") and not sessions.token_matches("token ") and not sessions.token_matches("")
    for _ in range(5):
        assert await sessions.may_try("10.0.0.1")
        await sessions.failed("10.0.0.1")
    assert not await sessions.may_try("10.0.0.1")
    assert await sessions.may_try("10.0.0.2")

"""UserBackends: the protected backends as each user reaches them: tokens, connections, what they see.

A protected backend has no shared connection. Each user reaches it over a connection of their
own (pool scope `user:{key}`) carrying that user's token: the user's own gateway token
(`forwardToken`), one exchanged for it (RFC 8693, cached encrypted in the store and reused by
every replica until shortly before it expires), or one the user got by signing in
(`core_auth_login`; refreshed before expiry; a refused refresh means signing in again). What a
user can reach is a set of records (UserRecords), and the catalog the user sees is the shared
one plus those (`ServerRegistry.view`). Single sign-on backends are connected on the user's
first request, without any action from the user.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable

import httpx

from aggregator.auth.backend_clients import BackendClients
from aggregator.auth.principal import Principal
from aggregator.auth.user_records import UserRecords, user_key
from aggregator.auth.vault import TokenVault
from aggregator.catalog import Catalog
from aggregator.registry import ServerRegistry
from shared.backends.base import Credentials
from shared.backends.discovery import discover
from shared.config import ServerSpec
from shared.oauth.client import exchange_token, refresh
from shared.oauth.http import OAuthError, RefreshRefused
from shared.oauth.tokens import TokenSet
from shared.pool import SessionConnectionPool
from shared.protocol.errors import BackendAuthRequired, GatewayError
from shared.records import ServerRecord
from shared.store.protocols import GLOBAL_SCOPE, StoreUnavailable, ValueStore

__all__ = ["UserBackends", "user_scope"]

log = logging.getLogger("aggregator.auth")

_USERS = 10_000  # users whose view a replica keeps; the least recent is dropped (and loaded again if needed)
_ERROR_TTL = 60.0  # a failed single sign-on is tried again after this long
_REFRESH_LOCK = 30.0
_STALE_RETRY = 5.0  # a user loaded while the store was down is loaded again after this long

Announce = Callable[[str], Awaitable[None]]
"""Tells every replica that one user's backends changed (the argument is the user key)."""


def user_scope(subject: str) -> str:
    return f"user:{user_key(subject)}"


class _User:
    __slots__ = ("key", "overlay", "principal", "records", "stale_at")

    def __init__(self, principal: Principal, records: dict[str, ServerRecord], stale_at: float | None = None) -> None:
        self.principal = principal
        self.records = records
        self.stale_at = stale_at  # monotonic time to load again (when the store could not be read)
        self.overlay = {name: record for name, record in records.items() if record.state == "up"}
        self.key = tuple(sorted((name, record.lists or "") for name, record in self.overlay.items()))


class UserBackends:
    def __init__(
        self,
        specs: dict[str, ServerSpec],
        *,
        registry: ServerRegistry,
        pool: SessionConnectionPool,
        records: UserRecords,
        vault: TokenVault,
        clients: BackendClients,
        values: ValueStore,
        http: httpx.AsyncClient,
    ) -> None:
        self.protected = {name: spec for name, spec in specs.items() if spec.auth is not None}
        self.registry = registry
        self.pool = pool
        self.records = records
        self.vault = vault
        self.clients = clients
        self.values = values
        self.http = http
        self.announce: Announce | None = None
        self._users: OrderedDict[str, _User] = OrderedDict()
        self._subjects: OrderedDict[str, str] = OrderedDict()  # user key -> subject, for the users known here
        self._loading: dict[str, asyncio.Task[_User]] = {}
        self._tokens: dict[tuple[str, str], TokenSet] = {}
        pool.credentials = self.credentials

    # -- what a request needs ------------------------------------------------------------------

    async def view(self, principal: Principal) -> Catalog:
        """The catalog this user sees (loading the user, and connecting single sign-on backends, the first time)."""
        user = self._users.get(principal.subject)
        if user is None or (user.stale_at is not None and time.monotonic() > user.stale_at):
            user = await self._load(principal)
        else:
            user.principal = principal  # the newest gateway token is the one to forward
            self._users.move_to_end(principal.subject)
        return self.registry.view(user.overlay, user.key)

    def scope(self, principal: Principal | None, server: str) -> str:
        """The pool scope of a call: the user's own connection for a protected backend, else the shared one."""
        if principal is None or server not in self.protected:
            return GLOBAL_SCOPE
        return user_scope(principal.subject)

    async def prepare(self, principal: Principal | None, server: str) -> None:
        """Before a call: the user's token for `server` is fresh (exchanged again or refreshed when near expiry)."""
        spec = self.protected.get(server)
        if spec is None or principal is None or spec.auth is None:
            return
        if spec.auth.mode == "exchange":
            await self._exchanged(principal, spec)
        elif spec.auth.mode == "login":
            await self._signed_in(principal.subject, spec)

    def credentials(self, scope: str, server: str) -> Credentials | None:
        """The token source of a per-user connection (the pool asks when it opens one)."""
        spec = self.protected.get(server)
        subject = self._subjects.get(scope.removeprefix("user:"))
        if spec is None or spec.auth is None or subject is None or scope == GLOBAL_SCOPE:
            return None
        if spec.auth.mode == "forward":
            return lambda: user.principal.token if (user := self._users.get(subject)) is not None else None
        return lambda: token.access_token if (token := self._tokens.get((subject, server))) is not None else None

    def hint_for(self, tool: str) -> str | None:
        """For a tool name under a protected backend's prefix: how the user gets to see that backend's tools."""
        for name, spec in self.protected.items():
            assert spec.auth is not None
            if tool.startswith(f"{self.registry.settings.prefix}_{spec.prefix}_"):
                if spec.auth.mode == "login":
                    call = f'core_auth_login {{"server": "{name}"}}'
                    return f"It may come from {name}, which needs you to sign in: call {call}."
                return f"It may come from {name}, which did not accept your account: read auth://status."
        return None

    # -- users ---------------------------------------------------------------------------------

    def records_of(self, subject: str) -> dict[str, ServerRecord]:
        user = self._users.get(subject)
        return dict(user.records) if user is not None else {}

    def forget_user(self, key: str) -> str | None:
        """Another replica (or this one) changed this user's backends: load them again on the next request."""
        subject = self._subjects.get(key)
        if subject is not None:
            self._users.pop(subject, None)
        return subject

    async def _load(self, principal: Principal) -> _User:
        subject = principal.subject
        task = self._loading.get(subject)
        if task is None:  # one load per user, however many requests arrive meanwhile
            task = self._loading[subject] = asyncio.ensure_future(self._read(principal))
            task.add_done_callback(lambda _t: self._loading.pop(subject, None))
        return await asyncio.shield(task)

    async def _read(self, principal: Principal) -> _User:
        subject = principal.subject
        self._known(subject)
        stale_at = None
        try:
            records = await self.records.all(subject)
        except StoreUnavailable as exc:
            log.warning("cannot read a user's backends from the store (%s); trying again in %gs", exc, _STALE_RETRY)
            records, stale_at = {}, time.monotonic() + _STALE_RETRY
        sso = [spec for name, spec in self.protected.items() if spec.auth and spec.auth.mode != "login"]
        missing = [spec for spec in sso if spec.name not in records]
        found = await asyncio.gather(*(self.connect(principal.subject, spec, principal) for spec in missing))
        records.update((record.server, record) for record in found)
        user = self._users[subject] = _User(principal, records, stale_at)
        self._users.move_to_end(subject)
        while len(self._users) > _USERS:
            self._drop(self._users.popitem(last=False)[0])
        return user

    def _known(self, subject: str) -> None:
        """Remember the subject behind a user key (events name users by key), for the most recent users."""
        key = user_key(subject)
        self._subjects[key] = subject
        self._subjects.move_to_end(key)
        while len(self._subjects) > 2 * _USERS:
            self._subjects.popitem(last=False)

    def _drop(self, subject: str) -> None:
        """Forget what this replica holds for a user it has not served for longest (all of it is in the store)."""
        self._subjects.pop(user_key(subject), None)
        for server in self.protected:
            self._tokens.pop((subject, server), None)

    async def connect(self, subject: str, spec: ServerSpec, principal: Principal | None = None) -> ServerRecord:
        """Connect `subject` to `spec`'s backend and read what it offers them; the record (up, or why not) is stored."""
        if principal is not None:  # a forwarded token is read from the user
            self._users.setdefault(subject, _User(principal, {}))
        self._known(subject)
        try:
            async with asyncio.timeout(spec.timeout):
                if principal is not None:
                    await self.prepare(principal, spec.name)
                else:
                    await self._signed_in(subject, spec)
                conn = await self.pool.connect(spec.name, user_scope(subject))
                record = await discover(conn)
            record.since = time.time()
            return await self._keep(subject, record)
        except (GatewayError, OAuthError, TimeoutError, StoreUnavailable) as exc:
            reason = exc.message if isinstance(exc, GatewayError) else str(exc) or "timed out"
            log.warning("backend %s refused a user's connection: %s", spec.name, reason, extra={"server": spec.name})
            failed = ServerRecord(server=spec.name, state="down", error=reason, since=time.time())
            return await self._keep(subject, failed, ttl=_ERROR_TTL)

    async def _keep(self, subject: str, record: ServerRecord, *, ttl: float | None = None) -> ServerRecord:
        """Store a user's record for every replica; while the store is down this replica still uses it."""
        try:
            return await self.records.put(subject, record, ttl=ttl)
        except StoreUnavailable as exc:
            log.warning("cannot store a user's record of %s (%s)", record.server, exc, extra={"server": record.server})
            return self.records.digested(record)[0]

    async def disconnect(self, subject: str, server: str) -> None:
        """Forget the user's tokens and records for `server`, and close the connection."""
        self._tokens.pop((subject, server), None)
        await self.vault.forget(subject, server)
        await self.records.delete(subject, server)
        await self.pool.evict(server, user_scope(subject))
        await self.changed(subject)

    async def changed(self, subject: str) -> None:
        """This user's backends changed: every replica loads them again."""
        self._users.pop(subject, None)
        if self.announce is not None:
            await self.announce(user_key(subject))

    # -- tokens --------------------------------------------------------------------------------

    async def _exchanged(self, principal: Principal, spec: ServerSpec) -> TokenSet:
        """The user's token for `spec` by RFC 8693 exchange: reused from here or the store while fresh."""
        assert spec.auth is not None and spec.auth.token_exchange is not None
        key = (principal.subject, spec.name)
        now = time.time()
        token = self._tokens.get(key)
        if token is None or token.expiring(now):
            token = await self.vault.get(principal.subject, spec.name)
            if token is None or token.expiring(now):
                exchange = spec.auth.token_exchange
                secret = os.environ.get(exchange.client_secret_env, "") if exchange.client_secret_env else ""
                token = await exchange_token(
                    self.http,
                    token_endpoint=exchange.token_endpoint,
                    subject_token=principal.token,
                    audience=exchange.audience,
                    client_id=exchange.client_id,
                    client_secret=secret,
                    scopes=exchange.scopes,
                )
                await self.vault.put(principal.subject, spec.name, token, ttl=_lifetime(token, now))
            self._tokens[key] = token
        return token

    async def _signed_in(self, subject: str, spec: ServerSpec) -> TokenSet:
        """The token the user got by signing in, refreshed when near expiry; BackendAuthRequired when there is none."""
        key = (subject, spec.name)
        now = time.time()
        token = self._tokens.get(key)
        if token is None or token.expiring(now, margin=60.0):
            token = await self.vault.get(subject, spec.name)
            if token is None:
                raise _sign_in_first(spec.name)
            if token.expiring(now, margin=60.0):
                token = await self._refreshed(subject, spec, token)
            self._tokens[key] = token
        return token

    async def _refreshed(self, subject: str, spec: ServerSpec, token: TokenSet) -> TokenSet:
        """A refreshed token, one replica at a time; a refused refresh forgets the tokens (sign in again)."""
        lock = f"refresh:{user_key(subject)}:{spec.name}"
        if not await self.values.put_if_absent(lock, b"1", ttl=_REFRESH_LOCK):
            for _ in range(50):  # another replica is refreshing: take its result
                await asyncio.sleep(0.2)
                fresh = await self.vault.get(subject, spec.name)
                if fresh is None:
                    raise _sign_in_first(spec.name)
                if not fresh.expiring(time.time(), margin=60.0):
                    return fresh
            raise _sign_in_first(spec.name)
        try:
            if token.refresh_token is None:
                raise RefreshRefused("the backend's authorization server issued no refresh token", url=spec.url or "")
            target = await self.clients.target(spec)
            fresh = await refresh(
                self.http, target.metadata, target.client, refresh_token=token.refresh_token, resource=target.resource
            )
            await self.vault.put(subject, spec.name, fresh, ttl=_stored_for(fresh))
            return fresh
        except RefreshRefused:
            log.info("a user's sign-in to %s ended (refresh refused)", spec.name, extra={"server": spec.name})
            await self.disconnect(subject, spec.name)
            raise _sign_in_first(spec.name) from None
        finally:
            await self.values.delete(lock)


def _sign_in_first(server: str) -> BackendAuthRequired:
    return BackendAuthRequired(server, f'sign in to {server} first: call core_auth_login with {{"server": "{server}"}}')


def _lifetime(token: TokenSet, now: float) -> float:
    return max(1.0, (token.expires_at or now + 300.0) - now)


def _stored_for(token: TokenSet) -> float:
    """How long the vault keeps signed-in tokens: as long as a refresh can renew them (a month), else until expiry."""
    return 30 * 86_400.0 if token.refresh_token else _lifetime(token, time.time())

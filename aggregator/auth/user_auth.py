"""UserAuth: the parts that give users their own protected backends, wired together once.

The gateway opens it at start when any backend has `auth`; tests open the same thing in process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import httpx

from aggregator.auth.auth_events import AuthEvents
from aggregator.auth.backend_clients import BackendClients
from aggregator.auth.sign_in import SignIn
from aggregator.auth.user_backends import UserBackends
from aggregator.auth.user_records import UserRecords
from aggregator.auth.vault import TokenVault
from aggregator.registry import ServerRegistry
from shared.config import AggregatorSettings, ServerSpec
from shared.crypto import ENV_VAR, TokenCipher
from shared.pool import SessionConnectionPool
from shared.store.protocols import Stores
from shared.telemetry import Telemetry

__all__ = ["UserAuth"]


@dataclass(frozen=True, slots=True)
class UserAuth:
    users: UserBackends
    sign_in: SignIn
    http: httpx.AsyncClient
    """The OAuth client's connections (to authorization servers); closed by aclose()."""

    @classmethod
    async def open(
        cls,
        specs: dict[str, ServerSpec],
        settings: AggregatorSettings,
        *,
        registry: ServerRegistry,
        pool: SessionConnectionPool,
        stores: Stores,
        telemetry: Telemetry,
    ) -> UserAuth:
        """Wire the parts over `stores`; the token key comes from AGGREGATOR_TOKEN_KEY, else from the store."""
        cipher = await TokenCipher.open(stores.keys, os.environ.get(ENV_VAR))
        http = httpx.AsyncClient(timeout=15.0)
        vault = TokenVault(stores.values, cipher)
        clients = BackendClients(http, stores.values, registry, f"{settings.base_url}/oauth/callback")
        users = UserBackends(
            specs,
            registry=registry,
            pool=pool,
            records=UserRecords(stores.capabilities, stores.values),
            vault=vault,
            clients=clients,
            values=stores.values,
            http=http,
        )
        sign_in = SignIn(
            specs,
            settings,
            users=users,
            clients=clients,
            vault=vault,
            cipher=cipher,
            values=stores.values,
            rate_limiter=stores.rate_limiter,
            metrics=AuthEvents(stores.auth_metrics, telemetry),
        )
        return cls(users, sign_in, http)

    async def aclose(self) -> None:
        await self.http.aclose()

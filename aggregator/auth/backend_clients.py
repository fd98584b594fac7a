"""BackendClients: the gateway as an OAuth client of each protected backend's authorization server.

For a backend users sign in to, the gateway needs that server's metadata (found from the
backend's RFC 9728 metadata, which the control plane records), a client there (configured, or
registered once by RFC 7591 and kept in the store so every replica uses the same one), the
resource to ask a token for, and the scopes. Metadata is remembered for an hour.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass

import httpx
import msgspec

from aggregator.registry import ServerRegistry
from shared.config import ServerSpec
from shared.oauth.client import ClientRegistration, register_client
from shared.oauth.discovery import AuthServerMetadata, discover_authorization_server, discover_protected_resource
from shared.oauth.http import OAuthError
from shared.store.protocols import ValueStore

__all__ = ["BackendClients", "SignInTarget"]

_METADATA_TTL = 3600.0
_REGISTRATION_TTL = 90 * 86_400.0
_registration = msgspec.json.Decoder(ClientRegistration)


@dataclass(frozen=True, slots=True)
class SignInTarget:
    """Where and how a user signs in to one backend."""

    metadata: AuthServerMetadata
    client: ClientRegistration
    resource: str
    scope: str | None


class BackendClients:
    def __init__(
        self, http: httpx.AsyncClient, values: ValueStore, registry: ServerRegistry, redirect_uri: str
    ) -> None:
        self.http = http
        self.values = values
        self.registry = registry
        self.redirect_uri = redirect_uri
        self._metadata: dict[str, tuple[float, AuthServerMetadata]] = {}

    async def target(self, spec: ServerSpec) -> SignInTarget:
        """Metadata, client, resource and scope for signing in to `spec`'s backend; OAuthError naming what failed."""
        assert spec.auth is not None and spec.url is not None
        record = self.registry.catalog.servers.get(spec.name)
        challenge = record.auth if record is not None else None
        if challenge is not None and challenge.error:
            raise OAuthError(f"backend {spec.name!r}: {challenge.error}", url=spec.url)
        resource: str | None
        if challenge is None or not challenge.authorization_servers:
            found = await discover_protected_resource(self.http, spec.url, None)
            issuer, resource, offered = found.authorization_servers[0], found.resource, list(found.scopes_supported)
        else:
            issuer, resource, offered = challenge.authorization_servers[0], challenge.resource, challenge.scopes
        metadata = await self.metadata(issuer)
        scopes = list(spec.auth.scopes) or offered
        return SignInTarget(
            metadata=metadata,
            client=await self._client(spec, metadata),
            resource=resource or spec.url,
            scope=" ".join(scopes) or None,
        )

    async def metadata(self, issuer: str) -> AuthServerMetadata:
        cached = self._metadata.get(issuer)
        if cached is not None and time.monotonic() - cached[0] < _METADATA_TTL:
            return cached[1]
        metadata = await discover_authorization_server(self.http, issuer)
        self._metadata[issuer] = (time.monotonic(), metadata)
        return metadata

    async def _client(self, spec: ServerSpec, metadata: AuthServerMetadata) -> ClientRegistration:
        assert spec.auth is not None
        if spec.auth.client_id is not None:
            secret = os.environ.get(spec.auth.client_secret_env) if spec.auth.client_secret_env else None
            return ClientRegistration(client_id=spec.auth.client_id, client_secret=secret)
        key = f"oauth-client:{spec.name}:{hashlib.sha256(metadata.issuer.encode()).hexdigest()[:16]}"
        stored = await self.values.get(key)
        if stored is not None:
            return _registration.decode(stored)
        registered = await register_client(
            self.http, metadata, redirect_uri=self.redirect_uri, client_name=f"mcp-aggregator ({spec.name})"
        )
        if await self.values.put_if_absent(key, msgspec.json.encode(registered), ttl=_REGISTRATION_TTL):
            return registered
        stored = await self.values.get(key)  # another replica registered at the same moment: use that one
        return _registration.decode(stored) if stored is not None else registered

"""Finding a protected backend's authorization server: its 401 challenge, RFC 9728, RFC 8414 / OpenID discovery.

A backend answers 401 with `WWW-Authenticate: Bearer resource_metadata="..."`; that document (or,
without one, the well-known URL derived from the backend's URL) names the resource and its
authorization servers, whose metadata is found path-aware: RFC 8414 insertion, then OpenID
Connect insertion, then OpenID Connect appending. Metadata about another resource or another
issuer than the one asked for is refused (RFC 9728 section 3.3, RFC 8414 section 3.3). Fields the
gateway does not use are ignored when decoding.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import httpx
import msgspec

from shared.oauth.http import DiscoveryFailed, decode, send
from shared.redact import redact_url

__all__ = [
    "AuthServerMetadata",
    "ProtectedResource",
    "authorization_server_metadata_urls",
    "discover_authorization_server",
    "discover_protected_resource",
    "parse_www_authenticate",
    "protected_resource_metadata_urls",
]


class ProtectedResource(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 9728 protected resource metadata: the resource (the RFC 8707 `resource` to ask tokens for)."""

    resource: str
    authorization_servers: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()


class AuthServerMetadata(msgspec.Struct, frozen=True, kw_only=True):
    """RFC 8414 authorization server metadata (OpenID Connect discovery has the same fields)."""

    issuer: str
    token_endpoint: str
    authorization_endpoint: str | None = None
    registration_endpoint: str | None = None
    jwks_uri: str | None = None
    code_challenge_methods_supported: tuple[str, ...] = ()
    scopes_supported: tuple[str, ...] = ()


_protected_resource = msgspec.json.Decoder(ProtectedResource)
_auth_server_metadata = msgspec.json.Decoder(AuthServerMetadata)

# RFC 9110 section 11: a challenge is `scheme [ token68 / #auth-param ]`, an auth-param `token = token / quoted-string`.
# Tokens match possessively (Python 3.11), so `abc==` is neither a parameter nor a scheme `ab`: it is skipped.
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]++"
_ITEM = re.compile(
    rf'(?P<name>{_TOKEN})[ \t]*=[ \t]*(?:"(?P<quoted>(?:[^"\\]|\\.)*)"|(?P<token>{_TOKEN}))'
    rf"|(?P<scheme>{_TOKEN})(?![ \t]*=)"
    r"|[^\s,]+"
)
_ESCAPE = re.compile(r"\\(.)")


def parse_www_authenticate(value: str) -> dict[str, str]:
    """The parameters (names lower-cased) of the Bearer challenge in a WWW-Authenticate value; {} without one."""
    params: dict[str, str] = {}
    scheme: str | None = None
    for item in _ITEM.finditer(value):
        if item["scheme"] is not None:
            if scheme == "bearer":
                break  # the next challenge begins
            scheme = item["scheme"].lower()
        elif item["name"] is not None and scheme == "bearer":
            quoted = item["quoted"]
            params.setdefault(item["name"].lower(), _ESCAPE.sub(r"\1", quoted) if quoted is not None else item["token"])
    return params


def protected_resource_metadata_urls(backend_url: str) -> list[str]:
    """Where RFC 9728 metadata of `backend_url` may be: the well-known path inserted before its path, then the root."""
    origin, path = _origin_and_path(backend_url)
    root = f"{origin}/.well-known/oauth-protected-resource"
    return [f"{root}{path}", root] if path else [root]


def authorization_server_metadata_urls(issuer: str) -> list[str]:
    """Where an issuer's metadata may be, in the order tried: RFC 8414, OpenID Connect inserted, OpenID appended."""
    if "?" in issuer or "#" in issuer:
        shown = redact_url(issuer)
        raise DiscoveryFailed(f"{shown} is not an issuer URL: an issuer has no query or fragment (RFC 8414)", url=shown)
    origin, path = _origin_and_path(issuer)
    urls = [f"{origin}/.well-known/{name}{path}" for name in ("oauth-authorization-server", "openid-configuration")]
    return [*urls, f"{origin}{path}/.well-known/openid-configuration"] if path else urls


async def discover_protected_resource(
    http: httpx.AsyncClient, backend_url: str, www_authenticate: str | None
) -> ProtectedResource:
    """The RFC 9728 metadata of the backend at `backend_url`, from its challenge's `resource_metadata` if any."""
    pointer = parse_www_authenticate(www_authenticate or "").get("resource_metadata")
    urls = [pointer] if pointer else protected_resource_metadata_urls(backend_url)
    missing: list[str] = []
    for url in urls:
        reply = await send(http, "GET", url, failure=DiscoveryFailed, headers=_ACCEPT_JSON)
        if reply.status != 200:
            missing.append(f"{reply.url} (HTTP {reply.status})")
            continue
        found = decode(reply, _protected_resource, what="protected resource metadata", failure=DiscoveryFailed)
        if not _covers(found.resource, backend_url):
            raise DiscoveryFailed(
                f"the metadata at {reply.url} is about {redact_url(found.resource)}, not {redact_url(backend_url)}:"
                " the backend's URL or its resource_metadata is misconfigured",
                url=reply.url,
            )
        if not found.authorization_servers:
            raise DiscoveryFailed(f"the metadata at {reply.url} names no authorization server", url=reply.url)
        return found
    shown = redact_url(backend_url)
    raise DiscoveryFailed(
        f"{shown} serves no OAuth protected resource metadata (RFC 9728): tried {', '.join(missing)}", url=shown
    )


async def discover_authorization_server(http: httpx.AsyncClient, issuer: str) -> AuthServerMetadata:
    """The metadata of `issuer`, from the first discovery URL that serves it; it must name `issuer` itself."""
    missing: list[str] = []
    for url in authorization_server_metadata_urls(issuer):
        reply = await send(http, "GET", url, failure=DiscoveryFailed, headers=_ACCEPT_JSON)
        if reply.status != 200:
            missing.append(f"{reply.url} (HTTP {reply.status})")
            continue
        found = decode(reply, _auth_server_metadata, what="authorization server metadata", failure=DiscoveryFailed)
        if found.issuer.rstrip("/") != issuer.rstrip("/"):
            raise DiscoveryFailed(
                f"the metadata at {reply.url} names issuer {redact_url(found.issuer)!r}, not {redact_url(issuer)}:"
                " configure the issuer exactly as the server names itself",
                url=reply.url,
            )
        return found
    shown = redact_url(issuer)
    raise DiscoveryFailed(
        f"no authorization server metadata for {shown} (RFC 8414 or OpenID Connect): tried {', '.join(missing)}",
        url=shown,
    )


_ACCEPT_JSON = {"Accept": "application/json"}


def _origin_and_path(url: str) -> tuple[str, str]:
    """`scheme://host[:port]` and the path without a trailing slash; DiscoveryFailed unless `url` is http(s)."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        shown = redact_url(url)
        raise DiscoveryFailed(f"{shown} is not an absolute http(s) URL", url=shown)
    return f"{parts.scheme}://{parts.netloc}", parts.path.rstrip("/")


def _covers(resource: str, url: str) -> bool:
    """Whether the resource identifier `resource` is `url` or a parent of it (same origin, whole path segments)."""
    resource_parts, url_parts = urlsplit(resource), urlsplit(url)
    if (resource_parts.scheme, resource_parts.netloc.lower()) != (url_parts.scheme, url_parts.netloc.lower()):
        return False
    parent, path = resource_parts.path.rstrip("/"), url_parts.path.rstrip("/")
    return path == parent or path.startswith(parent + "/")

"""The seam between the gateway's OAuth client and HTTP: the error tree, bounded requests, typed replies.

    OAuthError                  names the URL and the cause; `url` (redacted), `error` (the RFC 6749
    │                           code when the server sent one, None when it was unreachable or garbled)
    ├── DiscoveryFailed             no usable RFC 9728 / RFC 8414 metadata
    ├── RegistrationFailed          RFC 7591 registration impossible or refused
    └── TokenRequestFailed          the token endpoint refused, was unreachable, or answered nonsense
        └── RefreshRefused              `invalid_grant` on a refresh: the user must sign in again

Each request has explicit timeouts whatever the caller's client says, an overall deadline and a
body limit, and follows no redirect (a token request's body must not travel on). Every httpx
failure becomes the caller's OAuthError subclass, chained. Messages never carry a token, code,
verifier or client secret: URLs are redacted, and text a server sends back has each secret of the
request replaced by *** before it is shown. What payloads mean is not this module's business:
callers name the Struct to decode.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import NamedTuple, TypeVar
from urllib.parse import quote, quote_plus

import httpx
import msgspec

from shared.redact import redact_url

__all__ = [
    "DEADLINE",
    "MAX_BODY",
    "TIMEOUT",
    "DiscoveryFailed",
    "OAuthError",
    "RefreshRefused",
    "RegistrationFailed",
    "Reply",
    "TokenRequestFailed",
    "decode",
    "refusal",
    "send",
]

TIMEOUT = httpx.Timeout(10.0, connect=5.0)
"""Per phase: connecting 5 s; each read, write and pool wait 10 s."""
DEADLINE = 30.0
"""Seconds for a whole request, so a server trickling bytes cannot hold a sign-in open."""
MAX_BODY = 1 << 20
"""Bytes of a reply; metadata and token responses are a few kilobytes."""
_SHOWN_CHARS = 300


class OAuthError(Exception):
    """Talking OAuth to an authorization server (or a protected resource's metadata) failed."""

    def __init__(self, message: str, *, url: str, error: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.url = url
        self.error = error


class DiscoveryFailed(OAuthError):
    """No usable protected-resource or authorization-server metadata."""


class RegistrationFailed(OAuthError):
    """Dynamic client registration is not offered, or was refused."""


class TokenRequestFailed(OAuthError):
    """The token endpoint refused the request, could not be reached, or answered something unusable."""


class RefreshRefused(TokenRequestFailed):
    """The refresh token is no longer good (`invalid_grant`): sign in again; retrying will not help."""


_Failure = TypeVar("_Failure", bound=OAuthError)
_Payload = TypeVar("_Payload")


class Reply(NamedTuple):
    url: str  # redacted: fit for messages
    status: int
    body: bytes


class _ErrorBody(msgspec.Struct):
    """RFC 6749 section 5.2 (also RFC 7591 section 3.2.2)."""

    error: str
    error_description: str | None = None


_error_body = msgspec.json.Decoder(_ErrorBody)


async def send(
    http: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    failure: type[OAuthError],
    form: Mapping[str, str] | None = None,
    content: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> Reply:
    """The status and body `url` answers (any status); `failure` when it cannot be reached in time."""
    shown = redact_url(url)
    try:
        async with (
            asyncio.timeout(DEADLINE),
            http.stream(
                method, url, data=form, content=content, headers=headers, timeout=TIMEOUT, follow_redirects=False
            ) as response,
        ):
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > MAX_BODY:
                    raise failure(f"{shown} answered more than {MAX_BODY} bytes", url=shown)
    except TimeoutError as exc:
        raise failure(f"{shown} did not answer within {DEADLINE:g} s", url=shown) from exc
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        cause = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise failure(f"cannot reach {shown}: {cause}", url=shown) from exc
    return Reply(shown, response.status_code, bytes(body))


def decode(reply: Reply, decoder: msgspec.json.Decoder[_Payload], *, what: str, failure: type[OAuthError]) -> _Payload:
    """The reply's body as the decoder's type; `failure` naming the URL and the field when it is not one."""
    try:
        return decoder.decode(reply.body)
    except msgspec.DecodeError as exc:  # ValidationError included: its message names the path, never a value
        raise failure(f"{reply.url} answered HTTP {reply.status} but not valid {what}: {exc}", url=reply.url) from exc


def refusal(reply: Reply, *, what: str, failure: type[_Failure], secrets: Iterable[str | None] = ()) -> _Failure:
    """The error an unsuccessful reply stands for, with the server's RFC 6749 error code and description
    if it sent them (any of `secrets` in them hidden)."""
    try:
        body: _ErrorBody | None = _error_body.decode(reply.body)
    except msgspec.DecodeError:
        body = None
    if body is None:
        return failure(f"{what} at {reply.url} failed: HTTP {reply.status}", url=reply.url)
    hidden = [secret for secret in secrets if secret]
    error = _shown(body.error, hidden)
    reason = f"{error} ({_shown(body.error_description, hidden)})" if body.error_description else error
    return failure(f"{what} at {reply.url} was refused with HTTP {reply.status}: {reason}", url=reply.url, error=error)


def _shown(text: str, secrets: list[str]) -> str:
    """Server text fit for a message: secrets (as sent, or URL-encoded) hidden, printable, at most 300 chars."""
    for secret in secrets:
        for form in {secret, quote(secret, safe=""), quote_plus(secret)}:
            text = text.replace(form, "***")
    text = "".join(char if char.isprintable() else " " for char in text)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."

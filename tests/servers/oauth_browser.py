"""The user's side of an OAuth authorization-code flow in tests: a browser that follows the redirect, a token store.

The SDK's `OAuthClientProvider` asks two things of its host: a redirect handler (open this
authorization URL in a browser) and a callback handler (wait for the redirect back to our
redirect URI, return its code, state and iss). `Browser.open` and `Browser.callback` are those
two: `open` fetches the URL from the auto-approving test authorization server without following
redirects, reads the `Location` it answers (the redirect URI with the code), and `callback`
hands that over. `login_hint` picks the user who signs in.

    browser = Browser(login_hint="bob")
    provider = OAuthClientProvider(server_url, client_metadata(), MemoryTokenStorage(),
                                   redirect_handler=browser.open, callback_handler=browser.callback)
    async with httpx2.AsyncClient(auth=provider) as http:
        async with Client(streamable_http_client(server_url, http_client=http)) as client: ...
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import httpx
from mcp.client.auth import TokenStorage
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from pydantic import AnyUrl

__all__ = ["REDIRECT_URI", "AuthorizationRefused", "Browser", "MemoryTokenStorage", "client_metadata"]

REDIRECT_URI = "http://127.0.0.1:1/callback"  # never served: the browser stops at the redirect


class AuthorizationRefused(Exception):
    """The authorization server redirected back with an error (or did not redirect at all)."""


def client_metadata(**fields: object) -> OAuthClientMetadata:
    """What a test client registers: a public client with REDIRECT_URI that may refresh its tokens."""
    defaults: dict[str, object] = {
        "redirect_uris": [AnyUrl(REDIRECT_URI)],
        "grant_types": ["authorization_code", "refresh_token"],
        "token_endpoint_auth_method": "none",
        "client_name": "mcp-aggregator tests",
    }
    return OAuthClientMetadata.model_validate({**defaults, **fields})


class Browser:
    """A redirect handler and callback handler pair for `OAuthClientProvider`, signing in as `login_hint`."""

    def __init__(self, login_hint: str | None = None) -> None:
        self.login_hint = login_hint
        self.visited: list[str] = []  # the authorization URLs opened, login_hint included
        self._result: AuthorizationCodeResult | None = None

    async def open(self, authorization_url: str) -> None:
        url = _with_login_hint(authorization_url, self.login_hint)
        self.visited.append(url)
        async with httpx.AsyncClient(timeout=10) as http:
            response = await http.get(url)
        location = response.headers.get("location")
        if not response.is_redirect or location is None:
            raise AuthorizationRefused(f"GET {url} answered {response.status_code}: {response.text[:200]}")
        params = {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}
        if "error" in params:
            raise AuthorizationRefused(f"{params['error']}: {params.get('error_description', '')}")
        self._result = AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))

    async def callback(self) -> AuthorizationCodeResult:
        result, self._result = self._result, None
        if result is None:
            raise AuthorizationRefused("the callback came before any authorization redirect")
        return result


def _with_login_hint(url: str, login_hint: str | None) -> str:
    if login_hint is None:
        return url
    parts = urlsplit(url)
    query = (
        f"{parts.query}&{urlencode({'login_hint': login_hint})}"
        if parts.query
        else urlencode({"login_hint": login_hint})
    )
    return urlunsplit(parts._replace(query=query))


class MemoryTokenStorage(TokenStorage):
    """Tokens and client registration kept in memory, for one provider (or shared to survive reconnects)."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info

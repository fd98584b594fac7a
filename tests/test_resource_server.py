"""aggregator/auth/resource_server.py: which bearer JWTs the gateway accepts, checked in process.

Tokens are signed here with joserfc; the verifier gets the public keys from a fetcher the test
controls (counting fetches, rotating keys), and a clock the test moves.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, KeySetSerialization, RSAKey

from aggregator.auth.resource_server import InsufficientScope, InvalidToken, JwtVerifier

ISSUER = "https://idp.example.com/realm"
AUDIENCE = "https://mcp.example.com/mcp"


class Issuer:
    """Signs tokens; publishes its keys through `fetch`, which counts how often it is asked."""

    def __init__(self) -> None:
        self.keys = [RSAKey.generate_key(2048, parameters={"kid": "k1", "alg": "RS256", "use": "sig"})]
        self.fetches = 0

    def rotate(self) -> None:
        self.keys.append(RSAKey.generate_key(2048, parameters={"kid": f"k{len(self.keys) + 1}", "alg": "RS256"}))

    async def fetch(self) -> KeySetSerialization:
        self.fetches += 1
        return KeySet(self.keys).as_dict(private=False)

    def token(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "sub": "alice", "aud": AUDIENCE, "exp": now + 300, "iat": now, "scope": "mcp"}
        body.update(claims)
        body = {key: value for key, value in body.items() if value is not None}
        key = self.keys[-1]
        return jwt.encode({"alg": "RS256", "kid": key.kid}, body, key)


@pytest.fixture
def issuer() -> Issuer:
    return Issuer()


def verifier(issuer: Issuer, **options: Any) -> JwtVerifier:
    return JwtVerifier(issuer=ISSUER, audience=AUDIENCE, fetch_keys=issuer.fetch, **options)


async def test_a_valid_token_gives_its_subject_scopes_and_client(issuer: Issuer) -> None:
    principal = await verifier(issuer).verify(issuer.token(scope="mcp admin", client_id="cli"))
    assert (principal.subject, principal.scopes, principal.client_id) == ("alice", {"mcp", "admin"}, "cli")
    assert "eyJ" not in repr(principal)  # the token itself is never shown


async def test_the_audience_may_be_one_of_several(issuer: Issuer) -> None:
    principal = await verifier(issuer).verify(issuer.token(aud=["https://other", AUDIENCE]))
    assert principal.subject == "alice"


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"iss": "https://evil.example"}, "issued by 'https://evil.example'"),
        ({"aud": "https://other.example/mcp"}, "not for this gateway"),
        ({"aud": None}, "not for this gateway"),
        ({"exp": int(time.time()) - 120}, "expired"),
        ({"exp": None}, "expired"),
        ({"nbf": int(time.time()) + 600}, "not valid yet"),
        ({"sub": None}, "names no subject"),
    ],
)
async def test_tokens_for_someone_else_or_out_of_time_are_refused(
    issuer: Issuer, claims: dict[str, Any], reason: str
) -> None:
    with pytest.raises(InvalidToken, match=reason):
        await verifier(issuer).verify(issuer.token(**claims))


async def test_a_small_clock_skew_is_tolerated(issuer: Issuer) -> None:
    principal = await verifier(issuer, leeway=30).verify(issuer.token(exp=int(time.time()) - 10))
    assert principal.subject == "alice"


async def test_a_forged_or_garbled_token_is_refused(issuer: Issuer) -> None:
    forger = Issuer()  # same key id, another key
    with pytest.raises(InvalidToken, match="signature"):
        await verifier(issuer).verify(forger.token())
    with pytest.raises(InvalidToken):
        await verifier(issuer).verify("not-a-jwt")
    head, body, _ = issuer.token().split(".")
    with pytest.raises(InvalidToken, match="signature"):
        await verifier(issuer).verify(f"{head}.{body}.AAAA")


async def test_missing_scopes_are_insufficient_scope_naming_them(issuer: Issuer) -> None:
    check = verifier(issuer, required_scopes=["mcp", "tools:call"])
    with pytest.raises(InsufficientScope, match="tools:call") as caught:
        await check.verify(issuer.token(scope="mcp"))
    assert caught.value.missing == ["tools:call"]
    assert (await check.verify(issuer.token(scp=["mcp", "tools:call"], scope=None))).subject == "alice"


async def test_a_verified_token_is_remembered_and_keys_are_fetched_once(issuer: Issuer) -> None:
    check = verifier(issuer)
    token = issuer.token()
    first = await check.verify(token)
    for _ in range(100):
        assert await check.verify(token) is first
    await check.verify(issuer.token(sub="bob"))
    assert issuer.fetches == 1


async def test_a_new_signing_key_is_fetched_when_a_token_names_it(issuer: Issuer) -> None:
    check = verifier(issuer, refetch_interval=0)
    await check.verify(issuer.token())
    issuer.rotate()
    assert (await check.verify(issuer.token(sub="bob"))).subject == "bob"
    assert issuer.fetches == 2


async def test_unknown_key_ids_do_not_make_the_gateway_fetch_keys_in_a_loop(issuer: Issuer) -> None:
    check = verifier(issuer, refetch_interval=60)
    await check.verify(issuer.token())
    stranger = Issuer()
    stranger.keys[0] = RSAKey.generate_key(2048, parameters={"kid": "unknown", "alg": "RS256"})
    for _ in range(20):
        with pytest.raises(InvalidToken):
            await check.verify(stranger.token())
    assert issuer.fetches == 1


async def test_a_key_server_that_is_down_fails_new_tokens_with_a_clear_reason() -> None:
    async def down() -> KeySetSerialization:
        raise OSError("connection refused")

    check = JwtVerifier(issuer=ISSUER, audience=AUDIENCE, fetch_keys=down)
    with pytest.raises(InvalidToken, match="signing keys cannot be fetched"):
        await check.verify(Issuer().token())

"""redact_url: what of a backend URL may be shown to clients, logs and operators."""

from __future__ import annotations

import pytest

from shared.redact import redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("http://user:s3cret@host:8080/mcp", "http://host:8080/mcp"),
        ("https://token@host/mcp", "https://host/mcp"),
        ("https://host/mcp?api_key=abc&region=eu&flag", "https://host/mcp?api_key=***&region=***&flag"),
        ("https://a:b@host/mcp?key=v#frag", "https://host/mcp?key=***#***"),
        ("https://host/mcp#access_token=abc", "https://host/mcp#***"),
        ("https://host/mcp", "https://host/mcp"),
        ("https://host/p@th?q=a@b", "https://host/p@th?q=***"),
        ("https://host/mcp?", "https://host/mcp?"),
        ("user:pw@host/mcp?k=v", "host/mcp?k=***"),
    ],
)
def test_url_loses_userinfo_and_query_values_but_keeps_names(url: str, shown: str) -> None:
    assert redact_url(url) == shown


@pytest.mark.parametrize("garbage", ["", "::::", "http://[::1/mcp?k=secret", "%%%@@@?=&=#", "a b c", "\x00?x=secret"])
def test_malformed_urls_never_raise_and_never_show_a_value(garbage: str) -> None:
    shown = redact_url(garbage)
    assert "secret" not in shown
    assert isinstance(shown, str)

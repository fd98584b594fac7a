"""CallContext: what the client declared, read only when needed and never fatal."""

from __future__ import annotations

import pytest
from msgspec import Raw

from aggregator.calls import CallContext


def stateless(capabilities: bytes) -> CallContext:
    return CallContext(
        request_id=1, method="tools/call", protocol_version="2026-07-28", client_capabilities_raw=Raw(capabilities)
    )


def test_declared_capabilities_are_read_from_the_request() -> None:
    assert stateless(b'{"sampling": {}, "elicitation": {"form": {}}}').client_capabilities == {
        "sampling": {},
        "elicitation": {"form": {}},
    }


@pytest.mark.parametrize("capabilities", [b'{"sampling": 1e999}', b"[1, 2]", b'"sampling"', b"null"])
def test_capabilities_that_are_not_a_usable_object_declare_nothing(capabilities: bytes) -> None:
    assert stateless(capabilities).client_capabilities == {}

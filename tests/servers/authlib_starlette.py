"""authlib's framework seam for Starlette, which authlib does not ship on the server side: requests in, replies out.

authlib's server classes are synchronous and read parameters through `OAuth2Request.payload`
(`data`: first values, `datalist`: all of them) and `JsonRequest.payload.data`; the async
endpoint reads the query, form or JSON body first and hands authlib one of these. authlib
answers `(status, body, headers)`, kept as a `Reply` until it becomes a Starlette response.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.requests import JsonPayload, JsonRequest
from starlette.requests import Request
from starlette.responses import Response

__all__ = ["FormRequest", "JsonBodyRequest", "Reply"]


class _Payload(OAuth2Payload):
    def __init__(self, items: list[tuple[str, str]]) -> None:
        self._datalist: defaultdict[str, list[str]] = defaultdict(list)
        for key, value in items:
            self._datalist[key].append(value)

    @property
    def data(self) -> dict[str, str]:
        return {key: values[0] for key, values in self._datalist.items()}

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._datalist


class FormRequest(OAuth2Request):
    """An authorization (query) or token (form) request, its parameters read before authlib sees it."""

    def __init__(self, request: Request, items: list[tuple[str, Any]]) -> None:
        super().__init__(request.method, str(request.url), headers=request.headers)
        self.payload = _Payload([(key, value) for key, value in items if isinstance(value, str)])

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


class _JsonBody(JsonPayload):
    def __init__(self, body: dict[str, Any]) -> None:
        self._body = body

    @property
    def data(self) -> dict[str, Any]:
        return self._body


class JsonBodyRequest(JsonRequest):
    def __init__(self, request: Request, body: dict[str, Any]) -> None:
        super().__init__(request.method, str(request.url), request.headers)
        self.payload = _JsonBody(body)


@dataclass
class Reply:
    """What authlib answers, `(status, body, headers)`, with the `location` its RFC 9207 hook rewrites."""

    status: int
    body: dict[str, Any] | str
    headers: list[tuple[str, str]]

    @property
    def location(self) -> str | None:
        return next((value for key, value in self.headers if key.lower() == "location"), None)

    @location.setter
    def location(self, value: str) -> None:
        self.headers = [*((k, v) for k, v in self.headers if k.lower() != "location"), ("Location", value)]

    def response(self) -> Response:
        content = json.dumps(self.body) if isinstance(self.body, dict) else self.body
        return Response(content, status_code=self.status, headers=dict(self.headers))

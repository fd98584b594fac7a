"""A backend over the deprecated HTTP+SSE transport (2024-11-05): one GET stream carries
everything the server says; the `endpoint` event names where to POST what we say."""

from __future__ import annotations

import asyncio
from urllib.parse import urljoin, urlsplit

from shared.backends.base import BackendConnection
from shared.backends.http import auth_required, new_pool, translate_errors, unexpected_status
from shared.backends.http_client import HttpPool
from shared.backends.sse_events import iter_events
from shared.protocol.errors import BackendUnavailable, GatewayError
from shared.protocol.jsonrpc import decode_message
from shared.redact import redact_url

__all__ = ["SseConnection"]

_ENDPOINT_WAIT = 10.0


class SseConnection(BackendConnection):
    transport = "sse"
    speaks_stateless = False  # 2026-07-28 has no HTTP+SSE binding

    _http: HttpPool | None = None

    async def open_transport(self) -> None:
        self._http = new_pool(self.spec)
        self._endpoint: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._spawn(self._read_stream())
        try:
            async with asyncio.timeout(min(_ENDPOINT_WAIT, self.spec.timeout)):
                self._post_url = await self._endpoint
        except TimeoutError:
            await self._http.aclose()
            raise BackendUnavailable(
                self.server, f"backend {self.server!r} sent no endpoint event on {redact_url(self.spec.url or '')}"
            ) from None
        except BaseException:
            await self._http.aclose()
            raise

    async def close_transport(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def _read_stream(self) -> None:
        assert self._http is not None
        url = self.spec.url
        reason = "closed its SSE stream"
        try:
            with translate_errors(self.server, url):
                head = self._http.encode_headers({"accept": "text/event-stream", **self.authorization()})
                response = await self._http.request("GET", head)
                try:
                    if response.status == 401:
                        raise auth_required(self.server, response)
                    if response.status != 200:
                        raise unexpected_status(self.server, response.status, await response.read())
                    async for event in iter_events(response.iter_chunks()):
                        self._on_event(event.event, event.data)
                finally:
                    response.close()
        except GatewayError as exc:
            reason = exc.message.removeprefix(f"backend {self.server!r} ")  # _lose names the backend again
            if not self._endpoint.done():
                self._endpoint.set_exception(exc)
        if not self._endpoint.done():
            self._endpoint.set_exception(BackendUnavailable(self.server, f"backend {self.server!r} {reason}"))
        self._lose(reason)

    def _on_event(self, name: str, data: bytes) -> None:
        if name == "endpoint":
            if not self._endpoint.done():
                self._endpoint.set_result(urljoin(self.spec.url or "", data.decode().strip()))
            return
        if name != "message" or not data:
            return
        try:
            message = decode_message(data)
        except GatewayError:
            return
        if not isinstance(message, list):
            self._dispatch(message)

    async def _send_message(self, body: bytes) -> None:
        assert self._http is not None
        parts = urlsplit(self._post_url)
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        with translate_errors(self.server, self._post_url):
            head = self._http.encode_headers({"content-type": "application/json", **self.authorization()})
            response = await self._http.request("POST", head, body, target=target)
            payload = await response.read()
        if response.status == 401:
            raise auth_required(self.server, response)
        if response.status >= 300:
            raise unexpected_status(self.server, response.status, payload)

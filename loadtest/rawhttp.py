"""A minimal HTTP/1.1 client for benchmarks: keep-alive, bytes in and out, next to no overhead.

`Connection` is blocking (for latency: what it measures is the server, not the client);
`AsyncConnection` is asyncio (for thousands of sessions and open streams at little cost).
Both read a response's body by `content-length` or chunked encoding; `AsyncConnection.open`
reads only the head of a response that stays open (an event stream), so the caller reads on.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from dataclasses import dataclass

__all__ = ["AsyncConnection", "Connection", "Response", "request_bytes"]


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


def request_bytes(method: str, path: str, host: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: {host}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method in ("POST", "PUT"):
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    first, *rest = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in rest:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(first.split(" ", 2)[1]), headers


class Connection:
    """One blocking keep-alive connection to host:port."""

    def __init__(self, host: str, port: int, timeout: float = 30.0) -> None:
        self.host = f"{host}:{port}"
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Response:
        self.sock.sendall(request_bytes(method, path, self.host, headers, body))
        status, response_headers = parse_head(self._until(b"\r\n\r\n"))
        return Response(status, response_headers, self._body(response_headers))

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read_head(self) -> tuple[int, dict[str, str]]:
        """The head of a response, leaving its body unread (an event stream, read on with `until`)."""
        return parse_head(self._until(b"\r\n\r\n"))

    def until(self, marker: bytes) -> bytes:
        """What arrives up to and including `marker`."""
        return self._until(marker) + marker

    def close(self) -> None:
        self.sock.close()

    def _fill(self) -> None:
        data = self.sock.recv(1 << 20)
        if not data:
            raise ConnectionError("the server closed the connection")
        self.buffer += data

    def _until(self, marker: bytes) -> bytes:
        while (end := self.buffer.find(marker)) < 0:
            self._fill()
        taken, self.buffer = self.buffer[:end], self.buffer[end + len(marker) :]
        return taken

    def _exactly(self, size: int) -> bytes:
        while len(self.buffer) < size:
            self._fill()
        taken, self.buffer = self.buffer[:size], self.buffer[size:]
        return taken

    def _body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return self._exactly(int(headers["content-length"]))
        if headers.get("transfer-encoding") != "chunked":
            return b""
        parts = []
        while size := int(self._until(b"\r\n").split(b";")[0], 16):
            parts.append(self._exactly(size))
            self._exactly(2)
        self._until(b"\r\n")
        return b"".join(parts)


class AsyncConnection:
    """One asyncio keep-alive connection to host:port."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str) -> None:
        self.reader = reader
        self.writer = writer
        self.host = host

    @classmethod
    async def connect(cls, host: str, port: int) -> AsyncConnection:
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 22)
        return cls(reader, writer, f"{host}:{port}")

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> Response:
        status, response_headers = await self.open(method, path, headers, body)
        return Response(status, response_headers, await self._body(response_headers))

    async def open(
        self, method: str, path: str, headers: dict[str, str], body: bytes = b""
    ) -> tuple[int, dict[str, str]]:
        """Send a request and read its response's head; the body is left to read from `reader`."""
        self.writer.write(request_bytes(method, path, self.host, headers, body))
        return parse_head((await self.reader.readuntil(b"\r\n\r\n"))[:-4])

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def _body(self, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await self.reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding") != "chunked":
            return b""
        parts = []
        while size := int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16):
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        await self.reader.readuntil(b"\r\n")
        return b"".join(parts)

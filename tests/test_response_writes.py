"""aggregator/response_writes.py: a response's head and body leave in one write, and nothing waits."""

from __future__ import annotations

import asyncio

from aggregator.response_writes import HeadWithBody


class Recording(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed


async def test_head_and_body_of_one_turn_are_one_write() -> None:
    transport = Recording()
    cycle = HeadWithBody(transport, asyncio.get_running_loop())
    cycle.write(b"HTTP/1.1 200 OK\r\n\r\n")
    assert transport.writes == []
    cycle.write(b"{}")
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}"]
    cycle.write(b"more")  # later writes go straight through
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\n\r\n{}", b"more"]


async def test_a_head_whose_body_comes_later_leaves_at_the_end_of_the_turn() -> None:
    transport = Recording()
    stream = HeadWithBody(transport, asyncio.get_running_loop())
    stream.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n")
    await asyncio.sleep(0)
    assert transport.writes == [b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n"]
    stream.write(b"data: 1\n\n")
    assert transport.writes[-1] == b"data: 1\n\n"


async def test_closing_sends_a_held_head_first() -> None:
    transport = Recording()
    cycle = HeadWithBody(transport, asyncio.get_running_loop())
    cycle.write(b"HTTP/1.1 204 No Content\r\n\r\n")
    cycle.close()
    assert transport.writes == [b"HTTP/1.1 204 No Content\r\n\r\n"] and transport.closed
    await asyncio.sleep(0)
    assert len(transport.writes) == 1

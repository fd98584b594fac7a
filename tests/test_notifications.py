"""NotificationHub and Listener (fan-out, keepalive ticks), and the SSE pump that drains a listener
into a response: under the gateway's own HTTP server and under an in-process ASGI client."""

from __future__ import annotations

import asyncio
from typing import Any

from aggregator.notifications import ALL_KINDS, Listener, NotificationHub
from aggregator.transport.event_stream import StreamEnd, pump
from tests.test_http_connection import request, served


async def test_a_listener_hears_messages_in_order_then_none_once_closed() -> None:
    listener = Listener(kinds=ALL_KINDS)
    listener.push(b"one")
    listener.push(b"two")
    assert [await listener.next(), await listener.next()] == [b"one", b"two"]
    asyncio.get_running_loop().call_later(0.01, listener.close)
    assert await listener.next() is None


async def test_the_hub_ticks_every_stream_with_one_timer_and_stops_when_none_are_left() -> None:
    hub = NotificationHub(max_streams=10, keepalive=0.02)
    listeners = [Listener(kinds=ALL_KINDS) for _ in range(3)]
    for listener in listeners:
        hub.add(listener)
    assert await asyncio.wait_for(asyncio.gather(*(each.next() for each in listeners)), 1) == [b"", b"", b""]
    hub.lists_changed({"tools"})
    assert [await each.next() for each in listeners] == [
        b'{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}'
    ] * 3
    for listener in listeners:
        hub.remove(listener)
    await asyncio.sleep(0.05)
    assert hub._ticker is None


def streaming_app(hub: NotificationHub, ends: list[StreamEnd]) -> Any:
    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # the (empty) body
        listener = Listener(kinds=ALL_KINDS)
        hub.add(listener)

        async def ended(how: StreamEnd) -> None:
            hub.remove(listener)
            ends.append(how)

        await pump(receive, send, listener, asyncio.Event(), ended=ended)

    return asgi


async def test_a_stream_sends_keepalives_and_ends_when_its_client_leaves_without_a_receive_task() -> None:
    hub = NotificationHub(max_streams=10, keepalive=0.05)
    ends: list[StreamEnd] = []
    async with served(streaming_app(hub, ends)) as server:
        reader, writer = await server.connect()
        writer.write(request("/stream", method="GET"))
        await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert b": keepalive" in await asyncio.wait_for(reader.readuntil(b": keepalive\n\n\r\n"), 5)
        waiting = [task for task in asyncio.all_tasks() if "ClientWatch._watch" in repr(task.get_coro())]
        assert waiting == []  # the connection tells the stream its client left: no task waits in receive
        hub.lists_changed({"tools"})
        assert b"list_changed" in await asyncio.wait_for(reader.readuntil(b"list_changed"), 5)
        writer.close()
        for _ in range(100):
            if ends:
                break
            await asyncio.sleep(0.01)
        assert ends == [StreamEnd.CLIENT_LEFT] and len(hub) == 0


async def test_under_an_in_process_client_the_stream_still_sees_the_disconnect() -> None:
    hub = NotificationHub(max_streams=10)
    ends: list[StreamEnd] = []
    events = asyncio.Queue[dict[str, Any]]()
    await events.put({"type": "http.request", "body": b"", "more_body": False})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    task = asyncio.create_task(streaming_app(hub, ends)({"type": "http"}, events.get, send))
    await asyncio.sleep(0.02)
    await events.put({"type": "http.disconnect"})
    await asyncio.wait_for(task, 5)
    assert ends == [StreamEnd.CLIENT_LEFT] and sent[0]["status"] == 200

"""The memory half of loadtest/scale.py: sessions and open streams on one gateway, and what they cost.

RSS (anonymous memory, /proc/PID/status `RssAnon`) is read before and after opening
`sessions` 2025-11-25 sessions (initialize + notifications/initialized over `concurrency`
keep-alive connections, which are closed before reading; also halfway, since the first ones
fill heap space the gateway had freed before), then `streams` GET streams on as many of those
sessions, then `streams` 2026-07-28 `subscriptions/listen` streams besides them (nothing is
closed in between, so no phase reuses memory another freed); each delta divided by its count
is the cost of one. Five list changes of one backend are timed to their arrival on every open
stream (the fan-out), with the GET streams open, then with both kinds.

`trace_memory` repeats the three phases on a gateway started under tracemalloc
(`loadtest/traced_gateway.py`) and reports, per session and per stream, what grew, grouped by
the innermost frame outside the standard library that led to it (the gateway's code, uvicorn's).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from loadtest.mcp_wire import end_session, initialize_session, open_get_stream, open_listen_stream
from loadtest.rawhttp import AsyncConnection

__all__ = ["MemoryResults", "Site", "measure_memory", "render_memory", "trace_memory"]

GOAL_SESSION_BYTES, GOAL_STREAM_BYTES = 1024, 8 * 1024
ROOT = Path(__file__).resolve().parent.parent
_SETTLE = 1.0  # seconds after a phase before RSS is read (closed connections are freed by then)
_FANOUTS = 5  # list changes timed to every open stream


@dataclass(frozen=True)
class Site:
    """An allocation site that grew: where, through which of the gateway's frames, how much."""

    where: str
    via: str
    size: int
    count: int


@dataclass
class MemoryResults:
    sessions: int
    streams: int
    rss: dict[str, int] = field(default_factory=dict)
    open_seconds: float = 0.0
    fanout_get_ms: list[tuple[float, float]] = field(default_factory=list)
    fanout_all_ms: list[tuple[float, float]] = field(default_factory=list)
    traced_sessions: int = 0
    traced_streams: int = 0
    traced_total: dict[str, int] = field(default_factory=dict)
    sites: dict[str, list[Site]] = field(default_factory=dict)

    def per(self, before: str, after: str, count: int) -> float:
        return (self.rss[after] - self.rss[before]) / count


def rss(pid: int) -> int:
    """Anonymous resident memory of `pid`, in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no RssAnon for process {pid}")


class Streams:
    """Open event streams, each read by a task that notes when a list change arrived on it."""

    def __init__(self) -> None:
        self.conns: list[AsyncConnection] = []
        self.readers: list[asyncio.Task[None]] = []
        self.arrivals: dict[int, float] = {}
        self.all_arrived = asyncio.Event()

    def watch(self, conn: AsyncConnection) -> None:
        index = len(self.conns)
        self.conns.append(conn)
        self.readers.append(asyncio.create_task(self._read(index, conn)))

    async def _read(self, index: int, conn: AsyncConnection) -> None:
        while data := await conn.reader.read(65536):
            if b"tools/list_changed" in data and index not in self.arrivals:
                self.arrivals[index] = time.perf_counter()
                if len(self.arrivals) == len(self.conns):
                    self.all_arrived.set()

    async def fanout(
        self, change: Callable[[], object], times: int, timeout: float = 60.0
    ) -> list[tuple[float, float]]:
        """For each of `times` changes, milliseconds from `change()` to its arrival on half the streams, and on all."""
        spreads = []
        for _ in range(times):
            await asyncio.sleep(0.3)  # the last change's deliveries are written
            self.arrivals.clear()
            self.all_arrived.clear()
            began = time.perf_counter()
            await change()  # type: ignore[misc]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_arrived.wait(), timeout)
            if len(self.arrivals) < len(self.conns):
                raise RuntimeError(f"the list change reached {len(self.arrivals)} of {len(self.conns)} streams")
            arrived = sorted((at - began) * 1000 for at in self.arrivals.values())
            spreads.append((arrived[len(arrived) // 2], arrived[-1]))
        return spreads

    async def close(self) -> None:
        for task in self.readers:
            task.cancel()
        await asyncio.gather(*(conn.close() for conn in self.conns), return_exceptions=True)
        self.conns.clear()
        self.readers.clear()


async def open_sessions(port: int, count: int, concurrency: int) -> list[str]:
    sessions: list[str] = []

    async def worker(share: int) -> None:
        conn = await AsyncConnection.connect("127.0.0.1", port)
        try:
            for _ in range(share):
                sessions.append(await initialize_session(conn))
        finally:
            await conn.close()

    shares = [count // concurrency + (1 if i < count % concurrency else 0) for i in range(concurrency)]
    await asyncio.gather(*(worker(share) for share in shares if share))
    return sessions


async def open_streams(
    streams: Streams, port: int, count: int, opener: Callable[[AsyncConnection, int], object]
) -> None:
    gate = asyncio.Semaphore(64)

    async def one(index: int) -> None:
        async with gate:
            conn = await AsyncConnection.connect("127.0.0.1", port)
            await opener(conn, index)  # type: ignore[misc]
            streams.watch(conn)

    await asyncio.gather(*(one(i) for i in range(count)))


async def change_backend(fleet_port: int) -> None:
    conn = await AsyncConnection.connect("127.0.0.1", fleet_port)
    try:
        response = await conn.request("POST", "/control/1/change", {}, b"")
        if response.status != 200:
            raise RuntimeError(f"the fleet refused the change: HTTP {response.status}")
    finally:
        await conn.close()


async def warm_up(port: int) -> None:
    """Sessions and streams opened and ended once, so first-use allocations do not count below."""
    sessions = await open_sessions(port, 64, 8)
    streams = Streams()
    await open_streams(streams, port, 32, lambda conn, i: open_get_stream(conn, sessions[i]))
    await streams.close()
    conn = await AsyncConnection.connect("127.0.0.1", port)
    try:
        for session in sessions:
            await end_session(conn, session)
    finally:
        await conn.close()


async def measure_memory(
    pid: int, port: int, fleet_port: int, sessions: int, streams: int, concurrency: int
) -> MemoryResults:
    results = MemoryResults(sessions, streams)
    await warm_up(port)
    await asyncio.sleep(_SETTLE)
    results.rss["base"] = rss(pid)
    began = time.perf_counter()
    ids = await open_sessions(port, sessions // 2, concurrency)
    await asyncio.sleep(_SETTLE)
    results.rss["half"] = rss(pid)
    ids += await open_sessions(port, sessions - sessions // 2, concurrency)
    results.open_seconds = time.perf_counter() - began - _SETTLE
    await asyncio.sleep(_SETTLE)
    results.rss["sessions"] = rss(pid)
    get_streams = Streams()
    await open_streams(get_streams, port, streams, lambda conn, i: open_get_stream(conn, ids[i]))
    await asyncio.sleep(_SETTLE)
    results.rss["get"] = rss(pid)
    results.fanout_get_ms = await get_streams.fanout(lambda: change_backend(fleet_port), _FANOUTS)
    await open_streams(get_streams, port, streams, lambda conn, i: open_listen_stream(conn, 1000 + i))
    await asyncio.sleep(_SETTLE)
    results.rss["listen"] = rss(pid)
    results.fanout_all_ms = await get_streams.fanout(lambda: change_backend(fleet_port), _FANOUTS)
    await get_streams.close()
    return results


# -- tracemalloc ---------------------------------------------------------------------------------


def ask(folder: Path, name: str, timeout: float = 120.0) -> None:
    """Ask the traced gateway for `name` (see loadtest/traced_gateway.py) and wait until it is done."""
    (folder / f"{name}.request").touch()
    deadline = time.monotonic() + timeout
    while not (folder / f"{name}.done").exists():
        if time.monotonic() > deadline:
            raise RuntimeError(f"the traced gateway did not do {name} within {timeout:g} s")
        time.sleep(0.05)


def snapshot(folder: Path, name: str) -> tracemalloc.Snapshot:
    ask(folder, name)
    return tracemalloc.Snapshot.load(str(folder / f"{name}.snapshot"))


def _short(frame: tracemalloc.Frame) -> str:
    name = frame.filename
    for marker in ("site-packages" + os.sep, str(ROOT) + os.sep, "python3.11" + os.sep):
        if marker in name:
            name = name.split(marker, 1)[1]
            break
    return f"{name}:{frame.lineno}"


def _ours(frame: tracemalloc.Frame) -> bool:
    """A frame of the gateway's own code (aggregator/, shared/)."""
    name = frame.filename
    return name.startswith(str(ROOT)) and any(
        f"{os.sep}{package}{os.sep}" in name for package in ("aggregator", "shared")
    )


def _owner(frame: tracemalloc.Frame) -> bool:
    """A frame outside the standard library: the gateway's code or a package's (uvicorn, msgspec, ...)."""
    return _ours(frame) or "site-packages" in frame.filename


def grown(before: tracemalloc.Snapshot, after: tracemalloc.Snapshot, top: int = 12) -> tuple[int, list[Site]]:
    """Total growth, and what grew most by the innermost frame outside the standard library (with its
    largest allocation site)."""
    owners: dict[str, dict[str, list[int]]] = {}
    total = 0
    for stat in after.compare_to(before, "traceback"):
        total += stat.size_diff
        frames = list(stat.traceback)
        owned = [frame for frame in frames if _owner(frame)]
        via = _short(owned[-1]) if owned else "-"
        entry = owners.setdefault(via, {}).setdefault(_short(frames[-1]), [0, 0])
        entry[0] += stat.size_diff
        entry[1] += stat.count_diff
    sites = []
    for via, where in owners.items():
        size, count = sum(s for s, _ in where.values()), sum(c for _, c in where.values())
        biggest = max(where.items(), key=lambda item: item[1][0])[0]
        sites.append(Site(biggest if len(where) == 1 else f"{biggest} (+{len(where) - 1})", via, size, count))
    return total, sorted(sites, key=lambda site: -site.size)[:top]


async def trace_memory(folder: Path, port: int, sessions: int, streams: int, results: MemoryResults) -> None:
    """Sessions, GET streams, listen streams on the traced gateway; what grew in each phase."""
    await warm_up(port)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, ask, folder, "start")
    base = await loop.run_in_executor(None, snapshot, folder, "base")
    ids = await open_sessions(port, sessions, 16)
    after_sessions = await loop.run_in_executor(None, snapshot, folder, "sessions")
    opened = Streams()
    await open_streams(opened, port, streams, lambda conn, i: open_get_stream(conn, ids[i]))
    await asyncio.sleep(_SETTLE)
    after_get = await loop.run_in_executor(None, snapshot, folder, "get")
    await open_streams(opened, port, streams, lambda conn, i: open_listen_stream(conn, 1000 + i))
    await asyncio.sleep(_SETTLE)
    after_listen = await loop.run_in_executor(None, snapshot, folder, "listen")
    await opened.close()
    results.traced_sessions, results.traced_streams = sessions, streams
    phases = {
        "session": (base, after_sessions),
        "GET stream": (after_sessions, after_get),
        "listen stream": (after_get, after_listen),
    }
    for phase, (before, after) in phases.items():
        results.traced_total[phase], results.sites[phase] = grown(before, after)


# -- report --------------------------------------------------------------------------------------


def _kb(value: float) -> str:
    return f"{value / 1024:.2f} KB"


def render_memory(results: MemoryResults) -> list[str]:
    n, s = results.sessions, results.streams
    per_session = results.per("base", "sessions", n)
    second_half = results.per("half", "sessions", n - n // 2)
    per_get = results.per("sessions", "get", s)
    per_listen = results.per("get", "listen", s)

    def verdict(value: float, goal: int) -> str:
        return f"{'met' if value <= goal else 'NOT met'} (goal <= {_kb(goal)})"

    def spread(values: list[tuple[float, float]]) -> str:
        half, last = (statistics.median(value[i] for value in values) for i in (0, 1))
        return f"half the streams {half:.1f} ms, all {last:.1f} ms (medians of {len(values)} changes)"

    return [
        f"| {n:,} sessions (2025-11-25), RSS growth per session (second half alone) | {_kb(per_session)} "
        f"({_kb(second_half)}) | "
        f"{verdict(per_session, GOAL_SESSION_BYTES)} |",
        f"| {s:,} open GET streams, RSS growth per stream | {_kb(per_get)} | {verdict(per_get, GOAL_STREAM_BYTES)} |",
        f"| {s:,} open `subscriptions/listen` streams, RSS growth per stream | {_kb(per_listen)} | "
        f"{verdict(per_listen, GOAL_STREAM_BYTES)} |",
        f"| one list change reaching all {s:,} GET streams | {spread(results.fanout_get_ms)} | — |",
        f"| ... reaching all {2 * s:,} GET and listen streams | {spread(results.fanout_all_ms)} | — |",
    ]


def render_sites(results: MemoryResults) -> list[str]:
    lines: list[str] = []
    for phase, sites in results.sites.items():
        count = results.traced_sessions if phase == "session" else results.traced_streams
        lines += [
            "",
            f"tracemalloc, per {phase} ({count:,} {phase}s; traced growth {_kb(results.traced_total[phase] / count)} "
            f"per {phase}); what grew most:",
            "",
            f"| through (innermost frame outside the standard library) | allocated at (largest; +other sites) "
            f"| bytes per {phase} | blocks per {phase} |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| `{site.via}` | `{site.where}` | {site.size / count:.0f} | {site.count / count:.2f} |" for site in sites
        ]
    return lines

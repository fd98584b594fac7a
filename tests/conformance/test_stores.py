"""The contracts of shared/store/protocols.py, for every implementation."""

from __future__ import annotations

import asyncio

import msgspec

from shared.config_types import WorkflowArg, WorkflowSpec, WorkflowStep
from shared.events import ToolUpdateEvent
from shared.records import CallCounts, Heartbeat, ServerRecord, SessionRecord, StepOutcome, WorkflowExecution
from shared.store.protocols import Stores


async def test_capability_records_round_trip_and_list_in_name_order(stores: Stores) -> None:
    caps = stores.capabilities
    await caps.put(ServerRecord(server="zeta", tools=[{"name": "a", "inputSchema": {"type": "object"}}]))
    await caps.put(ServerRecord(server="alpha", state="down", error="refused"))
    assert [r.server for r in await caps.list()] == ["alpha", "zeta"]
    zeta = await caps.get("zeta")
    assert zeta is not None and zeta.tools[0]["name"] == "a"
    assert (await caps.get("alpha")).error == "refused"  # type: ignore[union-attr]
    assert await caps.get("missing") is None
    await caps.delete("zeta")
    assert [r.server for r in await caps.list()] == ["alpha"]


async def test_capability_returned_records_are_copies(stores: Stores) -> None:
    await stores.capabilities.put(ServerRecord(server="a", tools=[{"name": "t"}]))
    first = await stores.capabilities.get("a")
    assert first is not None
    first.tools.append({"name": "mutated"})
    again = await stores.capabilities.get("a")
    assert again is not None and len(again.tools) == 1


async def test_scoped_capabilities_are_separate_and_expire(stores: Stores) -> None:
    caps = stores.capabilities
    await caps.put(ServerRecord(server="a"), scope="session-1", ttl=0.2)
    assert await caps.get("a") is None
    assert await caps.get("a", scope="session-1") is not None
    await asyncio.sleep(0.35)
    assert await caps.get("a", scope="session-1") is None


async def test_sessions_expire_unless_touched_and_delete_ends_them(stores: Stores) -> None:
    sessions = stores.sessions
    await sessions.create(SessionRecord(id="s1", protocol_version="2025-11-25", client_info={"name": "c"}), ttl=0.3)
    got = await sessions.get("s1")
    assert got is not None and got.client_info == {"name": "c"}
    await asyncio.sleep(0.2)
    assert await sessions.touch("s1", ttl=0.3)
    await asyncio.sleep(0.2)
    assert await sessions.get("s1") is not None
    assert await sessions.delete("s1")
    assert await sessions.get("s1") is None
    assert not await sessions.delete("s1")
    assert not await sessions.touch("s1", ttl=1)
    await sessions.create(SessionRecord(id="s2", protocol_version="2025-11-25"), ttl=0.2)
    await asyncio.sleep(0.35)
    assert await sessions.get("s2") is None


async def test_a_session_is_restored_only_where_the_store_lacks_it(stores: Stores) -> None:
    sessions = stores.sessions
    lost = SessionRecord(id="s3", protocol_version="2025-11-25", client_info={"name": "old copy"})
    assert await sessions.restore(lost, ttl=5)
    assert await sessions.get("s3") == lost
    await sessions.create(msgspec.structs.replace(lost, client_info={"name": "newer"}), ttl=5)
    assert not await sessions.restore(lost, ttl=5)
    got = await sessions.get("s3")
    assert got is not None and got.client_info == {"name": "newer"}


async def test_block_overrides_set_and_clear(stores: Stores) -> None:
    blocks = stores.blocks
    await blocks.set("x_a_echo", True)
    await blocks.set("x_a_kubectl_delete", False)
    assert await blocks.all() == {"x_a_echo": True, "x_a_kubectl_delete": False}
    await blocks.set("x_a_echo", None)
    assert await blocks.all() == {"x_a_kubectl_delete": False}


async def test_rate_limiter_is_a_sliding_window(stores: Stores) -> None:
    limiter = stores.rate_limiter
    results = [await limiter.allow("user-1", limit=3, window=0.4) for _ in range(4)]
    assert results == [True, True, True, False]
    assert await limiter.remaining("user-1", limit=3, window=0.4) == 0
    assert await limiter.allow("user-2", limit=3, window=0.4)
    await asyncio.sleep(0.5)
    assert await limiter.remaining("user-1", limit=3, window=0.4) == 3
    assert await limiter.allow("user-1", limit=3, window=0.4)
    await limiter.reset("user-1")
    assert await limiter.remaining("user-1", limit=3, window=0.4) == 3


async def test_rate_limiter_holds_under_concurrency(stores: Stores) -> None:
    results = await asyncio.gather(*(stores.rate_limiter.allow("busy", limit=5, window=5) for _ in range(20)))
    assert sum(results) == 5


async def test_auth_metrics_count_per_server(stores: Stores) -> None:
    metrics = stores.auth_metrics
    await metrics.record("kube", "login_attempt", at=100.0)
    await metrics.record("kube", "login_failure", at=101.0)
    await metrics.record("kube", "login_attempt", at=102.0)
    await metrics.record("kube", "login_success", at=103.0)
    await metrics.record("git", "rate_limit_block")
    kube = await metrics.server("kube")
    assert kube is not None
    assert (kube.login_attempts, kube.login_failures, kube.login_successes) == (2, 1, 1)
    assert (kube.last_attempt_at, kube.last_success_at, kube.last_failure_at) == (102.0, 103.0, 101.0)
    assert [m.server_name for m in await metrics.all()] == ["git", "kube"]
    assert await metrics.server("none") is None


async def test_event_bus_numbers_events_and_delivers_in_order(stores: Stores) -> None:
    bus = stores.events
    start = await bus.version()
    async with bus.subscribe() as events:
        sent = [
            await bus.publish(ToolUpdateEvent(type="registered", server="a")),
            await bus.publish(ToolUpdateEvent(type="capabilities_changed", server="a", changed=("tools",))),
            await bus.publish(ToolUpdateEvent(type="tool_block_changed", tool="x_a_t")),
        ]
        assert [e.version for e in sent] == [start + 1, start + 2, start + 3]
        received = []
        async for event in events:
            received.append(event)
            if len(received) == 3:
                break
    assert received == sent
    assert await bus.version() == start + 3


async def test_event_bus_fans_out_to_every_subscriber(stores: Stores) -> None:
    bus = stores.events
    async with bus.subscribe() as first, bus.subscribe() as second:
        await bus.publish(ToolUpdateEvent(type="deregistered", server="b"))
        one = await asyncio.wait_for(anext(first), 5)
        two = await asyncio.wait_for(anext(second), 5)
    assert one == two and one.server == "b"


async def test_message_bus_delivers_to_subscribers_of_that_channel_only(stores: Stores) -> None:
    bus = stores.messages
    async with bus.subscribe("replica:a", "broadcast") as a_inbox, bus.subscribe("replica:b") as b_inbox:
        await bus.publish("replica:b", b"for b")
        await bus.publish("broadcast", b"for all")
        await bus.publish("nobody", b"dropped")
        assert await asyncio.wait_for(anext(b_inbox), 5) == ("replica:b", b"for b")
        assert await asyncio.wait_for(anext(a_inbox), 5) == ("broadcast", b"for all")


async def test_event_bus_epoch_is_stable_for_the_store_lifetime(stores: Stores) -> None:
    first = await stores.events.epoch()
    assert first and first == await stores.events.epoch()


async def test_shared_keys_are_the_same_for_every_caller_until_they_expire(stores: Stores) -> None:
    first = await stores.keys.shared_key("seal", "7", ttl=0.3)
    assert len(first) == 32
    assert await stores.keys.shared_key("seal", "7", ttl=0.3) == first
    assert await stores.keys.shared_key("seal", "8", ttl=0.3) != first
    assert await stores.keys.shared_key("other", "7", ttl=0.3) != first
    await asyncio.sleep(0.45)
    assert await stores.keys.shared_key("seal", "7", ttl=0.3) != first


async def test_values_round_trip_any_bytes_and_a_miss_is_none(stores: Stores) -> None:
    values = stores.values
    await values.put("flow:1", b"\x00\xff state", ttl=5)
    assert await values.get("flow:1") == b"\x00\xff state"
    await values.put("flow:1", b"replaced", ttl=5)
    assert await values.get("flow:1") == b"replaced"
    assert await values.get("flow:2") is None
    assert await values.take("flow:2") is None


async def test_values_expire_after_their_ttl(stores: Stores) -> None:
    values = stores.values
    await values.put("short", b"a", ttl=0.2)
    assert not await values.put_if_absent("short", b"b", ttl=0.2)
    await asyncio.sleep(0.35)
    assert await values.get("short") is None
    assert await values.take("short") is None
    assert await values.put_if_absent("short", b"c", ttl=5)
    assert await values.get("short") == b"c"


async def _connections_ready(stores: Stores, count: int) -> None:
    """Open `count` connections first, so concurrent callers really overlap (not queue behind a connect)."""
    await asyncio.gather(*(stores.values.get("warm-up") for _ in range(count)))


async def test_values_take_gives_the_value_to_exactly_one_of_concurrent_takers(stores: Stores) -> None:
    await _connections_ready(stores, 20)
    await stores.values.put("state:once", b"verifier", ttl=5)
    results = await asyncio.gather(*(stores.values.take("state:once") for _ in range(20)))
    assert [r for r in results if r is not None] == [b"verifier"]
    assert await stores.values.get("state:once") is None


async def test_values_put_if_absent_sets_for_exactly_one_of_concurrent_callers(stores: Stores) -> None:
    await _connections_ready(stores, 20)
    results = await asyncio.gather(
        *(stores.values.put_if_absent("lock:refresh", str(i).encode(), ttl=5) for i in range(20))
    )
    assert sum(results) == 1
    assert await stores.values.get("lock:refresh") == str(results.index(True)).encode()


async def test_values_delete_says_whether_the_key_existed(stores: Stores) -> None:
    values = stores.values
    await values.put("gone", b"x", ttl=5)
    assert await values.delete("gone")
    assert await values.get("gone") is None
    assert not await values.delete("gone")
    assert await values.put_if_absent("gone", b"y", ttl=5)


def _beat(beat_id: str, **fields: object) -> Heartbeat:
    return Heartbeat(id=beat_id, kind="replica", version="1", started_at=1.0, at=2.0, **fields)  # type: ignore[arg-type]


async def test_heartbeats_list_live_records_in_id_order_and_the_latest_wins(stores: Stores) -> None:
    beats = stores.heartbeats
    calls = [CallCounts("t", "s", "ok", 3, [1, 2, 0])]
    await beats.beat(_beat("b", in_flight=1), ttl=5)
    await beats.beat(_beat("a", calls=calls, bounds=[0.1, 1.0]), ttl=5)
    await beats.beat(_beat("b", in_flight=7), ttl=5)
    found = await beats.all()
    assert [r.id for r in found] == ["a", "b"]
    assert found[0].calls == calls and found[0].bounds == [0.1, 1.0]
    assert found[1].in_flight == 7
    await beats.remove("a")
    assert [r.id for r in await beats.all()] == ["b"]


async def test_heartbeats_lapse_after_their_ttl_unless_renewed(stores: Stores) -> None:
    beats = stores.heartbeats
    await beats.beat(_beat("short"), ttl=0.2)
    await beats.beat(_beat("kept"), ttl=0.2)
    await asyncio.sleep(0.12)
    await beats.beat(_beat("kept"), ttl=0.3)
    await asyncio.sleep(0.15)
    assert [r.id for r in await beats.all()] == ["kept"]
    await asyncio.sleep(0.25)
    assert await beats.all() == []


async def test_workflow_definitions_are_replaced_whole(stores: Stores) -> None:
    workflows = stores.workflows
    assert await workflows.definitions() == []
    step = WorkflowStep(id="say", tool="x_a_echo", args={"text": "{{ args.text }}", "n": [1]}, allow_failure=True)
    first = [
        WorkflowSpec(name="one", steps=(step,), args={"text": WorkflowArg(required=True, description="What")}),
        WorkflowSpec(name="two", steps=(step, msgspec.structs.replace(step, id="again", condition="{{ true }}"))),
    ]
    await workflows.publish(first)
    assert await workflows.definitions() == first
    await workflows.publish(first[1:])
    assert await workflows.definitions() == first[1:]


def _run(run_id: str, workflow: str = "deploy") -> WorkflowExecution:
    step = StepOutcome(id="a", tool="x_a_echo", status="ok", duration_ms=1.5, result={"n": [1, "two"]})
    return WorkflowExecution(
        id=run_id, workflow=workflow, status="ok", started_at=1.0, duration_ms=2.0, arguments={"x": 1}, steps=[step]
    )


async def test_workflow_runs_are_read_by_id_and_the_latest_few_listed_newest_first(stores: Stores) -> None:
    workflows = stores.workflows
    for index in range(4):
        await workflows.record(_run(f"run-{index}"), keep=3, ttl=5)
    await workflows.record(_run("other-0", "other"), keep=3, ttl=5)
    assert [run.id for run in await workflows.executions("deploy")] == ["run-3", "run-2", "run-1"]
    assert await workflows.execution("run-3") == _run("run-3")
    assert await workflows.execution("run-0") is None  # pushed out of the latest three
    assert [run.id for run in await workflows.executions("other")] == ["other-0"]
    assert await workflows.executions("never-ran") == []


async def test_workflow_runs_expire_after_their_ttl(stores: Stores) -> None:
    await stores.workflows.record(_run("short"), keep=5, ttl=0.2)
    assert await stores.workflows.execution("short") is not None
    await asyncio.sleep(0.35)
    assert await stores.workflows.execution("short") is None
    assert await stores.workflows.executions("deploy") == []

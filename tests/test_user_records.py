"""UserRecords: each user's records of protected backends, their lists stored once by content."""

from __future__ import annotations

from aggregator.auth.user_records import UserRecords, user_key
from shared.records import ServerRecord
from shared.store.protocols import Stores

TOOLS = [{"name": "whoami", "inputSchema": {"type": "object"}}, {"name": "echo", "inputSchema": {"type": "object"}}]


def record(tools: list[dict[str, object]] = TOOLS) -> ServerRecord:
    return ServerRecord(server="web", state="up", tools=tools)


async def test_a_users_records_come_back_with_their_lists(stores: Stores) -> None:
    records = UserRecords(stores.capabilities, stores.values)
    stored = await records.put("alice", record())
    found = await UserRecords(stores.capabilities, stores.values).all("alice")  # another replica: nothing cached
    assert found == {"web": stored} and found["web"].tools == TOOLS
    assert await records.all("bob") == {}


async def test_users_who_see_the_same_list_share_one_copy_and_records_hold_only_a_reference(stores: Stores) -> None:
    records = UserRecords(stores.capabilities, stores.values)
    alice, bob = await records.put("alice", record()), await records.put("bob", record())
    carol = await records.put("carol", record([TOOLS[0]]))
    assert alice.lists == bob.lists != carol.lists
    for subject in ("alice", "bob"):
        (reference,) = await stores.capabilities.list(scope=f"user:{user_key(subject)}")
        assert reference.tools == [] and reference.lists == alice.lists


async def test_no_subject_appears_in_the_store(stores: Stores) -> None:
    await UserRecords(stores.capabilities, stores.values).put("alice@example.com", record())
    assert await stores.capabilities.list(scope="user:alice@example.com") == []
    assert len(user_key("alice@example.com")) == 32


async def test_a_deleted_record_is_gone_for_that_user_only(stores: Stores) -> None:
    records = UserRecords(stores.capabilities, stores.values)
    await records.put("alice", record())
    await records.put("bob", record())
    await records.delete("alice", "web")
    assert await records.all("alice") == {}
    assert set(await records.all("bob")) == {"web"}

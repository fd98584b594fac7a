"""UserRecords: each user's records of protected backends, in the store, their lists kept once by content.

A user's record of a backend holds its state and a reference (a digest) to its lists; the lists
themselves, what the backend offers that user, are stored once under their digest and shared by
every user who sees the same (most users of one backend see the same tools). So the store holds
a few hundred bytes per (user, backend) beside one copy of each distinct list, and a replica
keeps one decoded copy of each list however many users see it. Records expire `ttl` after they
were last written, lists four times later; users are keyed by a digest of their subject.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

import msgspec

from shared.protocol.vocabulary import LIST_KINDS
from shared.records import ServerRecord
from shared.store.protocols import CapabilityStore, ValueStore

__all__ = ["UserRecords", "user_key"]

_LISTS = msgspec.json.Decoder(dict[str, list[dict[str, Any]]])
_DECODED = 512  # distinct lists kept decoded on a replica


def user_key(subject: str) -> str:
    """How a user is named in the store and between replicas: no subject appears in Redis."""
    return hashlib.sha256(subject.encode()).hexdigest()[:32]


class UserRecords:
    def __init__(self, capabilities: CapabilityStore, values: ValueStore, *, ttl: float = 86_400.0) -> None:
        self.capabilities = capabilities
        self.values = values
        self.ttl = ttl
        self._decoded: OrderedDict[str, dict[str, list[dict[str, Any]]]] = OrderedDict()

    def digested(self, record: ServerRecord) -> tuple[ServerRecord, bytes]:
        """`record` with its lists' digest set (what tells one user's view from another's), and the lists' bytes."""
        lists = {kind.field: getattr(record, kind.field) for kind in LIST_KINDS}
        payload = msgspec.json.encode(lists)
        digest = hashlib.sha256(payload).hexdigest()[:40]
        self._remember(digest, lists)
        return msgspec.structs.replace(record, lists=digest), payload

    async def put(self, subject: str, record: ServerRecord, *, ttl: float | None = None) -> ServerRecord:
        """Store `record` for `subject`; it comes back with its lists' digest set."""
        record, payload = self.digested(record)
        assert record.lists is not None
        await self.values.put(_list_key(record.lists), payload, ttl=4 * self.ttl)
        empty: dict[str, list[dict[str, Any]]] = {kind.field: [] for kind in LIST_KINDS}
        reference = msgspec.structs.replace(record, **empty)
        await self.capabilities.put(reference, scope=_scope(subject), ttl=ttl or self.ttl)
        return record

    async def all(self, subject: str) -> dict[str, ServerRecord]:
        """The user's records by backend name, lists filled in (a record whose lists expired is left out)."""
        found: dict[str, ServerRecord] = {}
        for reference in await self.capabilities.list(scope=_scope(subject)):
            lists = await self._lists(reference.lists) if reference.lists else {}
            if lists is not None:
                found[reference.server] = msgspec.structs.replace(reference, **lists)
        return found

    async def delete(self, subject: str, server: str) -> None:
        await self.capabilities.delete(server, scope=_scope(subject))

    async def _lists(self, digest: str) -> dict[str, list[dict[str, Any]]] | None:
        lists = self._decoded.get(digest)
        if lists is not None:
            self._decoded.move_to_end(digest)
            return lists
        payload = await self.values.get(_list_key(digest))
        if payload is None:
            return None
        lists = _LISTS.decode(payload)
        self._remember(digest, lists)
        return lists

    def _remember(self, digest: str, lists: dict[str, list[dict[str, Any]]]) -> None:
        self._decoded[digest] = lists
        self._decoded.move_to_end(digest)
        if len(self._decoded) > _DECODED:
            self._decoded.popitem(last=False)


def _scope(subject: str) -> str:
    return f"user:{user_key(subject)}"


def _list_key(digest: str) -> str:
    return f"lists:{digest}"

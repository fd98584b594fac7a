"""The embedded WorkflowStore: definitions and runs in one process, kept encoded so callers get copies."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence

import msgspec

from shared.config_types import WorkflowSpec
from shared.records import WorkflowExecution

__all__ = ["MemoryWorkflowStore"]

_encode = msgspec.json.Encoder().encode
_definitions = msgspec.json.Decoder(list[WorkflowSpec])
_execution = msgspec.json.Decoder(WorkflowExecution)


class MemoryWorkflowStore:
    """Runs beyond a workflow's latest `keep` are dropped when recorded, expired ones when read."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._definitions = b"[]"
        self._runs: dict[str, tuple[bytes, float]] = {}
        self._latest: dict[str, deque[str]] = {}

    async def publish(self, workflows: Sequence[WorkflowSpec]) -> None:
        self._definitions = _encode(list(workflows))

    async def definitions(self) -> list[WorkflowSpec]:
        return _definitions.decode(self._definitions)

    async def record(self, execution: WorkflowExecution, *, keep: int, ttl: float) -> None:
        self._runs[execution.id] = (_encode(execution), self._clock() + ttl)
        latest = self._latest.setdefault(execution.workflow, deque())
        latest.appendleft(execution.id)
        while len(latest) > keep:
            self._runs.pop(latest.pop(), None)

    async def execution(self, execution_id: str) -> WorkflowExecution | None:
        run = self._runs.get(execution_id)
        if run is None:
            return None
        if run[1] <= self._clock():
            del self._runs[execution_id]
            return None
        return _execution.decode(run[0])

    async def executions(self, workflow: str) -> list[WorkflowExecution]:
        found = [await self.execution(run_id) for run_id in list(self._latest.get(workflow, ()))]
        return [run for run in found if run is not None]

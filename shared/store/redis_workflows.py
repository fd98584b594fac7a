"""The WorkflowStore on Redis.

    {ns}:workflows          str   every definition, one JSON list (the control slot: written fenced)
    ns:wf:run:{id}          str   one run's WorkflowExecution JSON, expires after the history's ttl
    ns:wf:runs:{workflow}   list  that workflow's latest run ids, newest first, trimmed to `keep`

A run and its list live in different slots, so they are written one after the other: the run
first, then its id pushed and the list trimmed in one transaction on that one key; runs pushed
out are deleted. A run whose id did not make it into the list is still read by id until it expires.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec

from shared.config_types import WorkflowSpec
from shared.records import WorkflowExecution
from shared.store.redis_keys import RedisKeys
from shared.store.redis_part import RedisPart
from shared.store.redis_replies import text, translated
from shared.store.redis_scripts import FENCED_SET
from shared.store.redis_url import RedisClient

__all__ = ["RedisWorkflowStore"]

_encode = msgspec.json.Encoder().encode
_definitions = msgspec.json.Decoder(list[WorkflowSpec])
_execution = msgspec.json.Decoder(WorkflowExecution)


class RedisWorkflowStore(RedisPart):
    def __init__(self, client: RedisClient, keys: RedisKeys, where: str, fence: tuple[str, str] | None = None) -> None:
        super().__init__(client, keys, where, fence)
        self._fenced_set = client.register_script(FENCED_SET)

    async def publish(self, workflows: Sequence[WorkflowSpec]) -> None:
        key = self.keys.workflows()
        lock, value = self.fence or (key, "")
        with translated(self.where):
            await self._fenced_set(keys=[lock, key], args=[value, _encode(list(workflows))])

    async def definitions(self) -> list[WorkflowSpec]:
        with translated(self.where):
            data = await self.client.get(self.keys.workflows())
        return _definitions.decode(data) if data is not None else []

    async def record(self, execution: WorkflowExecution, *, keep: int, ttl: float) -> None:
        ttl_ms = max(1, int(ttl * 1000))
        runs = self.keys.workflow_runs(execution.workflow)
        with translated(self.where):
            await self.client.set(self.keys.workflow_run(execution.id), _encode(execution), px=ttl_ms)
            async with self.client.pipeline(transaction=True) as pipe:
                pipe.lpush(runs, execution.id)
                pipe.lrange(runs, keep, -1)
                pipe.ltrim(runs, 0, keep - 1)
                pipe.pexpire(runs, ttl_ms)
                _, dropped, _, _ = await pipe.execute()
            for run_id in dropped:  # one key at a time: each run is in a slot of its own
                await self.client.delete(self.keys.workflow_run(text(run_id)))

    async def execution(self, execution_id: str) -> WorkflowExecution | None:
        with translated(self.where):
            data = await self.client.get(self.keys.workflow_run(execution_id))
        return _execution.decode(data) if data is not None else None

    async def executions(self, workflow: str) -> list[WorkflowExecution]:
        with translated(self.where):
            ids = await self.client.lrange(self.keys.workflow_runs(workflow), 0, -1)
        found = await asyncio.gather(*(self.execution(text(run_id)) for run_id in ids))
        return [run for run in found if run is not None]

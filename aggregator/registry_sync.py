"""Keeps this replica's ServerRegistry in step with the stores, driven by ToolUpdateEvents.

On start it subscribes first and loads the snapshot second, so no event falls between the
two. An event whose version is not the next one means events were missed: the whole
snapshot is reloaded. The registry is local memory; requests never wait on this.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aggregator.registry import ServerRegistry
from shared.config_types import WorkflowSpec
from shared.events import ToolUpdateEvent
from shared.retry import backoff_delay
from shared.store.protocols import Stores

__all__ = ["RegistrySync"]

log = logging.getLogger("aggregator.registry_sync")

_RETRY_CAP = 2.0  # seconds: a store that comes back is followed again within this


EpochListener = Callable[[str], Awaitable[object]]


class RegistrySync:
    def __init__(self, registry: ServerRegistry, stores: Stores, *, on_epoch: EpochListener | None = None) -> None:
        self.registry = registry
        self.stores = stores
        self.on_epoch = on_epoch
        """Told the store's epoch at every reload (sessions write themselves back when it changed)."""
        self.on_recovered: Callable[[], Awaitable[None]] | None = None
        """Told when the store is followed again after an outage (which may have lost recent writes)."""
        self.on_user_changed: Callable[[str], None] | None = None
        """Told the user key of a user_changed event (that user's view is rebuilt on every replica)."""
        self.on_workflows: Callable[[list[WorkflowSpec]], None] | None = None
        """Told the workflow definitions at every reload and workflows_changed event (when the gateway serves them)."""
        self.version = 0
        self.epoch: str | None = None
        self.ready = asyncio.Event()
        self.last_error: str | None = None

    async def run(self) -> None:
        """Follow the event bus until cancelled; reconnect with backoff and reload after failures."""
        failures = 0
        while True:
            try:
                async with self.stores.events.subscribe() as events:
                    await self.reload()
                    if failures:
                        log.info("registry sync is back after %d failed attempts; state reloaded", failures)
                        if self.on_recovered is not None:
                            await self.on_recovered()
                    failures = 0
                    async for event in events:
                        await self.apply(event)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = str(exc) or type(exc).__name__
                failures += 1
                delay = backoff_delay(failures, cap=_RETRY_CAP)
                log.warning(
                    "registry sync lost the store (%s); serving the last known registry, retrying in %.1fs",
                    self.last_error,
                    delay,
                )
                await asyncio.sleep(delay)

    async def reload(self) -> None:
        """Replace the registry's view with the stores' snapshot.

        If the store lost its data (a Redis restart without persistence: a new epoch), the
        local registry is kept and only what the store has is merged in; the control plane
        re-announces every backend after its re-election and fills in the rest.
        """
        epoch = await self.stores.events.epoch()
        if self.on_epoch is not None:
            await self.on_epoch(epoch)
        version = await self.stores.events.version()
        records = await self.stores.capabilities.list()
        overrides = await self.stores.blocks.all()
        workflows = await self.stores.workflows.definitions() if self.on_workflows is not None else []
        if self.epoch is not None and epoch != self.epoch:
            log.warning(
                "the store lost its data (new epoch); keeping the local registry and merging %d record(s) "
                "until every backend is announced again",
                len(records),
            )
            for record in records:
                self.registry.update(record)
            if workflows and self.on_workflows is not None:  # else keep ours until they are published again
                self.on_workflows(workflows)
        else:
            self.registry.denylist = self.registry.denylist.with_overrides(overrides)
            self.registry.replace_all(records)
            if self.on_workflows is not None:
                self.on_workflows(workflows)
        self.epoch = epoch
        self.version = version
        self.last_error = None
        self.ready.set()

    async def apply(self, event: ToolUpdateEvent) -> None:
        if event.version <= self.version:
            return
        if event.type == "resync" or event.version != self.version + 1:
            log.info("registry events %d..%d missed or resync asked; reloading", self.version + 1, event.version - 1)
            await self.reload()
            return
        self.version = event.version
        if event.type == "tool_block_changed":
            self.registry.set_overrides(await self.stores.blocks.all())
        elif event.type == "user_changed":
            if event.user is not None and self.on_user_changed is not None:
                self.on_user_changed(event.user)
        elif event.type == "workflows_changed":
            if self.on_workflows is not None:
                self.on_workflows(await self.stores.workflows.definitions())
        elif event.server is not None:
            record = await self.stores.capabilities.get(event.server)
            if record is None:
                self.registry.remove(event.server)
            else:
                self.registry.update(record)

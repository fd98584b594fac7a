"""WorkflowPublisher: reads the workflows, publishes them through the store, and again when their files change.

Workflows come from the config and from `aggregator.workflowsDir`. The folder is polled (file
names, sizes, modification times): no file-watching dependency, and it works on any volume,
a Kubernetes ConfigMap's included. Each change is written to the WorkflowStore whole and
announced as a `workflows_changed` event, which every replica's RegistrySync applies like any
registry change. It runs where the BackendSupervisor runs: in the elected worker, or in the
gateway itself without Redis.
"""

from __future__ import annotations

import asyncio
import logging

from shared.config import Config
from shared.config_types import WorkflowSpec
from shared.events import ToolUpdateEvent
from shared.store.protocols import FencedOut, Stores, StoreUnavailable
from shared.workflow_files import Fingerprint, fingerprint, load_workflows, workflows_dir

__all__ = ["WorkflowPublisher"]

log = logging.getLogger("worker.workflows")

_POLL = 1.0
"""Seconds between looks at the workflow folder."""


class WorkflowPublisher:
    def __init__(self, config: Config, stores: Stores, *, origin: str | None = None, poll: float = _POLL) -> None:
        self.config = config
        self.stores = stores
        self.origin = origin
        self.poll = poll
        self.directory = workflows_dir(config)
        self._seen: Fingerprint | None = None
        self._published: tuple[WorkflowSpec, ...] | None = None

    async def run(self) -> None:
        """Publish now, then after every change of the folder, until cancelled (or fenced out)."""
        while True:
            try:
                await self.refresh()
            except StoreUnavailable as exc:
                log.warning("could not publish the workflows (%s); trying again", exc)
            except FencedOut:
                raise
            except Exception:  # a bug must not end the reloading, nor a worker's leadership
                log.exception("reading the workflows failed unexpectedly; trying again")
            await asyncio.sleep(self.poll)

    async def refresh(self) -> None:
        """Read the workflows if their folder changed since the last read (or never was); publish a changed set."""
        seen = fingerprint(self.directory) if self.directory is not None else ()
        if seen == self._seen:
            return
        loaded = load_workflows(self.config)
        for error in loaded.errors:
            log.error("workflow file left out: %s", error)
        for warning in loaded.warnings:
            log.warning("%s", warning)
        if loaded.workflows != self._published:
            await self.stores.workflows.publish(loaded.workflows)
            await self.stores.events.publish(ToolUpdateEvent(type="workflows_changed", origin=self.origin))
            self._published = loaded.workflows
            names = ", ".join(workflow.name for workflow in loaded.workflows) or "none"
            log.info("published %d workflow(s): %s", len(loaded.workflows), names)
        self._seen = seen

"""Workflows: the workflows a replica serves as tools, their runs, and the core_workflow_* tools.

The definitions come from the store (RegistrySync hands every published set to `update`), so
every replica serves the same ones; `update` puts their tools in the catalog and their names in
InternalTools, and takes back the names of workflows that are gone. Runs are recorded in the
WorkflowStore, so core_workflow_execution_get reads a run back on any replica; a caller sees only
the runs they made (their token's subject; all runs when the gateway checks no tokens).
"""

from __future__ import annotations

import asyncio
import logging
from contextvars import ContextVar
from typing import Any

import msgspec

from aggregator.calls import CallContext
from aggregator.handlers import AggregatorServer
from aggregator.internal_tools import answer, optional_string, string_argument
from aggregator.workflow_run import CompiledWorkflow, WorkflowRun, bind_arguments
from aggregator.workflow_specs import CORE_WORKFLOW_TOOLS, workflow_tool
from shared.config_types import WorkflowHistory, WorkflowSpec
from shared.protocol.errors import InvalidParams, UnknownTool
from shared.protocol.jsonrpc import Params
from shared.records import WorkflowExecution
from shared.store.protocols import WorkflowStore
from shared.workflow_templates import TemplateSyntaxError

__all__ = ["Workflows"]

log = logging.getLogger("aggregator.workflows")

_IN_WORKFLOW: ContextVar[bool] = ContextVar("in_workflow", default=False)
"""Set while a run's steps call tools: a step reaching a workflow (through call_tool, say) is refused."""
_SUMMARY = ("id", "workflow", "status", "startedAt", "durationMs")


class Workflows:
    def __init__(self, server: AggregatorServer, store: WorkflowStore, history: WorkflowHistory) -> None:
        self.server = server
        self.store = store
        self.history = history
        self._served: dict[str, CompiledWorkflow] = {}
        self._recording: set[asyncio.Task[None]] = set()
        core = {tool["name"]: getattr(self, tool["name"].removeprefix("core_")) for tool in CORE_WORKFLOW_TOOLS}
        server.internal.register(core, lambda ctx, name, arguments, params: core[name](ctx, arguments))

    def update(self, workflows: list[WorkflowSpec]) -> None:
        """Serve exactly these workflows from now on."""
        served: dict[str, CompiledWorkflow] = {}
        for workflow in workflows:
            try:
                served[workflow.tool_name] = CompiledWorkflow.compile(workflow)
            except TemplateSyntaxError as exc:  # published by a control plane that checks differently
                log.error("workflow %s not served: template syntax error: %s", workflow.name, exc)
        self.server.internal.unregister(set(self._served) - set(served))
        self.server.internal.register(served, self.run)
        self._served = served
        self.server.registry.set_workflows(workflow_tool(compiled.spec) for compiled in served.values())

    async def run(self, ctx: CallContext, name: str, arguments: dict[str, Any], params: Params) -> dict[str, Any]:
        """Serve `workflow_<name>` (an InternalTool): run it, record the run, answer it (isError if it failed)."""
        workflow = self._served.get(name)
        if workflow is None:
            raise UnknownTool(f"Unknown tool: {name!r}", {"tool": name})
        if _IN_WORKFLOW.get():
            raise InvalidParams(f"Invalid params: a workflow step cannot run a workflow ({name})")
        bound = bind_arguments(workflow.spec, arguments)
        inside = _IN_WORKFLOW.set(True)
        try:
            execution = await WorkflowRun(self.server, workflow, ctx, bound, on_cancelled=self._record_later).run()
        finally:
            _IN_WORKFLOW.reset(inside)
        await self._record(execution)
        return answer(msgspec.to_builtins(execution), is_error=execution.status != "ok")

    async def _record(self, execution: WorkflowExecution) -> None:
        try:
            await self.store.record(execution, keep=self.history.keep, ttl=self.history.ttl)
        except Exception as exc:  # the caller still gets the run; only reading it back later fails
            log.warning("could not record run %s of workflow %s: %s", execution.id, execution.workflow, exc)

    def _record_later(self, execution: WorkflowExecution) -> None:
        task = asyncio.ensure_future(self._record(execution))
        self._recording.add(task)
        task.add_done_callback(self._recording.discard)

    # -- core_workflow_* ----------------------------------------------------------------------------

    async def workflow_list(self, ctx: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        listed = [
            {"name": w.spec.name, "tool": w.spec.tool_name, "steps": [step.tool for step in w.spec.steps]}
            | ({"description": w.spec.description} if w.spec.description else {})
            for w in self._served.values()
        ]
        return answer({"workflows": sorted(listed, key=lambda w: w["name"])})

    async def workflow_get(self, ctx: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        name = string_argument(arguments, "name")
        workflow = self._served.get(f"workflow_{name}")
        if workflow is None:
            raise InvalidParams(f"Unknown workflow: {name!r} (core_workflow_list names them)", {"workflow": name})
        return answer({"workflow": msgspec.to_builtins(workflow.spec)})

    async def workflow_execution_list(self, ctx: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        name = optional_string(arguments, "name")
        names = [name] if name is not None else [w.spec.name for w in self._served.values()]
        found = [run for workflow in names for run in await self.store.executions(workflow)]
        runs = [run for run in found if run.subject == ctx.subject]
        runs.sort(key=lambda run: run.started_at, reverse=True)
        summaries = [{key: value for key, value in msgspec.to_builtins(run).items() if key in _SUMMARY} for run in runs]
        return answer({"executions": summaries})

    async def workflow_execution_get(self, ctx: CallContext, arguments: dict[str, Any]) -> dict[str, Any]:
        run_id = string_argument(arguments, "id")
        run = await self.store.execution(run_id)
        if run is None or run.subject != ctx.subject:
            keep, days = self.history.keep, self.history.ttl / 86400
            raise InvalidParams(
                f"Unknown workflow execution: {run_id!r} (the latest {keep} runs of each workflow are kept, "
                f"for {days:g} days)",
                {"id": run_id},
            )
        return answer(msgspec.to_builtins(run))

"""One run of a workflow: its steps in order, each a tools/call through the gateway's own call path.

Every step re-enters AggregatorServer.call_tool with the caller's context, as if the same client
called the tool: the denylist, families, the user's own view, timeouts, metrics and logs apply
to each step, so a workflow reaches nothing its caller could not reach directly. The run stops
at the first failing step unless that step allows failure; a step whose condition renders falsy
is skipped. A client that asked for progress hears of each step as it ends (the steps' own
progress stays inside). Cancelling the call cancels the step in flight, and the run is recorded
as cancelled.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from aggregator.calls import CallContext
from aggregator.handlers import AggregatorServer
from shared.config_types import WorkflowSpec, WorkflowStep
from shared.protocol import versions as v
from shared.protocol.errors import GatewayError, InvalidParams
from shared.protocol.jsonrpc import raw
from shared.records import ExecutionStatus, StepOutcome, WorkflowExecution
from shared.workflow_checks import matches_type
from shared.workflow_templates import Compiled, compile_value, truthy

__all__ = ["CompiledWorkflow", "WorkflowRun", "bind_arguments"]

_CANCELLED = "the run was cancelled"


@dataclass(frozen=True, slots=True)
class _Step:
    spec: WorkflowStep
    args: Compiled
    condition: Compiled | None


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    """A definition with its templates compiled, once per change of the definitions."""

    spec: WorkflowSpec
    steps: tuple[_Step, ...]

    @classmethod
    def compile(cls, spec: WorkflowSpec) -> CompiledWorkflow:
        """TemplateSyntaxError for a template the checks at load time would have refused."""
        steps = tuple(
            _Step(step, compile_value(step.args), compile_value(step.condition) if step.condition else None)
            for step in spec.steps
        )
        return cls(spec, steps)


def bind_arguments(spec: WorkflowSpec, given: dict[str, Any]) -> dict[str, Any]:
    """Every declared argument's value (given, default or null), or InvalidParams naming the problem."""
    unknown = sorted(set(given) - set(spec.args))
    if unknown:
        declared = ", ".join(spec.args) or "none"
        raise InvalidParams(f"Invalid params: workflow {spec.name!r} has no argument {unknown[0]!r} (its: {declared})")
    bound: dict[str, Any] = {}
    for name, arg in spec.args.items():
        value = given.get(name)
        if value is None:
            if arg.required:
                raise InvalidParams(f"Invalid params: workflow {spec.name!r} needs the argument {name!r}")
            value = arg.default
        elif not matches_type(arg.type, value):
            raise InvalidParams(f"Invalid params: argument {name!r} of workflow {spec.name!r} must be a {arg.type}")
        bound[name] = value
    return bound


class WorkflowRun:
    def __init__(
        self,
        server: AggregatorServer,
        workflow: CompiledWorkflow,
        ctx: CallContext,
        arguments: dict[str, Any],
        *,
        on_cancelled: Callable[[WorkflowExecution], None],
    ) -> None:
        self.server = server
        self.workflow = workflow
        self.ctx = ctx
        self.arguments = arguments
        self.on_cancelled = on_cancelled
        """Told the run as it stood when the call was cancelled (it cannot be awaited any more)."""
        # Steps are the caller's calls, but their progress is not the run's, and the client
        # mirrored the workflow's arguments into Mcp-Param headers, never a step's.
        meta = {key: value for key, value in ctx.meta.items() if key != v.PROGRESS_TOKEN}
        self.step_ctx = dataclasses.replace(ctx, meta=meta, param_headers=None)
        self.outcomes: list[StepOutcome] = []
        self._running: WorkflowStep | None = None
        self.id = uuid.uuid4().hex
        self.started = time.time()
        self._clock = time.perf_counter()

    async def run(self) -> WorkflowExecution:
        context: dict[str, Any] = {"args": self.arguments, "results": {}}
        stopped_by: str | None = None
        try:
            for step in self.workflow.steps:
                if stopped_by is not None:
                    self.outcomes.append(_skipped(step.spec, f"step {stopped_by!r} failed"))
                    continue
                self._running = step.spec
                outcome = await self._step(step, context)
                self._running = None
                self.outcomes.append(outcome)
                if outcome.status == "failed" and not step.spec.allow_failure:
                    stopped_by = step.spec.id
                await self._progress(outcome)
        except asyncio.CancelledError:
            self.on_cancelled(self._cancelled())
            raise
        return self._execution("failed" if stopped_by is not None else "ok")

    async def _step(self, step: _Step, context: dict[str, Any]) -> StepOutcome:
        spec = step.spec
        started = time.perf_counter()
        try:
            if step.condition is not None and not truthy(step.condition(context)):
                return _skipped(spec, "its condition was false")
            arguments = raw(step.args(context))
        except Exception as exc:  # the author's templates: a missing name, a type error, 1/0, ...
            return _failed(spec, started, f"template: {exc}")
        try:
            answer = await self.server.call_tool(self.step_ctx, {"name": raw(spec.tool), "arguments": arguments})
        except GatewayError as exc:
            return _failed(spec, started, exc.message)
        result: dict[str, Any] = msgspec.json.decode(answer)
        if result.get("resultType") == "input_required":
            return _failed(spec, started, "the tool asked the client a question, which a workflow cannot pass on")
        if result.get("isError"):
            return _failed(spec, started, _text(result) or "the tool reported an error")
        value = _value(result)
        if spec.store:
            context["results"][spec.id] = value
        return StepOutcome(id=spec.id, tool=spec.tool, status="ok", duration_ms=_since(started), result=value)

    async def _progress(self, outcome: StepOutcome) -> None:
        token, channel = self.ctx.progress_token, self.ctx.channel
        if token is None or channel is None:
            return
        params = {
            v.PROGRESS_TOKEN: token,
            "progress": len(self.outcomes),
            "total": len(self.workflow.steps),
            "message": f"{outcome.id} ({outcome.tool}): {outcome.status}",
        }
        await channel.notify("notifications/progress", raw(params))

    def _cancelled(self) -> WorkflowExecution:
        """The run as it stood: the step in flight failed, the rest skipped."""
        for step in self.workflow.steps[len(self.outcomes) :]:
            spec = step.spec
            if spec is self._running:
                self.outcomes.append(StepOutcome(id=spec.id, tool=spec.tool, status="failed", error=_CANCELLED))
            else:
                self.outcomes.append(_skipped(spec, _CANCELLED))
        return self._execution("cancelled")

    def _execution(self, status: ExecutionStatus) -> WorkflowExecution:
        return WorkflowExecution(
            id=self.id,
            workflow=self.workflow.spec.name,
            status=status,
            started_at=self.started,
            duration_ms=_since(self._clock),
            arguments=self.arguments,
            steps=self.outcomes,
            subject=self.ctx.subject,
        )


def _value(result: dict[str, Any]) -> Any:
    """What `results.<id>` holds: structuredContent, else the text parsed as JSON, else the text."""
    if "structuredContent" in result:
        return result["structuredContent"]
    text = _text(result)
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return text


def _text(result: dict[str, Any]) -> str:
    blocks = result.get("content") or []
    return "".join(str(block.get("text", "")) for block in blocks if isinstance(block, dict) and "text" in block)


def _since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _skipped(step: WorkflowStep, reason: str) -> StepOutcome:
    return StepOutcome(id=step.id, tool=step.tool, status="skipped", reason=reason)


def _failed(step: WorkflowStep, started: float, error: str) -> StepOutcome:
    return StepOutcome(id=step.id, tool=step.tool, status="failed", duration_ms=_since(started), error=error)

"""Workflows as tools/list shows them, and the gateway's tools about workflows (core_workflow_*).

A workflow's input schema comes from its `args`. Every run answers an execution (what each step
called, its status, duration, and result or error), which the workflow's output schema and
core_workflow_execution_get's describe; workflows.py serves them all.
"""

from __future__ import annotations

from typing import Any

from aggregator.tool_schemas import ANY_OBJECT, NUMBER, STRING, array, described, enum, object_schema, tool
from shared.config_types import WorkflowArg, WorkflowSpec

__all__ = ["CORE_WORKFLOW_TOOLS", "EXECUTION", "workflow_tool"]

_STEP = object_schema(
    {"id": STRING, "tool": STRING, "status": enum("ok", "failed", "skipped")},
    {
        "durationMs": NUMBER,
        "result": described({}, "The tool's structuredContent, else its text parsed as JSON, else its text"),
        "error": STRING,
        "reason": described(STRING, "Why the step was skipped"),
    },
)
EXECUTION = object_schema(
    {
        "id": described(STRING, "The execution id (core_workflow_execution_get reads it back, on any replica)"),
        "workflow": STRING,
        "status": enum("ok", "failed", "cancelled"),
        "startedAt": described(NUMBER, "Seconds since the epoch"),
        "durationMs": NUMBER,
        "arguments": ANY_OBJECT,
        "steps": array(_STEP),
    },
    {"subject": STRING},
)
_SUMMARY = object_schema(
    {"id": STRING, "workflow": STRING, "status": STRING, "startedAt": NUMBER, "durationMs": NUMBER}
)
_NAME = {"name": described(STRING, "A workflow's name (core_workflow_list gives them)")}

CORE_WORKFLOW_TOOLS: tuple[dict[str, Any], ...] = (
    tool(
        "core_workflow_list",
        "List the workflows: multi-step tools, each called as workflow_<name>.",
        object_schema({"workflows": array(object_schema({"name": STRING, "tool": STRING, "steps": array(STRING)}))}),
    ),
    tool(
        "core_workflow_get",
        "Show one workflow's definition: its arguments and steps (tools, arguments, conditions).",
        object_schema({"workflow": ANY_OBJECT}),
        _NAME,
    ),
    tool(
        "core_workflow_execution_list",
        "List your latest workflow runs, newest first: of one workflow, or of all.",
        object_schema({"executions": array(_SUMMARY)}),
        optional=_NAME,
    ),
    tool(
        "core_workflow_execution_get",
        "Show one workflow run: every step's status, duration, and result or error.",
        EXECUTION,
        {"id": described(STRING, "The id a run answered, or core_workflow_execution_list gives")},
    ),
)


def workflow_tool(workflow: WorkflowSpec) -> dict[str, Any]:
    """The tool `workflow_<name>`: its arguments are the workflow's `args`."""
    steps = ", ".join(step.tool for step in workflow.steps)
    about = f"A workflow of {len(workflow.steps)} step(s): {steps}."
    schema = {
        "type": "object",
        "properties": {name: _property(arg) for name, arg in workflow.args.items()},
        "required": [name for name, arg in workflow.args.items() if arg.required],
        "additionalProperties": False,
    }
    description = f"{workflow.description} ({about})" if workflow.description else about
    return {"name": workflow.tool_name, "description": description, "inputSchema": schema, "outputSchema": EXECUTION}


def _property(arg: WorkflowArg) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": arg.type}
    if arg.description is not None:
        schema["description"] = arg.description
    if arg.default is not None:
        schema["default"] = arg.default
    return schema

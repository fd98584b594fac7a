"""What a workflow's types cannot say: names, step ids, templates, and what its steps call.

Problems are one line each, `$.path: workflow 'name', step 'id': what is wrong`; the caller puts
the file in front. Errors stop a workflow from loading. A step tool that no configured server
could expose is only a warning: the config cannot know every backend's tools, and one may not be
up yet.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from shared.config_types import ArgType, Config, WorkflowSpec, WorkflowStep
from shared.workflow_templates import TemplateSyntaxError, is_template, references

__all__ = ["matches_type", "workflow_errors", "workflow_warnings"]

_WORKFLOW_NAME = re.compile(r"[a-z0-9]+(?:[-_][a-z0-9]+)*")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "number": (int, float),
    "integer": (int,),
    "boolean": (bool,),
    "object": (dict,),
    "array": (list,),
}


def matches_type(kind: ArgType, value: Any) -> bool:
    """Whether `value` (decoded JSON) is of the JSON Schema type `kind`; true and false are not numbers."""
    if isinstance(value, bool) and kind != "boolean":
        return False
    return isinstance(value, _PYTHON_TYPES[kind])


def workflow_errors(workflow: WorkflowSpec, at: str, *, name_limit: int) -> Iterator[str]:
    """Problems that keep `workflow` from loading, each as '$.path: workflow ..., step ...: problem'."""
    name = workflow.name
    if not _WORKFLOW_NAME.fullmatch(name):
        yield f"{at}.name: {name!r} must be lowercase letters and digits, with inner dashes or underscores"
    elif len(workflow.tool_name) > name_limit:
        yield f"{at}.name: its tool name {workflow.tool_name!r} is longer than maxToolNameLength ({name_limit})"
    for arg, spec in workflow.args.items():
        where = f"{at}.args.{arg}"
        if not _IDENTIFIER.fullmatch(arg):
            yield f"{where}: workflow {name!r}: argument names are letters, digits and underscores (args.<name>)"
        if spec.required and spec.default is not None:
            yield f"{where}: workflow {name!r}: a required argument has no default; drop one of them"
        if spec.default is not None and not matches_type(spec.type, spec.default):
            yield f"{where}.default: workflow {name!r}: {spec.default!r} is not of type {spec.type}"
    if not workflow.steps:
        yield f"{at}.steps: workflow {name!r} has no steps"
    stored: set[str] = set()
    seen: dict[str, int] = {}
    for index, step in enumerate(workflow.steps):
        where = f"{at}.steps[{index}]"
        who = f"workflow {name!r}, step {step.id!r}"
        if not _IDENTIFIER.fullmatch(step.id):
            yield f"{where}.id: {who}: step ids are letters, digits and underscores (results.<id>)"
        if step.id in seen:
            yield f"{where}.id: {who}: the id is already used by steps[{seen[step.id]}]"
        seen.setdefault(step.id, index)
        if step.tool.startswith("workflow_"):
            yield f"{where}.tool: {who}: a step cannot run a workflow ({step.tool})"
        yield from _template_errors(step, workflow, stored, where, who)
        if step.store:
            stored.add(step.id)


def _template_errors(
    step: WorkflowStep, workflow: WorkflowSpec, stored: set[str], where: str, who: str
) -> Iterator[str]:
    templates: list[tuple[str, Any]] = [(f"{where}.args", step.args)]
    if step.condition is not None:
        templates.append((f"{where}.condition", step.condition))
        if not is_template(step.condition):
            yield f"{where}.condition: {who}: a condition is a template; write it as {{{{ ... }}}}"
    for path, value in templates:
        for key, text in _strings(value, path):
            try:
                used = list(references(text))
            except TemplateSyntaxError as exc:
                yield f"{key}: {who}: template syntax error: {exc.message} (line {exc.lineno})"
                continue
            for kind, item in used:
                if kind == "args" and item not in workflow.args:
                    yield f"{key}: {who}: uses args.{item}, which the workflow does not declare"
                elif kind == "results" and item not in stored:
                    yield f"{key}: {who}: uses results.{item}, but no earlier step with store: true has that id"


def _strings(value: Any, at: str) -> Iterator[tuple[str, str]]:
    """Every string below `value`, with its path."""
    if isinstance(value, str):
        yield at, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _strings(item, f"{at}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{at}[{index}]")


def workflow_warnings(workflow: WorkflowSpec, at: str, config: Config) -> Iterator[str]:
    """Step tools that no configured server's tools are named like: the step fails until one is."""
    prefix = config.aggregator.prefix
    heads = {f"{prefix}_{spec.prefix}_" for spec in config.mcp_servers}
    heads |= {f"{prefix}_{spec.family.name}_" for spec in config.mcp_servers if spec.family is not None}
    for index, step in enumerate(workflow.steps):
        if step.tool.startswith(("core_", "workflow_", *heads)):
            continue
        yield (
            f"{at}.steps[{index}].tool: workflow {workflow.name!r}, step {step.id!r}: {step.tool!r} is not named "
            f"like a tool of any configured server ({prefix}_<server>_<tool>); the step fails until one offers it"
        )

"""Builders for the JSON Schemas of the gateway's own tools (meta-tools, workflows).

Their output schemas say what each result's structuredContent holds, so clients that check it
(the official SDKs do) accept every answer.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ANY_OBJECT", "NUMBER", "STRING", "array", "described", "enum", "object_schema", "tool"]

STRING: dict[str, Any] = {"type": "string"}
NUMBER: dict[str, Any] = {"type": "number"}
ANY_OBJECT: dict[str, Any] = {"type": "object"}
_READ_ONLY = {"readOnlyHint": True}


def object_schema(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": {**required, **(optional or {})}, "required": list(required)}


def array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def enum(*values: str) -> dict[str, Any]:
    return {"type": "string", "enum": list(values)}


def described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


def tool(
    name: str,
    description: str,
    output: dict[str, Any],
    inputs: dict[str, Any] | None = None,
    optional: dict[str, Any] | None = None,
    *,
    read_only: bool = True,
) -> dict[str, Any]:
    """A tool as tools/list shows it: `inputs` its required arguments, `optional` the others."""
    listed = {
        "name": name,
        "description": description,
        "inputSchema": object_schema(inputs or {}, optional),
        "outputSchema": output,
    }
    return listed | ({"annotations": _READ_ONLY} if read_only else {})

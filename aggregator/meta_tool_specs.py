"""The meta-tools as tools/list shows them: names, descriptions, input and output schemas.

Eleven fixed, unprefixed names (`aggregator.exposure: meta | both`); their output schemas say
what each result's structuredContent holds, so clients that check it (the official SDKs do)
accept every answer. meta_tools.py serves them.
"""

from __future__ import annotations

from typing import Any

__all__ = ["META_TOOLS", "META_TOOL_NAMES"]

_STRING = {"type": "string"}
_ANY_OBJECT: dict[str, Any] = {"type": "object"}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": {**required, **(optional or {})}, "required": list(required)}


def _list(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def _described(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {**schema, "description": description}


_TOOL_SUMMARY = _object({"name": _STRING}, {"title": _STRING, "description": _STRING})
_TOOL = _object({"name": _STRING, "inputSchema": _ANY_OBJECT})
_TOOLS = _object({"tools": _list(_TOOL_SUMMARY)})
_SIGN_IN = _object({"server": _STRING, "status": _STRING, "tool": _STRING, "arguments": _object({"server": _STRING})})
_NAME = {"name": _described(_STRING, "A name as list_tools gives it")}
_URI = {"uri": _described(_STRING, "A resource URI (a listed one, or one matching a template)")}
_PROMPT = {"name": _described(_STRING, "A prompt name as list_prompts gives it")}
_READ_ONLY = {"readOnlyHint": True}


def _tool(
    name: str,
    description: str,
    output: dict[str, Any],
    inputs: dict[str, Any] | None = None,
    optional: dict[str, Any] | None = None,
    *,
    read_only: bool = True,
) -> dict[str, Any]:
    tool = {
        "name": name,
        "description": description,
        "inputSchema": _object(inputs or {}, optional),
        "outputSchema": output,
    }
    return tool | ({"annotations": _READ_ONLY} if read_only else {})


META_TOOLS: tuple[dict[str, Any], ...] = (
    _tool(
        "list_tools",
        "List every tool this gateway offers (name and description), and the servers you must sign in to "
        "before theirs show (with the tool call that signs you in).",
        _object({"tools": _list(_TOOL_SUMMARY), "signInRequired": _list(_SIGN_IN)}),
    ),
    _tool(
        "describe_tool",
        "Describe one tool: its description, input schema, and output schema if it has one.",
        _object({"tool": _TOOL}),
        _NAME,
    ),
    _tool(
        "call_tool",
        "Call a tool by the name list_tools gives, with its arguments; answers the tool's own result.",
        _described(_ANY_OBJECT, "The called tool's structuredContent; for a tool that has none, {content: [...]}"),
        _NAME,
        {"arguments": _described(_ANY_OBJECT, "The tool's arguments, as its inputSchema says")},
        read_only=False,
    ),
    _tool(
        "filter_tools",
        "Find tools whose name matches a pattern (* any text, ? one character; case does not matter), "
        "optionally whose description contains a text, or that a given server provides.",
        _TOOLS,
        {"pattern": _described(_STRING, "A glob over tool names, such as *pod* or x_kube_*")},
        {
            "description": _described(_STRING, "Text the description must contain (case does not matter)"),
            "server": _described(_STRING, "Only tools of this server (as named in the gateway's config)"),
        },
    ),
    _tool(
        "list_resources",
        "List the resources and resource templates.",
        _object(
            {
                "resources": _list(_object({"uri": _STRING, "name": _STRING})),
                "resourceTemplates": _list(_object({"uriTemplate": _STRING, "name": _STRING})),
            }
        ),
    ),
    _tool(
        "describe_resource",
        "Describe one resource, or the resource template a URI matches.",
        _object({"resource": _ANY_OBJECT}),
        _URI,
    ),
    _tool(
        "get_resource",
        "Read a resource by URI.",
        _object({"contents": _list(_object({"uri": _STRING}))}),
        _URI,
    ),
    _tool("list_prompts", "List the prompts.", _object({"prompts": _list(_object({"name": _STRING}))})),
    _tool("describe_prompt", "Describe one prompt and its arguments.", _object({"prompt": _ANY_OBJECT}), _PROMPT),
    _tool(
        "get_prompt",
        "Get a prompt's messages, filled in with its arguments.",
        _object({"messages": _list(_object({"role": _STRING, "content": _ANY_OBJECT}))}, {"description": _STRING}),
        _PROMPT,
        {"arguments": _described({"type": "object", "additionalProperties": _STRING}, "The prompt's arguments")},
    ),
    _tool(
        "list_core_tools",
        "List the gateway's own tools (signing in to servers that need your account); call them like any tool.",
        _object({"tools": _list(_TOOL)}),
    ),
)
META_TOOL_NAMES = frozenset(tool["name"] for tool in META_TOOLS)

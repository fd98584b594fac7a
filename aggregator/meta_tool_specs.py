"""The meta-tools as tools/list shows them: names, descriptions, input and output schemas.

Eleven fixed, unprefixed names (`aggregator.exposure: meta | both`), each with an output schema
(tool_schemas.py builds them). meta_tools.py serves them.
"""

from __future__ import annotations

from typing import Any

from aggregator.tool_schemas import ANY_OBJECT, STRING, array, described, object_schema, tool

__all__ = ["META_TOOLS", "META_TOOL_NAMES"]

_TOOL_SUMMARY = object_schema({"name": STRING}, {"title": STRING, "description": STRING})
_TOOL = object_schema({"name": STRING, "inputSchema": ANY_OBJECT})
_TOOLS = object_schema({"tools": array(_TOOL_SUMMARY)})
_SIGN_IN = object_schema(
    {"server": STRING, "status": STRING, "tool": STRING, "arguments": object_schema({"server": STRING})}
)
_NAME = {"name": described(STRING, "A name as list_tools gives it")}
_URI = {"uri": described(STRING, "A resource URI (a listed one, or one matching a template)")}
_PROMPT = {"name": described(STRING, "A prompt name as list_prompts gives it")}

META_TOOLS: tuple[dict[str, Any], ...] = (
    tool(
        "list_tools",
        "List every tool this gateway offers (name and description), and the servers you must sign in to "
        "before theirs show (with the tool call that signs you in).",
        object_schema({"tools": array(_TOOL_SUMMARY), "signInRequired": array(_SIGN_IN)}),
    ),
    tool(
        "describe_tool",
        "Describe one tool: its description, input schema, and output schema if it has one.",
        object_schema({"tool": _TOOL}),
        _NAME,
    ),
    tool(
        "call_tool",
        "Call a tool by the name list_tools gives, with its arguments; answers the tool's own result.",
        described(ANY_OBJECT, "The called tool's structuredContent; for a tool that has none, {content: [...]}"),
        _NAME,
        {"arguments": described(ANY_OBJECT, "The tool's arguments, as its inputSchema says")},
        read_only=False,
    ),
    tool(
        "filter_tools",
        "Find tools whose name matches a pattern (* any text, ? one character; case does not matter), "
        "optionally whose description contains a text, or that a given server provides.",
        _TOOLS,
        {"pattern": described(STRING, "A glob over tool names, such as *pod* or x_kube_*")},
        {
            "description": described(STRING, "Text the description must contain (case does not matter)"),
            "server": described(STRING, "Only tools of this server (as named in the gateway's config)"),
        },
    ),
    tool(
        "list_resources",
        "List the resources and resource templates.",
        object_schema(
            {
                "resources": array(object_schema({"uri": STRING, "name": STRING})),
                "resourceTemplates": array(object_schema({"uriTemplate": STRING, "name": STRING})),
            }
        ),
    ),
    tool(
        "describe_resource",
        "Describe one resource, or the resource template a URI matches.",
        object_schema({"resource": ANY_OBJECT}),
        _URI,
    ),
    tool(
        "get_resource",
        "Read a resource by URI.",
        object_schema({"contents": array(object_schema({"uri": STRING}))}),
        _URI,
    ),
    tool("list_prompts", "List the prompts.", object_schema({"prompts": array(object_schema({"name": STRING}))})),
    tool("describe_prompt", "Describe one prompt and its arguments.", object_schema({"prompt": ANY_OBJECT}), _PROMPT),
    tool(
        "get_prompt",
        "Get a prompt's messages, filled in with its arguments.",
        object_schema(
            {"messages": array(object_schema({"role": STRING, "content": ANY_OBJECT}))}, {"description": STRING}
        ),
        _PROMPT,
        {"arguments": described({"type": "object", "additionalProperties": STRING}, "The prompt's arguments")},
    ),
    tool(
        "list_core_tools",
        "List the gateway's own tools (signing in to servers that need your account); call them like any tool.",
        object_schema({"tools": array(_TOOL)}),
    ),
)
META_TOOL_NAMES = frozenset(tool["name"] for tool in META_TOOLS)

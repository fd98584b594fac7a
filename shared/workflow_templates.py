"""Workflow templates: Jinja2, sandboxed, strict about undefined names, over `args` and `results`.

A step's arguments are a JSON value whose strings are templates, compiled once per workflow
definition. A string that is exactly one expression, `{{ args.limit }}`, keeps the value's own
type (a number stays a number, a list a list), so tools get the types their schemas ask for;
any other string renders to text. Only the workflow's author writes templates: clients' values
reach them as data and are never rendered themselves. The sandbox keeps a template from
reaching Python internals, and from changing what it reads (one step's result, as the next
sees it); StrictUndefined makes a misspelt name an error instead of "".
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, Undefined, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

__all__ = ["Compiled", "TemplateSyntaxError", "compile_value", "is_template", "references", "truthy"]

Compiled = Callable[[Mapping[str, Any]], Any]
"""A compiled value: called with the context ({"args": ..., "results": ...}), it renders the value."""

_ENVIRONMENT = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
_ONE_EXPRESSION = re.compile(r"\s*\{\{(.*)\}\}\s*", re.DOTALL)
_SYNTAX = ("{{", "{%", "{#")
_FALSE_WORDS = frozenset({"", "false", "0", "no", "off", "none", "null"})
_CONTEXT = ("args", "results")


def is_template(text: str) -> bool:
    return any(mark in text for mark in _SYNTAX)


def compile_value(value: Any) -> Compiled:
    """Compile every string below `value`; TemplateSyntaxError for the first that is not a template."""
    if isinstance(value, str):
        return _compile_text(value)
    if isinstance(value, dict):
        items = {key: compile_value(item) for key, item in value.items()}
        return lambda context: {key: render(context) for key, render in items.items()}
    if isinstance(value, list):
        parts = [compile_value(item) for item in value]
        return lambda context: [render(context) for render in parts]
    return lambda context: value


def _compile_text(text: str) -> Compiled:
    if not is_template(text):
        return lambda context: text
    single = _ONE_EXPRESSION.fullmatch(text)
    if single is not None:
        try:
            expression = _ENVIRONMENT.compile_expression(single.group(1), undefined_to_none=False)
        except TemplateSyntaxError:
            pass  # more than one expression ({{ a }} and {{ b }}): a text template
        else:
            return lambda context: _defined(expression(**context))
    template = _ENVIRONMENT.from_string(text)
    return lambda context: template.render(context)


def _defined(value: Any) -> Any:
    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError, naming what is missing
    return value


def truthy(value: Any) -> bool:
    """Whether a rendered condition holds: Python's truth, and for text also not false, no, off, 0, none, null."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


def references(value: Any) -> Iterator[tuple[str, str]]:
    """Each (`args` or `results`, name) that `value`'s templates read by a constant name.

    TemplateSyntaxError for the first string that is not a template.
    """
    if isinstance(value, dict):
        for item in value.values():
            yield from references(item)
    elif isinstance(value, list):
        for item in value:
            yield from references(item)
    elif isinstance(value, str) and is_template(value):
        tree = _ENVIRONMENT.parse(value)
        for node in tree.find_all(nodes.Getattr):
            if isinstance(node.node, nodes.Name) and node.node.name in _CONTEXT:
                yield node.node.name, node.attr
        for item in tree.find_all(nodes.Getitem):
            key = item.arg
            if isinstance(item.node, nodes.Name) and item.node.name in _CONTEXT and isinstance(key, nodes.Const):
                yield item.node.name, str(key.value)

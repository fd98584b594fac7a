"""Workflow templates: sandboxed Jinja2 with StrictUndefined; one expression keeps its type."""

from __future__ import annotations

from typing import Any

import pytest
from jinja2 import TemplateError

from shared.workflow_templates import compile_value, references, truthy

CONTEXT: dict[str, Any] = {
    "args": {"n": 5, "app": "web", "tags": ["a", "b"], "nothing": None},
    "results": {"pods": {"count": 2, "items": [{"name": "p1"}]}},
}


def render(value: Any) -> Any:
    return compile_value(value)(CONTEXT)


def test_a_string_that_is_one_expression_keeps_the_values_type_and_any_other_renders_to_text() -> None:
    assert render("{{ args.n }}") == 5
    assert render("  {{ args.tags }} ") == ["a", "b"]
    assert render("{{ results.pods.count > 0 }}") is True
    assert render("{{ args.nothing }}") is None
    assert render("n={{ args.n }}") == "n=5"
    assert render("{{ args.n }}{{ args.n }}") == "55"  # two expressions: text
    assert render("{% if args.n > 3 %}big{% endif %}") == "big"
    assert render("no template, {braces} and all") == "no template, {braces} and all"


def test_values_are_rendered_all_the_way_down_and_keys_are_kept() -> None:
    value = {"{{ args.app }}": ["{{ args.n }}", {"deep": "{{ results.pods['items'][0].name }}"}, 7, True, None]}
    assert render(value) == {"{{ args.app }}": [5, {"deep": "p1"}, 7, True, None]}


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("{{ args.missing }}", "has no attribute 'missing'"),
        ("x {{ results.gone.count }}", "has no attribute 'gone'"),
        ("{{ args.n.__class__.__mro__ }}", "unsafe"),
        ("{{ args.tags.append('c') }}", "unsafe"),  # what a template reads, it cannot change
        ("{{ args.n / 0 }}", "division by zero"),
    ],
)
def test_undefined_names_and_unsafe_access_are_errors(template: str, problem: str) -> None:
    with pytest.raises((TemplateError, ZeroDivisionError), match=problem):
        render(template)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, True),
        (False, False),
        (0, False),
        (2, True),
        ([], False),
        ("yes", True),
        (" False ", False),
        ("no", False),
    ],
)
def test_a_condition_holds_as_python_truth_and_for_text_unless_it_reads_false(value: Any, expected: bool) -> None:
    assert truthy(value) is expected


def test_references_name_the_args_and_results_a_value_reads() -> None:
    value = {"a": "{{ args.app }} {{ results.pods.count }}", "b": ["{{ results['other'] }}", 3, "plain"]}
    assert sorted(references(value)) == [("args", "app"), ("results", "other"), ("results", "pods")]

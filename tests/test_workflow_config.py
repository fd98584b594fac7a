"""Workflow definitions: the config's `workflows:`, workflow files, and what `aggregator check` says of them.

Errors name the file, the field, the workflow and the step; a step tool no configured server
could offer is only a warning.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.cli import main
from shared.config import ConfigError, parse_config

SERVERS = "mcpServers: [{name: kube, type: streamable-http, url: 'http://127.0.0.1:1/mcp'}]\n"
DEPLOY_CHECK = """
workflows:
  - name: deploy-check
    description: Check a deployment, then report
    args:
      app: {type: string, required: true, description: Application}
      env: {type: string, default: staging}
    steps:
      - id: pods
        tool: x_kube_get_pods
        args: {namespace: "{{ args.env }}", selector: "app={{ args.app }}"}
        store: true
      - id: note
        tool: x_notes_add_note
        args: {text: "{{ args.app }} has {{ results.pods.count }} pods"}
        condition: "{{ results.pods.count > 0 }}"
        allowFailure: true
"""


def test_the_issues_example_loads_and_warns_of_the_tool_no_server_offers() -> None:
    config = parse_config(SERVERS + DEPLOY_CHECK, source="c.yaml")
    workflow = config.workflows[0]
    assert (workflow.tool_name, workflow.args["env"].default, workflow.args["app"].required) == (
        "workflow_deploy-check",
        "staging",
        True,
    )
    assert [(s.id, s.store, s.allow_failure) for s in workflow.steps] == [("pods", True, False), ("note", False, True)]
    assert config.warnings == (
        "c.yaml: $.workflows[0].steps[1].tool: workflow 'deploy-check', step 'note': 'x_notes_add_note' is not "
        "named like a tool of any configured server (x_<server>_<tool>); the step fails until one offers it",
    )


def workflow(steps: str, args: str = "{}", name: str = "w") -> str:
    return SERVERS + f"workflows: [{{name: {name}, args: {args}, steps: {steps}}}]\n"


ECHO = "{id: a, tool: x_kube_echo, args: {text: hi}}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            workflow("[{id: a, tool: x_kube_echo, args: {text: '{{ args.x }'}}]", "{x: {}}"),
            "$.workflows[0].steps[0].args.text: workflow 'w', step 'a': template syntax error: unexpected '}' (line 1)",
        ),
        (
            workflow(f"[{ECHO}, {ECHO}]"),
            "$.workflows[0].steps[1].id: workflow 'w', step 'a': the id is already used by steps[0]",
        ),
        (
            workflow("[{id: a, tool: x_kube_echo, args: {text: '{{ args.who }}'}}]"),
            "$.workflows[0].steps[0].args.text: workflow 'w', step 'a': uses args.who, which the workflow does not",
        ),
        (
            workflow(f"[{ECHO}, {{id: b, tool: x_kube_echo, args: {{text: '{{{{ results.a.x }}}}'}}}}]"),
            "step 'b': uses results.a, but no earlier step with store: true has that id",
        ),
        (
            workflow("[{id: a, tool: x_kube_echo, condition: 'args.loud'}]"),
            "$.workflows[0].steps[0].condition: workflow 'w', step 'a': a condition is a template",
        ),
        (workflow("[{id: a-b, tool: x_kube_echo}]"), "$.workflows[0].steps[0].id: workflow 'w', step 'a-b': step ids"),
        (workflow("[{id: a, tool: workflow_w}]"), "step 'a': a step cannot run a workflow (workflow_w)"),
        (workflow("[]"), "$.workflows[0].steps: workflow 'w' has no steps"),
        (workflow(f"[{ECHO}]", name="Bad"), "$.workflows[0].name: 'Bad' must be lowercase letters and digits"),
        (workflow(f"[{ECHO}]", "{n: {type: integer, default: many}}"), "$.workflows[0].args.n.default: workflow"),
        (
            workflow(f"[{ECHO}]", "{n: {type: colour}}"),
            "$.workflows[0].args[...].type: 'colour' is not one of array, boolean",
        ),
        (
            workflow("[{id: a, tool: x_kube_echo, allow_failure: true}]"),
            "$.workflows[0].steps[0].allow_failure: unknown field; did you mean 'allowFailure'?",
        ),
        (
            SERVERS + f"workflows: [{{name: w, steps: [{ECHO}]}}, {{name: w, steps: [{ECHO}]}}]",
            "$.workflows[1].name: workflow 'w' is already defined by $.workflows[0]",
        ),
        ("aggregator: {workflowHistory: {keep: 0}}", "$.aggregator.workflowHistory.keep: must be at least 1"),
    ],
)
def test_invalid_workflows_name_file_field_workflow_and_step(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")
    assert str(caught.value).startswith("c.yaml: ") and expected in str(caught.value)


def check(config: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["check", "-c", str(config)])
    out, err = capsys.readouterr()
    return code, out, err


def test_check_lists_workflows_from_the_config_and_the_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "note.yaml").write_text(
        "name: note\nsteps: [{id: a, tool: x_kube_echo, args: {text: '${WHO:-ada}'}}, {id: b, tool: x_nope_t}]\n"
    )
    (tmp_path / "flows" / "README.txt").write_text("not a workflow")
    config = tmp_path / "config.yaml"
    config.write_text("aggregator: {workflowsDir: flows}\n" + SERVERS + DEPLOY_CHECK)
    code, out, err = check(config, capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0] == f"{config}: OK, 1 backend(s), 2 workflow(s), 2 warning(s)"
    assert any(
        line.split() == ["workflow_deploy-check", "workflow", "x_kube_get_pods", "->", "x_notes_add_note"]
        for line in lines
    )
    assert any(line.split() == ["workflow_note", "workflow", "x_kube_echo", "->", "x_nope_t"] for line in lines)
    note = tmp_path / "flows" / "note.yaml"
    assert f"aggregator: warning: {note}: $.steps[1].tool: workflow 'note', step 'b': 'x_nope_t' is not named" in err


def test_check_fails_on_a_workflow_file_with_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flows = tmp_path / "flows"
    flows.mkdir()
    (flows / "a.yaml").write_text(f"name: dup\nsteps: [{ECHO}]\n")
    (flows / "b.yml").write_text(f"name: dup\nsteps: [{ECHO}]\n")
    (flows / "c.json").write_text('{"name": "c", "steps": [{"id": "a", "tool": "x_kube_echo", "args": {"t": "{{ x"}}]}')
    (flows / "d.yaml").write_text("name: d\nsteps: [{id: a, tool: x_kube_echo, colour: red}]\n")
    (flows / "e.yaml").write_bytes(b"name: \xff\n")
    (flows / ".half-written.yaml").write_text("name: [")  # hidden: not read
    config = tmp_path / "config.yaml"
    config.write_text(f"aggregator: {{workflowsDir: {flows}}}\n" + SERVERS)
    code, out, err = check(config, capsys)
    assert code == 2 and out == ""
    assert err.splitlines() == [
        f"aggregator: invalid workflow file: {flows / 'b.yml'}: $.name: workflow 'dup' is already defined by "
        f"{flows / 'a.yaml'}",
        f"aggregator: invalid workflow file: {flows / 'c.json'}: $.steps[0].args.t: workflow 'c', step 'a': "
        "template syntax error: unexpected end of template, expected 'end of print statement'. (line 1)",
        f"aggregator: invalid workflow file: {flows / 'd.yaml'}: $.steps[0].colour: unknown field; valid fields are "
        "id, tool, args, condition, allowFailure, store, description",
        f"aggregator: invalid workflow file: {flows / 'e.yaml'}: not UTF-8 text",
    ]


def test_check_warns_of_a_missing_workflow_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "config.yaml"
    config.write_text("aggregator: {workflowsDir: nowhere}\n" + SERVERS)
    code, out, err = check(config, capsys)
    assert code == 0 and out.startswith(f"{config}: OK, 1 backend(s), 1 warning(s)")
    assert f"$.aggregator.workflowsDir: '{tmp_path / 'nowhere'}' is not a folder (yet)" in err

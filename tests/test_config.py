"""The config loader: defaults, and errors that name the file, the field and the problem."""

from __future__ import annotations

import pytest

from shared.config import ConfigError, load_config, parse_config


def test_defaults_are_safe() -> None:
    config = parse_config("mcpServers: []")
    assert config.aggregator.host == "127.0.0.1"
    assert config.aggregator.port == 8090
    assert config.aggregator.yolo is False
    assert config.aggregator.prefix == "x"
    assert config.aggregator.max_body_bytes == 4 * 1024 * 1024


def test_server_fields_follow_muster_names() -> None:
    config = parse_config(
        """
mcpServers:
  - name: kube-eu
    type: streamable-http
    url: http://127.0.0.1:1/mcp
    headers: {X-Team: a}
    toolPrefix: keu
    family: {name: kube}
    timeout: 5
"""
    )
    spec = config.mcp_servers[0]
    assert (spec.prefix, spec.family.name, spec.family.instance_arg, spec.timeout) == ("keu", "kube", "server", 5)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aggregator: {port: eighty}", "c.yaml: $.aggregator.port: Expected int, got str"),
        ("mcpServers: [{name: Bad, type: stdio, command: x}]", "$.mcpServers[0].name: 'Bad' must match"),
        ("mcpServers: [{name: a, type: stdio}]", "$.mcpServers[0].command: required for type stdio"),
        ("mcpServers: [{name: a, type: sse}]", "$.mcpServers[0].url: type sse needs an http"),
        ("mcpServers: [{name: a, type: stdio, command: x, colour: red}]", "unknown field colour"),
        ("mcpServers: [{name: a, type: pipe, command: x}]", "$.mcpServers[0].type"),
        (
            "mcpServers: [{name: a, type: stdio, command: x}, {name: a, type: stdio, command: y}]",
            "$.mcpServers[1].name: 'a' is already used",
        ),
        (
            "mcpServers: [{name: a, type: stdio, command: x}, {name: b, type: stdio, command: y, toolPrefix: a}]",
            "exposed name segment 'a' is already used by server a",
        ),
        ("aggregator: [", "not valid YAML (line 1"),
    ],
)
def test_invalid_config_names_file_field_and_problem(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")
    message = str(caught.value)
    assert message.startswith("c.yaml: ")
    assert expected in message


def test_missing_file_says_so(tmp_path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")


def test_environment_references_are_expanded(monkeypatch) -> None:
    monkeypatch.setenv("TEAM_TOKEN", "s3cret")
    config = parse_config(
        "mcpServers: [{name: a, type: streamable-http, url: 'http://h/mcp',"
        " headers: {Authorization: 'Bearer ${TEAM_TOKEN}'}}]"
    )
    assert config.mcp_servers[0].headers["Authorization"] == "Bearer s3cret"

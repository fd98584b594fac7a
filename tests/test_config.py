"""The config loader: defaults, and errors that name the file, the field and the problem."""

from __future__ import annotations

import base64
import subprocess

import pytest

from shared.config import ConfigError, load_config, parse_config
from tests.gateway_process import BIN


def test_defaults_are_safe() -> None:
    config = parse_config("mcpServers: []")
    assert config.aggregator.host == "127.0.0.1"
    assert config.aggregator.port == 8090
    assert config.aggregator.yolo is False
    assert config.aggregator.prefix == "x"
    assert config.aggregator.exposure == "native"  # the backends' tools, as they are
    assert config.aggregator.max_body_bytes == 4 * 1024 * 1024
    assert (config.aggregator.header_timeout, config.aggregator.body_timeout) == (10, 30)
    assert (config.aggregator.max_header_bytes, config.aggregator.max_streams) == (64 * 1024, 1000)


def test_every_backend_is_bounded_by_default() -> None:
    spec = parse_config("mcpServers: [{name: a, type: streamable-http, url: 'http://127.0.0.1:1/mcp'}]").mcp_servers[0]
    assert (spec.max_in_flight, spec.max_queued, spec.max_connections) == (128, 512, 256)


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
        ("mcpServers: [{name: a, type: stdio, command: x, colour: red}]", "$.mcpServers[0].colour: unknown field"),
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
        ("aggregator: {headerTimeout: 0}", "$.aggregator.headerTimeout: must be a positive number of seconds"),
        ("aggregator: {bodyTimeout: -1}", "$.aggregator.bodyTimeout: must be a positive number of seconds"),
        ("aggregator: {keepAliveTimeout: 0}", "$.aggregator.keepAliveTimeout: must be a positive number of seconds"),
        ("aggregator: {maxHeaderBytes: 100}", "$.aggregator.maxHeaderBytes: must be at least 1024"),
        ("aggregator: {maxStreams: 0}", "$.aggregator.maxStreams: must be at least 1"),
        ("aggregator: {maxBatchSize: 0}", "$.aggregator.maxBatchSize: must be at least 1"),
        ("mcpServers: [{name: a, type: stdio, command: x, maxInFlight: 0}]", "$.mcpServers[0].maxInFlight: must be"),
        ("mcpServers: [{name: a, type: stdio, command: x, maxQueued: -1}]", "$.mcpServers[0].maxQueued: must be 0"),
        (
            "mcpServers: [{name: a, type: sse, url: 'http://h/sse', maxConnections: 1}]",
            "$.mcpServers[0].maxConnections: must be at least 2",
        ),
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


# --- Errors: unknown fields, enums, missing fields -------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "mcpServers: [{name: a, type: stdio, comand: x}]",
            "c.yaml: $.mcpServers[0].comand: unknown field; did you mean 'command'?",
        ),
        ("aggregator: {prot: 1}", "c.yaml: $.aggregator.prot: unknown field; did you mean 'port'?"),
        (
            "aggregator: {denylist: {alow: [x]}}",
            "c.yaml: $.aggregator.denylist.alow: unknown field; did you mean 'allow'?",
        ),
        ("mcpServer: []", "c.yaml: $.mcpServer: unknown field; did you mean 'mcpServers'?"),
        (
            "mcpServers: {time: {command: x, disable: true}}",
            "c.yaml: $.mcpServers.time.disable: unknown field; did you mean 'disabled'?",
        ),
    ],
)
def test_unknown_field_suggests_the_closest_one(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")
    assert str(caught.value) == expected


def test_unknown_field_without_a_close_match_lists_the_valid_ones() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("aggregator: {zzz: 1}", source="c.yaml")
    assert str(caught.value).startswith(
        "c.yaml: $.aggregator.zzz: unknown field; valid fields are host, port, transport"
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "mcpServers: [{name: a, type: htp, url: 'http://h/mcp'}]",
            "$.mcpServers[0].type: 'htp' is not one of sse, stdio, streamable-http",
        ),
        (
            '{"mcpServers": {"time": {"type": "htp", "url": "http://h/mcp"}}}',
            "$.mcpServers.time.type: 'htp' is not one of sse, stdio, streamable-http",
        ),
        ("aggregator: {transport: tcp}", "$.aggregator.transport: 'tcp' is not one of sse, stdio, streamable-http"),
        ("aggregator: {exposure: metas}", "$.aggregator.exposure: 'metas' is not one of both, meta, native"),
    ],
)
def test_enum_error_lists_the_allowed_values(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")
    assert str(caught.value) == f"c.yaml: {expected}"


def test_server_without_command_url_or_type_says_what_to_add() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config("mcpServers: {time: {args: [x]}}", source="c.yaml")
    assert str(caught.value).startswith("c.yaml: $.mcpServers.time.type: required field is missing; give command")


def test_server_with_command_and_url_but_no_type_must_say_which() -> None:
    with pytest.raises(ConfigError, match=r"\$\.mcpServers\.t: has both command and url; set type"):
        parse_config("mcpServers: {t: {command: x, url: 'http://h/mcp'}}")


def test_errors_in_a_list_after_a_disabled_entry_name_the_written_index() -> None:
    text = "mcpServers: [{name: a, command: x, disabled: true}, {name: b, type: pipe, command: x}]"
    with pytest.raises(ConfigError, match=r"^<config>: \$\.mcpServers\[1\]\.type: 'pipe' is not one of"):
        parse_config(text)


# --- Environment references --------------------------------------------------------------------------


def test_unset_environment_variable_is_an_error_naming_it_and_the_field(monkeypatch) -> None:
    monkeypatch.delenv("KUBE_TOKEN", raising=False)
    text = (
        "mcpServers: [{name: a, command: x},"
        " {name: b, url: 'http://h/mcp', headers: {Authorization: 'Bearer ${KUBE_TOKEN}'}}]"
    )
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")
    assert str(caught.value) == (
        "c.yaml: $.mcpServers[1].headers.Authorization: environment variable KUBE_TOKEN is not set"
        " (use ${KUBE_TOKEN:-default} for a default)"
    )


def test_unset_variable_in_the_map_form_names_the_map_key(monkeypatch) -> None:
    monkeypatch.delenv("API_KEY", raising=False)
    with pytest.raises(ConfigError, match=r"\$\.mcpServers\.time\.env\.API_KEY: environment variable API_KEY"):
        parse_config('{"mcpServers": {"time": {"command": "x", "env": {"API_KEY": "${API_KEY}"}}}}')


@pytest.mark.parametrize(("value", "expected"), [(None, "fallback"), ("", "fallback"), ("set", "set")])
def test_default_is_used_when_the_variable_is_unset_or_empty(monkeypatch, value: str | None, expected: str) -> None:
    if value is None:
        monkeypatch.delenv("REGION", raising=False)
    else:
        monkeypatch.setenv("REGION", value)
    config = parse_config("mcpServers: [{name: a, command: x, args: ['--region=${REGION:-fallback}']}]")
    assert config.mcp_servers[0].args == (f"--region={expected}",)


def test_variable_set_to_empty_without_a_default_expands_to_empty(monkeypatch) -> None:
    monkeypatch.setenv("EMPTY", "")
    config = parse_config("mcpServers: [{name: a, command: x, args: ['[${EMPTY}]']}]")
    assert config.mcp_servers[0].args == ("[]",)


def test_double_dollar_keeps_a_reference_literal(monkeypatch) -> None:
    monkeypatch.setenv("HOME_DIR", "/home/me")
    config = parse_config("mcpServers: [{name: a, command: sh, args: ['echo $${HOME_DIR} ${HOME_DIR}']}]")
    assert config.mcp_servers[0].args == ("echo ${HOME_DIR} /home/me",)


def test_vs_code_env_prefix_reads_the_environment(monkeypatch) -> None:
    monkeypatch.setenv("GH_TOKEN", "t0k")
    config = parse_config('{"servers": {"gh": {"command": "x", "env": {"GITHUB_TOKEN": "${env:GH_TOKEN}"}}}}')
    assert config.mcp_servers[0].env == {"GITHUB_TOKEN": "t0k"}


def test_vs_code_input_reference_is_an_error_that_says_why() -> None:
    with pytest.raises(ConfigError, match=r"\$\.servers\.gh\.env\.T: \$\{input:tok\} is not supported"):
        parse_config('{"servers": {"gh": {"command": "x", "env": {"T": "${input:tok}"}}}}')


# --- Client config files (Claude Desktop, Cursor, VS Code) --------------------------------------------

CLAUDE_DESKTOP = """{
\t"mcpServers": {
\t\t"time": {"command": "uvx", "args": ["mcp-server-time", "--local-timezone=Europe/Berlin"], "env": {}},
\t\t"remote": {"url": "https://x.example/mcp", "headers": {"Authorization": "Bearer abc"}, "type": "http"},
\t\t"events": {"url": "https://x.example/sse", "type": "sse", "autoApprove": ["list"], "alwaysAllow": []},
\t\t"old": {"command": "node", "args": ["${NOT_SET_ANYWHERE}"], "disabled": true}
\t}
}
"""


def test_claude_desktop_json_file_loads(tmp_path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(CLAUDE_DESKTOP)
    config = load_config(path)
    by_name = {spec.name: spec for spec in config.mcp_servers}
    assert list(by_name) == ["time", "remote", "events"]
    assert (by_name["time"].type, by_name["time"].command) == ("stdio", "uvx")
    assert by_name["time"].args == ("mcp-server-time", "--local-timezone=Europe/Berlin")
    assert (by_name["remote"].type, by_name["remote"].headers) == ("streamable-http", {"Authorization": "Bearer abc"})
    assert by_name["events"].type == "sse"
    assert config.disabled == ("old",)


def test_map_form_in_a_yaml_file_loads_with_our_own_fields(tmp_path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "aggregator: {prefix: y}\n"
        "mcpServers:\n"
        "  kube-eu: {url: 'https://k/mcp', type: streamableHttp, family: {name: kube}, timeout: 5}\n"
        "  files: {command: sh, args: [-c, 'exec cat']}\n"
    )
    config = load_config(path)
    kube, files = config.mcp_servers
    assert (kube.name, kube.type, kube.family.name, kube.timeout) == ("kube-eu", "streamable-http", "kube", 5)
    assert (files.name, files.type) == ("files", "stdio")


def test_vs_code_servers_key_and_inputs_are_read(tmp_path) -> None:
    path = tmp_path / "mcp.json"
    path.write_text(
        '{"inputs": [{"type": "promptString", "id": "tok", "password": true}],'
        ' "servers": {"gh": {"type": "http", "url": "https://api.example/mcp"},'
        ' "fs": {"type": "stdio", "command": "sh"}}}'
    )
    config = load_config(path)
    assert [(s.name, s.type) for s in config.mcp_servers] == [("gh", "streamable-http"), ("fs", "stdio")]


def test_list_form_accepts_client_type_spellings_and_inferred_types() -> None:
    config = parse_config("mcpServers: [{name: a, url: 'http://h/mcp'}, {name: b, type: http, url: 'http://h/mcp'}]")
    assert [s.type for s in config.mcp_servers] == ["streamable-http", "streamable-http"]


def test_disabled_server_is_skipped_in_either_form() -> None:
    config = parse_config("mcpServers: [{name: a, command: x, disabled: true}, {name: b, command: x, disabled: false}]")
    assert [s.name for s in config.mcp_servers] == ["b"]
    assert config.disabled == ("a",)


def test_disabled_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError, match=r"\$\.mcpServers\.a\.disabled: expected true or false, got 'yes'"):
        parse_config('{"mcpServers": {"a": {"command": "x", "disabled": "yes"}}}')


def test_env_file_is_refused_with_the_alternative() -> None:
    with pytest.raises(ConfigError, match=r"\$\.servers\.a\.envFile: not supported; put the variables under env"):
        parse_config('{"servers": {"a": {"command": "x", "envFile": "${workspaceFolder}/.env"}}}')


def test_name_inside_the_map_form_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"\$\.mcpServers\.a\.name: not used in the map form"):
        parse_config('{"mcpServers": {"a": {"name": "b", "command": "x"}}}')


def test_map_key_that_is_not_a_valid_name_is_named() -> None:
    with pytest.raises(ConfigError, match=r"^<config>: \$\.mcpServers\.My_Server: 'My_Server' must match"):
        parse_config('{"mcpServers": {"My_Server": {"command": "x"}}}')


def test_mcp_servers_and_servers_together_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"\$\.servers: use either mcpServers or servers, not both"):
        parse_config('{"mcpServers": {}, "servers": {}}')


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            '{"mcpServers": {\n  // mine\n}}',
            "c.json: not valid JSON (line 2, column 3): Expecting property name enclosed in double quotes;"
            " JSON has no comments",
        ),
        (
            '{"mcpServers": {"a": {"command": "x"},\n}}',
            "c.json: not valid JSON (line 2, column 1): Expecting property name enclosed in double quotes;"
            " remove the trailing comma",
        ),
        (
            '{"mcpServers": {"a": {"command": "x"}}',
            "c.json: not valid JSON (line 1, column 39): Expecting ',' delimiter",
        ),
        ('["a"]', "c.json: expected a mapping at the top level, got list"),
    ],
)
def test_invalid_json_names_line_column_and_likely_cause(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.json")
    assert str(caught.value) == expected


def test_json_text_in_a_yaml_file_keeps_json_semantics() -> None:
    config = parse_config('{"mcpServers": {"a": {"command": "x", "args": ["\\ud83d\\ude00"]}}}', source="c.yaml")
    assert config.mcp_servers[0].args == ("\U0001f600",)


def test_yaml_flow_mapping_is_still_yaml() -> None:
    assert parse_config("{aggregator: {port: 9000}}").aggregator.port == 9000


# --- Warnings ------------------------------------------------------------------------------------------


def test_command_missing_from_path_is_a_warning_not_an_error() -> None:
    config = parse_config("mcpServers: {t: {command: no-such-program-4711}}", source="c.yaml")
    assert config.mcp_servers[0].command == "no-such-program-4711"
    assert config.warnings == (
        "c.yaml: $.mcpServers.t.command: 'no-such-program-4711' is not on PATH nor an executable file;"
        " the server cannot start until it is installed",
    )


def test_command_on_path_or_as_a_file_gives_no_warning(tmp_path) -> None:
    script = tmp_path / "run.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o755)
    text = f"mcpServers: [{{name: a, command: sh}}, {{name: b, command: ./run.sh, cwd: '{tmp_path}'}}]"
    assert parse_config(text).warnings == ()


def test_command_is_looked_up_on_the_servers_own_path(tmp_path) -> None:
    (tmp_path / "tool").write_text("#!/bin/sh\n")
    (tmp_path / "tool").chmod(0o755)
    text = f"mcpServers: [{{name: a, command: tool, env: {{PATH: '{tmp_path}'}}}}]"
    assert parse_config(text).warnings == ()


# --- Credentials in URLs --------------------------------------------------------------------------------


def test_userinfo_in_a_url_becomes_a_basic_authorization_header() -> None:
    config = parse_config("mcpServers: [{name: a, url: 'https://alice:p%40ss@h:8443/mcp?x=1'}]")
    spec = config.mcp_servers[0]
    assert spec.url == "https://h:8443/mcp?x=1"
    assert spec.headers == {"Authorization": "Basic " + base64.b64encode(b"alice:p@ss").decode()}


def test_userinfo_from_variables_may_hold_any_character(monkeypatch) -> None:
    monkeypatch.setenv("PASS", "a/b?c#d@e")
    config = parse_config("mcpServers: {a: {url: 'https://bob:${PASS}@h/mcp'}}")
    spec = config.mcp_servers[0]
    assert spec.url == "https://h/mcp"
    assert spec.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:a/b?c#d@e").decode()


def test_userinfo_inside_a_url_variable_is_converted_too(monkeypatch) -> None:
    monkeypatch.setenv("BACKEND_URL", "https://bob:s%3Acret@h/mcp")
    spec = parse_config("mcpServers: {a: {url: '${BACKEND_URL}'}}").mcp_servers[0]
    assert spec.url == "https://h/mcp"
    assert spec.headers["Authorization"] == "Basic " + base64.b64encode(b"bob:s:cret").decode()


def test_userinfo_and_an_authorization_header_together_are_an_error() -> None:
    text = "mcpServers: {a: {url: 'https://bob:pw@h/mcp', headers: {authorization: 'Bearer t'}}}"
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")
    message = str(caught.value)
    assert message.startswith("c.yaml: $.mcpServers.a.url: ")
    assert "$.mcpServers.a.headers.authorization" in message
    assert "pw" not in message


# --- aggregator check ------------------------------------------------------------------------------------


def test_check_lists_the_backends_of_a_claude_desktop_file_and_warns(tmp_path) -> None:
    path = tmp_path / "claude_desktop_config.json"
    path.write_text(
        '{"mcpServers": {'
        '"time": {"command": "no-such-program-4711", "args": ["mcp-server-time"]},'
        '"remote": {"url": "https://bob:hunter2@x.example/mcp?api_key=abc123", "type": "http"},'
        '"old": {"command": "node", "disabled": true}}}'
    )
    result = subprocess.run(
        [str(BIN / "aggregator"), "check", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == f"{path}: OK, 2 backend(s), 1 disabled, 1 warning(s)"
    assert any(line.split()[:2] == ["time", "stdio"] for line in lines)
    assert any(line.split()[:3] == ["remote", "streamable-http", "https://x.example/mcp?api_key=***"] for line in lines)
    assert any(line.split()[:2] == ["old", "disabled"] for line in lines)
    assert f"aggregator: warning: {path}: $.mcpServers.time.command: 'no-such-program-4711'" in result.stderr
    assert "hunter2" not in result.stdout + result.stderr
    assert "abc123" not in result.stdout + result.stderr


@pytest.mark.parametrize("exposure", ["meta", "all"])
def test_check_validates_the_exposure(tmp_path, exposure: str) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(f"aggregator: {{exposure: {exposure}}}\nmcpServers: []\n")
    result = subprocess.run(
        [str(BIN / "aggregator"), "check", "-c", str(path)], capture_output=True, text=True, timeout=60
    )
    if exposure == "all":
        assert result.returncode == 2
        assert f"{path}: $.aggregator.exposure: 'all' is not one of both, meta, native" in result.stderr
    else:
        assert result.returncode == 0, result.stderr


def test_yaml_boolean_server_key_asks_for_quotes() -> None:
    with pytest.raises(ConfigError, match=r"^<config>: \$\.mcpServers: YAML reads a server name as false \(unquoted"):
        parse_config("mcpServers:\n  off: {command: x}\n")


AUTH_SERVER = "{name: kube, type: streamable-http, url: 'https://kube.internal/mcp', auth: %s}"


def test_auth_settings_are_read_with_their_defaults() -> None:
    config = parse_config(
        """
aggregator:
  port: 8443
  publicUrl: https://mcp.example.com/
  oauth: {issuer: https://idp.example.com, requiredScopes: [mcp]}
mcpServers:
  - {name: kube, type: streamable-http, url: https://kube.internal/mcp, auth: {type: oauth, forwardToken: true}}
  - name: github
    type: streamable-http
    url: https://gh.example/mcp
    auth: {type: oauth, scopes: [repo]}
"""
    )
    agg = config.aggregator
    assert agg.base_url == "https://mcp.example.com" and agg.audience == "https://mcp.example.com/mcp"
    assert agg.oauth is not None and agg.oauth.required_scopes == ("mcp",)
    assert (agg.auth_rate_limit.max_attempts, agg.auth_rate_limit.window) == (10, 60.0)
    kube, github = config.mcp_servers
    assert kube.auth is not None and kube.auth.mode == "forward"
    assert github.auth is not None and github.auth.mode == "login" and github.auth.scopes == ("repo",)
    assert parse_config("mcpServers: []").aggregator.audience is None  # no oauth: no token checked


def test_the_default_audience_follows_the_listen_address() -> None:
    agg = parse_config("aggregator: {port: 9000, oauth: {issuer: 'https://idp'}}").aggregator
    assert agg.audience == "http://127.0.0.1:9000/mcp"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("aggregator: {publicUrl: 'mcp.example.com'}", "$.aggregator.publicUrl: 'mcp.example.com' must be an http"),
        ("aggregator: {oauth: {issuer: 'idp'}}", "$.aggregator.oauth.issuer: 'idp' must be an http"),
        ("aggregator: {oauth: {}}", "$.aggregator.oauth.issuer: required field is missing"),
        ("aggregator: {oauth: {issuer: 'https://i', scopes: [a]}}", "$.aggregator.oauth.scopes: unknown field"),
        ("aggregator: {authRateLimit: {maxAttempts: 0}}", "$.aggregator.authRateLimit.maxAttempts: must be at least 1"),
        (
            "mcpServers: [" + AUTH_SERVER % "{forwardToken: true}" + "]",
            "$.mcpServers[0].auth.forwardToken: single sign-on passes on the user's gateway token; "
            "set aggregator.oauth",
        ),
        (
            "aggregator: {oauth: {issuer: 'https://i'}}\nmcpServers: ["
            + AUTH_SERVER
            % "{forwardToken: true, tokenExchange: {tokenEndpoint: 'https://t', audience: a, clientId: c}}"
            + "]",
            "$.mcpServers[0].auth: forwardToken and tokenExchange exclude each other",
        ),
        (
            "mcpServers: [{name: a, type: stdio, command: x, auth: {}}]",
            "$.mcpServers[0].auth: only HTTP backends (sse, streamable-http) take a user's token",
        ),
        ("mcpServers: [" + AUTH_SERVER % "{type: saml}" + "]", "$.mcpServers[0].auth.type: 'saml' is not one of oauth"),
        (
            "mcpServers: [" + AUTH_SERVER % "{clientSecretEnv: NO_SUCH_SECRET_VARIABLE}" + "]",
            "$.mcpServers[0].auth.clientSecretEnv: environment variable NO_SUCH_SECRET_VARIABLE is not set",
        ),
    ],
)
def test_auth_settings_errors_name_the_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(text, source="c.yaml")
    assert expected in str(caught.value)

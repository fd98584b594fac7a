"""ServerRegistry naming, families, shortening, blocking and routing."""

from __future__ import annotations

import itertools

import msgspec
import pytest

from aggregator.auth.sign_in import CORE_TOOLS
from aggregator.catalog import CoreItems
from aggregator.catalog_builder import fit_name
from aggregator.meta_tool_specs import META_TOOL_NAMES, META_TOOLS
from aggregator.registry import ServerRegistry
from shared.config import ServerSpec, parse_config
from shared.protocol.errors import InvalidCursor, InvalidParams, ToolBlocked, UnknownTool
from shared.records import ServerRecord

CONFIG = parse_config(
    """
aggregator: {maxToolNameLength: 40}
mcpServers:
  - {name: alpha, type: stdio, command: x}
  - {name: beta, type: stdio, command: x, toolPrefix: b}
  - {name: kube-eu, type: stdio, command: x, family: {name: kube}}
  - {name: kube-us, type: stdio, command: x, family: {name: kube}}
"""
)


def tool(name: str, description: str = "d", **properties: dict) -> dict:
    return {"name": name, "description": description, "inputSchema": {"type": "object", "properties": properties}}


def record(server: str, *tools: dict, **lists: list) -> ServerRecord:
    return ServerRecord(server=server, tools=list(tools), **lists)


def registry(*records: ServerRecord) -> ServerRegistry:
    reg = ServerRegistry(CONFIG.aggregator, CONFIG.mcp_servers)
    for item in records:
        reg.update(item)
    return reg


def names(reg: ServerRegistry) -> list[str]:
    return [t["name"] for t in reg.catalog.tools]


def test_tools_are_prefixed_with_prefix_and_server() -> None:
    reg = registry(record("alpha", tool("echo")), record("beta", tool("echo")))
    assert names(reg) == ["x_alpha_echo", "x_b_echo"]
    route = reg.catalog.tool("x_b_echo")
    assert (route.servers, route.original) == (("beta",), "echo")


def test_segment_is_not_doubled_and_collisions_stay_distinct() -> None:
    reg = registry(record("alpha", tool("alpha_get"), tool("get")))
    assert sorted(names(reg)) == ["x_alpha_alpha_get", "x_alpha_get"]
    assert {reg.catalog.tool(n).original for n in names(reg)} == {"alpha_get", "get"}


def test_names_do_not_depend_on_registration_order() -> None:
    records = [
        record("alpha", tool("echo"), tool("alpha_echo")),
        record("beta", tool("zeta")),
        record("kube-eu", tool("pods")),
        record("kube-us", tool("pods")),
    ]
    seen = set()
    for order in itertools.permutations(records):
        reg = registry(*order)
        seen.add(tuple((t["name"], str(t["inputSchema"])) for t in reg.catalog.tools))
    assert len(seen) == 1


def test_family_exposes_one_tool_with_required_instance_enum() -> None:
    reg = registry(record("kube-us", tool("pods", count={"type": "integer"})), record("kube-eu", tool("pods")))
    [exposed] = [t for t in reg.catalog.tools if t["name"] == "x_kube_pods"]
    server_prop = exposed["inputSchema"]["properties"]["server"]
    assert server_prop["enum"] == ["kube-eu", "kube-us"]
    assert exposed["inputSchema"]["required"][-1] == "server"
    assert "available on servers: kube-eu, kube-us" in exposed["description"]
    route = reg.catalog.tool("x_kube_pods")
    assert route.server_for("kube-us") == "kube-us"


def test_family_instance_is_required_even_for_one_instance() -> None:
    reg = registry(record("kube-eu", tool("pods")))
    route = reg.catalog.tool("x_kube_pods")
    with pytest.raises(InvalidParams, match="one of: kube-eu") as missing:
        route.server_for(None)
    assert missing.value.data == {"argument": "server", "choices": ["kube-eu"]}
    with pytest.raises(InvalidParams, match="Unknown instance 'kube-xx'"):
        route.server_for("kube-xx")


def test_family_with_divergent_descriptions_falls_back_to_per_server_names() -> None:
    reg = registry(record("kube-eu", tool("pods", "one")), record("kube-us", tool("pods", "two")))
    assert sorted(names(reg)) == ["x_kube-eu_pods", "x_kube-us_pods"]


def test_long_and_odd_names_are_shortened_deterministically_and_route() -> None:
    long_name = "a_really_long_tool_name_that_keeps_going_and_going"
    reg = registry(record("alpha", tool(long_name), tool("has space")))
    exposed = names(reg)
    assert all(len(n) <= 40 for n in exposed)
    assert all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") for n in exposed)
    assert {reg.catalog.tool(n).original for n in exposed} == {long_name, "has space"}
    assert fit_name("x_alpha_" + long_name, 40) in exposed


def test_blocked_tool_is_hidden_and_calling_it_says_how_to_allow_it() -> None:
    reg = registry(record("alpha", tool("kubectl_delete"), tool("echo")))
    assert names(reg) == ["x_alpha_echo"]
    with pytest.raises(ToolBlocked, match="aggregator tools unblock x_alpha_kubectl_delete"):
        reg.catalog.tool("x_alpha_kubectl_delete")


def test_unblock_override_makes_tool_visible() -> None:
    reg = registry(record("alpha", tool("kubectl_delete")))
    changed = reg.set_overrides({"x_alpha_kubectl_delete": False})
    assert changed == {"tools"}
    assert names(reg) == ["x_alpha_kubectl_delete"]


@pytest.mark.parametrize(
    ("exposure", "listed"),
    [
        ("native", ["core_auth_login", "core_auth_logout", "x_alpha_echo"]),
        ("meta", sorted(META_TOOL_NAMES)),
        ("both", sorted({"core_auth_login", "core_auth_logout", "x_alpha_echo", *META_TOOL_NAMES})),
    ],
)
def test_exposure_decides_what_tools_list_shows_and_every_name_still_routes(exposure: str, listed: list[str]) -> None:
    settings = msgspec.structs.replace(CONFIG.aggregator, exposure=exposure)
    reg = ServerRegistry(settings, CONFIG.mcp_servers, core=CoreItems(CORE_TOOLS, meta_tools=META_TOOLS))
    reg.update(record("alpha", tool("echo"), tool("kubectl_delete")))
    assert names(reg) == listed
    assert [t["name"] for t in reg.catalog.backend_tools] == ["x_alpha_echo"]  # what list_tools shows
    assert reg.catalog.tool("x_alpha_echo").servers == ("alpha",)
    assert reg.catalog.tool("core_auth_login").internal
    with pytest.raises(ToolBlocked):
        reg.catalog.tool("x_alpha_kubectl_delete")
    if exposure == "native":
        with pytest.raises(UnknownTool):
            reg.catalog.tool("list_tools")
    else:
        assert reg.catalog.tool("list_tools").internal


def test_with_meta_exposure_a_backend_tool_change_is_announced_though_tools_list_stays_the_same() -> None:
    settings = msgspec.structs.replace(CONFIG.aggregator, exposure="meta")
    reg = ServerRegistry(settings, CONFIG.mcp_servers, core=CoreItems(meta_tools=META_TOOLS))
    announced: list[set[str]] = []
    reg.on_change(announced.append)
    reg.update(record("alpha", tool("echo")))
    before = names(reg)
    assert reg.update(record("alpha", tool("echo"), tool("added"))) == {"tools"}
    assert names(reg) == before and announced[-1] == {"tools"}
    assert reg.set_overrides({"x_alpha_added": True}) == {"tools"}  # a run-time block changes list_tools too


@pytest.mark.parametrize("exposure", ["native", "meta"])
def test_workflows_come_and_go_at_run_time_route_here_and_are_announced(exposure: str) -> None:
    settings = msgspec.structs.replace(CONFIG.aggregator, exposure=exposure)
    reg = ServerRegistry(settings, CONFIG.mcp_servers, core=CoreItems(meta_tools=META_TOOLS))
    reg.update(record("alpha", tool("echo")))
    announced: list[set[str]] = []
    reg.on_change(announced.append)
    assert reg.set_workflows([tool("workflow_delete-all")]) == {"tools"}  # a destructive-sounding name: not blocked
    assert reg.catalog.tool("workflow_delete-all").internal
    assert [t["name"] for t in reg.catalog.backend_tools] == ["workflow_delete-all", "x_alpha_echo"]
    assert ("workflow_delete-all" in names(reg)) is (exposure == "native")
    assert reg.set_workflows([]) == {"tools"} and announced == [{"tools"}, {"tools"}]
    with pytest.raises(UnknownTool):
        reg.catalog.tool("workflow_delete-all")


@pytest.mark.parametrize("hidden", ["kubectl_delete\u200b", "echo\tx", "ec\u202eho", "\u00adcleanup", "echo\n"])
def test_tool_or_prompt_with_invisible_characters_is_not_exposed(hidden: str, caplog: pytest.LogCaptureFixture) -> None:
    reg = registry(record("alpha", tool(hidden), tool("echo"), prompts=[{"name": hidden}, {"name": "greet"}]))
    assert names(reg) == ["x_alpha_echo"]
    assert [p["name"] for p in reg.catalog.prompts] == ["x_alpha_greet"]
    assert not any(hidden in route.original for route in reg.catalog.tool_routes.values())
    assert ascii(hidden) in caplog.text and "invisible or control characters" in caplog.text


def test_unknown_tool() -> None:
    with pytest.raises(UnknownTool, match="Unknown tool: 'x_nope'"):
        registry().catalog.tool("x_nope")


def test_down_backend_contributes_nothing() -> None:
    reg = registry(record("alpha", tool("echo")))
    changed = reg.update(ServerRecord(server="alpha", state="down", error="gone"))
    assert changed == {"tools"} and names(reg) == []


def test_resources_keep_scheme_uris_and_prefix_others() -> None:
    reg = registry(
        record(
            "alpha",
            resources=[{"uri": "file:///a.txt", "name": "a"}, {"uri": "notes", "name": "n"}],
            resource_templates=[{"uriTemplate": "db://alpha/{table}", "name": "t"}],
        )
    )
    assert [r["uri"] for r in reg.catalog.resources] == ["file:///a.txt", "x_alpha_notes"]
    assert reg.catalog.resource("x_alpha_notes").original == "notes"
    assert reg.catalog.resource("db://alpha/users").server == "alpha"
    with pytest.raises(InvalidParams, match="Resource not found"):
        reg.catalog.resource("db://other/users")


def test_a_resource_uri_on_two_backends_goes_to_the_first_in_the_config() -> None:
    shared = [{"uri": "https://example.com/doc", "name": "doc"}]
    # beta is listed after alpha in the config, whatever order the records arrive in
    reg = registry(record("beta", resources=shared), record("alpha", resources=shared))
    assert reg.catalog.resource("https://example.com/doc").server == "alpha"
    reversed_config = parse_config(
        "mcpServers: [{name: beta, type: stdio, command: x}, {name: alpha, type: stdio, command: x}]"
    )
    other = ServerRegistry(reversed_config.aggregator, reversed_config.mcp_servers)
    other.update(record("alpha", resources=shared))
    other.update(record("beta", resources=shared))
    assert other.catalog.resource("https://example.com/doc").server == "beta"


def test_prompts_are_prefixed_and_route() -> None:
    reg = registry(record("beta", prompts=[{"name": "greet"}]))
    assert [p["name"] for p in reg.catalog.prompts] == ["x_b_greet"]
    assert reg.catalog.prompt("x_b_greet").original == "greet"


def test_pagination_walks_every_item_once() -> None:
    reg = registry(record("alpha", *[tool(f"t{i:02d}") for i in range(25)]))
    seen, cursor = [], None
    while True:
        items, cursor = reg.catalog.page("tools", cursor, 10)
        seen += [t["name"] for t in items]
        if cursor is None:
            break
    assert seen == names(reg) and len(seen) == 25
    with pytest.raises(InvalidCursor):
        reg.catalog.page("tools", "garbage!", 10)
    with pytest.raises(InvalidCursor):
        reg.catalog.page("prompts", reg.catalog.page("tools", None, 10)[1], 10)


def test_a_rebuild_reuses_what_unchanged_backends_contributed_and_reports_real_changes_only() -> None:
    reg = registry(record("alpha", tool("echo"), tool("get")), record("beta", tool("zeta")))
    alpha_tools = [t for t in reg.catalog.tools if t["name"].startswith("x_alpha_")]
    assert reg.update(record("beta", tool("zeta"), tool("eta"))) == {"tools"}
    assert names(reg) == ["x_alpha_echo", "x_alpha_get", "x_b_eta", "x_b_zeta"]
    assert all(any(t is kept for t in reg.catalog.tools) for kept in alpha_tools)  # the same objects, not copies
    assert reg.update(record("beta", tool("zeta"), tool("eta"))) == set()  # a new record, the same lists
    assert reg.update(record("beta", tool("zeta", description="new"), tool("eta"))) == {"tools"}


# Config checks keep name segments apart; the builder does not rely on it. Here x_a_b_c is wanted
# by a's "b_c", a_b's "c" and c's "b_c" (its prefix is "a" too): who gets it depends on every
# backend claiming before, and a rebuild that reuses unchanged backends must decide as a fresh one.
COLLIDING = [
    ServerSpec(name="a", type="stdio", command="x"),
    ServerSpec(name="a_b", type="stdio", command="x"),
    ServerSpec(name="c", type="stdio", command="x", tool_prefix="a"),
]


def test_names_claimed_on_each_change_stay_unique_and_match_a_catalog_built_at_once() -> None:
    steps = [
        record("a_b", tool("c"), tool("d")),
        record("c", tool("b_c"), tool("a_b_c")),
        record("a", tool("b_c"), tool("a_b_c")),
        record("a", tool("e")),
        record("a_b", tool("c"), tool("b_c")),
        record("a", tool("b_c"), tool("c")),
    ]
    for order in itertools.permutations(steps):
        reg = ServerRegistry(CONFIG.aggregator, COLLIDING)
        for step in order:
            reg.update(step)
            routes = reg.catalog.tool_routes
            assert len(names(reg)) == len(set(names(reg))) == len(routes)
            assert sorted((r.servers[0], r.original) for r in routes.values()) == sorted(
                (server, t["name"]) for server, rec in reg.records.items() for t in rec.tools
            )
            fresh = ServerRegistry(CONFIG.aggregator, COLLIDING)
            fresh.replace_all(reg.records.values())
            assert (reg.catalog.tools, routes) == (fresh.catalog.tools, fresh.catalog.tool_routes)


def test_a_name_numbered_as_a_last_resort_counts_every_name_claimed_before_it() -> None:
    reg = registry(record("beta", tool("echo"), tool("echo")), record("alpha", tool("one")))  # beta twice "echo"
    assert fit_name("x_b_echo#2", 40) in names(reg)  # alpha's one name and beta's first came before
    reg.update(record("alpha", tool("one"), tool("two"), tool("three")))
    assert fit_name("x_b_echo#4", 40) in names(reg) and len(names(reg)) == 5

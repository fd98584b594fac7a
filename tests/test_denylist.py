"""Which tools the denylist blocks, and what overrides and yolo mode change."""

from __future__ import annotations

from aggregator.denylist import DESTRUCTIVE_TOOLS, Denylist


def test_default_list_matches_original_name_case_insensitively() -> None:
    deny = Denylist()
    assert deny.blocked("kubectl_delete", "x_k_kubectl_delete")
    assert deny.blocked("KUBECTL_Delete", "x_k_whatever")
    assert deny.blocked("kubectl_get", "x_k_kubectl_get") is None


def test_default_list_is_musters() -> None:
    assert len(DESTRUCTIVE_TOOLS) == 32
    assert {"cleanup", "create_incident", "update_dashboard", "capi_move_cluster"} <= DESTRUCTIVE_TOOLS


def test_extra_and_allow_globs() -> None:
    deny = Denylist(extra=("*_drop_*",), allow=("cleanup",))
    assert deny.blocked("db_drop_table", "x_db_db_drop_table")
    assert deny.blocked("cleanup", "x_a_cleanup") is None


def test_yolo_turns_denylist_off_but_keeps_explicit_blocks() -> None:
    deny = Denylist(yolo=True, overrides={"x_a_echo": True})
    assert deny.blocked("kubectl_delete", "x_a_kubectl_delete") is None
    assert deny.blocked("echo", "x_a_echo")


def test_override_unblocks_a_destructive_tool() -> None:
    deny = Denylist(overrides={"x_a_kubectl_delete": False})
    assert deny.blocked("kubectl_delete", "x_a_kubectl_delete") is None

"""Which tools the denylist blocks, and what overrides and yolo mode change."""

from __future__ import annotations

from aggregator.denylist import DESTRUCTIVE_TOOLS, Denylist


def test_default_list_matches_original_name_case_insensitively() -> None:
    deny = Denylist()
    assert deny.blocked("kubectl_delete", "x_k_kubectl_delete") == "on the default denylist of destructive tools"
    assert deny.blocked("KUBECTL_Delete", "x_k_whatever") == "on the default denylist of destructive tools"
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


DISGUISED_KUBECTL_DELETE = [
    " kubectl_delete",
    "kubectl_delete ",
    "kubectl_delete\t",
    "kubectl_delete\u200b",
    "kubectl-delete",
    "kubectl.delete",
    "kubectl_d\u0435lete",  # Cyrillic ie
    "KUBECTL__DELETE",
    "\uff4b\uff55\uff42\uff45\uff43\uff54\uff4c_delete",  # fullwidth letters
    "kubectI_delete",  # capital I for l
]


def test_default_list_sees_through_disguised_names() -> None:
    deny = Denylist()
    for name in DISGUISED_KUBECTL_DELETE:
        reason = deny.blocked(name, f"x_k_{name}")
        assert reason == "on the default denylist of destructive tools (its name reads as kubectl_delete)", repr(name)


def test_default_list_matches_the_last_path_segment() -> None:
    deny = Denylist()
    assert deny.blocked("helm/uninstall_helm_chart", "x_h_helm/uninstall_helm_chart") == (
        "on the default denylist of destructive tools (its name reads as uninstall_helm_chart)"
    )
    assert deny.blocked("helm/list_releases", "x_h_helm/list_releases") is None


def test_extra_glob_matches_normalised_names_and_segments() -> None:
    deny = Denylist(extra=("*_drop_*", "Purge-*"))
    assert deny.blocked("db-drop-table", "x_db_db-drop-table")
    assert deny.blocked("db_dr\u043ep_table", "x_db_db_dr\u043ep_table")  # Cyrillic o
    assert deny.blocked("cache/purge.all", "x_c_cache/purge.all")
    assert deny.blocked("list_tables", "x_db_list_tables") is None


def test_allow_glob_matches_normalised_names() -> None:
    deny = Denylist(allow=("Kubectl-Delete",))
    assert deny.blocked("kubectl_delete", "x_k_kubectl_delete") is None
    assert deny.blocked("kubectl_d\u0435lete", "x_k_kubectl_d\u0435lete") is None


def test_glob_character_classes_still_work() -> None:
    deny = Denylist(extra=("drop_v[0-9]",))
    assert deny.blocked("drop_v1", "x_a_drop_v1")
    assert deny.blocked("drop_vx", "x_a_drop_vx") is None

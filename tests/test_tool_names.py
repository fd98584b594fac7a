"""Tool-name normalisation and the check for names too deceptive to expose."""

from __future__ import annotations

import pytest

from aggregator.tool_names import has_hidden_characters, name_forms, normalize_glob, normalize_tool_name

CYRILLIC_IE = "\u0435"
GREEK_OMICRON = "\u03bf"
ZERO_WIDTH_SPACE = "\u200b"


@pytest.mark.parametrize(
    "name",
    [
        " kubectl_delete",
        "kubectl_delete ",
        "kubectl_delete\t",
        "kubectl_delete" + ZERO_WIDTH_SPACE,
        "kubectl-delete",
        "kubectl.delete",
        f"kubectl_d{CYRILLIC_IE}lete",
        "KUBECTL_DELETE",
        "KUBECTL__DELETE",
        "kubectl - delete",
        "\uff2b\uff35\uff22\uff25\uff23\uff34\uff2c\uff3f\uff24\uff25\uff2c\uff25\uff34\uff25",  # fullwidth
        "\u041aU\u0412\u0415\u0421\u0422L_DELETE",  # Cyrillic capitals ka, ve, ie, es, te
        "kubectl_del\u00adete",  # soft hyphen
        "\u202ekubectl_delete\u202c",  # bidi override and pop
        "kubectl\u2011delete",  # non-breaking hyphen
        "kubectl_d\u00e9lete",  # a diacritic does not make another name
        "\U0001d424\U0001d42e\U0001d41b\U0001d41e\U0001d41c\U0001d42d\U0001d425_delete",  # mathematical bold
    ],
)
def test_disguised_names_normalise_to_the_plain_name(name: str) -> None:
    assert normalize_tool_name(name) == "kubectl_delete"


def test_mixed_scripts_fold_to_latin() -> None:
    assert normalize_tool_name(f"cl{CYRILLIC_IE}anup") == "cleanup"
    assert normalize_tool_name(f"capi_create_clust{CYRILLIC_IE}r") == "capi_create_cluster"
    assert normalize_tool_name(f"reconcile_flux_s{GREEK_OMICRON}urce") == "reconcile_flux_source"


def test_repeated_and_mixed_separators_collapse_to_one_underscore() -> None:
    assert normalize_tool_name("kubectl__delete") == "kubectl_delete"
    assert normalize_tool_name("kubectl-._delete") == "kubectl_delete"
    assert normalize_tool_name("helm/uninstall_helm_chart") == "helm_uninstall_helm_chart"


def test_names_of_other_scripts_are_kept() -> None:
    assert normalize_tool_name("\u65e5\u672c\u8a9e_tool") == "\u65e5\u672c\u8a9e_tool"


def test_forms_are_the_whole_name_and_its_last_segment() -> None:
    assert name_forms("helm/uninstall_helm_chart") == ("helm_uninstall_helm_chart", "uninstall_helm_chart")
    assert name_forms("ns\u2215kubectl delete") == ("ns_kubectl_delete", "kubectl_delete")  # division slash
    assert name_forms("kubectl_delete") == ("kubectl_delete",)
    assert name_forms("trailing/") == ("trailing_",)


def test_globs_fold_like_names_but_keep_their_classes() -> None:
    assert normalize_glob(" Purge-* ") == "purge_*"
    assert normalize_glob("*.Drop.*") == "*_drop_*"
    assert normalize_glob("drop_v[0-9]") == "drop_v[0-9]"
    assert normalize_glob("[A-C].x-[!.]") == "[a-c]_x_[!.]"


@pytest.mark.parametrize(
    "name",
    [
        "kubectl_delete" + ZERO_WIDTH_SPACE,
        "kubectl\u200ddelete",  # zero-width joiner
        "kubectl_delete\t",
        "kubectl\ndelete",
        "\u202ekubectl_delete",  # bidi override
        "kubectl\u00addelete",  # soft hyphen
        "\ufeffkubectl_delete",  # byte order mark
        "kubectl\u3164delete",  # Hangul filler
        "kubectl_delete\ufe0f",  # variation selector
        " kubectl_delete",
        "kubectl_delete ",
    ],
)
def test_invisible_control_and_surrounding_whitespace_characters_are_hidden(name: str) -> None:
    assert has_hidden_characters(name)


@pytest.mark.parametrize(
    "name",
    ["kubectl_delete", "has space", f"kubectl_d{CYRILLIC_IE}lete", "caf\u00e9", "\u65e5\u672c\u8a9e", "a/b.c-d"],
)
def test_visible_names_are_not_hidden(name: str) -> None:
    assert not has_hidden_characters(name)

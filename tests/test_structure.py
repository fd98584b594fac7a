"""The package shape holds: worker/ uses only shared/, nothing reaches into another module's
underscore names, and no module grows past 400 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.gateway_process import ROOT

PACKAGES = ("aggregator", "shared", "worker")
MODULES = sorted(path for package in PACKAGES for path in (ROOT / package).rglob("*.py"))


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return names


def package_of(name: str) -> str:
    return name.split(".", 1)[0]


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_follow_the_one_arrow(path: Path) -> None:
    own = path.relative_to(ROOT).parts[0]
    used = {package_of(name) for name in imported(path)} & set(PACKAGES)
    if own == "shared":
        assert used <= {"shared"}, f"{path}: shared/ must not import {used - {'shared'}}"
    elif own == "worker":
        assert used <= {"shared", "worker"}, f"{path}: worker/ imports only shared/"
    elif "worker" in used:
        assert path == ROOT / "aggregator/gateway.py", f"{path}: only the gateway may use worker/ (embedded mode)"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_module_imports_another_s_private_names(path: Path) -> None:
    private = sorted(
        name
        for name in imported(path)
        if name.rsplit(".", 1)[-1].startswith("_") and not name.rsplit(".", 1)[-1].startswith("__")
    )
    assert not private, f"{path} imports private names: {private}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_under_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) < 400, f"{path} has grown past 400 lines: split it by concept"

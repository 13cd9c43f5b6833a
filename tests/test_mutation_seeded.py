"""The hand-seeded bugs of ``scripts/mutation --seeded`` still apply to the code they seed.

Each ``[[tool.mustcheck.mutation.seeded]]`` entry replaces one exact text of a rule module. A change to
that module (a speed-up that rewrote the line, say) leaves the entry pointing at nothing, and the seeded
run stops at it: caught here, in the suite, rather than when someone next runs the mutation habit.
"""

from __future__ import annotations

import ast
import tomllib
from typing import Any

import pytest

from conftest import REPO

SEEDED: list[dict[str, Any]] = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"][
    "mustcheck"
]["mutation"]["seeded"]


def test_there_are_seeded_bugs() -> None:
    assert len(SEEDED) >= 10


@pytest.mark.parametrize("seeded", SEEDED, ids=[entry["bug"][:60] for entry in SEEDED])
def test_a_seeded_bug_replaces_one_text_and_names_a_test_that_exists(seeded: dict[str, Any]) -> None:
    source = (REPO / seeded["file"]).read_text(encoding="utf-8")
    assert source.count(seeded["old"]) == 1, f"{seeded['file']}: the text to replace is not there once"
    assert seeded["new"] != seeded["old"]
    ast.parse(source.replace(seeded["old"], seeded["new"]))  # the seeded module still parses
    path, _, name = seeded["test"].partition("::")
    tree = ast.parse((REPO / path).read_text(encoding="utf-8"))
    assert name in {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}

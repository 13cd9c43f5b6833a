"""Where each part of the policy set lives, and how problems with it are reported."""

from __future__ import annotations

from dataclasses import dataclass

OPTIONAL_TABLES = frozenset({"legacy_codes.toml"})
FILES = {
    "departments": ("departments.toml", "department"),
    "matter_kinds": ("matter_kinds.toml", "matter_kind"),
    "severities": ("severity.toml", "severity"),
    "memoranda": ("memoranda.toml", "memorandum"),
    "measures": ("measures.toml", "measure"),
    "matters": ("catalog.toml", "matter"),
    "legacy_codes": ("legacy_codes.toml", "legacy_code"),
}


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    key: str
    problem: str

    def __str__(self) -> str:
        return f"{self.file}: {self.key}: {self.problem}"


class PolicyError(Exception):
    """The policy set is invalid; ``problems`` lists every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{len(problems)} problem(s) in the policy set:\n{lines}")

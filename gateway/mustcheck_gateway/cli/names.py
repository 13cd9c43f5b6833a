"""Department, matter and memorandum names beside their codes, from the policy files.

The command line reads the same policy folder the gateway is given by default (``$MUSTCHECK_POLICIES``,
else the checkout's or the wheel's ``policies/``); a code it does not know is shown alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

from ..policy import PolicyError, default_policy_dir, load_policies


@dataclass(frozen=True)
class PolicyNames:
    departments: dict[str, str] = field(default_factory=dict)
    matters: dict[str, str] = field(default_factory=dict)
    memoranda: dict[str, str] = field(default_factory=dict)
    measures: dict[str, str] = field(default_factory=dict)

    def department(self, code: str) -> str:
        return beside(self.departments.get(code), code)

    def matter(self, code: str) -> str:
        return beside(self.matters.get(code), code)

    def memorandum(self, code: str) -> str:
        return beside(self.memoranda.get(code), code)


def beside(name: str | None, code: str) -> str:
    """``财政部 (mof)``; the one that is given where the other is missing (or both are the same)."""
    return f"{name} ({code})" if name and code and name != code else (name or code)


@cache
def policy_names() -> PolicyNames:
    try:
        policy = load_policies(default_policy_dir())
    except (PolicyError, OSError):
        return PolicyNames()
    return PolicyNames(
        departments={code: d.name for code, d in policy.departments.items()},
        matters={code: m.name for code, m in policy.matters.items()},
        memoranda={code: m.title for code, m in policy.memoranda.items()},
        measures={code: m.text for code, m in policy.measures.items()},
    )

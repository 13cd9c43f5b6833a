"""Find the policy folder: ``--policies`` wins; else the checkout's or the installed copy."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

ENVIRONMENT_VARIABLE = "MUSTCHECK_POLICIES"


def default_policy_dir() -> Path:
    """``$MUSTCHECK_POLICIES``, else ``policies/`` of a source checkout, else the copy in the wheel."""
    configured = os.environ.get(ENVIRONMENT_VARIABLE)
    if configured:
        return Path(configured)
    checkout = Path(__file__).resolve().parents[3] / "policies"
    if (checkout / "catalog.toml").is_file():
        return checkout
    bundled = resources.files("mustcheck_gateway") / "bundled_policies"
    return Path(str(bundled))

"""Policies as data: load, validate and locate the policy folder."""

from .files import PolicyError, Problem
from .load import load_policies
from .locate import default_policy_dir
from .model import PolicySet

__all__ = ["PolicyError", "PolicySet", "Problem", "default_policy_dir", "load_policies"]

"""A policy set as served: its canonical text and the digest that names it.

Every audit record names the policy set its gateway served when it was written (its *digest*), and the
store keeps every set a gateway has served, content-addressed by that digest, so that a replay answers
with the policies in force at the original instant (docs/audit-log.md, "Replay").

* Canonical text: ``canonical_json({file name: parsed TOML document})`` over the policy files
  (keys sorted, no white space, UTF-8). Comments and layout of the files do not change it; any
  value does. TOML dates and times, and non-finite floats, which JSON lacks, are written as tagged
  objects (``{"toml:datetime": "..."}``), so every TOML document has exactly one text.
* Digest: ``<algorithm>:<lowercase hex>`` of ``DOMAIN || canonical text``; ``sha256`` today. The
  algorithm is named so that a second crypto suite (SM3) names its own digests without a new format.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .files import PolicyError
from .load import policies_from_documents, read_documents
from .model import PolicySet

DOMAIN = b"mustcheck.policy_set.v1\n"
DEFAULT_ALGORITHM = "sha256"
ALGORITHMS: dict[str, Callable[[bytes], Any]] = {"sha256": hashlib.sha256}
# The longest digest text accepted from anywhere (an algorithm name and 128 hex digits).
MAX_DIGEST_LENGTH = 160


class PolicySetError(ValueError):
    """A stored policy set does not match its digest, or cannot be read."""


@dataclass(frozen=True, slots=True)
class ServedPolicySet:
    """A loaded, valid policy set with its canonical text and digest."""

    digest: str
    text: str
    policy: PolicySet


def canonical_text(documents: dict[str, Any]) -> str:
    return json.dumps(
        _plain(documents), sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


def digest_of(text: str, algorithm: str = DEFAULT_ALGORITHM) -> str:
    hasher = ALGORITHMS.get(algorithm)
    if hasher is None:
        raise PolicySetError(f"unknown digest algorithm {algorithm!r}")
    return f"{algorithm}:{hasher(DOMAIN + text.encode()).hexdigest()}"


def matches(digest: str, text: str) -> bool:
    """Whether ``text`` is the policy set ``digest`` names (with the algorithm the digest names)."""
    algorithm, _, _ = digest.partition(":")
    if algorithm not in ALGORITHMS:
        return False
    return hmac.compare_digest(digest_of(text, algorithm), digest)


def load_served(directory: Path) -> ServedPolicySet:
    """Load the policy folder (raising :class:`PolicyError` on every problem) and name it."""
    documents, problems = read_documents(directory)
    policy = policies_from_documents(documents, problems, where=str(directory))
    text = canonical_text(documents)
    return ServedPolicySet(digest_of(text), text, policy)


def from_stored(digest: str, text: str) -> ServedPolicySet:
    """The policy set a store kept under ``digest``; :class:`PolicySetError` if it is not that set."""
    if not matches(digest, text):
        raise PolicySetError(f"the stored policy set {digest} does not match its digest (altered?)")
    try:
        documents = json.loads(text)
        if not isinstance(documents, dict):
            raise ValueError("not a JSON object")
        policy = policies_from_documents(documents, where=f"policy set {digest}")
    except (ValueError, PolicyError) as error:
        raise PolicySetError(f"the stored policy set {digest} cannot be loaded: {error}") from None
    return ServedPolicySet(digest, text, policy)


def _plain(value: Any) -> Any:
    """A parsed TOML value as JSON values (dates, times and non-finite floats tagged)."""
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    if isinstance(value, dt.datetime):
        return {"toml:datetime": value.isoformat()}
    if isinstance(value, dt.date):
        return {"toml:date": value.isoformat()}
    if isinstance(value, dt.time):
        return {"toml:time": value.isoformat()}
    if isinstance(value, float) and not math.isfinite(value):
        return {"toml:float": repr(value)}
    return value


__all__ = [
    "PolicySetError",
    "ServedPolicySet",
    "canonical_text",
    "digest_of",
    "from_stored",
    "load_served",
    "matches",
]

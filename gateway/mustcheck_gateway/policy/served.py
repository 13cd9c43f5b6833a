"""Keeping the policy set a gateway serves in the store, so that replays of its records can load it."""

from __future__ import annotations

import datetime as dt

import structlog

from ..store.base import ListStore
from .sets import ServedPolicySet

log = structlog.get_logger("mustcheck.gateway")


def keep_served(store: ListStore, served: ServedPolicySet, *, replica: str, at: dt.datetime) -> bool:
    """Store ``served`` unless the store holds it already (content-addressed); True if it was new."""
    new = store.keep_policy_set(served.digest, served.text, served_by=replica, at=at)
    log.info("policy_set_served", digest=served.digest, new=new, replica=replica)
    return new

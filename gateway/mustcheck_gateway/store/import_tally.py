"""The SQL-free half of a bulk import, shared by every backend: batching, what changed, the counts.

A backend reads the stored state of one batch at once, asks :meth:`ImportTally.changes` which entries
differ, writes only those, and takes the data version at the first change (so an import that changes
nothing leaves the version where it was).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from .base import ImportOutcome, ListEntry

IMPORT_BATCH = 2000


def batches(entries: Iterable[ListEntry], size: int = IMPORT_BATCH) -> Iterator[list[ListEntry]]:
    """``entries`` in lists of at most ``size``, consumed lazily (an import streams)."""
    batch: list[ListEntry] = []
    for entry in entries:
        batch.append(entry)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


@dataclass
class ImportTally:
    """One import's counts, and the data version taken at its first change (``None`` until then)."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    version: int | None = None

    def changes(
        self, batch: Iterable[ListEntry], stored: Mapping[str, ListEntry]
    ) -> list[tuple[ListEntry, bool]]:
        """The entries of ``batch`` that differ from ``stored`` (by entry id), each with whether it was
        stored before, in key order (neighbouring index pages: fewer misses); counts every entry."""
        changed: list[tuple[ListEntry, bool]] = []
        for entry in batch:
            current = stored.get(entry.entry_id)
            if current == entry:
                self.unchanged += 1
                continue
            if current is None:
                self.inserted += 1
            else:
                self.updated += 1
            changed.append((entry, current is not None))
        changed.sort(key=lambda item: item[0].entry_id)
        return changed

    def take_version(self, bump: Callable[[], int]) -> int:
        """The import's data version: moved by ``bump`` at the first change only."""
        if self.version is None:
            self.version = bump()
        return self.version

    def outcome(self, applied: bool, current_version: Callable[[], int]) -> ImportOutcome:
        """What the import did; the data version is the import's own only if it was kept and changed."""
        version = self.version if applied and self.version is not None else current_version()
        return ImportOutcome(self.inserted, self.updated, self.unchanged, version, applied)

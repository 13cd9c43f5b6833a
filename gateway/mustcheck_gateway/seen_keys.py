"""A set of 64-bit keys in one flat array: what an import uses to find keys that appear twice.

A Python ``set`` of a million 8-byte keys takes about 80 MB (an object per key); this open-addressing
table takes 16 MB for up to 1.4 million keys, 32 MB up to 2.8 million, and so on.
"""

from __future__ import annotations

from array import array

_EMPTY = 0
_FIRST_BITS = 20


class SeenKeys:
    def __init__(self) -> None:
        self._slots = array("Q", bytes(8 << _FIRST_BITS))
        self._mask = (1 << _FIRST_BITS) - 1
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: int) -> bool:
        """Add the unsigned 64-bit ``key``; false if it is there already."""
        key = key or 1  # 0 marks an empty slot: key 0 shares its slot with key 1
        slots, mask = self._slots, self._mask
        index = key & mask
        while (found := slots[index]) != _EMPTY:
            if found == key:
                return False
            index = (index + 1) & mask
        slots[index] = key
        self._count += 1
        if self._count * 3 > mask * 2:
            self._grow()
        return True

    def _grow(self) -> None:
        old = self._slots
        self._slots = array("Q", bytes(16 * len(old)))
        self._mask = 2 * len(old) - 1
        self._count = 0
        for key in old:
            if key != _EMPTY:
                self.add(key)

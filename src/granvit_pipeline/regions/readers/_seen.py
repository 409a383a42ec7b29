"""A compact set of ids already read, for duplicate detection while streaming.

A Python ``set`` of id strings costs ~100 bytes per id, which grows without bound on a 29.5M
image source. This keeps an 8-byte BLAKE2b digest per id in an open-addressing numpy table
(load <= 1/2, so <= 16 bytes per id). Two different ids collide with probability ~n^2 / 2^65
(2e-5 at 29.5M ids); a collision would quarantine a record as a duplicate, with its reason.
No well-kept library offers a disk-free compact string set, hence this.
"""

from __future__ import annotations

import hashlib

import numpy as np


def _digest(key: str) -> int:
    value = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")
    return value or 1  # 0 marks an empty slot


class SeenIds:
    """``add(key) -> bool``: True if ``key`` was added before (by digest)."""

    def __init__(self, capacity: int = 1 << 16) -> None:
        self._table = np.zeros(capacity, dtype=np.uint64)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def add(self, key: str) -> bool:
        if 2 * (self._count + 1) > len(self._table):
            self._grow()
        return self._insert(np.uint64(_digest(key)))

    def _insert(self, digest: np.uint64) -> bool:
        mask = len(self._table) - 1
        slot = int(digest) & mask
        while True:
            current = self._table[slot]
            if current == 0:
                self._table[slot] = digest
                self._count += 1
                return False
            if current == digest:
                return True
            slot = (slot + 1) & mask

    def _grow(self) -> None:
        old = self._table[self._table != 0]
        self._table = np.zeros(2 * len(self._table), dtype=np.uint64)
        self._count = 0
        for digest in old:
            self._insert(digest)

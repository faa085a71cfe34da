"""A shard: one range of the 64-bit FNV-1a hash of an object's uid (KEP-5866).

Kubernetes 1.36 can list and watch one shard of a collection on the server
(``shardSelector=shardRange(object.metadata.uid, '0x<start>', '0x<end>')``, feature gate
``ShardedListAndWatch``, alpha); docs/kubernetes-semantics.md#sharded-list-and-watch has the
server's rules. The rules here are the server's own, so that a client that filters by
itself (a server without the feature) puts every object in the shard the server would:

* the hash is 64-bit FNV-1a of the uid's UTF-8 bytes;
* a range is ``[start, end)`` over ``[0, 2**64)``; its bounds are written as ``0x`` and 16
  lowercase hex digits, except the exclusive upper end of the space, ``0x10000000000000000``;
* shard ``i`` of ``n`` is ``[i * 2**64 // n, (i + 1) * 2**64 // n)``, so ``n`` shards cover
  the space exactly, without gaps or overlap.

A uid never changes, so an object never changes shard: a shard's snapshot and watch see an
object for its whole life or not at all.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["HASH_SPACE", "UID_FIELD", "Shard", "fnv1a64"]

HASH_SPACE = 1 << 64
"""The hash space: every range lies in ``[0, HASH_SPACE)``."""

UID_FIELD = "object.metadata.uid"
"""The field a shard hashes: the only one whose value never changes for an object's life."""

_OFFSET_BASIS = 0xCBF29CE484222325
_PRIME = 0x100000001B3
_MASK = HASH_SPACE - 1


def fnv1a64(value: str) -> int:
    """64-bit FNV-1a of ``value``'s UTF-8 bytes, as Go's ``hash/fnv.New64a`` computes it."""
    h = _OFFSET_BASIS
    for byte in value.encode():
        h = ((h ^ byte) * _PRIME) & _MASK
    return h


def _hex(bound: int) -> str:
    return f"0x{bound:016x}"


_INDEX_OF_COUNT = re.compile(r"(\d+)/(\d+)")
_RANGE = re.compile(r"(0x[0-9a-fA-F]{1,17})-(0x[0-9a-fA-F]{1,17})")


@dataclass(frozen=True, slots=True, order=True)
class Shard:
    """The objects whose uid hashes into ``[start, end)``.

    ``Shard.of(1, 4)`` is the second of four equal shards; ``Shard(start, end)`` any range.
    ``index`` and ``count`` are kept only to name the shard (``2/4``) in logs, metrics
    and Lease names; they take no part in which objects it holds.
    """

    start: int
    end: int
    index: int | None = None
    count: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.start < self.end <= HASH_SPACE:
            raise ValueError(
                f"a shard is a non-empty range within [0x0, {_hex(HASH_SPACE)}): "
                f"got [{_hex(self.start)}, {_hex(self.end)})"
            )
        if (self.index is None) != (self.count is None):
            raise ValueError("a shard's index and count are given together")

    @classmethod
    def of(cls, index: int, count: int) -> Shard:
        """Shard ``index`` (from 0) of ``count`` equal shards."""
        if count < 1 or not 0 <= index < count:
            raise ValueError(f"shard {index} of {count}: want 0 <= index < count, count >= 1")
        return cls(index * HASH_SPACE // count, (index + 1) * HASH_SPACE // count, index, count)

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``I/N`` (shard I, from 0, of N) or ``0xSTART-0xEND`` (a range, end exclusive)."""
        text = text.strip()
        if match := _INDEX_OF_COUNT.fullmatch(text):
            return cls.of(int(match[1]), int(match[2]))
        if match := _RANGE.fullmatch(text):
            return cls(int(match[1], 16), int(match[2], 16))
        raise ValueError(
            f"not a shard: {text!r}; give I/N (shard I, counted from 0, of N equal shards) "
            "or 0xSTART-0xEND (a range of the 64-bit FNV-1a hash of the uid, end exclusive)"
        )

    @property
    def everything(self) -> bool:
        """Whether the shard is the whole space (which needs no selector at all)."""
        return self.start == 0 and self.end == HASH_SPACE

    @property
    def name(self) -> str:
        """``2/4``, or the range for a shard given as one: for logs, metrics and Leases."""
        if self.index is not None:
            return f"{self.index}/{self.count}"
        return f"{_hex(self.start)}-{_hex(self.end)}"

    @property
    def selector(self) -> str:
        """The ``shardSelector`` parameter that asks the API server for this shard."""
        return f"shardRange({UID_FIELD}, '{_hex(self.start)}', '{_hex(self.end)}')"

    def holds_hash(self, hashed: int) -> bool:
        return self.start <= hashed < self.end

    def holds_uid(self, uid: str) -> bool:
        """Whether the object with this uid is in the shard (the client-side filter)."""
        return self.start <= fnv1a64(uid) < self.end

    def __str__(self) -> str:
        return self.name

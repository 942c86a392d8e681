"""Content fingerprints that can be computed piece by piece, in any order.

Each sample has a digest of ``(index, label, pixels)``; a store's fingerprint folds the digests
of all its samples by addition modulo 2**256, plus its count and image shape. The sum does not
depend on the order or the batches in which samples were written, so an interrupted and
resumed write gets the fingerprint of an uninterrupted one, shard by shard.
"""

from __future__ import annotations

import hashlib
import json
from typing import Iterable, Sequence

import numpy as np

MODULUS = 1 << 256


def content_digests(images: np.ndarray, labels: Sequence[int]) -> list[bytes]:
    """One digest per sample of its label and pixels (not of where it is stored)."""
    out = []
    for image, label in zip(images, labels):
        h = hashlib.blake2b(int(label).to_bytes(8, "little", signed=True), digest_size=32)
        h.update(np.ascontiguousarray(image).data)
        out.append(h.digest())
    return out


def fold(start: int, digests: Iterable[bytes]) -> int:
    """The sum of the digests of samples ``start, start + 1, ...``, each tied to its index."""
    total = 0
    for index, digest in enumerate(digests, start):
        tied = hashlib.blake2b(index.to_bytes(8, "little") + digest, digest_size=32).digest()
        total += int.from_bytes(tied, "little")
    return total % MODULUS


def digest_sum(start: int, images: np.ndarray, labels: Sequence[int]) -> int:
    """``fold`` of the samples ``start ...`` given as arrays."""
    return fold(start, content_digests(images, labels))


def fingerprint(total: int, count: int, image_shape: Sequence[int]) -> str:
    """The store fingerprint: 32 hex digits from the folded sum, the count and the image shape."""
    head = json.dumps([count, *map(int, image_shape)]).encode()
    return hashlib.blake2b(head + (total % MODULUS).to_bytes(32, "little"), digest_size=16).hexdigest()

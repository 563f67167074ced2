"""Named, seeded random streams.

Every random draw in ExFairS comes from a stream keyed by a *name* under one root seed, so that
adding a client or a stream never shifts the draws of another (streams are not derived from
creation order), and the same seed gives the same numbers in any process or worker.
"""

from __future__ import annotations

import hashlib

import numpy as np

#: Seeds fit a signed 64-bit integer (results files and numpy both take them as such).
MAX_SEED = 2**63 - 1


def _name_key(name: str) -> list[int]:
    # A stable 128-bit digest of the name (not Python's salted hash()).
    digest = hashlib.blake2b(name.encode("utf-8"), digest_size=16).digest()
    return [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]


def stream(seed: int, *names: str) -> np.random.Generator:
    """A generator for the stream `names` (e.g. ``("client", "alice", "arrivals")``) under `seed`.

    The same (seed, names) always gives the same generator state.
    """
    if seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    key: list[int] = []
    for name in names:
        key.extend(_name_key(name))
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, *key])))

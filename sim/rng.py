"""Named random streams: one numpy Generator per source of noise.

A stream is derived from (seed, replication, name), so adding a stream does not perturb the
others, and two variants of a scenario draw the same numbers for the same source (common
random numbers). There is no global generator anywhere in durosim.
"""

from __future__ import annotations

import zlib

import numpy as np


class Streams:
    def __init__(self, seed: int, replication: int = 0):
        self.seed = seed
        self.replication = replication
        self._made: dict[str, np.random.Generator] = {}

    def __getitem__(self, name: str) -> np.random.Generator:
        stream = self._made.get(name)
        if stream is None:
            key = (self.replication, zlib.crc32(name.encode()))
            stream = np.random.Generator(
                np.random.PCG64(np.random.SeedSequence(self.seed, spawn_key=key))
            )
            self._made[name] = stream
        return stream

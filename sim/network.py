"""A network path between two hosts, described by its round-trip time.

Each exchange draws its own RTT (constant, jitter, a long tail or an empirical sample) and
spends half of it in each direction, as `netem` or the lab's delay proxy do (RTT/2 per
direction). Bandwidth, loss and TCP dynamics are left out: the provider's messages are small.
"""

from __future__ import annotations

import numpy as np

from durosim.sim.dist import Dist


class Link:
    def __init__(self, rtt: Dist, rng: np.random.Generator | None = None):
        self.rtt = rtt.sampler(rng)
        """Draw the round-trip time of one exchange, in seconds."""

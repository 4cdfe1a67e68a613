"""Seed ranges, fixed and documented, so that evaluation never sees a training track.

CarRacing draws its track from the reset seed, so a seed is a track.

| use                                             | seeds                          |
|-------------------------------------------------|--------------------------------|
| collection and real-env ES rollouts (training)  | [0, 1_000_000_000)             |
| periodic real evaluation during C's training    | [1_000_000_000, 1_500_000_000) |
| ``worldmodels evaluate`` (the reported score)   | 2_000_000_000 + i, i < 100_000 |
"""

from __future__ import annotations

import numpy as np

TRAIN_RANGE = (0, 1_000_000_000)
VALIDATION_START = 1_000_000_000
TEST_START = 2_000_000_000


def derive_seed(*keys: int, low: int = TRAIN_RANGE[0], high: int = TRAIN_RANGE[1]) -> int:
    """A seed in [low, high) that depends only on ``keys`` (e.g. base seed, episode index)."""
    state = np.random.SeedSequence([int(k) for k in keys]).generate_state(2, dtype=np.uint64)
    return int(low + int(state[0]) % (high - low))


def validation_seeds(n: int) -> list[int]:
    """Tracks for the periodic real evaluation while training C."""
    return [VALIDATION_START + i for i in range(n)]


def test_seeds(n: int) -> list[int]:
    """Tracks of ``worldmodels evaluate``: 2_000_000_000, 2_000_000_001, ..."""
    return [TEST_START + i for i in range(n)]

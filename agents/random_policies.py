"""Data-collection policies: CarRacing's ``brownian`` and ``random``, Take Cover's ``random``.

Both act blindly (they ignore the observation) and draw every number from the numpy
Generator they are given, so a policy seeded per episode replays exactly. Interface::

    policy = make_policy("brownian", np.random.default_rng(seed))
    policy.reset()                 # at the start of each episode
    action = policy.act(obs)       # float32 (3,): steer in [-1, 1], gas and brake in [0, 1]

What they produce, measured on CarRacing-v3 over 10 episodes of up to 1000 steps (tracks
0..9; "on road": a wheel touches a road tile; speed in the env's units, |hull velocity|):

| policy   | frames on road   | mean speed | track tiles visited | return | ends off-field |
|----------|------------------|------------|---------------------|--------|----------------|
| brownian | 16% (9-31%)      | 24         | 5%                  | -52    | 1 in 10        |
| random   | 100%             | 3          | 7%                  | -33    | never          |

``brownian`` drives off: it follows the straight start, takes the first turn or leaves
the road there, and spends most of the episode on grass (88% of pixels are grass on
average), sometimes crossing the road again; so V and M see the road at speed, turns
ahead, curbs, grass, and a few exits from the playfield (-100, terminated). ``random``
brakes as much as it accelerates, so the car creeps around the start line: many road
frames, but nearly all of the same place and of a barely moving car.
"""

from __future__ import annotations

from typing import Callable, Protocol

import numpy as np

from worldmodels.worlds import CARRACING, action_bounds

ACTION_LOW, ACTION_HIGH = action_bounds(CARRACING)  # steer, gas, brake


class Policy(Protocol):
    def reset(self) -> None:
        """Start a new episode."""

    def act(self, obs: np.ndarray) -> np.ndarray:
        """The action for observation ``obs``: float32 (3,) = steer, gas, brake."""


class RandomPolicy:
    """Each action uniform over the action space, independently every step.

    Gas and brake are both about 0.5 on average, so the brake cancels most of the gas:
    the car creeps and jitters near the start. This is the classic, weak baseline.
    """

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return self.rng.uniform(ACTION_LOW, ACTION_HIGH).astype(np.float32)


class BrownianPolicy:
    """Temporally correlated actions: three mean-reverting random walks (Ornstein-Uhlenbeck).

    Each step, ``x += theta * (mean - x) + sigma * N(0, 1)``, then the action is the state
    clipped to the action space. Steering wanders around 0 with swings that last about a
    second, so the car drives straight stretches, curves both ways and often leaves the
    road; gas wanders around a moderate value (a forward bias, so the car keeps moving
    without going so fast that it only sees grass); the brake's walk is centred below
    zero, so after clipping it is 0 most of the time with occasional presses.
    """

    def __init__(self, rng: np.random.Generator,
                 mean: tuple[float, float, float] = (0.0, 0.3, -0.2),
                 theta: tuple[float, float, float] = (0.05, 0.05, 0.05),
                 sigma: tuple[float, float, float] = (0.08, 0.08, 0.08)):
        self.rng = rng
        self.mean = np.asarray(mean, dtype=np.float64)
        self.theta = np.asarray(theta, dtype=np.float64)
        self.sigma = np.asarray(sigma, dtype=np.float64)
        self.state = self.mean.copy()

    def reset(self) -> None:
        # Start from the walk's stationary distribution, so episodes do not all begin alike.
        std = self.sigma / np.sqrt(self.theta * (2.0 - self.theta))
        self.state = self.mean + std * self.rng.standard_normal(3)

    def act(self, obs: np.ndarray) -> np.ndarray:
        noise = self.rng.standard_normal(3)
        self.state += self.theta * (self.mean - self.state) + self.sigma * noise
        return np.clip(self.state, ACTION_LOW, ACTION_HIGH).astype(np.float32)


class ThirdsRandomPolicy:
    """Take Cover's random policy: left, stay or right (-1, 0, 1), uniform and independent
    every step (the paper's baseline survives 210 +- 108 steps)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    def reset(self) -> None:
        pass

    def act(self, obs: np.ndarray) -> np.ndarray:
        return np.array([self.rng.integers(-1, 2)], dtype=np.float32)


class ThirdsStickyPolicy:
    """Take Cover's exploring policy: a random action (-1, 0, 1) held for a random 1 to
    ``max_hold`` steps, then another. ``random``'s per-step choices make a random walk that
    barely leaves the middle of the room (~10 strafe steps off in 200), so M never sees a
    wall, and a C that always strafes one way survives in that dream but dies pinned to
    the wall in the game; held actions cross the room and reach both walls."""

    def __init__(self, rng: np.random.Generator, max_hold: int = 50):
        self.rng, self.max_hold = rng, int(max_hold)
        self.left, self.action = 0, 0.0

    def reset(self) -> None:
        self.left = 0

    def act(self, obs: np.ndarray) -> np.ndarray:
        if self.left == 0:
            self.action = float(self.rng.integers(-1, 2))
            self.left = int(self.rng.integers(1, self.max_hold + 1))
        self.left -= 1
        return np.array([self.action], dtype=np.float32)


POLICIES: dict[str, Callable[[np.random.Generator], Policy]] = {
    "brownian": BrownianPolicy,
    "random": RandomPolicy,
}
"""CarRacing's policies."""

WORLD_POLICIES: dict[str, dict[str, Callable[[np.random.Generator], Policy]]] = {
    "carracing": POLICIES,
    "take_cover": {"random": ThirdsRandomPolicy, "sticky": ThirdsStickyPolicy},
}
"""Each world's policies (``worldmodels.worlds``)."""


def make_policy(name: str, rng: np.random.Generator, world: str = "carracing") -> Policy:
    """The named data-collection policy of ``world`` drawing from ``rng``; unknown names
    raise a ValueError listing the world's policies."""
    policies = WORLD_POLICIES[world]
    try:
        cls = policies[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r} for {world}; choose one of "
                         f"{sorted(policies)}") from None
    return cls(rng)

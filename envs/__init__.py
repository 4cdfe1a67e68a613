"""Environments: the real CarRacing with the paper's frame processing, a fast CarRacing with
identical observations, and the dream (M as an environment).

Installed as ``worldmodels.envs``. Importing it registers:
- ``worldmodels/CarRacingFast-v3``: CarRacing-v3 with the same physics, reward and
  byte-identical observations, rendered faster (``worldmodels.envs.fast_carracing``).
- ``worldmodels/CarRacingDream-v0``: the dream of a trained M, constructed with the V and M
  checkpoints (``worldmodels.envs.dream_env``).
"""

import gymnasium as gym

from .carracing import FrameProcessing, make_env, preprocess_frame

if "worldmodels/CarRacingFast-v3" not in gym.registry:
    gym.register(
        id="worldmodels/CarRacingFast-v3",
        entry_point="worldmodels.envs.fast_carracing:FastCarRacing",
        max_episode_steps=1000,
        reward_threshold=900,
    )
if "worldmodels/CarRacingDream-v0" not in gym.registry:
    gym.register(
        id="worldmodels/CarRacingDream-v0",
        entry_point="worldmodels.envs.dream_env:CarRacingDreamEnv",
    )

__all__ = ["FrameProcessing", "make_env", "preprocess_frame"]

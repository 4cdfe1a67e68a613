"""Environments: the real games with the paper's frame processing (CarRacing, a fast CarRacing
with identical observations, VizDoom Take Cover) and the dream (M as an environment).

Installed as ``worldmodels.envs``. Importing it registers:
- ``worldmodels/CarRacingFast-v3``: CarRacing-v3 with the same physics, reward and
  byte-identical observations, rendered faster (``worldmodels.envs.fast_carracing``).
- ``worldmodels/DoomTakeCover-v0``: VizDoom's Take Cover with the paper's action mapping
  (``worldmodels.envs.take_cover``; needs the ``[doom]`` extra when made).
- ``worldmodels/CarRacingDream-v0``: the dream of a trained M, constructed with the V and M
  checkpoints (``worldmodels.envs.dream_env``).
"""

import os
import sys

import gymnasium as gym

from .carracing import FrameProcessing, make_env, preprocess_frame

_ENVS = {
    "worldmodels/CarRacingFast-v3": dict(entry_point="worldmodels.envs.fast_carracing:FastCarRacing",
                                         max_episode_steps=1000, reward_threshold=900),
    "worldmodels/DoomTakeCover-v0": dict(entry_point="worldmodels.envs.take_cover:DoomTakeCover",
                                         max_episode_steps=2100, reward_threshold=750),
    "worldmodels/CarRacingDream-v0": dict(entry_point="worldmodels.envs.dream_env:CarRacingDreamEnv"),
}


def _one_thread_in_forked_children() -> None:
    # A child forked after torch's intra-op thread pool started (gymnasium's
    # ``make_vec(..., vectorization_mode="async")`` forks by default) hangs forever in its
    # first parallel kernel: the pool's threads do not exist in the child. One thread never
    # touches the pool, and an env steps one frame or one dream at a time anyway.
    torch = sys.modules.get("torch")
    if torch is not None:  # torch not loaded: no pool to inherit
        torch.set_num_threads(1)


os.register_at_fork(after_in_child=_one_thread_in_forked_children)

for _id, _kwargs in _ENVS.items():
    if _id not in gym.registry:
        gym.register(id=_id, **_kwargs)  # type: ignore[arg-type]

__all__ = ["FrameProcessing", "make_env", "preprocess_frame"]

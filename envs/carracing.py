"""The real environment of any world with the frame processing of the paper.

Frames (``worldmodels.worlds.preprocess_frame``): CarRacing crops rows ``0:crop_rows`` of
the 96x96 observation (drops the dashboard), Take Cover keeps its whole screen; both are
resized to ``frame_size`` x ``frame_size`` with ``cv2.INTER_AREA``, uint8 HWC. The original
frame stays available in ``info["raw_frame"]`` (and ``env.raw_frame``) for videos.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np

from worldmodels import worlds
from worldmodels.config import EnvConfig
from worldmodels.worlds import CARRACING, World

RAW_SHAPE = CARRACING.raw_shape


def preprocess_frame(frame: np.ndarray, frame_size: int = 64, crop_rows: int = 84) -> np.ndarray:
    """96x96x3 uint8 CarRacing frame -> ``frame_size`` x ``frame_size`` x 3 uint8."""
    return worlds.preprocess_frame(CARRACING, frame, frame_size, crop_rows)


class FrameProcessing(gym.Wrapper):
    """Observation: the processed frame; ``info["raw_frame"]``: the 96x96 original."""

    def __init__(self, env: gym.Env, frame_size: int = 64, crop_rows: int = 84,
                 world: World = CARRACING):
        super().__init__(env)
        self.world = world
        self.frame_size = frame_size
        self.crop_rows = crop_rows
        self.observation_space = gym.spaces.Box(0, 255, (frame_size, frame_size, 3), np.uint8)
        self.raw_frame: np.ndarray | None = None

    def _process(self, obs: np.ndarray, info: dict[str, Any]) -> np.ndarray:
        self.raw_frame = obs
        info["raw_frame"] = obs
        return worlds.preprocess_frame(self.world, obs, self.frame_size, self.crop_rows)

    def reset(self, **kwargs: Any):
        obs, info = self.env.reset(**kwargs)
        return self._process(obs, info), info

    def step(self, action):
        action = np.asarray(action, dtype=np.float32)
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._process(obs, info), reward, terminated, truncated, info


def make_env(cfg: EnvConfig | None = None, render_mode: str | None = None,
             env_id: str | None = None) -> FrameProcessing:
    """Build the real environment with frame processing.

    ``env_id`` overrides ``cfg.env_id``. Unknown ids raise a ValueError naming the id and the
    known ones.
    """
    import worldmodels.envs  # noqa: F401  (registers worldmodels/* ids)

    cfg = cfg or EnvConfig()
    env_id = env_id or cfg.env_id
    world = worlds.world_of(env_id)
    env = gym.make(env_id, render_mode=render_mode, max_episode_steps=cfg.max_steps)
    return FrameProcessing(env, cfg.frame_size, cfg.crop_rows, world)

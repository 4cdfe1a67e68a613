"""VizDoom "Take Cover" as a gymnasium env: ``worldmodels/DoomTakeCover-v0``.

The second world of World Models (Ha & Schmidhuber 2018, section 4): the player stands at
one end of a room and can only strafe; monsters at the other end shoot fireballs. Reward 1
per step survived (the scenario's ``living_reward``), so the return is the number of steps
survived; an episode ends when the player dies, or at the time limit (the paper: 2100 steps,
~60 s at 35 tics per second; ``gymnasium.make(..., max_episode_steps=2100)``).

- Observation: the screen, uint8 HWC, ``RES_160X120`` by default (V sees a 64x64 resize,
  ``worldmodels.worlds``), rendered without HUD, as the scenario's config.
- Action: ``Box(-1, 1, (1,))``, the paper's mapping of C's single output: below -1/3 strafe
  left, above 1/3 strafe right, otherwise stay. One action is one game tic (no frame skip).
- Seeding: ``reset(seed=s)`` seeds the game's random number generator, so one seed and one
  action sequence replay the same frames (``tests/test_take_cover.py``).

``vizdoom`` (``pip install -e ".[doom]"``) is imported when the env is made, not before.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import gymnasium as gym
import numpy as np

RESOLUTIONS = {"160x120": (120, 160), "320x240": (240, 320)}
THIRD = 1.0 / 3.0


def discretize(a: float) -> int:
    """C's output in [-1, 1] -> -1 (left), 0 (stay) or 1 (right), the paper's thirds."""
    return -1 if a < -THIRD else (1 if a > THIRD else 0)


class DoomTakeCover(gym.Env):
    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 35}

    def __init__(self, render_mode: str | None = None, resolution: str = "160x120"):
        try:
            import vizdoom  # noqa: F401
        except ImportError as e:
            raise ImportError("worldmodels/DoomTakeCover-v0 needs vizdoom: "
                              "pip install -e \".[doom]\" (vizdoom 1.3.x)") from e
        if resolution not in RESOLUTIONS:
            raise ValueError(f"resolution must be one of {sorted(RESOLUTIONS)}, got {resolution!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, "
                             f"got {render_mode!r}")
        self.render_mode = render_mode
        self.resolution = resolution
        h, w = RESOLUTIONS[resolution]
        self.observation_space = gym.spaces.Box(0, 255, (h, w, 3), np.uint8)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self._game: Any = None
        self._last = np.zeros((h, w, 3), np.uint8)

    def _init_game(self) -> None:
        import vizdoom as vzd

        game = vzd.DoomGame()
        game.load_config(os.path.join(vzd.scenarios_path, "take_cover.cfg"))
        game.set_screen_resolution(getattr(vzd.ScreenResolution, "RES_" + self.resolution.upper()))
        game.set_screen_format(vzd.ScreenFormat.RGB24)
        game.set_window_visible(self.render_mode == "human")
        game.set_sound_enabled(False)
        game.set_mode(vzd.Mode.PLAYER)
        # The engine writes its settings file; keep it out of the working directory.
        game.set_doom_config_path(os.path.join(tempfile.gettempdir(), "worldmodels_vizdoom.ini"))
        game.init()
        self._game = game

    def _screen(self) -> np.ndarray:
        state = self._game.get_state()
        if state is not None:  # None once the episode is over: keep the last frame
            self._last = np.ascontiguousarray(state.screen_buffer)
        return self._last

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if self._game is None:
            self._init_game()
        if seed is None:  # gymnasium's convention: the env's own generator picks one
            seed = int(self.np_random.integers(2**31))
        self._game.set_seed(int(seed) % 2**32)
        self._game.new_episode()
        return self._screen().copy(), {}

    def step(self, action):
        if self._game is None:
            raise RuntimeError("call reset() before step()")
        a = float(np.asarray(action, dtype=np.float32).reshape(-1)[0])
        move = discretize(a)
        reward = float(self._game.make_action([float(move == -1), float(move == 1)], 1))
        terminated = bool(self._game.is_episode_finished())
        return self._screen().copy(), reward, terminated, False, {}

    def render(self):
        if self.render_mode == "rgb_array":
            return self._last.copy()
        return None

    def close(self) -> None:
        if self._game is not None:
            self._game.close()
            self._game = None

"""The dream of a trained M as a gymnasium environment: ``worldmodels/CarRacingDream-v0``.

    env = gymnasium.make("worldmodels/CarRacingDream-v0", vae_path="RUN/vae/vae.pt",
                         mdnrnn_path="RUN/rnn/mdnrnn.pt", temperature=1.15)

Observation: z (``observation="z"``) or [z, h] (``"zh"``), float32. Actions: CarRacing's
Box([-1, 0, 0], [1, 1, 1]) (steer, gas, brake; clipped to the box). Reward and terminated
come from M's reward and done heads; truncated after ``max_steps`` steps. ``render()``
decodes z through V into a 64x64 RGB frame (``"human"``: shown in a pygame window).

It is :class:`worldmodels.dream.BatchedDream` with one dream: for the same seed and actions
it gives exactly the trajectory of ``BatchedDream.reset(1, generator=seed)`` and its steps.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from worldmodels.dream import BatchedDream
from worldmodels.vae import load_vae, tensor_to_frames
from worldmodels.worlds import CARRACING, action_bounds

ACTION_LOW, ACTION_HIGH = action_bounds(CARRACING)


class CarRacingDreamEnv(gym.Env):
    metadata = {"render_modes": ["human", "rgb_array"], "render_fps": 50}

    def __init__(self, vae_path: str, mdnrnn_path: str, temperature: float = 1.0,
                 observation: str = "z", max_steps: int = 1000, done_threshold: float = 0.5,
                 sample_done: bool = False, render_mode: str | None = None,
                 device: str = "cpu", window_size: int = 512):
        if observation not in ("z", "zh"):
            raise ValueError(f"observation must be 'z' or 'zh', got {observation!r}")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, "
                             f"got {render_mode!r}")
        self.dream = BatchedDream.from_checkpoint(
            mdnrnn_path, device=device, vae_path=vae_path, temperature=temperature,
            max_steps=max_steps, done_threshold=done_threshold, sample_done=sample_done)
        self.vae, _ = load_vae(vae_path, device=device)
        if self.vae.z_dim != self.dream.z_dim:
            raise ValueError(f"V has z_dim {self.vae.z_dim} but M has {self.dream.z_dim}")
        self.observation = observation
        self.render_mode = render_mode
        self.window_size = window_size
        size = self.dream.z_dim + (self.dream.hidden_size if observation == "zh" else 0)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)
        self.action_space = gym.spaces.Box(ACTION_LOW, ACTION_HIGH, dtype=np.float32)
        self._generator = torch.Generator(device=self.dream.device)
        self._seeded = False
        self._z: torch.Tensor | None = None
        self._window = None

    def _obs(self, z: torch.Tensor, h: torch.Tensor) -> np.ndarray:
        x = z[0] if self.observation == "z" else torch.cat([z[0], h[0]])
        return x.cpu().numpy().astype(np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        if seed is not None:
            self._generator.manual_seed(seed)
        elif not self._seeded:
            self._generator.manual_seed(int(self.np_random.integers(2**62)))
        self._seeded = True
        z, h = self.dream.reset(1, self._generator)
        self._z = z
        if self.render_mode == "human":
            self.render()
        return self._obs(z, h), {}

    def step(self, action):
        if self._z is None:
            raise RuntimeError("call reset() before step()")
        action = np.clip(np.asarray(action, dtype=np.float32).reshape(1, 3), ACTION_LOW, ACTION_HIGH)
        z, h, reward, done = self.dream.step(action)
        self._z = z
        terminated = bool(done[0])
        truncated = self.dream.truncated and not terminated
        if self.render_mode == "human":
            self.render()
        return self._obs(z, h), float(reward[0]), terminated, truncated, {}

    def decode(self) -> np.ndarray:
        """The current z decoded through V: 64 x 64 x 3 uint8."""
        if self._z is None:
            raise RuntimeError("call reset() before render()")
        with torch.inference_mode():
            frame = tensor_to_frames(self.vae.decode(self._z.to(self.dream.device)))[0]
        return frame.cpu().numpy()

    def render(self):
        if self.render_mode is None:
            gym.logger.warn("render() called without a render_mode; pass render_mode='rgb_array' "
                            "or 'human' to gymnasium.make")
            return None
        frame = self.decode()
        if self.render_mode == "rgb_array":
            return frame
        if self._window is None:
            from worldmodels.video import Window

            self._window = Window("World Models: dream", (self.window_size, self.window_size),
                                  fps=self.metadata["render_fps"])
        self._window.poll()
        self._window.show(frame)
        return None

    def close(self):
        if self._window is not None:
            self._window.close()
            self._window = None

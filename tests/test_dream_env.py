"""The dream as a gymnasium environment: worldmodels/CarRacingDream-v0."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import worldmodels.envs  # noqa: F401  (registers worldmodels/CarRacingDream-v0)
from gymnasium.utils.env_checker import check_env

from worldmodels.checkpoint import CheckpointError, save_checkpoint
from worldmodels.dream import BatchedDream
from worldmodels.testing import save_tiny_models

ENV_ID = "worldmodels/CarRacingDream-v0"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return save_tiny_models(tmp_path_factory.mktemp("models"))


def make(models, **kw):
    vae_path, m_path = models
    return gym.make(ENV_ID, vae_path=str(vae_path), mdnrnn_path=str(m_path), **kw)


@pytest.mark.filterwarnings("ignore:.*Box observation space m:UserWarning")  # z is unbounded
@pytest.mark.parametrize("observation", ["z", "zh"])
def test_check_env(models, observation):
    env = make(models, observation=observation, max_steps=20, render_mode="rgb_array")
    check_env(env.unwrapped, skip_render_check=False)
    obs, _ = env.reset(seed=0)
    assert obs.shape == ((8,) if observation == "z" else (8 + 16,)) and obs.dtype == np.float32
    assert env.action_space == gym.spaces.Box(np.array([-1, 0, 0], np.float32),
                                              np.array([1, 1, 1], np.float32))


def test_env_trajectory_equals_batched_dream(models):
    vae_path, m_path = models
    env = make(models, temperature=1.3, observation="zh")
    dream = BatchedDream.from_checkpoint(m_path, temperature=1.3)
    rng = np.random.default_rng(0)
    actions = rng.uniform([-1, 0, 0], [1, 1, 1], (15, 3)).astype(np.float32)
    obs, _ = env.reset(seed=42)
    z, h = dream.reset(1, generator=42)
    np.testing.assert_array_equal(obs, torch.cat([z[0], h[0]]).numpy())
    for a in actions:
        obs, reward, terminated, truncated, _ = env.step(a)
        z, h, r, done = dream.step(a[None])
        np.testing.assert_array_equal(obs, torch.cat([z[0], h[0]]).numpy())
        assert reward == float(r[0]) and terminated == bool(done[0])
    # Another seed, another dream.
    assert not np.array_equal(env.reset(seed=43)[0], env.reset(seed=42)[0])


def test_truncated_at_max_steps_and_render(models):
    env = make(models, max_steps=5, render_mode="rgb_array")
    env.reset(seed=0)
    flags = [env.step(env.action_space.sample())[2:4] for _ in range(5)]
    assert flags == [(False, False)] * 4 + [(False, True)]
    frame = env.render()
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8


def test_mismatched_v_and_m_are_refused(models, tmp_path):
    from dataclasses import asdict

    from worldmodels.config import VAEConfig
    from worldmodels.vae import ConvVAE

    _, m_path = models
    other = save_checkpoint(tmp_path / "other_vae.pt", kind="vae", config=asdict(VAEConfig(z_dim=8)),
                            model=ConvVAE(z_dim=8).state_dict())
    with pytest.raises(CheckpointError, match="different vae"):
        gym.make(ENV_ID, vae_path=str(other), mdnrnn_path=str(m_path))


def test_human_render_under_a_dummy_display(models, monkeypatch):
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = make(models, max_steps=3, render_mode="human")
    env.reset(seed=0)
    env.step(env.action_space.sample())
    env.close()


@pytest.mark.slow
def test_async_vector_env_with_forked_workers_does_not_hang(models, tmp_path):
    """gymnasium's async vector env forks its workers by default; torch's thread pool,
    started in the parent, used to deadlock the children's first step."""
    import subprocess
    import sys

    vae_path, m_path = models
    code = f"""
import gymnasium as gym, torch
import worldmodels.envs
torch.set_num_threads(2)
torch.ones(200, 200) @ torch.ones(200, 200)   # the parent's thread pool is running
envs = gym.make_vec("worldmodels/CarRacingDream-v0", num_envs=2, vectorization_mode="async",
                    vae_path={str(vae_path)!r}, mdnrnn_path={str(m_path)!r})
obs, _ = envs.reset(seed=0)
for _ in range(5):
    obs, r, terminated, truncated, _ = envs.step(envs.action_space.sample())
envs.close()
print("stepped", obs.shape)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "stepped (2," in out.stdout, out.stderr[-2000:]

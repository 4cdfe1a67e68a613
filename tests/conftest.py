"""Shared test fixtures.

- Headless pygame: ``SDL_VIDEODRIVER=dummy`` is set (unless already set) for the whole test
  session, before anything imports pygame; worker processes inherit it.
- ``make_rollouts(folder, lengths=(12, 9, 15), seed=0) -> Path``: writes synthetic rollout
  shards ``ep_000000.npz ...`` (random uint8 frames, random actions in the action space,
  rewards, the last step ``truncated``, except the last episode which ends ``terminated``)
  and their ``manifest.jsonl`` into ``folder``, through ``worldmodels.data``; returns folder.
- ``tiny_rollouts -> Path``: ``make_rollouts(tmp_path / "rollouts")`` with the defaults:
  3 episodes of 12, 9 and 15 steps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")


def _write_rollouts(folder: Path, lengths=(12, 9, 15), seed: int = 0,
                    world: str = "carracing") -> Path:
    """Synthetic episodes and their manifest. ``world="carracing"``: 3-dim actions, random
    rewards, the last episode terminated and the others truncated; ``"take_cover"``: one action
    in {-1, 0, 1}, 1 per step survived, every episode ending in a death (policy ``random``)."""
    from worldmodels.data import append_manifest, shard_name, write_shard

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for index, length in enumerate(lengths):
        done = np.zeros(length, dtype=np.bool_)
        done[-1] = True
        obs = rng.integers(0, 256, (length, 64, 64, 3), dtype=np.uint8)
        if world == "take_cover":
            ended = True
            action = rng.choice([-1.0, 0.0, 1.0], (length, 1)).astype(np.float32)
            reward = np.ones(length, dtype=np.float32)
        else:
            ended = index == len(lengths) - 1
            action = rng.uniform([-1, 0, 0], [1, 1, 1], (length, 3)).astype(np.float32)
            reward = rng.normal(0, 1, length).astype(np.float32)
        arrays = {
            "obs": obs, "action": action, "reward": reward,
            "terminated": done if ended else np.zeros(length, dtype=np.bool_),
            "truncated": np.zeros(length, dtype=np.bool_) if ended else done,
        }
        sha = write_shard(folder / shard_name(index), arrays, kind="rollout")
        append_manifest(folder, {
            "index": index, "file": shard_name(index), "seed": index, "length": length,
            "return": float(arrays["reward"].sum(dtype=np.float64)), "sha256": sha,
            "policy": "random" if world == "take_cover" else "synthetic",
        })
    return folder


@pytest.fixture
def make_rollouts():
    """Factory: ``make_rollouts(folder, lengths=(12, 9, 15), seed=0) -> folder``."""
    return _write_rollouts


@pytest.fixture
def tiny_rollouts(tmp_path: Path) -> Path:
    """A rollout folder with 3 synthetic episodes (12, 9, 15 steps) and its manifest."""
    return _write_rollouts(tmp_path / "rollouts")


def assert_process_group_ends(pgid: int, what: str, seconds: float = 20.0) -> None:
    """Wait for every process of group ``pgid`` (a command and its workers) to exit; kill
    the survivors and fail, naming ``what`` stopped them, if they outlive ``seconds``."""
    import signal
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pgid, signal.SIGKILL)
    pytest.fail(f"worker processes survived {what}")


@pytest.fixture
def one_thread():
    """One torch thread (``pytestmark = pytest.mark.usefixtures("one_thread")``): tiny models
    run far faster on one thread than on two cores shared with other work."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

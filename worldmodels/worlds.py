"""Worlds: every fact about a game that the method needs, in one small description.

V, M, C, the dream, collection, evaluation and the videos are the same for every world;
what differs is written here, once:

- which gymnasium ids belong to the world, the raw frame's shape and how it becomes V's
  frame (CarRacing: drop the 12-row dashboard, resize; Doom: resize the whole screen);
- C's outputs and their mapping to the action that the env and M see
  (:func:`map_controller_output`; the same formula runs inside the batched dream);
- what M's dream pays: its reward head (CarRacing), or 1 per step until M's done head
  fires (Take Cover: the return is the number of steps survived, as in the paper, whose M
  has no reward head);
- episode length, the "solved" score, the largest real return (the exploit detector's
  bound) and the frame rate of videos. (Each world's data-collection policies are listed
  in ``worldmodels.agents.random_policies.WORLD_POLICIES``, its first the default.)

The world of a run is the one of its ``env.env_id`` (:func:`world_of`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch


@dataclass(frozen=True)
class World:
    name: str
    env_ids: tuple[str, ...]
    """gymnasium ids of this world (the first is the default)."""
    raw_shape: tuple[int, int, int]
    """Shape of the env's observation (uint8 HWC) before processing."""
    crop_rows: bool
    """Whether ``EnvConfig.crop_rows`` applies (rows kept from the top before resizing)."""
    action_dim: int
    """Width of C's output, of the action vector the env takes and M reads."""
    action_map: str
    """C's output mapping: ``carracing`` (steer, (gas + 1) / 2, max(brake, 0)) or ``thirds``
    (-1 below -1/3, 1 above 1/3, else 0)."""
    dream_reward: str
    """What a dream step pays: ``head`` (M's reward head) or ``survival`` (1 while alive)."""
    max_steps: int
    """Episode length limit of the real game."""
    solved: float
    """Mean return over 100 episodes that counts as solving the game."""
    max_return: float
    """Largest return a real episode can have (a dream return above it is an exploit)."""
    fps: int
    """Frames per second of the real game (videos)."""


CARRACING = World(
    name="carracing", env_ids=("worldmodels/CarRacingFast-v3", "CarRacing-v3"),
    raw_shape=(96, 96, 3), crop_rows=True, action_dim=3, action_map="carracing",
    dream_reward="head", max_steps=1000, solved=900.0, max_return=1000.0, fps=50,
)
TAKE_COVER = World(
    name="take_cover", env_ids=("worldmodels/DoomTakeCover-v0",),
    raw_shape=(120, 160, 3), crop_rows=False, action_dim=1, action_map="thirds",
    # The gym leaderboard's DoomTakeCover-v0 counted 750 over 100 episodes as solved.
    dream_reward="survival", max_steps=2100, solved=750.0, max_return=2100.0, fps=35,
)
WORLDS = {w.name: w for w in (CARRACING, TAKE_COVER)}


def world_of(env_id: str) -> World:
    """The world whose gymnasium ids include ``env_id``; unknown ids raise a ValueError
    that lists every known one."""
    for w in WORLDS.values():
        if env_id in w.env_ids:
            return w
    known = sorted(i for w in WORLDS.values() for i in w.env_ids)
    raise ValueError(f"unknown environment id {env_id!r}; known ids: {known}")


def world_of_action_map(action_map: str) -> World:
    """The world whose C maps its outputs with ``action_map`` (a C checkpoint's world)."""
    for w in WORLDS.values():
        if w.action_map == action_map:
            return w
    raise ValueError(f"unknown action_map {action_map!r}; choose one of {ACTION_MAPS}")


def check_controller_world(action_map: str, env_id: str, controller: object) -> None:
    """Refuse to run a C (its checkpoint ``controller``) in the env of another world."""
    world = world_of(env_id)
    if action_map != world.action_map:
        raise ValueError(f"{controller} is a C for another world (action map {action_map!r}); "
                         f"{env_id} needs {world.action_map!r}")


def move_name(action: float) -> str:
    """Take Cover's mapped action -1 / 0 / 1 as a word, for captions."""
    return {-1: "left", 0: "stay", 1: "right"}[int(action)]


def preprocess_frame(world: World, frame: np.ndarray, frame_size: int = 64,
                     crop_rows: int = 84) -> np.ndarray:
    """Raw uint8 frame of ``world`` -> ``frame_size`` x ``frame_size`` x 3 uint8 (INTER_AREA)."""
    frame = np.asarray(frame)
    if frame.shape != world.raw_shape or frame.dtype != np.uint8:
        raise ValueError(f"expected a {world.name} frame of shape {world.raw_shape} uint8, "
                         f"got {frame.shape} {frame.dtype}")
    if world.crop_rows:
        frame = np.ascontiguousarray(frame[:crop_rows])
    return cv2.resize(frame, (frame_size, frame_size), interpolation=cv2.INTER_AREA)


ACTION_MAPS = ("carracing", "thirds")


def map_controller_output(raw: torch.Tensor, action_map: str = "carracing") -> torch.Tensor:
    """tanh outputs of C (... x A) -> the action the env and M see (... x A).

    ``carracing``: (steer, gas, brake) = (a0, (a1 + 1) / 2, max(a2, 0)).
    ``thirds``: each output becomes -1 below -1/3, 1 above 1/3, 0 otherwise (Take Cover:
    left, right, stay), so M learns from the three actions the game can tell apart.
    """
    if action_map == "carracing":
        steer = raw[..., 0]
        gas = (raw[..., 1] + 1) / 2
        brake = raw[..., 2].clamp(0, 1)
        return torch.stack([steer, gas, brake], dim=-1)
    if action_map == "thirds":
        return (raw > 1 / 3).to(raw.dtype) - (raw < -1 / 3).to(raw.dtype)
    raise ValueError(f"unknown action_map {action_map!r}; choose one of {ACTION_MAPS}")


def action_bounds(world: World) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest mapped action (float32 vectors), for clipping noisy actions."""
    if world.action_map == "carracing":
        return (np.array([-1.0, 0.0, 0.0], np.float32), np.array([1.0, 1.0, 1.0], np.float32))
    return (np.full(world.action_dim, -1.0, np.float32), np.full(world.action_dim, 1.0, np.float32))

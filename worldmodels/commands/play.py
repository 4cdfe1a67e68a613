"""Watch a trained agent drive real CarRacing.

``--render human`` opens CarRacing's own window (a desktop or a virtual display such as Xvfb;
a clear error when there is none). ``--record out.mp4`` (or ``.gif``) writes a side-by-side
video, one frame per env step: the real frame, V's reconstruction of it, and M's prediction
of the next frame decoded through V, above a bar with the action and the running return.

Examples::

    worldmodels play --controller runs/laptop/controller/controller_best.pt --render human
    worldmodels play --controller runs/laptop/controller/controller_best.pt --record drive.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..cli import CLIError, add_agent_argument, add_device_argument, apply_agent, positive_int
from ..config import EnvConfig
from ..seeds import TEST_START
from ..utils import resolve_device
from ..video import draw_text, hstack_panels, require_display, write_video
from ..worlds import move_name

PANEL_LABELS = ("real", "V: reconstruction", "M: next frame")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--controller", type=Path, help="controller checkpoint (C)")
    add_agent_argument(parser)
    parser.add_argument("--vae", type=Path, help="V checkpoint (default: the one C records)")
    parser.add_argument("--rnn", type=Path, help="M checkpoint (default: the one C records)")
    parser.add_argument("--render", choices=["human", "none"], default="none",
                        help="human: show CarRacing's window while driving (default: none)")
    parser.add_argument("--record", type=Path, metavar="OUT.mp4|OUT.gif",
                        help="write a side-by-side video: real | V reconstruction | M prediction")
    parser.add_argument("--episodes", type=positive_int, default=1, help="episodes to play (default: 1)")
    parser.add_argument("--seed", type=int, default=TEST_START,
                        help=f"track seed of the first episode; the next ones add 1 "
                             f"(default: {TEST_START}, the first evaluation track)")
    parser.add_argument("--env-id", default=None,
                        help="real environment id (default: the game C was trained for, "
                             f"{EnvConfig.env_id} or worldmodels/DoomTakeCover-v0)")
    parser.add_argument("--max-steps", type=positive_int, default=None,
                        help="steps per episode at most (default: the game's limit, CarRacing "
                             "1000, Take Cover 2100)")
    parser.add_argument("--use-mu", action="store_true",
                        help="feed C the VAE mean instead of a sampled z")
    parser.add_argument("--panel-size", type=positive_int, default=160, help="pixels per video panel side")
    parser.add_argument("--fps", type=positive_int, default=None,
                        help="video frame rate (default: the game's, CarRacing 50, Take Cover 35)")
    parser.add_argument("--every", type=positive_int, default=1, metavar="K",
                        help="record every K-th step (a smaller file; played back at FPS / K "
                             "frames per second, so the video keeps real time; default: 1)")
    add_device_argument(parser)


def caption_height(size: int) -> int:
    """Rows of the caption bar under the panels of a ``size``-pixel video."""
    return max(28, size // 4)


def video_frame(raw: np.ndarray, recon: np.ndarray, pred: np.ndarray, action: np.ndarray,
                ep_return: float, step: int, size: int) -> np.ndarray:
    """One video frame: three labelled panels, over a bar with the step, return and action
    (a bar of its own, so that the text never hides the car)."""
    if len(action) == 1:  # Take Cover
        what = move_name(float(action[0]))
    else:
        what = f"steer {action[0]:+.2f} gas {action[1]:.2f} brake {action[2]:.2f}"
    caption = f"t={step}  return {ep_return:7.1f}\n{what}"
    panels = hstack_panels([raw, recon, pred], PANEL_LABELS, size=size)
    bar = np.zeros((caption_height(size), panels.shape[1], 3), np.uint8)
    return np.concatenate([panels, draw_text(bar, caption, scale=size / 400)], axis=0)


def play(controller: Path, vae: Path | None = None, rnn: Path | None = None,
         render: str = "none", record: Path | None = None, episodes: int = 1,
         seed: int = TEST_START, env_id: str | None = None,
         max_steps: int | None = None, use_mu: bool = False, panel_size: int = 160,
         fps: int | None = None, device: str = "auto", every: int = 1) -> list[float]:
    """Play ``episodes`` episodes; returns their returns. Writes ``record`` if given, with
    every ``every``-th step of each episode (from its first), at ``fps / every`` frames/s."""
    from worldmodels.agents.world_models_agent import WorldModelsAgent, load_controller
    from worldmodels.envs import make_env
    from worldmodels.worlds import world_of, world_of_action_map

    if env_id is None:  # the world of C's action mapping
        env_id = world_of_action_map(load_controller(controller)[0].action_map).env_ids[0]
    try:
        world = world_of(env_id)
    except ValueError as e:
        raise CLIError(f"--env-id: {e}") from e
    max_steps = world.max_steps if max_steps is None else max_steps
    fps = world.fps if fps is None else fps
    if episodes < 1:
        raise CLIError(f"--episodes must be at least 1, got {episodes}")
    if every < 1 or fps < 1 or panel_size < 16:
        raise CLIError(f"need --every >= 1, --fps >= 1 and --panel-size >= 16, got {every}, "
                       f"{fps} and {panel_size}")
    if record is not None and record.suffix.lower() not in (".mp4", ".gif"):
        raise CLIError(f"--record {record}: use a .mp4 or .gif file name")
    if render == "human":
        require_display()
    agent = WorldModelsAgent.from_checkpoints(controller, vae, rnn, device=resolve_device(device),
                                              use_mu=use_mu, seed=seed)
    env = make_env(EnvConfig(env_id=env_id, max_steps=max_steps),
                   render_mode="human" if render == "human" else None)
    frames: list[np.ndarray] = []
    returns = []
    try:
        for ep in range(episodes):
            obs, info = env.reset(seed=seed + ep)
            agent.reset(seed + ep)
            raw, total, done, t = info["raw_frame"], 0.0, False, 0
            while not done:
                action = agent.act(obs)
                if record is not None and t % every == 0:
                    frames.append(video_frame(raw, agent.reconstruction(), agent.prediction(),
                                              action, total, t, panel_size))
                obs, reward, terminated, truncated, info = env.step(action)
                raw, total, t = info["raw_frame"], total + float(reward), t + 1
                done = terminated or truncated
            returns.append(total)
            print(f"episode {ep + 1}/{episodes} (track seed {seed + ep}): return {total:.1f} "
                  f"in {t} steps", flush=True)
    finally:
        env.close()
    if record is not None:
        rate = max(1, round(fps / every))
        write_video(record, np.stack(frames), fps=rate)
        print(f"video: {record} ({len(frames)} frames, {rate} fps)")
    return returns


def run(args: argparse.Namespace) -> int:
    apply_agent(args)
    if args.controller is None:
        raise CLIError("give --controller C.pt or --agent NAME")
    if args.render == "none" and args.record is None:
        raise CLIError("nothing to show: pass --render human and/or --record OUT.mp4")
    play(args.controller, args.vae, args.rnn, args.render, args.record, args.episodes, args.seed,
         args.env_id, args.max_steps, args.use_mu, args.panel_size, args.fps, args.device,
         args.every)
    return 0

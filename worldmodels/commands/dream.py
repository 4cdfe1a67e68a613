"""Watch M dream, decoded through V: a video of the dream, an open-loop comparison with a real
episode, or drive inside the dream yourself.

  worldmodels dream --vae RUN/vae/vae.pt --rnn RUN/rnn/mdnrnn.pt --record dream.mp4
      the dream driven by Brownian (or --actions random, or FILE.npy) actions
  worldmodels dream --controller RUN/controller/controller.pt --record dream.mp4
  worldmodels dream --agent carracing --record dream.gif
      the dream driven by C, acting on the dream's own z and h: what C sees while it learns
  worldmodels dream --vae ... --rnn ... --open-loop --data RUN/rollouts --episode 0 --record ol.mp4
      real frames | frames M predicts from the same first frame and the same actions | difference
  worldmodels dream --vae ... --rnn ... --keyboard
      a window: arrows steer (left/right), accelerate (up) and brake (down); R restarts, Esc quits
      (Take Cover: left/right strafe, try to dodge the fireballs inside M's dream)

The world (CarRacing or Take Cover, ``--world``) is read from M by default: an M with 3 action
inputs dreams CarRacing, one with 1 Take Cover.

With --tb-dir the video is also logged to TensorBoard (``dream/video`` or ``dream/openloop``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from ..cli import CLIError, add_agent_argument, add_device_argument, apply_agent, positive_int
from ..dream import BatchedDream, predict_open_loop
from ..utils import resolve_device
from ..vae import ConvVAE, decode_frames, load_vae
from ..video import VIDEO_EXTENSIONS, NoDisplayError, Window, diff_image, hstack_panels, write_video
from ..worlds import WORLDS, World, move_name

DEFAULT_STEPS = 300
TB_PANEL = 128  # panel side of the videos logged to TensorBoard (GIFs stay small)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vae", metavar="V.pt", help="V checkpoint (vae.pt)")
    parser.add_argument("--rnn", metavar="M.pt",
                        help="M checkpoint (mdnrnn.pt), trained against --vae")
    parser.add_argument("--controller", metavar="C.pt",
                        help="C drives the dream (--vae and --rnn default to the ones C records)")
    add_agent_argument(parser)
    parser.add_argument("--record", metavar="FILE", help="write the video to FILE (.mp4 or .gif)")
    parser.add_argument("--steps", type=positive_int, default=None,
                        help=f"dream steps; the video has steps + 1 frames (default: "
                             f"{DEFAULT_STEPS}; with --open-loop the episode's length; with "
                             "--keyboard no limit)")
    parser.add_argument("--temperature", type=float, default=1.0,
                        help="dream temperature tau: mixture logits / tau, std * sqrt(tau) "
                             "(0: deterministic; default: 1.0)")
    parser.add_argument("--actions", default=None, metavar="random|brownian|FILE.npy",
                        help="what drives the dream: a data-collection policy, or a T x A "
                             "float array of actions, CarRacing's (steer, gas, brake) or Take "
                             "Cover's -1/0/1 (default: the world's first policy, brownian or "
                             "random)")
    parser.add_argument("--world", choices=sorted(WORLDS), default=None,
                        help="the game M dreams (default: read from M's action inputs)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the dream and the policy")
    parser.add_argument("--open-loop", action="store_true",
                        help="compare a real episode (--data, --episode) with M's prediction "
                             "from its first frame and its actions")
    parser.add_argument("--data", metavar="ROLLOUT_DIR", help="rollouts folder for --open-loop")
    parser.add_argument("--episode", type=int, default=0, help="episode index for --open-loop")
    parser.add_argument("--keyboard", action="store_true",
                        help="drive inside the dream with the arrow keys (needs a display)")
    parser.add_argument("--tb-dir", metavar="DIR", help="also log the video to TensorBoard here")
    parser.add_argument("--fps", type=positive_int, default=30, help="video frame rate (default: 30)")
    parser.add_argument("--size", type=positive_int, default=256,
                        help="side of each video panel in pixels (default: 256)")
    add_device_argument(parser)


def run(args: argparse.Namespace) -> int:
    apply_agent(args)
    if args.controller is not None and (args.vae is None or args.rnn is None):
        from ..agents.world_models_agent import load_controller
        from ..checkpoint import recorded_parent

        extra = load_controller(args.controller)[1].get("extra", {})
        args.vae = args.vae or recorded_parent(extra, "vae_path", args.controller)
        args.rnn = args.rnn or recorded_parent(extra, "mdnrnn_path", args.controller)
    if args.vae is None or args.rnn is None:
        raise CLIError("give --vae V.pt and --rnn M.pt, --controller C.pt or --agent NAME")
    if args.record and Path(args.record).suffix.lower() not in VIDEO_EXTENSIONS:
        raise CLIError(f"--record {args.record}: use a .mp4 or .gif file name")
    if not (args.record or args.tb_dir or args.keyboard):
        raise CLIError("nothing to do: give --record FILE.mp4|.gif, --tb-dir DIR or --keyboard")
    if args.steps is not None and args.steps < 1:
        raise CLIError(f"--steps must be >= 1, got {args.steps}")
    if args.open_loop and (args.keyboard or args.actions):
        raise CLIError("--open-loop replays the episode's own actions; drop --keyboard/--actions")
    if args.open_loop and not args.data:
        raise CLIError("--open-loop needs --data ROLLOUT_DIR (the rollouts of `worldmodels collect`)")
    if args.keyboard and args.actions:
        raise CLIError("--keyboard: you are the policy; drop --actions")

    device = resolve_device(args.device)
    vae, _ = load_vae(args.vae, device=device)
    from ..mdnrnn import load_mdnrnn

    action_dim = load_mdnrnn(args.rnn)[0].action_dim
    world = WORLDS[args.world] if args.world else next(
        (w for w in WORLDS.values() if w.action_dim == action_dim), None)
    if world is None or world.action_dim != action_dim:
        raise CLIError(f"--rnn {args.rnn} reads {action_dim} action inputs; no world "
                       f"{'' if world is None else f'({world.name}) '}takes that many")
    args.world_spec = world
    # Open loop follows the real episode to its end, so M's done head is not consulted there.
    dream = BatchedDream.from_checkpoint(args.rnn, device=device, vae_path=args.vae,
                                         temperature=args.temperature, max_steps=10**9,
                                         done_threshold=1.0 if args.open_loop else 0.5,
                                         action_map=world.action_map, reward=world.dream_reward)
    if args.keyboard:
        return drive_with_keyboard(args, vae, dream)
    if args.open_loop:
        frames, tb_frames, tag = open_loop(args, vae, dream)
    else:
        frames, tb_frames, tag = dream_video(args, vae, dream)
    save(args, frames, tb_frames, tag)
    return 0


def save(args: argparse.Namespace, frames: list[np.ndarray], tb_frames: list[np.ndarray],
         tag: str) -> None:
    if args.record:
        write_video(args.record, np.stack(frames), fps=args.fps)
        print(f"wrote {args.record} ({len(frames)} frames)")
    if args.tb_dir:
        from ..logger import Logger

        with Logger(args.tb_dir) as logger:
            logger.video(tag, np.stack(tb_frames), step=0, fps=args.fps)
        print(f"logged {tag} to TensorBoard in {args.tb_dir}")


def action_source(args: argparse.Namespace):
    """A function (t, z, h, c) -> action (A,) and the number of steps it supports (None:
    unlimited): C (``--controller``/``--agent``), a policy or an array."""
    world: World = args.world_spec
    if args.controller is not None and not args.actions:
        from ..agents.world_models_agent import load_controller

        controller, _ = load_controller(args.controller)
        if controller.action_map != world.action_map:
            raise CLIError(f"--controller {args.controller} acts in another world than "
                           f"{world.name}'s M")
        print(f"C drives the dream: {args.controller}")
        # C is tiny and stays on the CPU; the dream's z and h may live on the GPU (--device).
        return (lambda t, z, h, c: controller(z.cpu(), h.cpu(), c.cpu())[0].numpy()), None
    name = args.actions
    if not name:  # the world's default policy, the first it lists
        from worldmodels.agents.random_policies import WORLD_POLICIES

        name = next(iter(WORLD_POLICIES[world.name]))
    if name.endswith(".npy"):
        path = Path(name)
        if not path.is_file():
            raise CLIError(f"--actions {name}: file not found")
        actions = np.load(path, allow_pickle=False)
        A = world.action_dim
        if actions.ndim != 2 or actions.shape[1] != A or len(actions) == 0:
            raise CLIError(f"--actions {name}: expected a T x {A} array, got shape {actions.shape}")
        actions = actions.astype(np.float32)
        return (lambda t, z, h, c: actions[t]), len(actions)
    try:
        from worldmodels.agents.random_policies import make_policy
    except ImportError as e:
        raise CLIError(f"--actions {name} needs worldmodels.agents.random_policies ({e}); "
                       "give --actions FILE.npy") from e
    try:
        policy = make_policy(name, np.random.default_rng(args.seed), world.name)
    except ValueError as e:
        raise CLIError(f"--actions: {e}, or a FILE.npy") from e
    policy.reset()
    blank = np.zeros((64, 64, 3), np.uint8)  # the policies act blindly
    return (lambda t, z, h, c: policy.act(blank)), None


def caption(t: int, action: np.ndarray | None, ret: float) -> str:
    if action is None:
        act = ""
    elif len(action) == 1:  # Take Cover
        act = "\n" + move_name(float(action[0]))
    else:
        act = f"\nsteer {action[0]:+.2f}\ngas {action[1]:.2f} brake {action[2]:.2f}"
    return f"t={t} return {ret:.1f}{act}"


def dream_rollout(dream: BatchedDream, act, steps: int, seed: int):
    """One dream of up to ``steps`` steps driven by ``act(t, z, h, c)``: (z_0..z_T stacked,
    [None, a_0, ..., a_T-1], returns so far at each frame)."""
    z, h = dream.reset(1, seed)
    zs, returns, ret = [z[0]], [0.0], 0.0
    actions: list[np.ndarray | None] = [None]
    for t in range(steps):
        with torch.no_grad():
            a = np.asarray(act(t, z, h, dream.c), dtype=np.float32)
        z, h, reward, done = dream.step(a[None])
        ret += float(reward[0])
        zs.append(z[0])
        actions.append(a)
        returns.append(ret)
        if done[0]:
            print(f"M ended the dream at step {t + 1} (done head)")
            break
    return torch.stack(zs), actions, returns


def dream_video(args: argparse.Namespace, vae: ConvVAE, dream: BatchedDream):
    act, available = action_source(args)
    steps = args.steps or available or DEFAULT_STEPS
    if available is not None and steps > available:
        raise CLIError(f"--actions {args.actions} has {available} actions, fewer than --steps {steps}")
    zs, actions, returns = dream_rollout(dream, act, steps, args.seed)
    ret = returns[-1]
    images = decode_frames(vae, zs)
    print(f"dream: {len(zs) - 1} steps, return {ret:.1f} (temperature {args.temperature})")

    def panels(size: int) -> list[np.ndarray]:
        return [hstack_panels([img], [f"dream {caption(t, a, r)}"], size=size)
                for t, (img, a, r) in enumerate(zip(images, actions, returns))]
    return panels(args.size), panels(TB_PANEL), "dream/video"


def load_episode(folder: str, index: int) -> dict[str, np.ndarray]:
    from ..data import ShardError, read_manifest, read_shard

    entries = read_manifest(folder)
    if not entries:
        raise CLIError(f"--data {folder}: no finished episodes (manifest.jsonl missing or empty)")
    match = [e for e in entries if int(e["index"]) == index]
    if not match:
        raise CLIError(f"--episode {index} is not in {folder}; episodes "
                       f"{entries[0]['index']}..{entries[-1]['index']} are")
    try:
        return read_shard(Path(folder) / match[0]["file"], kind="rollout")
    except ShardError as e:
        raise CLIError(str(e)) from e


def open_loop(args: argparse.Namespace, vae: ConvVAE, dream: BatchedDream):
    ep = load_episode(args.data, args.episode)
    real, actions = ep["obs"], ep["action"]
    steps = min(args.steps or len(real) - 1, len(real) - 1)
    if steps < 1:
        raise CLIError(f"episode {args.episode} has a single frame; nothing to predict")
    real, pred, err = predict_open_loop(vae, dream, real, actions, steps, args.seed)
    print(f"open loop, episode {args.episode}: {steps} steps, mean absolute pixel error "
          f"{np.mean(err):.3f} (first {err[0]:.3f}, last {err[-1]:.3f})")

    def panels(size: int) -> list[np.ndarray]:
        return [hstack_panels([r, p, diff_image(r, p)], [f"real t={t}", "dream (open loop)",
                                                         f"|difference| {e:.3f}"], size=size)
                for t, (r, p, e) in enumerate(zip(real, pred, err))]
    return panels(args.size), panels(TB_PANEL), "dream/openloop"


def keyboard_action(keys, pygame, world: World | None = None) -> np.ndarray:
    """Arrow keys -> (steer, gas, brake), as in gymnasium's CarRacing demo; for Take Cover
    left / right strafe (-1 / 1), none or both stay (0)."""
    steer = float(keys[pygame.K_RIGHT]) - float(keys[pygame.K_LEFT])
    if world is not None and world.action_dim == 1:
        return np.array([steer], dtype=np.float32)
    return np.array([steer, 1.0 if keys[pygame.K_UP] else 0.0,
                     0.8 if keys[pygame.K_DOWN] else 0.0], dtype=np.float32)


def drive_with_keyboard(args: argparse.Namespace, vae: ConvVAE, dream: BatchedDream) -> int:
    size = max(args.size, 512)
    try:
        window = Window("World Models: drive in the dream (arrows, R restarts, Esc quits)",
                        (size, size), fps=args.fps)
    except NoDisplayError as e:
        raise CLIError(str(e)) from e
    pygame = window.pygame
    generator = torch.Generator(device=dream.device).manual_seed(args.seed)
    recorded: list[np.ndarray] = []
    z, _ = dream.reset(1, generator)
    ret, t, total = 0.0, 0, 0
    world: World = args.world_spec
    action = np.zeros(world.action_dim, np.float32)
    try:
        while not window.closed and (args.steps is None or total < args.steps):
            restart = any(e.type == pygame.KEYDOWN and e.key == pygame.K_r for e in window.poll())
            if restart:
                z, _ = dream.reset(1, generator)
                ret, t = 0.0, 0
            action = keyboard_action(window.pressed(), pygame, world)
            z, _, reward, done = dream.step(action[None])
            ret += float(reward[0])
            t += 1
            total += 1
            frame = hstack_panels([decode_frames(vae, z)[0]], [f"dream {caption(t, action, ret)}"], size=size)
            window.show(frame)
            if args.record:
                recorded.append(frame)
            if done[0] or t >= world.max_steps:  # as the real game's time limit
                print(f"episode over after {t} steps, return {ret:.1f}; restarting")
                z, _ = dream.reset(1, generator)
                ret, t = 0.0, 0
    finally:
        window.close()
    if args.record and recorded:
        write_video(args.record, np.stack(recorded), fps=args.fps)
        print(f"wrote {args.record} ({len(recorded)} frames)")
    return 0

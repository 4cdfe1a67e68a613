"""Score an agent (or a baseline policy) on CarRacing-v3.

By default the episodes run in ``worldmodels/CarRacingFast-v3``, whose observations,
rewards and episode ends are byte-identical to the official ``CarRacing-v3`` for the same
seed and actions (``tests/test_fast_carracing.py`` checks it) and which steps 4.25x faster in
one process (README, "Speed");
``--env.env-id CarRacing-v3`` runs the official class itself.

Runs N episodes on the fixed test tracks ``worldmodels.seeds.test_seeds(N)`` (2_000_000_000,
2_000_000_001, ...; training never uses them), in parallel worker processes, prints mean,
std, min and max of the returns and whether the mean meets 900 (CarRacing's "solved"), and
writes (atomically) a JSON file::

    {
      "agent": "world_models" | "random" | "brownian",
      "controller": path | null, "controller_sha256": ..., "vae": ..., "vae_sha256": ...,
      "mdnrnn": ..., "mdnrnn_sha256": ...,          # null for a baseline policy
      "env_id": "worldmodels/CarRacingFast-v3", "max_steps": 1000, "use_mu": false | null, "version": ...,
      "seeds": [...], "returns": [...], "lengths": [...],   # one entry per episode
      "summary": {"episodes", "mean", "std", "min", "max", "solved_threshold": 900, "solved"}
    }

``--out`` is checked before the first episode. Each finished episode is appended to
``.OUT.partial.jsonl`` beside it, so an interrupted evaluation (Ctrl-C, kill, crash) rerun
with the same command plays only the episodes it lacks and writes the same JSON; the
progress file is removed when OUT is written.

C sees a sampled z, or V's mean with ``--eval.use-mu``; without the flag, whatever C was trained
with (its checkpoint's ``use_mu``). An episode depends only on its seed (the track, and the
agent's z-sampling noise or the baseline policy's draws), never on the number of workers.
Baselines: ``--policy random`` or ``--policy brownian`` instead of ``--controller``.

Episodes run through :class:`worldmodels.rollouts.EpisodeRunner`, the parallel real-env
episode runner that ``train-controller`` also uses for real-env ES and its evaluations; with
``--cluster.backend ray``, on ``--eval.workers`` Ray actors that load V and M once
(``worldmodels.backends``): the same JSON, byte for byte.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from .. import __version__
from ..backends import connect, is_ray, open_pool
from ..checkpoint import checkpoint_sha256
from ..cli import (
    CLIError,
    add_agent_argument,
    add_config_arguments,
    add_device_argument,
    add_preset_argument,
    apply_agent,
    config_from_args,
)
from ..config import ClusterConfig, EnvConfig
from ..data import append_jsonl
from ..rollouts import EpisodeRunner, Task
from ..seeds import test_seeds
from ..utils import atomic_write_json, resolve_device
from ..worlds import CARRACING, check_controller_world, world_of, world_of_action_map

SOLVED_THRESHOLD = CARRACING.solved
OFFICIAL_ENV_ID = "CarRacing-v3"



def summarize(returns: np.ndarray, solved: float = SOLVED_THRESHOLD) -> dict[str, Any]:
    """Mean, std, min, max of episode returns and whether the mean meets ``solved`` (the
    world's threshold: CarRacing 900, Take Cover 750)."""
    returns = np.asarray(returns, dtype=np.float64)
    mean = float(returns.mean())
    return {"episodes": int(len(returns)), "mean": mean, "std": float(returns.std()),
            "min": float(returns.min()), "max": float(returns.max()),
            "solved_threshold": solved, "solved": bool(mean >= solved)}


def evaluate_agent(controller_path: str | os.PathLike | None = None,
                   vae_path: str | os.PathLike | None = None,
                   mdnrnn_path: str | os.PathLike | None = None, *,
                   policy: str | None = None, episodes: int = 100, workers: int = 2,
                   env_cfg: EnvConfig | None = None, use_mu: bool | None = None,
                   device: str = "cpu", out_path: str | os.PathLike | None = None,
                   progress: bool = True, cluster: ClusterConfig | None = None) -> dict[str, Any]:
    """Score C (with its V and M) or a baseline ``policy`` on ``test_seeds(episodes)``.

    V and M default to the paths the controller checkpoint records and must match its
    recorded sha256 (CheckpointError otherwise). ``use_mu`` defaults to the value C was
    trained with. ``env_cfg`` defaults to ``EnvConfig()``: the fast CarRacing, whose
    observations, rewards and ends are identical to CarRacing-v3's
    (tests/test_fast_carracing.py). ``cluster``: where the episodes run (default: worker
    processes on this machine). Returns the results dict (see the module docstring) and
    writes it to ``out_path`` when given.
    """
    if (controller_path is None) == (policy is None):
        raise ValueError("give either a controller checkpoint or a baseline policy, not both")
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if is_ray(cluster):
        connect(cluster)
    env_cfg = env_cfg or EnvConfig()
    world = world_of(env_cfg.env_id)
    seeds = test_seeds(episodes)
    record: dict[str, Any] = {"agent": policy or "world_models", "controller": None,
                              "controller_sha256": None, "vae": None, "vae_sha256": None,
                              "mdnrnn": None, "mdnrnn_sha256": None, "use_mu": None}
    if policy is not None:
        from worldmodels.agents.random_policies import WORLD_POLICIES

        if policy not in WORLD_POLICIES[world.name]:
            raise ValueError(f"unknown policy {policy!r} for {world.name}; choose one of "
                             f"{sorted(WORLD_POLICIES[world.name])}")
        runner_kw: dict[str, Any] = {"policy": policy}
        tasks: list[Task] = [(None, s) for s in seeds]
    else:
        from worldmodels.agents.world_models_agent import WorldModelsAgent

        # Loading verifies the files and the parents' hashes once, before any worker starts.
        agent = WorldModelsAgent.from_checkpoints(controller_path, vae_path, mdnrnn_path)
        check_controller_world(agent.controller.action_map, env_cfg.env_id, controller_path)
        vae_path, mdnrnn_path = agent.sources["vae"], agent.sources["mdnrnn"]
        if use_mu is None:
            use_mu = bool(agent.controller_config.get("use_mu", False))
        runner_kw = {"vae_path": vae_path, "mdnrnn_path": mdnrnn_path, "use_mu": use_mu,
                     "device": device, "features": agent.controller.features}
        tasks = [(agent.controller.get_flat(), s) for s in seeds]
        assert controller_path is not None
        record.update({
            "controller": str(controller_path),
            "controller_sha256": checkpoint_sha256(controller_path),
            "vae": str(vae_path), "vae_sha256": checkpoint_sha256(vae_path),
            "mdnrnn": str(mdnrnn_path), "mdnrnn_sha256": checkpoint_sha256(mdnrnn_path),
            "use_mu": bool(use_mu),
        })
    identity = {**record, "env_id": env_cfg.env_id, "max_steps": env_cfg.max_steps}
    done: dict[int, tuple[float, int]] = {}
    partial = None
    if out_path is not None:
        partial = partial_path(out_path)
        check_writable(out_path)
        done = read_partial(partial, identity)
        if not partial.is_file():
            append_jsonl(partial, {"identity": identity})
        elif done and progress:
            print(f"evaluate: resuming, {sum(s in done for s in seeds)} of {episodes} episodes "
                  f"already in {partial}", flush=True)
    todo = [i for i, s in enumerate(seeds) if s not in done]

    def save(j: int, ret: float, length: int) -> None:
        done[seeds[todo[j]]] = (ret, length)
        if partial is not None:
            append_jsonl(partial, {"seed": seeds[todo[j]], "return": ret, "length": length})

    pool = open_pool(cluster, workers, gpus=1.0 if str(device).startswith("cuda") else 0.0)
    try:
        with EpisodeRunner(env_cfg, workers=workers, pool=pool, **runner_kw) as runner, \
                tqdm(total=episodes, initial=episodes - len(todo), desc="evaluate", unit="ep",
                     disable=not progress) as bar:
            runner.run([tasks[i] for i in todo], progress=bar, on_result=save)
    finally:
        if pool is not None:
            pool.close()
    returns = np.array([done[s][0] for s in seeds], dtype=np.float64)
    lengths = np.array([done[s][1] for s in seeds], dtype=np.int64)
    record.update({
        "env_id": env_cfg.env_id, "max_steps": env_cfg.max_steps, "version": __version__,
        "seeds": seeds, "returns": returns.tolist(), "lengths": lengths.tolist(),
        "summary": summarize(returns, world.solved),
    })
    if out_path is not None:
        atomic_write_json(out_path, record)
        assert partial is not None
        partial.unlink(missing_ok=True)
    return record


def partial_path(out_path: str | os.PathLike) -> Path:
    """Where an evaluation writing ``out_path`` keeps its finished episodes until it ends."""
    out = Path(out_path)
    return out.with_name(f".{out.name}.partial.jsonl")


def check_writable(out_path: str | os.PathLike) -> None:
    """Refuse, before any episode runs, an output that cannot be written (ValueError)."""
    out = Path(out_path)
    if out.is_dir():
        raise ValueError(f"--out {out} is a folder; give a file name such as {out}/results.json")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out.parent, prefix=f".{out.name}.", suffix=".check"):
            pass
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or e})") from e


def read_partial(path: Path, identity: dict[str, Any]) -> dict[int, tuple[float, int]]:
    """Episodes (seed -> (return, length)) an interrupted evaluation of the same agent, env
    and episode length finished; {} (and the file removed) when it evaluated something else."""
    if not path.is_file():
        return {}
    done: dict[int, tuple[float, int]] = {}
    lines = path.read_text().splitlines()
    try:
        header = json.loads(lines[0]) if lines else {}
    except json.JSONDecodeError:
        header = {}
    if header.get("identity") != json.loads(json.dumps(identity)):
        path.unlink()
        return {}
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            done[int(entry["seed"])] = (float(entry["return"]), int(entry["length"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            continue  # a line cut by a crash: that episode is run again
    return done


def add_arguments(parser: argparse.ArgumentParser) -> None:
    agent = parser.add_argument_group("agent (a controller, or a baseline policy)")
    agent.add_argument("--controller", type=Path, help="controller checkpoint (controller_best.pt)")
    agent.add_argument("--vae", type=Path, help="V checkpoint (default: the one C records)")
    agent.add_argument("--rnn", type=Path, help="M checkpoint (default: the one C records)")
    add_agent_argument(agent)
    agent.add_argument("--policy", choices=["random", "brownian"],
                       help="score a baseline policy instead of a controller")
    add_config_arguments(parser, "eval")
    add_config_arguments(parser, "env", exclude=("frame_size", "crop_rows"),
                         title=f"environment (default: the game C was trained for, CarRacing in "
                               f"its fast class identical to {OFFICIAL_ENV_ID}; --env.env-id "
                               f"{OFFICIAL_ENV_ID} for the official one)")
    parser.add_argument("--out", type=Path, default=Path("results.json"),
                        help="where to write the per-episode results (default: results.json)")
    add_config_arguments(parser, "cluster",
                         title="where the episodes run (--cluster.backend ray: --eval.workers Ray "
                               "actors; the checkpoints on shared storage on a cluster)")
    add_preset_argument(parser)
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    if args.policy is not None and args.agent is not None:
        raise CLIError("give --agent or --policy, not both")
    apply_agent(args)
    if (args.controller is None) == (args.policy is None):
        raise CLIError("give --controller C.pt or --policy random|brownian (one of them)")
    if args.policy is not None and (args.vae or args.rnn):
        raise CLIError("--vae/--rnn go with --controller, not with --policy")
    eval_cfg = config_from_args(args, "eval")
    env_cfg = config_from_args(args, "env")
    if args.controller is not None and getattr(args, "env.env_id") is None:
        # No --env.env-id: the game C was trained for (a Take Cover C plays Take Cover).
        from dataclasses import replace

        from ..agents.world_models_agent import load_controller

        world = world_of_action_map(load_controller(args.controller)[0].action_map)
        if world_of(env_cfg.env_id) is not world:
            max_steps = (world.max_steps if getattr(args, "env.max_steps") is None
                         else env_cfg.max_steps)
            env_cfg = replace(env_cfg, env_id=world.env_ids[0], max_steps=max_steps)
    result = evaluate_agent(
        args.controller, args.vae, args.rnn, policy=args.policy, episodes=eval_cfg.episodes,
        workers=eval_cfg.workers, env_cfg=env_cfg, use_mu=getattr(args, "eval.use_mu"),
        device=str(resolve_device(args.device)), out_path=args.out, progress=not args.no_progress,
        cluster=config_from_args(args, "cluster"))
    print(f"{describe(result)}. Results: {args.out}")
    return 0


def describe(result: dict[str, Any]) -> str:
    """One line for a results dict: agent, env, mean +- std, min, max, and the solved verdict."""
    s = result["summary"]
    verdict = "meets" if s["solved"] else "does not meet"
    return (f"{result['agent']} on {result['env_id']}, {s['episodes']} episodes: "
            f"mean {s['mean']:.1f} +- {s['std']:.1f} (min {s['min']:.1f}, max {s['max']:.1f}); "
            f"{verdict} the {s['solved_threshold']:.0f} threshold")

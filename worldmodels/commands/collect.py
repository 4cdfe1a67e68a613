"""Collect rollouts of a random policy in the real environment (``worldmodels collect``).

Episode ``i`` drives the track of seed ``derive_seed(seed, i)`` with a policy drawing from
``derive_seed(seed, i, 1)``, so the same command gives the same arrays whatever the number
of workers. Each episode is written to ``OUT/ep_{i:06d}.npz`` (temp file + rename) by the
worker process that ran it; only the parent appends it to ``OUT/manifest.jsonl``. The
shard format is described in ``worldmodels.data``.

An episode ends when the env terminates (lap done, off the playfield) or truncates: its time
limit is ``--env.max-steps`` steps (``truncated`` is True on the last step).

Rerunning the same command resumes: finished episodes are kept, a shard that was written
but not yet listed (a kill between the two) is checked and listed (or redone if corrupt),
and temp files left by a kill are deleted. The options that shape the data (policy, seed,
max steps, env id, frame settings) are recorded in ``OUT/collect.json``; a rerun with
others is refused. ``--collect.episodes`` may grow (the data set is extended) and
``--collect.workers`` may change.

``--cluster.backend ray`` (``worldmodels.backends``) runs each episode as a task on a Ray
cluster, ``--collect.workers`` at once; the task writes its shard into OUT itself, so on several
machines OUT must be on storage that every node mounts at the same path. Same shards as
``local``; a worker killed mid-episode is replaced and its episode run again. The backend may
change between reruns.
"""

from __future__ import annotations

import argparse
import functools
import multiprocessing as mp
import os
import signal
import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
from tqdm import tqdm

from ..backends import connect, is_ray, run_tasks
from ..cli import (
    add_config_arguments,
    add_preset_argument,
    config_from_args,
    sigterm_as_interrupt,
)
from ..config import ClusterConfig, CollectConfig, EnvConfig, noise_dims, to_dict
from ..data import (
    SHARD_RE,
    ShardError,
    append_manifest,
    read_manifest,
    read_shard,
    shard_name,
    write_shard,
)
from ..runs import COLLECT_JSON as RUN_FILE
from ..runs import mark_done, start_run
from ..seeds import derive_seed
from ..utils import exit_with_parent, remove_stale_temp_files, sha256_file

_POLICY_STREAM = 1  # extra seed key, so the policy's numbers differ from the track's
_MIX_STREAM = 2     # extra seed key of the per-episode choice agent / brownian


def episode_seeds(base_seed: int, index: int) -> tuple[int, int]:
    """(env seed, policy seed) of episode ``index``; the env seed is the track."""
    return derive_seed(base_seed, index), derive_seed(base_seed, index, _POLICY_STREAM)


def episode_policy(index: int, cfg: CollectConfig) -> str:
    """The policy that drives episode ``index``: ``cfg.policy``, or for ``agent`` with a
    ``brownian_share``, ``brownian`` for that share of episodes (drawn from the index)."""
    if cfg.policy == "agent" and cfg.brownian_share > 0:
        u = np.random.default_rng(derive_seed(cfg.seed, index, _MIX_STREAM)).random()
        if u < cfg.brownian_share:
            return "brownian"
    return cfg.policy


@functools.lru_cache(maxsize=2)
def _load_agent(controller: str):
    from worldmodels.agents.world_models_agent import WorldModelsAgent

    return WorldModelsAgent.from_checkpoints(controller)


def make_episode_policy(index: int, cfg: CollectConfig, world: str = "carracing"):
    """The policy object of episode ``index`` in ``world``, seeded from the episode alone."""
    from worldmodels.agents import make_policy

    rng = np.random.default_rng(episode_seeds(cfg.seed, index)[1])
    name = episode_policy(index, cfg)
    if name != "agent":
        return make_policy(name, rng, world)
    from worldmodels.agents.world_models_agent import NoisyAgentPolicy

    agent = _load_agent(str(cfg.controller))
    return NoisyAgentPolicy(agent, rng, cfg.action_noise, noise_dims(cfg),
                            offset=episode_offset(index, cfg, agent.controller.action_dim))


def run_episode(index: int, cfg: CollectConfig, env_cfg: EnvConfig,
                on_step: Callable[[], None] | None = None) -> dict[str, np.ndarray]:
    """Play episode ``index`` and return its arrays (the rollout shard schema)."""
    from worldmodels.envs import make_env
    from worldmodels.worlds import world_of

    env_seed = episode_seeds(cfg.seed, index)[0]
    policy = make_episode_policy(index, cfg, world_of(env_cfg.env_id).name)
    env = make_env(env_cfg)
    frames, actions, rewards, terminated, truncated = [], [], [], [], []
    try:
        obs, _ = env.reset(seed=env_seed)
        policy.reset()
        for _ in range(env_cfg.max_steps):  # make_env's time limit truncates the last step
            action = policy.act(obs)
            frames.append(obs)
            actions.append(action)
            obs, reward, term, trunc, _ = env.step(action)
            rewards.append(reward)
            terminated.append(term)
            truncated.append(trunc)
            if on_step is not None:
                on_step()
            if term or trunc:
                break
    finally:
        env.close()
    return {
        "obs": np.stack(frames),
        "action": np.stack(actions).astype(np.float32),
        "reward": np.asarray(rewards, dtype=np.float32),
        "terminated": np.asarray(terminated, dtype=np.bool_),
        "truncated": np.asarray(truncated, dtype=np.bool_),
    }


def _manifest_entry(index: int, cfg: CollectConfig, reward: np.ndarray, sha256: str,
                    action_dim: int) -> dict:
    policy = episode_policy(index, cfg)
    return {
        "index": index,
        "file": shard_name(index),
        "seed": episode_seeds(cfg.seed, index)[0],
        "length": int(len(reward)),
        "return": float(np.sum(reward, dtype=np.float64)),
        "sha256": sha256,
        "policy": policy,
        **({"controller_sha256": _controller_sha256(cfg.controller),
            "action_noise": cfg.action_noise, **_dims_record(cfg),
            **_offset_record(index, cfg, action_dim)} if policy == "agent" else {}),
    }


def episode_offset(index: int, cfg: CollectConfig, action_dim: int) -> np.ndarray | None:
    """Episode ``index``'s action offset (``collect.episode_offset``; None when off): drawn from
    its own stream of the episode's policy seed, zero outside ``action_noise_dims``."""
    if cfg.episode_offset <= 0:
        return None
    rng = np.random.default_rng([episode_seeds(cfg.seed, index)[1], 1])
    offset = rng.normal(0.0, cfg.episode_offset, action_dim)
    dims = noise_dims(cfg)
    if dims is not None:
        keep = np.zeros(action_dim, dtype=bool)
        keep[list(dims)] = True
        offset[~keep] = 0.0
    return offset


def _offset_record(index: int, cfg: CollectConfig, action_dim: int) -> dict[str, Any]:
    """``episode_offset`` and the episode's offset where it is on (a folder collected before it
    existed records nothing and resumes)."""
    offset = episode_offset(index, cfg, action_dim)
    if offset is None:
        return {}
    return {"episode_offset": cfg.episode_offset, "action_offset": offset.tolist()}


def _dims_record(cfg: CollectConfig) -> dict[str, str]:
    """``action_noise_dims`` where it is set (a folder collected before it existed, with noise
    on every dimension, records nothing and resumes)."""
    return {"action_noise_dims": cfg.action_noise_dims} if noise_dims(cfg) is not None else {}


@functools.lru_cache(maxsize=4)
def _controller_sha256(path: str) -> str:
    return sha256_file(path)


def collect_episode(index: int, out_dir: Path, cfg: CollectConfig, env_cfg: EnvConfig,
                    on_step: Callable[[], None] | None = None) -> dict:
    """Play episode ``index``, write its shard atomically, return its manifest entry."""
    arrays = run_episode(index, cfg, env_cfg, on_step)
    sha = write_shard(Path(out_dir) / shard_name(index), arrays, kind="rollout")
    return _manifest_entry(index, cfg, arrays["reward"], sha, arrays["action"].shape[-1])


# --- worker processes -------------------------------------------------------------------

_worker_steps = None  # shared step counter of this worker process (for steps/s)


def _init_worker(counter, parent: int) -> None:
    global _worker_steps
    import torch

    exit_with_parent(parent)

    torch.set_num_threads(1)  # one process per core; the agent's batch-1 inference gains nothing
    # Ctrl-C reaches the whole process group: the parent alone handles it (and stops us).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _worker_steps = counter


def _count_step() -> None:
    assert _worker_steps is not None
    with _worker_steps.get_lock():
        _worker_steps.value += 1


def _worker(task: tuple[int, str, CollectConfig, EnvConfig]) -> dict:
    index, out_dir, cfg, env_cfg = task
    return collect_episode(index, Path(out_dir), cfg, env_cfg, on_step=_count_step)


def _ray_worker(index: int, out_dir: str, cfg: CollectConfig, env_cfg: EnvConfig) -> dict:
    """A Ray task (``ray::_ray_worker``): one episode, its shard written into ``out_dir``."""
    import torch

    torch.set_num_threads(1)  # one task per CPU, as a local worker process
    return collect_episode(index, Path(out_dir), cfg, env_cfg)


# --- the parent -------------------------------------------------------------------------

def run_config(cfg: CollectConfig, env_cfg: EnvConfig) -> dict:
    """What ``collect.json`` records: every option that changes the data."""
    record: dict[str, Any] = {"policy": cfg.policy, "seed": cfg.seed, "env": to_dict(env_cfg)}
    if cfg.policy == "agent":
        record.update(controller_sha256=_controller_sha256(cfg.controller),
                      action_noise=cfg.action_noise, brownian_share=cfg.brownian_share,
                      **_dims_record(cfg),
                      **({"episode_offset": cfg.episode_offset} if cfg.episode_offset > 0 else {}))
    return record


def _check_config(cfg: CollectConfig, env_cfg: EnvConfig) -> None:
    """Fail on bad options before anything is written (value ranges: ``CollectConfig`` checks
    them itself)."""
    from worldmodels.agents import make_policy
    from worldmodels.envs import make_env
    from worldmodels.worlds import check_controller_world, world_of

    world = world_of(env_cfg.env_id)                   # unknown env id: ValueError listing ids
    if cfg.policy == "agent":
        if not cfg.controller or not Path(cfg.controller).is_file():
            raise ValueError("policy 'agent' needs --collect.controller C.pt; not a file: "
                             f"{cfg.controller!r}")
        agent = _load_agent(str(cfg.controller))  # V, M and their hashes checked before any episode
        check_controller_world(agent.controller.action_map, env_cfg.env_id, cfg.controller)
        if cfg.brownian_share > 0:
            make_policy("brownian", np.random.default_rng(0), world.name)
    else:
        # unknown name: ValueError listing the world's names
        make_policy(cfg.policy, np.random.default_rng(0), world.name)
    make_env(env_cfg).close()


def _adopt_orphans(out: Path, cfg: CollectConfig, entries: dict[int, dict]) -> None:
    """List shards written just before a kill that never reached the manifest."""
    for path in sorted(out.glob("ep_*.npz")):
        match = SHARD_RE.fullmatch(path.name)
        if match is None or int(match.group(1)) in entries:
            continue
        index = int(match.group(1))
        try:
            shard = read_shard(path, "rollout", keys=("reward", "action"))
        except ShardError as e:
            warnings.warn(f"deleting unlisted corrupt shard (it will be redone): {e}", stacklevel=3)
            path.unlink()
            continue
        entry = _manifest_entry(index, cfg, shard["reward"], sha256_file(path),
                                shard["action"].shape[-1])
        append_manifest(out, entry)
        entries[index] = entry


def _prepare_folder(out: Path, cfg: CollectConfig) -> list[int]:
    """Clean up after a kill; return the indices still to collect."""
    remove_stale_temp_files(out)
    entries = {e["index"]: e for e in read_manifest(out)}
    _adopt_orphans(out, cfg, entries)
    todo = []
    for i in range(cfg.episodes):
        if i not in entries:
            todo.append(i)
            continue
        path = out / entries[i]["file"]
        if not path.is_file():
            problem = "missing"
        elif sha256_file(path) != entries[i].get("sha256"):
            problem = "changed or truncated (its sha256 differs from the manifest's)"
        else:
            continue
        # An episode depends only on its seed: collecting it again restores the same data.
        warnings.warn(f"{path} is listed in the manifest but {problem}; collecting it again",
                      stacklevel=3)
        todo.append(i)
    return todo


class _Progress:
    """Episodes on a tqdm bar, env steps/s of this run in its postfix."""

    def __init__(self, total: int, done: int, enabled: bool):
        self.bar = tqdm(total=total, initial=done, unit="ep", desc="collect",
                        disable=not enabled, dynamic_ncols=True)
        self.start = time.monotonic()
        self.steps = 0
        self._shown = 0.0

    def set_steps(self, steps: int, force: bool = False) -> None:
        self.steps = steps
        now = time.monotonic()
        if force or now - self._shown >= 0.5:
            self._shown = now
            self.bar.set_postfix_str(f"{steps} steps, {self.rate():.0f} steps/s", refresh=True)

    def episode_done(self) -> None:
        self.bar.update(1)

    def rate(self) -> float:
        return self.steps / max(time.monotonic() - self.start, 1e-9)

    def close(self) -> None:
        self.bar.close()


def _collect_in_process(todo: list[int], out: Path, cfg: CollectConfig, env_cfg: EnvConfig,
                        progress: _Progress) -> None:
    steps = 0

    def on_step() -> None:
        nonlocal steps
        steps += 1
        progress.set_steps(steps)

    for index in todo:
        append_manifest(out, collect_episode(index, out, cfg, env_cfg, on_step))
        progress.episode_done()


def _collect_in_pool(todo: list[int], out: Path, cfg: CollectConfig, env_cfg: EnvConfig,
                     progress: _Progress) -> None:
    # spawn: fresh interpreters, no inherited pygame/Box2D state or threads.
    ctx = mp.get_context("spawn")
    counter = ctx.Value("q", 0)
    pool = ctx.Pool(min(cfg.workers, len(todo)), initializer=_init_worker,
                    initargs=(counter, os.getpid()))
    try:
        results = pool.imap_unordered(_worker, [(i, str(out), cfg, env_cfg) for i in todo])
        for _ in todo:
            while True:
                try:
                    entry = results.next(timeout=0.5)
                    break
                except mp.TimeoutError:
                    progress.set_steps(counter.value)
            append_manifest(out, entry)
            progress.episode_done()
            progress.set_steps(counter.value)
    finally:
        # Every result is in, or we are stopping: no need to wait for a graceful exit
        # (seconds). A worker killed mid-write leaves a temp file, removed by the caller.
        pool.terminate()
        pool.join()


def _collect_on_ray(todo: list[int], out: Path, cfg: CollectConfig, env_cfg: EnvConfig,
                    progress: _Progress, cluster: ClusterConfig) -> None:
    if cfg.controller:  # the workers may run elsewhere: absolute paths
        cfg = replace(cfg, controller=os.path.abspath(cfg.controller))
    tasks = [(i, str(out.resolve()), cfg, env_cfg) for i in todo]
    for entry in run_tasks(cluster, _ray_worker, tasks, in_flight=cfg.workers):
        append_manifest(out, entry)
        progress.episode_done()
        progress.set_steps(progress.steps + entry["length"])


def collect_rollouts(out_dir: str | Path, cfg: CollectConfig, env_cfg: EnvConfig,
                     progress: bool = True, cluster: ClusterConfig | None = None) -> list[dict]:
    """Collect episodes ``0 .. cfg.episodes - 1`` into ``out_dir``, resuming what is there.

    ``cluster``: where the episodes run (default: worker processes on this machine).
    Returns the manifest entries of those episodes, in index order. Raises
    ``worldmodels.runs.RunConfigMismatch`` when ``out_dir`` holds a collection made with
    other data options, and ValueError for an unknown policy or impossible sizes (and
    ``worldmodels.backends.BackendError`` when the Ray cluster cannot be reached).
    """
    if is_ray(cluster):
        connect(cluster)
    _check_config(cfg, env_cfg)
    out = Path(out_dir)
    start_run(out, run_config(cfg, env_cfg), "collect", filename=RUN_FILE,  # and lock OUT
              section="collect")
    todo = _prepare_folder(out, cfg)
    bar = _Progress(cfg.episodes, cfg.episodes - len(todo), progress)
    # Also when called from Python rather than the command line.
    try:
        with sigterm_as_interrupt():
            if todo:
                if is_ray(cluster):
                    _collect_on_ray(todo, out, cfg, env_cfg, bar, cluster)
                else:
                    one = min(cfg.workers, len(todo)) == 1
                    (_collect_in_process if one else _collect_in_pool)(todo, out, cfg, env_cfg,
                                                                      bar)
                bar.set_steps(bar.steps, force=True)
    finally:
        bar.close()
        remove_stale_temp_files(out)  # what workers killed mid-write left

    all_entries = read_manifest(out)
    requested = [e for e in all_entries if e["index"] < cfg.episodes]
    mark_done(out, {
        "episodes": len(all_entries),
        "steps": sum(e["length"] for e in all_entries),
        "mean_return": float(np.mean([e["return"] for e in all_entries])) if all_entries else 0.0,
        "policy": cfg.policy,
        "env_id": env_cfg.env_id,
    })
    _print_summary(requested, out, new_steps=bar.steps, seconds=time.monotonic() - bar.start,
                   new_episodes=len(todo))
    return requested


def _print_summary(entries: list[dict], out: Path, new_steps: int, seconds: float,
                   new_episodes: int) -> None:
    steps = sum(e["length"] for e in entries)
    mean_return = float(np.mean([e["return"] for e in entries])) if entries else float("nan")
    speed = (f", {new_steps / seconds:.0f} steps/s" if new_steps else "")
    print(f"collect: {len(entries)} episodes ({new_episodes} new{speed}), {steps} steps, "
          f"mean return {mean_return:.1f}; data in {out}", flush=True)


# --- command line -----------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_preset_argument(parser)
    add_config_arguments(parser, "collect")
    add_config_arguments(parser, "env")
    add_config_arguments(parser, "cluster",
                         title="where the episodes run (--cluster.backend ray: Ray tasks writing "
                               "their shards into --out, shared storage on a cluster)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="output folder: ep_*.npz, manifest.jsonl, collect.json "
                             "(rerunning with the same options resumes)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    collect_rollouts(args.out, config_from_args(args, "collect"), config_from_args(args, "env"),
                     progress=not args.no_progress, cluster=config_from_args(args, "cluster"))
    return 0


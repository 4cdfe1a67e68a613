"""Real-env episodes of the World Models agent (V + M + C with given C parameters) or of a
baseline policy, in parallel worker processes: :class:`EpisodeRunner`.

``evaluate`` scores agents with it; ``train-controller`` uses it for real-env ES and for the
periodic evaluation of the CMA mean on the validation tracks. An episode depends only on its
seed (the track, and the agent's z-sampling noise or the policy's draws), never on the number
of workers.
"""

from __future__ import annotations

import multiprocessing as mp
import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np
import torch
from tqdm import tqdm

from .config import EnvConfig
from .utils import exit_with_parent, resolve_device

if TYPE_CHECKING:
    from .backends import RayPool

Task = tuple[np.ndarray | None, int]   # (controller parameters or None for a policy, seed)


def run_episode(env, agent, seed: int) -> tuple[float, int]:
    """One episode on track ``seed``; ``agent`` is already reset. -> (return, length)."""
    obs, _ = env.reset(seed=int(seed))
    total, steps = 0.0, 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
        total += float(reward)
        steps += 1
        if terminated or truncated:
            return total, steps


class _Worker:
    """The env and the agent (or policy) of one process; runs tasks (params, seed)."""

    def __init__(self, spec: dict[str, Any]):
        from worldmodels.envs import make_env
        from worldmodels.worlds import world_of

        self.env = make_env(EnvConfig(**spec["env"]))
        self.world = world_of(spec["env"]["env_id"])
        self.policy = spec["policy"]
        self.agent = None
        if self.policy is None:
            from worldmodels.agents.world_models_agent import WorldModelsAgent
            from worldmodels.controller import Controller
            from worldmodels.mdnrnn import load_mdnrnn
            from worldmodels.vae import load_vae

            vae, _ = load_vae(spec["vae_path"])
            mdnrnn, _ = load_mdnrnn(spec["mdnrnn_path"])
            controller = Controller(z_dim=vae.z_dim, hidden_size=mdnrnn.hidden_size,
                                    action_dim=self.world.action_dim,
                                    action_map=self.world.action_map,
                                    features=spec["features"])
            self.agent = WorldModelsAgent(vae, mdnrnn, controller, device=spec["device"],
                                          use_mu=spec["use_mu"])

    def __call__(self, task: Task) -> tuple[float, int]:
        params, seed = task
        if self.agent is not None:
            self.agent.set_params(params)
            self.agent.reset(seed)
            return run_episode(self.env, self.agent, seed)
        from worldmodels.agents import make_policy

        policy = make_policy(self.policy, np.random.default_rng(seed), self.world.name)
        policy.reset()
        return run_episode(self.env, policy, seed)

    def close(self) -> None:
        self.env.close()


_WORKER: _Worker | None = None


def _init_worker(spec: dict[str, Any], parent: int) -> None:
    global _WORKER
    exit_with_parent(parent)
    torch.set_num_threads(1)  # one process per core; batch-1 inference gains nothing from more
    _WORKER = _Worker(spec)


def _run_task(task: Task) -> tuple[float, int]:
    assert _WORKER is not None
    return _WORKER(task)


class EpisodeRunner:
    """Real-env episodes of the World Models agent with given C parameters, or of a policy.

    ``workers`` <= 1 runs in this process; more start a pool of spawned processes (on first
    use), each loading V and M once. With ``pool`` (``--cluster.backend ray``), the episodes run on
    that pool's Ray actors instead (``worldmodels.backends``), ``workers`` unused. Results come
    back in task order. ``features``: what the agent's C reads (``ControllerConfig.features``);
    each task's parameters are a flat C of that shape.
    """

    def __init__(self, env_cfg: EnvConfig, *, vae_path: str | os.PathLike | None = None,
                 mdnrnn_path: str | os.PathLike | None = None, policy: str | None = None,
                 use_mu: bool = False, device: str = "cpu", workers: int = 1,
                 pool: RayPool | None = None, features: str = "zh"):
        if (policy is None) == (vae_path is None or mdnrnn_path is None):
            raise ValueError("EpisodeRunner needs either V and M paths or a policy name")
        if pool is not None:  # other machines open the files: by absolute path
            vae_path, mdnrnn_path = (os.path.abspath(p) if p else None
                                     for p in (vae_path, mdnrnn_path))
        self.spec = {"env": asdict(env_cfg), "policy": policy, "use_mu": bool(use_mu),
                     "features": str(features),
                     "vae_path": str(vae_path) if vae_path else None,
                     "mdnrnn_path": str(mdnrnn_path) if mdnrnn_path else None,
                     "device": str(resolve_device(str(device)))}  # "auto" resolved here, once
        self.workers = max(1, int(workers))
        self._local: _Worker | None = None
        self._pool: ProcessPoolExecutor | None = None
        self.ray_pool = pool  # owned by the caller, who closes it

    def run(self, tasks: Sequence[Task], progress: tqdm | None = None,
            on_result: Callable[[int, float, int], None] | None = None
            ) -> tuple[np.ndarray, np.ndarray]:
        """-> (returns float64, lengths int64), one per task; ``progress`` advances per episode,
        ``on_result(task_index, return, length)`` is called as each one finishes (in order)."""
        results: list[tuple[float, int]] = []
        threads = torch.get_num_threads()
        try:
            for result in self._imap(list(tasks)):
                if on_result is not None:
                    on_result(len(results), float(result[0]), int(result[1]))
                results.append(result)
                if progress is not None:
                    progress.update(1)
        finally:
            torch.set_num_threads(threads)
        returns = np.array([r for r, _ in results], dtype=np.float64)
        lengths = np.array([n for _, n in results], dtype=np.int64)
        return returns, lengths

    def _imap(self, tasks: list[Task]):
        if self.ray_pool is not None:
            return self.ray_pool.map("episode", self.spec, [(task,) for task in tasks])
        if self.workers == 1 or len(tasks) == 1:
            if self._local is None:
                self._local = _Worker(self.spec)
            # Batch-1 convolutions run several times faster on one thread than on two
            # competing ones; run() restores the thread count.
            torch.set_num_threads(1)
            return map(self._local, tasks)
        if self._pool is None:
            # An executor, not multiprocessing.Pool: a worker that fails to start breaks it
            # with an error, where a Pool would respawn the failing worker forever.
            self._pool = ProcessPoolExecutor(self.workers, mp_context=mp.get_context("spawn"),
                                             initializer=_init_worker,
                                             initargs=(self.spec, os.getpid()))
        return self._checked(self._pool.map(_run_task, tasks))

    @staticmethod
    def _checked(results):
        try:
            yield from results
        except BrokenProcessPool as e:
            raise RuntimeError(
                "a real-env worker process died or failed to start; its error is printed "
                "above (workers are spawned: a script that starts them needs an "
                "`if __name__ == \"__main__\":` guard)") from e

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=not cancel, cancel_futures=cancel)
            self._pool = None
        if self._local is not None:
            self._local.close()
            self._local = None

    def __enter__(self) -> "EpisodeRunner":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close(cancel=exc[0] is not None)  # an error or Ctrl-C: drop queued episodes

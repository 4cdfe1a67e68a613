"""Where the parallel work runs: processes on this machine (``--cluster.backend local``, the
default: ``worldmodels.rollouts`` and ``worldmodels.commands.collect`` start them, and nothing
here is used), or a Ray cluster (``--cluster.backend ray``, this module; the ``[ray]`` extra).

On Ray:

- ``collect``: each episode is a Ray task (one CPU), at most ``workers`` at once, that writes
  its shard into the output folder itself (:func:`run_tasks`); the driver appends the manifest.
- real-env episodes (real-mode ES, the periodic evaluation of the CMA mean, ``evaluate``):
  :class:`RayPool`, ``workers`` actors of one CPU each, spread over the nodes;
  ``EpisodeRunner(pool=...)`` hands each episode to the next idle actor. An actor builds the
  env, V and M of a runner on its first episode and keeps them.
- dream-mode ES: :class:`RayDream` splits the population into one contiguous block per actor,
  each scored by the actor's own :class:`~worldmodels.dream.BatchedDream`. Its common random
  numbers make a block's returns those of the same rows in one big batch.

Same results as local: every episode and every dream depends only on its seed (the seeds
derive from (seed, generation, rollout)), so shards, fitness values and ``results.json`` are
those of a local run of the same config (``tests/test_ray.py``).

Faults: a worker process that dies (killed, out of memory, its node lost) is replaced by Ray:
a task is run again, an actor restarted (it reloads V and M) and its unfinished calls
retried, up to :data:`RETRIES` times each; the results are the same. A killed driver (the
``worldmodels`` command) takes its job's tasks and actors with it; rerunning the command
resumes as with ``local``.

Paths (output folders, checkpoints) are made absolute on the driver and opened by the workers
under the same name: on a cluster of several machines they must be on storage that every node
mounts at the same place, and ``worldmodels`` must be installed on every node.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import uuid
from typing import Any, Callable, Iterator, Sequence, TypeGuard

import numpy as np
import torch

from .config import ClusterConfig

RETRIES = 5
"""How many times a task is rerun, or an actor restarted, after its process died."""

INSTALL_HINT = 'pip install -e ".[ray]"'
_END = object()
_joined: str | None = None  # the address this process joined ("" for Ray's default)


class BackendError(ValueError):
    """``--cluster.backend ray`` cannot run: Ray is not installed, or the cluster cannot be
    reached."""


def is_ray(cluster: ClusterConfig | None) -> TypeGuard[ClusterConfig]:
    """Backend ``ray`` (None: local)."""
    return cluster is not None and cluster.backend == "ray"


def connect(cluster: ClusterConfig) -> Any:
    """Join the Ray cluster of ``cluster`` (once per process) and return the ``ray`` module."""
    try:
        import ray
    except ImportError:
        raise BackendError("--cluster.backend ray needs Ray, which is not installed: "
                           f"{INSTALL_HINT}") from None
    global _joined
    address = cluster.ray_address or os.environ.get("RAY_ADDRESS") or None
    origin = "--cluster.ray-address" if cluster.ray_address else "RAY_ADDRESS"
    if ray.is_initialized():
        if _joined is not None and address and address != _joined:
            raise BackendError(f"this process is connected to the Ray cluster at "
                               f"{_joined or 'auto'}; it cannot also join {address}")
        return ray
    if address is not None and address not in ("auto", "local"):
        _check_reachable(address, origin)
    try:
        ray.init(address=address, logging_level=logging.WARNING)
    except ConnectionError as e:
        raise BackendError(f"cannot join the Ray cluster at {address or 'auto'}: {e}") from None
    _joined = address or ""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    print(f"ray: {len(alive)} node(s), {ray.cluster_resources().get('CPU', 0):.0f} CPUs "
          f"(cluster at {address or 'auto'})", flush=True)
    return ray


def _check_reachable(address: str, origin: str) -> None:
    """Fail at once, naming ``address``, where Ray would keep retrying for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise BackendError(f"{origin} {address!r} is not HOST:PORT (e.g. 10.0.0.1:6379, as "
                           "printed by `ray start --head`)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=5).close()
    except OSError as e:
        raise BackendError(f"cannot reach a Ray cluster at {address} ({origin}): "
                           f"{e.strerror or e}; start one with `ray start --head --port "
                           f"{port}` or give the address it prints") from None


@contextlib.contextmanager
def _task_errors(ray: Any) -> Iterator[None]:
    """Raise a task's own error (a ValueError stays a ValueError, with its message) instead
    of Ray's wrapper around it."""
    try:
        yield
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from e
        raise


def run_tasks(cluster: ClusterConfig, fn: Callable[..., Any], args: Sequence[tuple],
              in_flight: int) -> Iterator[Any]:
    """``fn(*a)`` for each ``a`` of ``args`` as Ray tasks of one CPU, at most ``in_flight``
    at once; yields the results as they finish. ``fn`` must be importable on the workers (a
    module-level function of ``worldmodels``)."""
    ray = connect(cluster)
    remote = ray.remote(num_cpus=1, max_retries=RETRIES, scheduling_strategy="SPREAD")(fn)
    todo = list(reversed(args))
    running: list[Any] = []
    try:
        while todo or running:
            while todo and len(running) < max(1, in_flight):
                running.append(remote.remote(*todo.pop()))
            ready, running = ray.wait(running, num_returns=1)
            with _task_errors(ray):
                result = ray.get(ready[0])
            yield result
    finally:
        for ref in running:  # an error or Ctrl-C: stop what is still queued or running
            ray.cancel(ref, force=True)


class RayWorker:
    """A Ray actor (``ray::RayWorker``): the real-env workers and dreams it has been asked
    for, each built on its first call from the spec that comes with every call (by reference
    to Ray's object store), so that a restarted actor rebuilds them from the call it retries."""

    def __init__(self) -> None:
        torch.set_num_threads(1)  # one actor per CPU, as a local worker process
        self._held: dict[str, Any] = {}

    def _get(self, key: str, kind: str, spec: dict[str, Any]) -> Any:
        if key not in self._held:
            if kind == "episode":
                from .rollouts import _Worker

                self._held[key] = _Worker(spec)
            else:
                from .dream import BatchedDream

                self._held[key] = BatchedDream.from_checkpoint(
                    spec["mdnrnn_path"], spec["device"], vae_path=spec["vae_path"], **spec["kw"])
        return self._held[key]

    # Arrays arrive read-only (Ray maps them from its object store): copies for torch.
    def episode(self, key: str, spec: dict[str, Any], task: tuple) -> tuple[float, int]:
        params, seed = task
        worker = self._get(key, "episode", spec)
        return worker((None if params is None else np.array(params), seed))

    def dream(self, key: str, spec: dict[str, Any], params: np.ndarray, n_rollouts: int,
              seed: int) -> np.ndarray:
        dream = self._get(key, "dream", spec)
        return dream.evaluate(np.array(params), n_rollouts, seed).numpy()


class RayPool:
    """``workers`` :class:`RayWorker` actors of one CPU (and ``gpus`` GPUs) each, spread over
    the nodes, restarted when their process dies. At most as many as the cluster has CPUs:
    an actor that cannot be placed would hold back the work handed to it forever."""

    def __init__(self, cluster: ClusterConfig, workers: int, gpus: float = 0.0):
        self.ray = ray = connect(cluster)
        resources = ray.cluster_resources()
        fits = int(resources.get("CPU", 0))
        if gpus > 0:
            fits = min(fits, int(resources.get("GPU", 0) / gpus))
        if fits < 1:
            raise BackendError(f"the Ray cluster has no room for one worker of 1 CPU and {gpus} "
                               f"GPU (it has {resources.get('CPU', 0)} CPUs, "
                               f"{resources.get('GPU', 0)} GPUs)")
        if workers > fits:
            print(f"ray: {workers} workers asked for, the cluster holds {fits}: using {fits}",
                  flush=True)
        actor = ray.remote(num_cpus=1, num_gpus=gpus, max_restarts=RETRIES,
                           max_task_retries=RETRIES, scheduling_strategy="SPREAD")(RayWorker)
        self.actors = [actor.remote() for _ in range(min(max(1, workers), fits))]
        self._pool = ray.util.ActorPool(self.actors)
        self._specs: dict[int, tuple[dict[str, Any], str, Any]] = {}  # id -> spec, key, ref

    @property
    def size(self) -> int:
        return len(self.actors)

    def map(self, method: str, spec: dict[str, Any], items: Sequence[tuple]) -> Iterator[Any]:
        """``actor.method(key, spec, *item)`` for each item, each on the next idle actor, where
        the actor builds what ``spec`` describes once (under ``key``); results in the order of
        ``items``."""
        if id(spec) not in self._specs:  # the spec is kept, so its id stays its own
            self._specs[id(spec)] = (spec, uuid.uuid4().hex, self.ray.put(spec))
        _, key, ref = self._specs[id(spec)]
        results = self._pool.map(lambda a, item: getattr(a, method).remote(key, ref, *item),
                                 list(items))
        while True:
            with _task_errors(self.ray):
                result = next(results, _END)
            if result is _END:
                return
            yield result

    def close(self) -> None:
        for a in self.actors:
            self.ray.kill(a)
        self.actors = []


def open_pool(cluster: ClusterConfig | None, workers: int, gpus: float = 0.0) -> RayPool | None:
    """A :class:`RayPool` for backend ``ray``; None (local worker processes) for ``local``."""
    return RayPool(cluster, workers, gpus) if is_ray(cluster) else None


class RayDream:
    """:meth:`BatchedDream.evaluate <worldmodels.dream.BatchedDream.evaluate>` over a pool's
    actors: P controllers split into one contiguous block per actor. The noise of rollout r
    depends only on (seed, r, t) (common random numbers), so the blocks' returns, stacked,
    are those of the whole population in one batch."""

    def __init__(self, pool: RayPool, mdnrnn_path: str | os.PathLike, device: str,
                 vae_path: str | os.PathLike | None = None, **kw: Any):
        self.pool = pool
        self.spec = {"mdnrnn_path": os.path.abspath(mdnrnn_path), "device": str(device),
                     "vae_path": os.path.abspath(vae_path) if vae_path else None, "kw": kw}

    def evaluate(self, params: torch.Tensor | np.ndarray, n_rollouts: int,
                 seed: int) -> torch.Tensor:
        """P x n_params -> P x n_rollouts returns (float32, CPU), as ``BatchedDream``."""
        params = np.asarray(params)
        blocks = np.array_split(params, min(self.pool.size, len(params)))
        returns = self.pool.map("dream", self.spec, [(b, int(n_rollouts), int(seed))
                                                     for b in blocks])
        return torch.from_numpy(np.concatenate(list(returns)))

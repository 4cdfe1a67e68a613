"""Measure the throughput of every stage, side by side in one run; print a table, write JSON.

Measured: env steps/s of official CarRacing-v3 vs worldmodels/CarRacingFast-v3 (one process,
and one process per core), rollout collection steps/s, VAE train and encode img/s, MDN-RNN
train timesteps/s, batched dream candidate-steps/s at B=64 and B=1024 (and, side by side, the
straightforward dream loop it replaces, with their ratio), CMA-ES ms per
generation, evaluation episodes per minute, and Take Cover's env and collection steps/s
(``doom``, with the ``[doom]`` extra). Models are the paper's sizes with random
weights (speed does not depend on training). ``--quick`` finishes in about a minute.

``--cluster.backend ray`` (with ``--cluster.ray-address``, or Ray's default cluster) measures the
Ray backend instead: collection episodes/s and real-env ES seconds per generation with 1 and 2
workers, on the cluster and locally; from them Ray's scaling efficiency from 1 to 2 workers and its
overhead against local at equal workers (:func:`bench_ray`).

Benchmarks are not tests: the test suite checks correctness; this reports speed.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import multiprocessing as mp
import os
import platform
import statistics
import tempfile
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .. import __version__
from ..cli import CLIError, add_config_arguments, add_device_argument, config_from_args
from ..config import ClusterConfig, CollectConfig, EnvConfig
from ..utils import atomic_write_json, resolve_device

OFFICIAL, FAST = "CarRacing-v3", "worldmodels/CarRacingFast-v3"
DOOM = "worldmodels/DoomTakeCover-v0"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="short measurements (about a minute)")
    parser.add_argument("--out", type=Path, default=Path("bench.json"),
                        help="JSON file for the results (default: bench.json)")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=sorted(BENCHES),
                        help=f"run only these benchmarks: {', '.join(sorted(BENCHES))}")
    add_device_argument(parser)
    add_config_arguments(parser, "cluster",
                         title="--cluster.backend ray: measure the Ray backend's scaling (1 vs 2 workers) "
                               "and its overhead against local, instead of the stages")


def timed(fn: Callable[[], Any], min_seconds: float) -> tuple[int, float]:
    """Call ``fn`` until ``min_seconds`` have passed (after one warm-up call): (calls, seconds)."""
    fn()
    n, start = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_seconds:
            return n, elapsed


# --- environments -----------------------------------------------------------------------------

def _env_steps(env_id: str, steps: int, seed: int = 0) -> float:
    """Env steps/s of one process driving with a fixed seeded action sequence."""
    from worldmodels.config import EnvConfig
    from worldmodels.envs import make_env

    env = make_env(EnvConfig(env_id=env_id))
    rng = np.random.default_rng(seed)
    if env.action_space.shape == (1,):  # Take Cover: left / stay / right
        actions = rng.integers(-1, 2, (steps, 1)).astype(np.float32)
    else:
        actions = np.clip(rng.normal([0, 0.6, 0], [0.5, 0.3, 0.1], (steps, 3)), [-1, 0, 0], 1)
    env.reset(seed=seed)
    start = time.perf_counter()
    for a in actions:
        _, _, terminated, truncated, _ = env.step(a.astype(np.float32))
        if terminated or truncated:
            env.reset(seed=seed)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def _env_steps_parallel(env_id: str, steps: int, workers: int) -> float:
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers) as pool:
        # Warm the workers up (imports, first reset) before timing.
        pool.starmap(_env_steps, [(env_id, 10, i) for i in range(workers)])
        start = time.perf_counter()
        pool.starmap(_env_steps, [(env_id, steps, i) for i in range(workers)])
        elapsed = time.perf_counter() - start
    return steps * workers / elapsed


def bench_env(quick: bool, device: torch.device) -> dict[str, float]:
    steps = 300 if quick else 2000
    cores = os.cpu_count() or 1
    out = {}
    for label, env_id in (("official", OFFICIAL), ("fast", FAST)):
        out[f"env_steps_per_s_{label}_1proc"] = _env_steps(env_id, steps)
        out[f"env_steps_per_s_{label}_{cores}proc"] = _env_steps_parallel(env_id, steps, cores)
    out["env_speedup_1proc"] = out["env_steps_per_s_fast_1proc"] / out["env_steps_per_s_official_1proc"]
    return out


def bench_collect(quick: bool, device: torch.device) -> dict[str, float]:

    cores = os.cpu_count() or 1
    episodes, max_steps = (cores, 200) if quick else (2 * cores, 1000)
    cfg = CollectConfig(episodes=episodes, workers=cores)
    return {"collect_steps_per_s": _collect_steps_per_s(cfg, EnvConfig(env_id=FAST,
                                                                       max_steps=max_steps))}


def _collect_steps_per_s(cfg: CollectConfig, env_cfg: EnvConfig) -> float:
    """Env steps/s of ``collect`` (frames processed, shards compressed and written)."""
    from .collect import collect_rollouts

    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        entries = collect_rollouts(Path(tmp) / "rollouts", cfg, env_cfg, progress=False)
        elapsed = time.perf_counter() - start
    return sum(e["length"] for e in entries) / elapsed


def bench_doom(quick: bool, device: torch.device) -> dict[str, float]:
    """Take Cover: env steps/s (one process, one per core) and collection steps/s of the
    random policy through ``collect`` (frames processed, shards compressed and written)."""
    try:
        import vizdoom  # noqa: F401
    except ImportError:
        print("doom: skipped, vizdoom is not installed (pip install -e \".[doom]\")")
        return {}

    cores = os.cpu_count() or 1
    steps = 500 if quick else 5000
    out = {"doom_env_steps_per_s_1proc": _env_steps(DOOM, steps),
           f"doom_env_steps_per_s_{cores}proc": _env_steps_parallel(DOOM, steps, cores)}
    episodes = 2 * cores if quick else 20 * cores
    cfg = CollectConfig(episodes=episodes, workers=cores, policy="random")
    out["doom_collect_steps_per_s"] = _collect_steps_per_s(cfg, EnvConfig(env_id=DOOM, max_steps=2100))
    return out


# --- V -------------------------------------------------------------------------------------------

def bench_vae(quick: bool, device: torch.device) -> dict[str, float]:
    from ..vae import ConvVAE, frames_to_tensor, vae_loss

    torch.manual_seed(0)
    vae = ConvVAE().to(device)
    opt = torch.optim.Adam(vae.parameters(), lr=1e-4)
    frames = torch.randint(0, 256, (100, 64, 64, 3), dtype=torch.uint8, device=device)
    seconds = 3.0 if quick else 10.0

    def train_step():
        x = frames_to_tensor(frames)
        loss = vae_loss(vae(x), x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)

    n, t = timed(train_step, seconds)
    out = {"vae_train_img_per_s": 100 * n / t}
    vae.eval()
    big = torch.randint(0, 256, (1000, 64, 64, 3), dtype=torch.uint8, device=device)

    def encode():
        with torch.inference_mode():
            vae.encode(frames_to_tensor(big))
        _sync(device)

    n, t = timed(encode, seconds)
    out["vae_encode_img_per_s_model"] = 1000 * n / t
    out["encode_img_per_s_end_to_end"] = _encode_end_to_end(vae, quick, device)
    return out


def _encode_end_to_end(vae, quick: bool, device: torch.device) -> float:
    """`worldmodels encode` on synthetic 1000-frame rollouts: decompress, encode, write."""
    from ..checkpoint import save_checkpoint
    from ..config import VAEConfig
    from ..data import append_manifest, shard_name, write_shard
    from .encode import encode_rollouts

    episodes = 3 if quick else 10
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rollouts"
        data.mkdir()
        for i in range(episodes):
            T = 1000
            # Smooth random frames compress like real ones rather than like pure noise.
            base = rng.integers(0, 256, (T, 8, 8, 3), dtype=np.uint8)
            obs = base.repeat(8, axis=1).repeat(8, axis=2)
            arrays: dict[str, np.ndarray] = {
                "obs": obs, "action": rng.standard_normal((T, 3)).astype(np.float32),
                "reward": np.zeros(T, np.float32), "terminated": np.zeros(T, bool),
                "truncated": np.zeros(T, bool)}
            sha = write_shard(data / shard_name(i), arrays)
            append_manifest(data, {"index": i, "file": shard_name(i), "seed": i, "length": T,
                                   "return": 0.0, "sha256": sha})
        vae_path = save_checkpoint(Path(tmp) / "vae.pt", kind="vae", config=asdict(VAEConfig()),
                                   model={k: v.cpu() for k, v in vae.state_dict().items()})
        start = time.perf_counter()
        encode_rollouts(data, vae_path, Path(tmp) / "latents", device=str(device), progress=False)
        return episodes * 1000 / (time.perf_counter() - start)


# --- M -------------------------------------------------------------------------------------------

def bench_rnn(quick: bool, device: torch.device) -> dict[str, float]:
    from ..mdnrnn import MDNRNN, mdnrnn_loss

    torch.manual_seed(0)
    model = MDNRNN().to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    B, T = 100, (200 if quick else 999)
    z = torch.randn(B, T + 1, 32, device=device)
    a = torch.rand(B, T, 3, device=device)
    r = torch.randn(B, T, device=device)
    d = torch.zeros(B, T, device=device)

    def step():
        out, _ = model(z[:, :-1], a)
        loss = mdnrnn_loss(out, z[:, 1:], r, d).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        _sync(device)

    n, t = timed(step, 3.0 if quick else 10.0)
    return {f"rnn_train_timesteps_per_s_seq{T}": B * T * n / t}


# --- C -------------------------------------------------------------------------------------------

def bench_dream(quick: bool, device: torch.device) -> dict[str, float]:
    from ..dream import BatchedDream
    from ..mdnrnn import MDNRNN

    torch.manual_seed(0)
    model = MDNRNN().to(device).eval()
    init = torch.randn(100, 32)
    dream = BatchedDream(model, init, torch.full((100, 32), -2.0), temperature=1.0,
                         max_steps=100 if quick else 1000, done_threshold=1.0, device=device)
    out = {}
    for batch in (64, 1024):
        params = 0.1 * torch.randn(batch, dream.n_params)
        n, t = timed(lambda: _sync(device, dream.evaluate(params, 1, seed=0)),
                     2.0 if quick else 8.0)
        out[f"dream_steps_per_s_B{batch}"] = batch * dream.max_steps * n / t
        n, t = timed(lambda: _sync(device, _reference_dream(model, params.to(device),
                                                            init.to(device), dream.max_steps)),
                     2.0 if quick else 8.0)
        out[f"dream_reference_steps_per_s_B{batch}"] = batch * dream.max_steps * n / t
        out[f"dream_speedup_B{batch}"] = (out[f"dream_steps_per_s_B{batch}"]
                                          / out[f"dream_reference_steps_per_s_B{batch}"])
    return out


def _reference_dream(model, params: torch.Tensor, init: torch.Tensor, steps: int) -> torch.Tensor:
    """The straightforward dream that :class:`BatchedDream` replaces, for the speed ratio:
    per step, B controllers act (bmm), then :func:`~worldmodels.dream.reference_dream` steps
    (M's fused LSTM cell and heads, ``sample_z``'s Gumbel-max, the done head thresholded)."""
    from ..controller import act_batched, unflatten
    from ..dream import reference_dream

    B = params.shape[0]
    w, b = unflatten(params, model.z_dim + model.hidden_size, model.action_dim)
    gen = torch.Generator(device=params.device).manual_seed(0)
    z = init[torch.arange(B, device=params.device) % init.shape[0]]
    state = model.initial_state(B)
    ret = torch.zeros(B, device=params.device)
    alive = torch.ones(B, device=params.device)
    with torch.inference_mode():
        for _ in range(steps):
            a = act_batched(w, b, torch.cat([z, state[0][0]], dim=-1))
            z, _, state, reward, done = reference_dream(model, z, a, state, 1.0, gen)
            assert reward is not None and done is not None  # the paper's M has both heads
            ret += reward * alive
            alive = alive * ~done
    return ret


def bench_es(quick: bool, device: torch.device) -> dict[str, float]:
    from ..es import CMAES

    es = CMAES(n_params=867, sigma0=0.1, popsize=64, seed=0)
    rng = np.random.default_rng(0)

    def generation():
        es.ask()
        es.tell(rng.standard_normal(64))

    n, t = timed(generation, 2.0 if quick else 8.0)
    return {"cmaes_ms_per_generation": 1000 * t / n}


def bench_eval(quick: bool, device: torch.device) -> dict[str, float]:
    """Evaluation of a (random-weight) World Models agent on the fast env, all cores."""
    from .evaluate import evaluate_agent

    cores = os.cpu_count() or 1
    steps = 200 if quick else 1000
    with tempfile.TemporaryDirectory() as tmp:
        ctrl = _random_agent_checkpoints(Path(tmp))
        start = time.perf_counter()
        result = evaluate_agent(ctrl, episodes=cores, workers=cores,
                                env_cfg=EnvConfig(env_id=FAST, max_steps=steps), progress=False)
        elapsed = time.perf_counter() - start
    steps_done = sum(result["lengths"]) if "lengths" in result else cores * steps
    # Episodes of 1000 steps per minute at the measured step rate.
    return {"eval_episodes_per_min": 60 * steps_done / elapsed / 1000}


def _random_agent_checkpoints(folder: Path) -> Path:
    from ..checkpoint import checkpoint_sha256, save_checkpoint
    from ..config import ControllerConfig, MDNRNNConfig, VAEConfig
    from ..controller import Controller
    from ..mdnrnn import MDNRNN
    from ..vae import ConvVAE

    torch.manual_seed(0)
    vae = save_checkpoint(folder / "vae.pt", kind="vae", config=asdict(VAEConfig()),
                          model=ConvVAE().state_dict())
    parents = {"vae_sha256": checkpoint_sha256(vae)}
    rnn = save_checkpoint(folder / "mdnrnn.pt", kind="mdnrnn", config=asdict(MDNRNNConfig()),
                          model=MDNRNN().state_dict(), parents=parents,
                          extra={"vae_path": str(vae), "initial_mu": torch.zeros(1, 32),
                                 "initial_logvar": torch.zeros(1, 32)})
    parents["mdnrnn_sha256"] = checkpoint_sha256(rnn)
    controller = Controller()
    with torch.no_grad():
        controller.fc.bias.copy_(torch.tensor([0.0, 0.5, -1.0]))  # drive forward
    return save_checkpoint(folder / "controller.pt", kind="controller",
                           config=asdict(ControllerConfig()), model=controller.state_dict(),
                           parents=parents, extra={"vae_path": str(vae), "mdnrnn_path": str(rnn),
                                                   "z_dim": 32, "hidden_size": 256})


def _sync(device: torch.device, result: object = None) -> object:
    """``result``, once the device has finished the work that made it (for timing)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    return result


# --- the Ray backend ---------------------------------------------------------------------------

RAY_WORKERS = (1, 2)


def bench_ray(quick: bool, cluster: ClusterConfig) -> dict[str, float]:
    """The Ray backend against local, with 1 and 2 workers (paper-size random V and M, fast env).

    - ``collect_steps_per_s_{local|ray}_w{n}``: env steps per second of brownian episodes of
      up to 1000 steps (quick: 200), at the margin: (steps of a 6n-episode run - those of an
      n-episode run) / (the difference of their times), so that starting the workers (spawned
      processes, Ray's task workers) cancels out; steps, not episodes, because a brownian car
      that leaves the playfield ends its episode early;
    - ``es_s_per_generation_{local|ray}_w{n}``: real-env CMA-ES, population 16 x 1 track of 200
      steps (quick: 8 x 100), ``time/generation_s`` of generations 2 and 3 (the first one
      starts the workers), their mean;
    - ``{collect|es}_scaling_{backend}``: rate with 2 workers / (2 x rate with 1), 1 = perfect;
    - ``{collect|es}_ray_overhead_w{n}``: Ray's time / local's time - 1 at n workers.
    """
    from ..backends import connect

    ray = connect(cluster)
    out: dict[str, float] = {"ray_cluster_cpus": ray.cluster_resources().get("CPU", 0.0)}
    with tempfile.TemporaryDirectory() as tmp:
        _random_agent_checkpoints(Path(tmp))
        for backend in ("local", "ray"):
            on = replace(cluster, backend=backend)
            for n in RAY_WORKERS:
                print(f"  {backend}, {n} worker(s) ...", flush=True)
                out[f"collect_steps_per_s_{backend}_w{n}"] = _collect_rate(
                    Path(tmp), on, n, 200 if quick else 1000)
                out[f"es_s_per_generation_{backend}_w{n}"] = _es_generation_s(
                    Path(tmp), on, n, *((8, 100) if quick else (16, 200)))
    one, two = RAY_WORKERS
    for backend in ("local", "ray"):
        out[f"collect_scaling_{backend}"] = (out[f"collect_steps_per_s_{backend}_w{two}"]
                                             / (two * out[f"collect_steps_per_s_{backend}_w{one}"]))
        out[f"es_scaling_{backend}"] = (out[f"es_s_per_generation_{backend}_w{one}"]
                                        / (two * out[f"es_s_per_generation_{backend}_w{two}"]))
    for n in RAY_WORKERS:
        out[f"collect_ray_overhead_w{n}"] = (out[f"collect_steps_per_s_local_w{n}"]
                                             / out[f"collect_steps_per_s_ray_w{n}"] - 1)
        out[f"es_ray_overhead_w{n}"] = (out[f"es_s_per_generation_ray_w{n}"]
                                        / out[f"es_s_per_generation_local_w{n}"] - 1)
    return out


def _collect_rate(folder: Path, cluster: ClusterConfig, workers: int, steps: int) -> float:
    """Marginal collection env steps/s with ``workers`` workers (see :func:`bench_ray`)."""
    from .collect import collect_rollouts

    def run(episodes: int, max_steps: int, name: str, workers: int = workers) -> tuple[int, float]:
        """(env steps, seconds) of one collection."""
        cfg = CollectConfig(episodes=episodes, workers=workers)
        start = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            entries = collect_rollouts(folder / f"{cluster.backend}{workers}_{name}", cfg,
                                       EnvConfig(env_id=FAST, max_steps=max_steps),
                                       progress=False, cluster=cluster)
        return sum(e["length"] for e in entries), time.perf_counter() - start

    # Imports, and a Ray task worker on every node (tasks are spread over them), before timing.
    run(2 * max(RAY_WORKERS), 20, "warmup", workers=max(RAY_WORKERS))
    (short_steps, short_s), (long_steps, long_s) = (run(workers, steps, "short"),
                                                    run(6 * workers, steps, "long"))
    return (long_steps - short_steps) / (long_s - short_s)


def _es_generation_s(folder: Path, cluster: ClusterConfig, workers: int, popsize: int,
                     steps: int) -> float:
    """Seconds per generation of real-env CMA-ES with ``workers`` workers (see :func:`bench_ray`)."""
    from ..config import ControllerConfig
    from .train_controller import train_controller

    cfg = ControllerConfig(mode="real", popsize=popsize, rollouts_per_candidate=1, generations=3,
                           real_max_steps=steps, eval_every=0, workers=workers)
    out = folder / f"es_{cluster.backend}{workers}"
    with contextlib.redirect_stdout(io.StringIO()):
        train_controller(folder / "vae.pt", folder / "mdnrnn.pt", out, cfg,
                         EnvConfig(env_id=FAST), device="cpu", progress=False, cluster=cluster)
    with open(out / "tb" / "scalars.csv") as f:
        times = {int(r["step"]): float(r["value"]) for r in csv.DictReader(f)
                 if r["tag"] == "time/generation_s"}
    return statistics.mean(times[g] for g in (2, 3))


BENCHES: dict[str, Callable[[bool, torch.device], dict[str, float]]] = {
    "env": bench_env, "collect": bench_collect, "vae": bench_vae, "rnn": bench_rnn,
    "dream": bench_dream, "es": bench_es, "eval": bench_eval, "doom": bench_doom,
}


def machine() -> dict[str, Any]:
    info = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "worldmodels": __version__}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def run_benchmarks(names: list[str], quick: bool, device: torch.device) -> dict[str, Any]:
    results: dict[str, float] = {}
    for name in names:
        print(f"measuring {name} ...", flush=True)
        results.update(BENCHES[name](quick, device))
    return {"machine": machine(), "device": str(device), "quick": quick, "results": results}


def format_table(report: dict[str, Any]) -> str:
    rows = [(k, f"{v:,.1f}" if v >= 10 else f"{v:.2f}") for k, v in report["results"].items()]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'measurement':<{width}}  value", "-" * (width + 14)]
    lines += [f"{k:<{width}}  {v:>12}" for k, v in rows]
    m = report["machine"]
    lines.append(f"\n{m['cpu_count']} cores, {m['processor']}, torch {m['torch']} "
                 f"({m['torch_threads']} threads), device {report['device']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    device = resolve_device(args.device)
    cluster = config_from_args(args, "cluster")
    if cluster.backend == "ray":
        if args.only:
            raise CLIError("--only picks the stage benchmarks; --cluster.backend ray measures "
                           "the Ray backend alone")
        load = os.getloadavg()
        print("measuring ray ...", flush=True)
        results = bench_ray(args.quick, cluster)
        report = {"machine": machine(), "device": "cpu", "quick": args.quick,
                  "load_average_before_after": [load[0], os.getloadavg()[0]], "results": results}
    else:
        report = run_benchmarks(args.only or list(BENCHES), args.quick, device)
    print(format_table(report))
    atomic_write_json(args.out, report)
    print(f"written: {args.out}")
    return 0


__all__ = ["run_benchmarks", "format_table", "BENCHES"]

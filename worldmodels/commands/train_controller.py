"""Train C, the linear controller, with CMA-ES: in the dream of M (default) or in the real env.

- ``--controller.mode dream``: every candidate x rollout runs at once in the batched dream of M
  (``worldmodels.dream.BatchedDream``) at temperature tau; generation g's dreams come from
  seed ``derive_seed(seed, g)``, shared by all candidates (common random numbers). The CMA
  mean is scored in the same dreams and logged as ``dream/return_mean``.
- ``--controller.mode real``: candidates drive the real env (``--env.env-id``) in parallel
  worker processes; rollout r of generation g runs on training track ``derive_seed(seed, g, r)``
  for every candidate (cut at ``real_max_steps`` when that is set). This is the paper's protocol for
  CarRacing; the ``laptop`` preset uses it.

Fitness is the mean return over ``rollouts_per_candidate`` rollouts. Every ``eval_every``
generations from ``eval_start`` on (and after the last) the CMA mean drives the real env on
the validation tracks (``worldmodels.seeds.validation_seeds``); the best by that score is kept as
``OUT/controller_best.pt``; ``--controller.patience N`` stops the training after N evaluations
in a row without a new best (in a dream C learns M's exploits once it has learned to drive:
the validation peaks, then falls while the dream return rises; the detector flags that, too).
``OUT/controller.pt`` (the latest CMA mean, with the ES history)
is written every generation, and rerunning the same command resumes from it: the ES is
rebuilt by replaying its history (``worldmodels.es``) and every random number depends only
on (seed, generation), so a resumed run ends exactly where an uninterrupted one would (CPU).

``--cluster.backend ray`` (``worldmodels.backends``) runs the real-env episodes on
``--controller.workers`` Ray actors that load V and M once, and splits a dream-mode population
into one block per actor, each actor holding its own batched dream: the same fitness values and
checkpoints as ``local``, a killed worker replaced and its episodes or block run again. The backend may
change between reruns.

TensorBoard: ``es/fitness_best|mean|worst``, ``es/sigma``, ``dream/return_mean``,
``eval/real_return_mean|std``, ``time/generation_s``, ``time/eval_s``; hparams at the end.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from tqdm import tqdm

from .. import runs
from ..backends import RayDream, connect, is_ray, open_pool
from ..checkpoint import check_parent, checkpoint_sha256, load_checkpoint, relative_parents, save_checkpoint
from ..cli import (
    add_config_arguments,
    add_device_argument,
    add_preset_argument,
    config_from_args,
)
from ..config import ClusterConfig, ControllerConfig, EnvConfig
from ..controller import Controller
from ..es import CMAES
from ..logger import Logger
from ..mdnrnn import load_mdnrnn
from ..rollouts import EpisodeRunner
from ..seeds import derive_seed, validation_seeds
from ..utils import resolve_device
from ..vae import load_vae
from ..worlds import CARRACING, world_of

if TYPE_CHECKING:
    from ..dream import BatchedDream

BRANCH_STARTS = 1000  # states of real data the branched dreams start from


def train_controller(vae_path: str | os.PathLike, mdnrnn_path: str | os.PathLike,
                     out_dir: str | os.PathLike, cfg: ControllerConfig, env_cfg: EnvConfig,
                     device: str = "auto", tb_dir: str | os.PathLike | None = None,
                     progress: bool = True, init: str | os.PathLike | None = None,
                     cluster: ClusterConfig | None = None,
                     branch_data: list[Path] | None = None) -> Path:
    """Run (or resume) CMA-ES for C; returns the controller to evaluate.

    ``init``: a controller checkpoint whose parameters are CMA-ES's starting mean (warm
    start; ``iterate`` passes the previous round's C when ``iterate.warm_start``), else zeros.
    ``cluster``: where episodes and dreams run (default: this machine).
    ``branch_data``: latent folders whose episodes the dreams start from when
    ``cfg.dream_start == "branch"`` (``worldmodels.dream.branch_starts``; the newest last).

    That is ``OUT/controller_best.pt`` when a real evaluation ran (``eval_every`` > 0),
    else ``OUT/controller.pt``. A finished folder is not redone.
    """
    if is_ray(cluster):
        connect(cluster)  # an unreachable cluster is an error before anything is written
    out = Path(out_dir)
    latest, best = out / runs.CONTROLLER_LATEST, out / runs.CONTROLLER_BEST
    vae_path, mdnrnn_path = Path(vae_path).resolve(), Path(mdnrnn_path).resolve()
    for path in (vae_path, mdnrnn_path):
        if not path.is_file():
            raise FileNotFoundError(f"checkpoint not found: {path}")
    parents = {"vae_sha256": checkpoint_sha256(vae_path),
               "mdnrnn_sha256": checkpoint_sha256(mdnrnn_path)}
    run_record = {"controller": asdict(cfg), "env": asdict(env_cfg), **parents}
    if cfg.mode == "dream" and cfg.dream_start == "branch":
        if not branch_data:
            raise ValueError("controller.dream_start 'branch' (--controller.dream-start) needs "
                             "the latent folders to start the dreams from (--branch-data)")
        run_record["branch_data"] = runs.input_folders(branch_data, out, "branch_data")
    if init is not None:
        run_record["init_sha256"] = checkpoint_sha256(init)
    runs.start_run(out, run_record, stage="train-controller")
    if runs.is_done(out):
        runs.print_already_finished("train-controller", out, f"see {out / runs.DONE}")
        return best if best.exists() else latest
    vae, _ = load_vae(vae_path)
    mdnrnn, _ = load_mdnrnn(mdnrnn_path, vae_path=vae_path)  # refuses an M of another V
    if vae.z_dim != mdnrnn.z_dim:
        raise ValueError(f"V has z_dim {vae.z_dim} but M expects {mdnrnn.z_dim}")
    z_dim, hidden_size = mdnrnn.z_dim, mdnrnn.hidden_size
    world = world_of(env_cfg.env_id)
    if mdnrnn.action_dim != world.action_dim:
        raise ValueError(f"{mdnrnn_path} reads {mdnrnn.action_dim} action inputs, but "
                         f"{env_cfg.env_id} has {world.action_dim}")
    starts = None
    if cfg.mode == "dream" and cfg.dream_start == "branch":
        from ..dream import branch_starts

        assert branch_data  # checked above
        starts = branch_starts(mdnrnn, branch_data, BRANCH_STARTS, seed=cfg.seed)
    del vae, mdnrnn

    controller = Controller(z_dim=z_dim, hidden_size=hidden_size, action_dim=world.action_dim,
                            action_map=world.action_map, features=cfg.features)
    x0 = None
    if init is not None:
        from worldmodels.agents.world_models_agent import load_controller

        start, _ = load_controller(init)
        if start.n_params != controller.n_params:
            raise ValueError(f"{init} has {start.n_params} parameters, this C needs "
                             f"{controller.n_params}")
        x0 = start.get_flat()
    state = _resume(latest, vae_path, mdnrnn_path, cfg, controller.n_params, x0)
    es: CMAES = state["es"]

    def save(path: Path, extra: dict[str, Any]) -> None:
        controller.set_flat(es.mean)
        save_checkpoint(path, kind="controller", config=asdict(cfg), model=controller.state_dict(),
                        model_args=controller.model_args, step=es.generation, parents=parents,
                        extra={"vae_path": str(vae_path), "mdnrnn_path": str(mdnrnn_path),
                               **relative_parents(path, vae_path=vae_path,
                                                  mdnrnn_path=mdnrnn_path),
                               "z_dim": z_dim, "hidden_size": hidden_size,
                               "best_real": state["best_real"],
                               "best_generation": state["best_generation"],
                               "evals": state["evals"], "real_steps": state["real_steps"],
                               "train_real_steps": state["train_real_steps"], **extra})

    # --cluster.backend ray: the actors that run the episodes and the dreams (None: this machine).
    dev = resolve_device(device) if cfg.mode == "dream" else None
    pool = open_pool(cluster, cfg.workers, gpus=1.0 if dev and dev.type == "cuda" else 0.0)
    dream: BatchedDream | RayDream | None = None
    if dev is not None:
        from ..dream import dream_kwargs

        dream_kw: dict[str, Any] = dream_kwargs(cfg, world)
        if starts is not None:
            dream_kw["starts"] = starts
        if pool is not None:
            dream = RayDream(pool, mdnrnn_path, str(dev), vae_path=vae_path, **dream_kw)
        else:
            from ..dream import BatchedDream

            dream = BatchedDream.from_checkpoint(mdnrnn_path, dev, vae_path=vae_path, **dream_kw)
    # Real-env episodes run on CPU: batch-1 inference of V, M and C gains nothing from a GPU.
    runner = EpisodeRunner(env_cfg, vae_path=vae_path, mdnrnn_path=mdnrnn_path,
                           use_mu=cfg.use_mu, device="cpu", workers=cfg.workers, pool=pool,
                           features=cfg.features)
    # Real-mode candidates may drive shorter episodes than the evaluations: their own runner.
    train_runner = runner
    if dream is None and 0 < cfg.real_max_steps < env_cfg.max_steps:
        train_runner = EpisodeRunner(replace(env_cfg, max_steps=cfg.real_max_steps),
                                     vae_path=vae_path, mdnrnn_path=mdnrnn_path,
                                     use_mu=cfg.use_mu, device="cpu", workers=cfg.workers,
                                     pool=pool, features=cfg.features)
    logger = Logger(tb_dir if tb_dir is not None else out / runs.TB, echo=not progress)
    bar = tqdm(total=cfg.generations, initial=es.generation, desc="train-controller",
               unit="gen", disable=not progress)
    try:
        while es.generation < cfg.generations and not _stalled(state, cfg.patience):
            g = es.generation
            t0 = time.perf_counter()
            solutions = es.ask()
            sigma = es.sigma
            scalars: dict[str, float] = {}
            if dream is not None:
                # Dream protocol: fitness comes from M alone, never from the real env.
                # The CMA mean rides along as one more candidate in the same dreams.
                batch = torch.from_numpy(np.vstack([solutions, es.mean[None]]))
                returns = dream.evaluate(batch, cfg.rollouts_per_candidate,
                                         seed=derive_seed(cfg.seed, g)).double().numpy()
                fitness = returns[:-1].mean(1)
                scalars["dream/return_mean"] = float(returns[-1].mean())
            else:
                tracks = [derive_seed(cfg.seed, g, r) for r in range(cfg.rollouts_per_candidate)]
                returns, lengths = train_runner.run([(x, s) for x in solutions for s in tracks])
                state["train_real_steps"] += int(lengths.sum())
                fitness = returns.reshape(cfg.popsize, -1).mean(1)
            es.tell(fitness)
            scalars.update({"es/fitness_best": fitness.max(), "es/fitness_mean": fitness.mean(),
                            "es/fitness_worst": fitness.min(), "es/sigma": sigma,
                            "time/generation_s": time.perf_counter() - t0})
            gen = es.generation
            if cfg.eval_every > 0 and (gen == cfg.generations or (
                    gen % cfg.eval_every == 0 and gen >= cfg.eval_start)):
                t1 = time.perf_counter()
                real, lengths = runner.run([(es.mean, s)
                                            for s in validation_seeds(cfg.eval_episodes)])
                state["real_steps"] += int(lengths.sum())
                scalars.update({"eval/real_return_mean": real.mean(),
                                "eval/real_return_std": real.std(),
                                # this stage's real env steps so far (training + validation):
                                # the x axis of the sample-efficiency figure
                                "eval/real_steps": state["real_steps"] + state["train_real_steps"],
                                "time/eval_s": time.perf_counter() - t1})
                record: list[Any] = [gen, float(real.mean()), float(real.std())]
                if dream is not None:
                    dream_mean = scalars["dream/return_mean"]
                    # the best earlier evaluation (state's best_generation; each has a dream return)
                    best_eval = next((e for e in state["evals"]
                                      if e[0] == state["best_generation"]), None)
                    flagged = exploit_flag(dream_mean, float(real.mean()), cfg.exploit_gap,
                                           world.max_return, best=best_eval)
                    scalars["eval/dream_minus_real"] = dream_mean - real.mean()
                    scalars["eval/exploit"] = float(flagged)
                    record += [dream_mean, flagged]
                    if flagged:
                        since = ("" if best_eval is None else
                                 f" (best so far: real {best_eval[1]:.1f}, dream "
                                 f"{best_eval[3]:.1f} at generation {best_eval[0]})")
                        tqdm.write(f"train-controller: generation {gen}: C may be exploiting M: "
                                   f"dream return {dream_mean:.1f}, real {real.mean():.1f} on "
                                   f"the validation tracks{since}")
                state["evals"].append(record)
                if state["best_real"] is None or real.mean() > state["best_real"]:
                    state["best_real"], state["best_generation"] = float(real.mean()), gen
                    save(best, {})
            logger.scalars(scalars, step=gen)
            save(latest, {"es": es.state_dict()})
            bar.update(1)
            bar.set_postfix(best=f"{fitness.max():.1f}", mean=f"{fitness.mean():.1f}",
                            real="-" if state["best_real"] is None else f"{state['best_real']:.1f}")
        history = es.history
        summary = {
            "generations": es.generation,
            "final_fitness_mean": float(history[-1].mean()) if len(history) else None,
            "final_fitness_best": float(history[-1].max()) if len(history) else None,
            "best_real": state["best_real"], "best_generation": state["best_generation"],
            "evals": state["evals"], "real_steps": state["real_steps"],
            "train_real_steps": state["train_real_steps"], "controller": str(latest),
            "controller_best": str(best) if best.exists() else None,
            "stopped_early": es.generation < cfg.generations,
        }
        metrics = {f"hparam/{k}": v for k, v in summary.items()
                   if k in ("final_fitness_mean", "best_real") and v is not None}
        logger.hparams({"controller": asdict(cfg), "env": asdict(env_cfg)}, metrics)
        runs.mark_done(out, summary)
    except BaseException:
        for r in {runner, train_runner}:
            r.close(cancel=True)  # a crash or Ctrl-C: drop queued episodes
        raise
    finally:
        bar.close()
        logger.close()
        for r in {runner, train_runner}:
            r.close()
        if pool is not None:
            pool.close()
    return best if best.exists() else latest


MAX_REAL_RETURN = CARRACING.max_return
"""CarRacing pays at most 1000 (every tile) minus 0.1 per frame: a dream return above it is
impossible in the real game (each world's bound: ``World.max_return``)."""


def exploit_flag(dream_return: float, real_return: float, gap: float,
                 max_return: float = MAX_REAL_RETURN,
                 best: Sequence[Any] | None = None) -> bool:
    """The exploit detector: C's dream return is above anything the real game pays
    (``max_return``), or above its real return on the validation tracks by more than ``gap``,
    or (``best``: the best earlier evaluation's record, ``[gen, real, std, dream, ...]``) the
    real return fell more than ``gap`` below the best one while the dream return rose above
    that evaluation's: dream up, real down, the way C learned M's exploits once M had seen good
    driving (notebook, E14)."""
    if dream_return > max_return or dream_return - real_return > gap:
        return True
    return bool(best is not None and best[1] - real_return > gap and dream_return > best[3])


def _stalled(state: dict[str, Any], patience: int) -> bool:
    """``patience`` evaluations in a row since the best validation return (0: never stalls)."""
    if patience <= 0 or state["best_generation"] is None:
        return False
    return sum(1 for e in state["evals"] if e[0] > state["best_generation"]) >= patience


def _resume(latest: Path, vae_path: Path, mdnrnn_path: Path, cfg: ControllerConfig,
            n_params: int, x0: np.ndarray | None = None) -> dict[str, Any]:
    """The ES and bookkeeping from ``controller.pt``, or fresh ones if there is none."""
    if not latest.exists():
        return {"es": CMAES(n_params, cfg.sigma0, cfg.popsize, cfg.seed, x0), "best_real": None,
                "best_generation": None, "evals": [], "real_steps": 0, "train_real_steps": 0}
    ckpt = load_checkpoint(latest, kind="controller")
    check_parent(ckpt, "vae_sha256", vae_path)
    check_parent(ckpt, "mdnrnn_sha256", mdnrnn_path)
    extra = ckpt["extra"]
    es = CMAES.from_state_dict(extra["es"])
    if (es.n_params, es.popsize, es.sigma0, es.seed) != (n_params, cfg.popsize, cfg.sigma0, cfg.seed):
        raise ValueError(f"{latest} holds an ES with other settings than this run's config")
    return {"es": es, "best_real": extra["best_real"], "best_generation": extra["best_generation"],
            "evals": [list(e) for e in extra["evals"]],
            "real_steps": int(extra.get("real_steps", 0)),
            "train_real_steps": int(extra.get("train_real_steps", 0))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--vae", type=Path, required=True, help="V checkpoint (vae.pt)")
    parser.add_argument("--rnn", type=Path, required=True, help="M checkpoint (mdnrnn.pt)")
    parser.add_argument("--out", type=Path, required=True,
                        help="run folder: controller.pt, controller_best.pt, config.json, done.json")
    parser.add_argument("--tb-dir", type=Path, help="TensorBoard folder (default: OUT/tb)")
    add_preset_argument(parser)
    add_device_argument(parser)
    add_config_arguments(parser, "controller")
    add_config_arguments(parser, "env", exclude=("frame_size", "crop_rows"),
                         title="real environment (real-mode ES and the periodic evaluation)")
    add_config_arguments(parser, "cluster",
                         title="where episodes and dreams run (--cluster.backend ray: "
                               "--controller.workers Ray actors; checkpoints and --out on "
                               "shared storage on a cluster)")
    parser.add_argument("--branch-data", type=Path, nargs="+", metavar="LATENT_DIR",
                        help="--controller.dream-start branch: latent folders (of `worldmodels "
                             "encode`) whose episodes the dreams start from, newest last")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar; print each generation's scalars instead")


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args, "controller")
    env_cfg = config_from_args(args, "env")
    path = train_controller(args.vae, args.rnn, args.out, cfg, env_cfg, device=args.device,
                            tb_dir=args.tb_dir, progress=not args.no_progress,
                            cluster=config_from_args(args, "cluster"),
                            branch_data=args.branch_data)
    done = runs.read_done(args.out)
    best = done.get("best_real")
    print(f"controller: {path}" + (f" (best real return {best:.1f} at generation "
                                   f"{done['best_generation']})" if best is not None else ""))
    return 0

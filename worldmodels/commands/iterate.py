"""Iterative training (Ha & Schmidhuber, section 5): the agent's own experience fixes M's dream.

Round 0 is the plain pipeline: random-policy rollouts -> V -> latents -> M -> C trained in
M's dream. Round k >= 1 then:

1. collects ``iterate.episodes`` (or ``iterate.round_episodes``' k-th number) real episodes
   driven by C_{k-1} (the previous round's chosen C, with Gaussian action noise
   ``collect.action_noise``; a ``collect.brownian_share`` of them by the brownian policy)
   on fresh training tracks;
2. measures V's reconstruction error on those frames next to the random ones (V is kept:
   a changed V would invalidate every latent and M; the numbers say whether that matters);
3. encodes them with V, retrains M from scratch on every round's latents so far;
4. trains C_k with CMA-ES **in M's dream only** and picks it on the validation tracks.
   With ``iterate.models`` = K > 1, K Ms (seeds ``rnn.seed`` and ``derive_seed(rnn.seed, k,
   i)`` for i = 1..K-1) each get their own C, and the round keeps the C (and M) with the
   best validation score; the others' validation episodes count as real env steps too.
   ``iterate.round0_models`` does the same in round 0, before the first round (and without
   any round: Take Cover's pipeline). With ``iterate.controllers`` = J > 1, each M's dream
   trains J Cs (CMA-ES seeds ``controller.seed`` and ``derive_seed(controller.seed, k, i, j)``
   for j = 1..J-1), all validated, the best of the K x J kept.

In this protocol no candidate's fitness is ever a real-env return: the real env is used to
collect data with the agent and to score the CMA mean on the validation tracks (model
selection), never the test tracks. ``iterate.json`` counts the real env steps each round
used (collection + validation) and keeps, per round, C's dream return, its validation score,
the exploit detector's verdicts and the wall time. The final C is the round's C with the
best validation score.

Layout (inside the pipeline's run folder; ``worldmodels.runs.RunLayout``)::

    RUN/rollouts, RUN/vae, RUN/latents, RUN/rnn, RUN/controller       round 0
    RUN/rounds/01/{rollouts,latents,rnn,controller}                   round 1, ...
    RUN/m1/{rnn,controller}, m2/, ..., RUN/round0_models.json         round 0 other Ms (round0_models)
    RUN/rounds/01/m1/{rnn,controller}, m2/, ...                       its other Ms (iterate.models)
    RUN/controller_c1, RUN/m1/controller_c1, ...                      other Cs (iterate.controllers)
    RUN/iterate.json                                                  per-round summary
    RUN/tb/rounds/01/{rnn,controller}, RUN/tb/iterate                 TensorBoard

Every step is a resumable stage, so rerunning the pipeline after a kill carries on inside
the round where it stopped, with the same result.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .. import runs
from ..config import MDNRNNConfig, Preset
from ..data import episode_files, read_manifest, read_shard
from ..logger import Logger
from ..seeds import derive_seed
from ..utils import atomic_write_json, read_json, resolve_device

_ROUND_SEED_STREAM = 7  # keeps each round's collection tracks apart from round 0's
_MODEL_SEED_STREAM = 11  # the seeds of a round's other Ms (iterate.models)
_CONTROLLER_SEED_STREAM = 13  # the CMA-ES seeds of an M's other Cs (iterate.controllers)


def _best_validated(items: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The round (or a round's M) whose C has the best validation score; None if none has one."""
    scored = [x for x in items if x["best_val_return"] is not None]
    return max(scored, key=lambda x: x["best_val_return"]) if scored else None


def _reached(r: dict[str, Any], stop_at: float) -> bool:
    """Whether round ``r``'s kept C validated at or above ``iterate.stop_at`` (0: never)."""
    return stop_at > 0 and r["best_val_return"] is not None and r["best_val_return"] >= stop_at


def _candidate(rd: runs.RunLayout, i: int) -> tuple[Path, Path, str]:
    """M's folder, C's folder and the TensorBoard prefix of a round's i-th M (0: the round's own
    rnn/ and controller/, as with a single M)."""
    if i == 0:
        return rd.rnn_dir, rd.controller_dir, ""
    return rd.folder / f"m{i}" / "rnn", rd.folder / f"m{i}" / "controller", f"m{i}/"


def reconstruction_error(vae_path: Path, rollouts: Path, n_frames: int, seed: int = 0,
                         device: str = "cpu") -> float:
    """V's mean squared error per pixel (in [0, 1] units) on ``n_frames`` frames drawn
    evenly from the episodes of ``rollouts`` (using V's mean z)."""
    from ..vae import frames_to_tensor, load_vae

    vae, _ = load_vae(vae_path, device)
    files = episode_files(rollouts, kind="rollout")
    rng = np.random.default_rng(seed)
    per_file = max(1, n_frames // max(1, len(files)))
    total, count = 0.0, 0
    with torch.inference_mode():
        for f in files:
            obs = read_shard(f, "rollout")["obs"]
            idx = rng.choice(len(obs), size=min(per_file, len(obs)), replace=False)
            x = frames_to_tensor(torch.from_numpy(obs[np.sort(idx)]).to(device))
            mu, _ = vae.encode(x)
            total += float(((vae.decode(mu) - x) ** 2).mean(dim=(1, 2, 3)).sum())
            count += len(idx)
            if count >= n_frames:
                break
    return total / max(count, 1)


def _controller_summary(folder: Path) -> dict[str, Any]:
    done = runs.read_done(folder)
    evals = done.get("evals", [])
    flagged = [e[0] for e in evals if len(e) >= 5 and e[4]]
    return {"best_val_return": done.get("best_real"),
            "best_generation": done.get("best_generation"),
            "dream_return": evals[-1][3] if evals and len(evals[-1]) >= 4 else None,
            "evals": evals, "exploit_flagged_generations": flagged,
            "stopped_early": bool(done.get("stopped_early", False)),
            "validation_steps": int(done.get("real_steps", 0)),
            "train_real_steps": int(done.get("train_real_steps", 0))}


def _collection(folder: Path) -> dict[str, Any]:
    """Episodes, env steps and mean return of a collection folder (one manifest read)."""
    entries = read_manifest(folder)
    return {"episodes": len(entries), "collect_steps": sum(int(e["length"]) for e in entries),
            "collect_mean_return": float(np.mean([e["return"] for e in entries]))}


def _real_steps(r: dict[str, Any]) -> int:
    """Real env steps one round used: collection, C's real-env training (none in the dream
    protocol), validation."""
    return r["collect_steps"] + r["train_real_steps"] + r["validation_steps"]


def run_rounds(run_dir: Path, preset: Preset, controller0: Path, device: str = "auto",
               progress: bool = True) -> Path:
    """Run (or resume) rounds 1..R after round 0 (already done by the pipeline); returns the
    chosen C (best validation score over rounds 0..R)."""
    from .collect import collect_rollouts
    from .encode import encode_rollouts

    layout = runs.RunLayout(Path(run_dir))
    it = preset.iterate  # its values were checked when it was built (IterateConfig)
    vae_path = layout.vae
    dev = str(resolve_device(device))
    summary_path = layout.iterate_summary
    old = read_json(summary_path) if summary_path.exists() else {}
    rounds: list[dict[str, Any]] = []
    random_recon = None
    if it.recon_frames:
        random_recon = reconstruction_error(vae_path, layout.rollouts, it.recon_frames)
    round0 = _collection(layout.rollouts)
    del round0["collect_mean_return"]  # round 0 is random-policy data, not a C's driving
    record0 = {"round": 0, "controller": str(controller0), "policy": preset.collect.policy,
               **round0, "recon_mse": random_recon, "wall_s": None,
               **_controller_summary(controller0.parent)}
    rnn = layout.rnn
    if layout.round0_models.exists():  # iterate.round0_models > 1: the pipeline chose among Ms
        chosen0 = read_json(layout.round0_models)
        record0.update({key: chosen0[key] for key in ("validation_steps", "models")})
        rnn = Path(chosen0["chosen"]["rnn"])
    rounds.append(record0)
    latent_dirs = [layout.latents]
    controller = controller0
    logger = Logger(layout.tb("iterate"), echo=False)
    try:
        _log_round(logger, rounds)
        for k in range(1, it.rounds + 1):
            if _reached(rounds[-1], it.stop_at):
                print(f"== iterate: the C of round {k - 1} validated at "
                      f"{rounds[-1]['best_val_return']:.1f} >= iterate.stop_at {it.stop_at:g}; "
                      f"no round {k}", flush=True)
                break
            rd = layout.round(k)
            print(f"== iterate: round {k}/{it.rounds} (C of round {k - 1}: {controller})",
                  flush=True)
            t0 = time.perf_counter()
            collect_cfg = replace(preset.collect, policy="agent", controller=str(controller),
                                  episodes=it.episodes_of(k), workers=it.workers,
                                  seed=derive_seed(preset.collect.seed, k, _ROUND_SEED_STREAM))
            collect_rollouts(rd.rollouts, collect_cfg, preset.env, progress=progress,
                             cluster=preset.cluster)
            recon = (reconstruction_error(vae_path, rd.rollouts, it.recon_frames)
                     if it.recon_frames else None)
            encode_rollouts(rd.rollouts, vae_path, rd.latents, device=dev, progress=progress)
            latent_dirs.append(rd.latents)
            rnn_cfg, init_m = preset.rnn, None
            if it.fine_tune_m:
                rnn_cfg = replace(rnn_cfg, epochs=it.fine_tune_epochs or rnn_cfg.epochs)
                init_m = rnn
            candidates = train_models(rd, it.models, latent_dirs, preset, rnn_cfg, dev,
                                      progress, init_m=init_m,
                                      init_c=controller if it.warm_start else None)
            best = _best_validated(candidates) or candidates[0]
            rnn, controller = Path(best["rnn"]), Path(best["controller"])
            prev_wall = next((r.get("wall_s") for r in old.get("rounds", [])
                              if r.get("round") == k), None)
            record = {
                "round": k, "controller": str(controller), "policy": "agent",
                **_collection(rd.rollouts), "recon_mse": recon,
                # a resumed round keeps the time it had already spent
                "wall_s": round(time.perf_counter() - t0 + (prev_wall or 0.0), 1),
                **{key: v for key, v in best.items() if key not in ("model", "rnn_seed")}}
            if len(candidates) > 1:
                record.update(_models_record(candidates))
            rounds.append(record)
            _log_round(logger, rounds)
            _write_summary(summary_path, rounds, preset)
    finally:
        logger.close()
    summary = _write_summary(summary_path, rounds, preset)
    best = summary["chosen"]
    print(f"iterate: chose C of round {best['round']} (validation return "
          f"{best['best_val_return']}); real env steps used: {summary['real_steps_total']}")
    return Path(best["controller"])


def train_models(rd: runs.RunLayout, n_models: int, latent_dirs: list[Path], preset: Preset,
                 rnn_cfg: MDNRNNConfig, device: str, progress: bool, init_m: Path | None = None,
                 init_c: Path | None = None, n_controllers: int | None = None
                 ) -> list[dict[str, Any]]:
    """Train (or resume) round ``rd.k``'s ``n_models`` Ms on ``latent_dirs`` and
    ``n_controllers`` Cs (default ``iterate.controllers``) in each one's dream. M i's seed is
    ``rnn_cfg.seed`` for i = 0 (the round's own rnn/ and
    controller/: in round 0 the pipeline's stages, already finished) and ``derive_seed(seed,
    k, i)`` for the others. Returns one summary per M (its seed, files and C's validation)."""
    from .train_controller import train_controller
    from .train_rnn import train_rnn

    vae_path = runs.RunLayout(rd.root).vae
    c_cfg = preset.controller
    if rd.k >= 1 and preset.iterate.eval_start:
        c_cfg = replace(c_cfg, eval_start=preset.iterate.eval_start)
    candidates = []
    for i in range(n_models):
        rnn_dir, c_dir0, tb = _candidate(rd, i)
        seed = rnn_cfg.seed if i == 0 else derive_seed(rnn_cfg.seed, rd.k, i, _MODEL_SEED_STREAM)
        m_path = train_rnn(latent_dirs, rnn_dir, replace(rnn_cfg, seed=seed), device=device,
                           tb_dir=rd.tb(tb + "rnn"), progress=progress, init=init_m)
        for j in range(preset.iterate.controllers if n_controllers is None else n_controllers):
            # C j of M i: j = 0 is M's own controller/ with the configured seed (as with one C)
            c_dir = c_dir0 if j == 0 else c_dir0.with_name(f"controller_c{j}")
            c_seed = (preset.controller.seed if j == 0 else
                      derive_seed(preset.controller.seed, rd.k, i, j, _CONTROLLER_SEED_STREAM))
            c_path = train_controller(vae_path, m_path, c_dir,
                                      replace(c_cfg, seed=c_seed), preset.env,
                                      device=device, tb_dir=rd.tb(tb + c_dir.name),
                                      progress=progress, init=init_c, cluster=preset.cluster,
                                      branch_data=list(latent_dirs))
            candidates.append({"model": i, "rnn_seed": seed, "rnn": str(m_path),
                               "controller_seed": c_seed, "controller": str(c_path),
                               **_controller_summary(c_dir)})
    return candidates


def _models_record(candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """What a round with several Ms records: every C's validation used the real env."""
    return {"validation_steps": sum(c["validation_steps"] for c in candidates),
            "models": [{key: c[key] for key in ("model", "rnn_seed", "rnn", "controller_seed",
                                                "controller", "best_val_return", "dream_return",
                                                "validation_steps")}
                       for c in candidates]}


def choose_round0(run_dir: Path, preset: Preset, device: str = "auto",
                  progress: bool = True) -> Path:
    """``iterate.round0_models`` = K > 1 or J > 1 Cs per M (``iterate.round0_controllers``, else
    ``iterate.controllers``): train round 0's other Ms on the first collection and J Cs in each
    M's dream, and return the C with the best validation score (M 0 and its first C are the
    pipeline's own train-rnn and train-controller). The choice and every C's validation steps go to
    ``RUN/round0_models.json``; rerun, finished Ms and Cs are not redone."""
    layout = runs.RunLayout(Path(run_dir))
    dev = str(resolve_device(device))
    candidates = train_models(layout, preset.iterate.round0_models, [layout.latents], preset,
                              preset.rnn, dev, progress, n_controllers=preset.iterate.round0_cs)
    best = _best_validated(candidates) or candidates[0]
    atomic_write_json(layout.round0_models, {
        "chosen": {key: best[key] for key in ("model", "rnn", "controller_seed", "controller",
                                              "best_val_return")},
        **_models_record(candidates)})
    print(f"round 0: chose C {candidates.index(best) + 1} of {len(candidates)} (M "
          f"{best['model']}, CMA-ES seed {best['controller_seed']}; validation return "
          f"{best['best_val_return']}; the others: "
          f"{[c['best_val_return'] for c in candidates if c is not best]})", flush=True)
    return Path(best["controller"])


def _write_summary(path: Path, rounds: list[dict[str, Any]], preset: Preset) -> dict[str, Any]:
    total = 0
    for r in rounds:
        total += _real_steps(r)
        r["real_steps_cumulative"] = total
    chosen = _best_validated(rounds) or rounds[-1]
    summary = {"rounds": rounds, "chosen": {"round": chosen["round"],
                                           "controller": chosen["controller"],
                                           "best_val_return": chosen["best_val_return"]},
               "real_steps_total": total, "iterate": asdict(preset.iterate)}
    atomic_write_json(path, summary)
    return summary


def _log_round(logger: Logger, rounds: list[dict[str, Any]]) -> None:
    r = rounds[-1]
    scalars: dict[str, float] = {"iterate/real_steps": sum(_real_steps(x) for x in rounds)}
    for key in ("best_val_return", "dream_return", "recon_mse"):
        if r.get(key) is not None:
            scalars[f"iterate/{key}"] = r[key]
    logger.scalars(scalars, step=r["round"])
    logger.flush()

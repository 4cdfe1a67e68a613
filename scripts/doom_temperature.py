"""The paper's temperature table for Take Cover: C trained in M's dream at several
temperatures tau, each scored in the dream (at its own tau) and in the real game.

Uses the V and M of a finished ``doom-*`` pipeline run (``RUN/vae/vae.pt``, and
``RUN/rnn/mdnrnn.pt`` or, where the run trained several Ms or Cs in round 0
(``iterate.round0_models``, ``iterate.controllers``), the M of the C it kept, and that C at the
preset's tau) and the run's preset for everything but the temperature. For each tau:

- ``RUN/temperature/tau_<tau>/controller``: CMA-ES in the dream at tau (resumable; the
  preset's ``controller`` config; with ``eval_every`` > 0 C is validated on real episodes
  and its best-validated checkpoint is the one scored, never the test seeds);
- the dream score: that C's mean steps survived over ``--dream-episodes`` dreams at tau
  (the dream it trained in: sampled or thresholded dones as the preset has them);
- ``.../eval/results.json``: the real score on the 100 fixed test seeds.

Then ``RUN/temperature/table.md`` and ``table.json``, beside the paper's numbers. Rerun after
a kill: finished parts are kept.

    python scripts/doom_temperature.py --run-dir runs/doom --taus 0.1 0.5 1.0 1.15 1.3
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

# Table 2 of Ha & Schmidhuber (2018): tau -> (dream score, real score), steps survived.
PAPER = {0.1: ("2086 +- 140", "193 +- 58"), 0.5: ("2060 +- 277", "196 +- 50"),
         1.0: ("1145 +- 690", "868 +- 511"), 1.15: ("918 +- 546", "1092 +- 556"),
         1.3: ("732 +- 269", "753 +- 139")}


def dream_score(controller: Path, mdnrnn: Path, vae: Path, cfg, episodes: int,
                seed: int) -> tuple[float, float]:
    """Mean and std of C's steps survived over ``episodes`` dreams of the kind C trained in
    (``cfg``, a ControllerConfig: its temperature, sampled or thresholded dones, ...)."""
    from worldmodels.agents.world_models_agent import load_controller

    from worldmodels.dream import BatchedDream, dream_kwargs
    from worldmodels.worlds import TAKE_COVER

    c, _ = load_controller(controller)
    dream = BatchedDream.from_checkpoint(mdnrnn, vae_path=vae, **dream_kwargs(cfg, TAKE_COVER))
    returns = dream.evaluate(c.get_flat()[None], episodes, seed=seed)[0].numpy()
    return float(returns.mean()), float(returns.std())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", type=Path, required=True, help="a finished doom-* run folder")
    parser.add_argument("--taus", type=float, nargs="+", default=[0.1, 0.5, 1.0, 1.15, 1.3])
    parser.add_argument("--dream-episodes", type=int, default=100)
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

    from worldmodels import runs
    from worldmodels.checkpoint import checkpoint_sha256
    from worldmodels.commands.evaluate import describe, evaluate_agent
    from worldmodels.commands.train_controller import train_controller
    from worldmodels.config import Preset, from_dict
    from worldmodels.data import read_manifest
    from worldmodels.utils import atomic_write, atomic_write_json
    from worldmodels.worlds import world_of

    run = args.run_dir
    preset = from_dict(Preset, json.loads((run / "preset.json").read_text()))
    if world_of(preset.env.env_id).name != "take_cover":
        raise SystemExit(f"{run} is a {preset.env.env_id} run; this table is Take Cover's")
    layout = runs.RunLayout(run)
    vae, mdnrnn, kept = layout.vae, layout.rnn, None
    if layout.round0_models.is_file():  # several Ms or Cs in round 0: the M and C it kept
        chosen = json.loads(layout.round0_models.read_text())["chosen"]
        mdnrnn, kept = Path(chosen["rnn"]), Path(chosen["controller"])
        print(f"the kept C of round 0 (M {chosen['model']}): {kept}", flush=True)
    for path in (vae, mdnrnn):
        if not path.is_file():
            raise SystemExit(f"{path} not found: run the pipeline (at least --until train-rnn) first")
    rows = []
    for tau in args.taus:
        folder = run / "temperature" / f"tau_{tau:g}"
        cfg = replace(preset.controller, temperature=tau)
        own_tau = tau == preset.controller.temperature  # the pipeline's C was trained at this tau
        t0 = time.perf_counter()
        if own_tau and kept is not None:
            c_path = kept  # reused as it is (its CMA-ES seed may not be the preset's)
        else:
            c_dir = (layout.controller_dir if own_tau and runs.is_done(layout.controller_dir)
                     else folder / "controller")
            c_path = train_controller(vae, mdnrnn, c_dir, cfg, preset.env, device="cpu",
                                      progress=not args.no_progress)
        train_s = time.perf_counter() - t0
        dmean, dstd = dream_score(c_path, mdnrnn, vae, cfg, args.dream_episodes, seed=10**6)
        # the pipeline's own test, where it scored this very C; else this tau's own
        results_path = layout.results
        if not (results_path.is_file() and json.loads(results_path.read_text()).get(
                "controller_sha256") == checkpoint_sha256(c_path)):
            results_path = folder / "eval" / "results.json"
        if results_path.is_file():
            results = json.loads(results_path.read_text())
        else:
            results = evaluate_agent(c_path, episodes=preset.eval.episodes,
                                     workers=preset.eval.workers, env_cfg=preset.env,
                                     out_path=results_path, progress=not args.no_progress)
        print(f"tau {tau:g}: dream {dmean:.0f} +- {dstd:.0f}; {describe(results)}", flush=True)
        s = results["summary"]
        rows.append({"tau": tau, "dream_mean": dmean, "dream_std": dstd, "real_mean": s["mean"],
                     "real_std": s["std"], "episodes": s["episodes"],
                     "train_controller_s_this_call": round(train_s, 1)})
    table = ["| tau | dream score (ours) | real score (ours) | dream (paper) | real (paper) |",
             "|---|---|---|---|---|"]
    for r in rows:
        paper = PAPER.get(round(r["tau"], 2), ("-", "-"))
        table.append(f"| {r['tau']:g} | {r['dream_mean']:.0f} +- {r['dream_std']:.0f} | "
                     f"{r['real_mean']:.0f} +- {r['real_std']:.0f} | {paper[0]} | {paper[1]} |")
    out = run / "temperature"
    atomic_write(out / "table.md", lambda p: Path(p).write_text("\n".join(table) + "\n"))
    atomic_write_json(out / "table.json", rows)
    print("\n".join(table))
    random_returns = [e["return"] for e in read_manifest(run / "rollouts")]
    print(f"{preset.collect.policy} policy (the collection data, {len(random_returns)} episodes): "
          f"{np.mean(random_returns):.0f} +- {np.std(random_returns):.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

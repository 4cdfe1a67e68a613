"""The paper's temperature table for Take Cover: C trained in M's dream at several
temperatures tau, each scored in the dream (at its own tau) and in the real game.

Uses the V and M of a finished ``doom-*`` pipeline run (``RUN/vae/vae.pt``, and
``RUN/rnn/mdnrnn.pt`` or, where the run trained several Ms in round 0
(``iterate.round0_models``), the M whose C it kept) and the run's preset for everything but the
temperature. For each tau:

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
    vae, mdnrnn, own_c = run / "vae" / "vae.pt", run / "rnn" / "mdnrnn.pt", run
    layout = runs.RunLayout(run)
    if layout.round0_models.is_file():  # K Ms in round 0: the M (and C) the pipeline kept
        chosen = json.loads(layout.round0_models.read_text())["chosen"]
        mdnrnn, own_c = Path(chosen["rnn"]), Path(chosen["controller"]).parent.parent
        print(f"M of the kept C (model {chosen['model']} of round 0): {mdnrnn}", flush=True)
    for path in (vae, mdnrnn):
        if not path.is_file():
            raise SystemExit(f"{path} not found: run the pipeline (at least --until train-rnn) first")
    rows = []
    for tau in args.taus:
        folder = run / "temperature" / f"tau_{tau:g}"
        cfg = replace(preset.controller, temperature=tau)
        if tau == preset.controller.temperature and runs.is_done(own_c / "controller"):
            folder = own_c  # the pipeline's own C was trained at this tau: reuse it
        t0 = time.perf_counter()
        c_path = train_controller(vae, mdnrnn, folder / "controller", cfg, preset.env,
                                  device="cpu", progress=not args.no_progress)
        train_s = time.perf_counter() - t0
        dmean, dstd = dream_score(c_path, mdnrnn, vae, cfg, args.dream_episodes, seed=10**6)
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

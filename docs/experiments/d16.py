"""D16 (Take Cover): a second look before choosing among a run's Cs.

``doom-laptop`` keeps the best of ~9 checkpoints (3 Cs x 3 validations) on 32 validation
episodes whose standard error is ~60-80 steps. This plays each C's kept checkpoint
(``controller_best.pt``) on ``EXTRA`` more validation episodes (validation seeds 32 ..
32 + EXTRA - 1, never test seeds) and prints, per run, the choice on the first 32 episodes
(today's), on the new ones alone and on all of them. Results are appended to ``OUT`` (one JSON
line per C; a rerun skips the Cs already there). Test the Cs the new choice keeps with
``worldmodels evaluate``.

    RUNS="/work/runs/d9_s0 /work/runs/d9_s1 /work/runs/d10_s2" CS="controller controller_c1 \
        controller_c2" OUT=/work/runs/d16.jsonl python docs/experiments/d16.py
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path


def main() -> None:
    from worldmodels.agents.world_models_agent import WorldModelsAgent

    from worldmodels import runs as wm_runs
    from worldmodels.config import Preset, from_dict
    from worldmodels.rollouts import EpisodeRunner
    from worldmodels.seeds import validation_seeds

    out = Path(os.environ["OUT"])
    extra = int(os.environ.get("EXTRA", "64"))
    first = int(os.environ.get("FIRST", "32"))
    seeds = validation_seeds(first + extra)[first:]
    done = {}
    if out.exists():
        for line in out.read_text().splitlines():
            row = json.loads(line)
            done[(row["run"], row["c"])] = row
    for run in (Path(r) for r in os.environ["RUNS"].split()):
        preset = from_dict(Preset, json.loads((run / "preset.json").read_text()))
        for c in os.environ.get("CS", "controller controller_c1 controller_c2").split():
            if (str(run), c) in done:
                continue
            # Checks C's V and M by their hashes, as `worldmodels evaluate` does.
            agent = WorldModelsAgent.from_checkpoints(run / c / "controller_best.pt",
                                                      run / "vae" / "vae.pt",
                                                      run / "rnn" / "mdnrnn.pt")
            params = agent.controller.get_flat()
            summary = wm_runs.read_done(run / c)
            t0 = time.time()
            with EpisodeRunner(preset.env, vae_path=agent.sources["vae"],
                               mdnrnn_path=agent.sources["mdnrnn"],
                               use_mu=bool(agent.controller_config.get("use_mu", False)),
                               features=agent.controller.features, workers=2) as runner:
                returns, lengths = runner.run([(params, s) for s in seeds])
            row = {"run": str(run), "c": c, "best_real": summary["best_real"],
                   "best_generation": summary["best_generation"],
                   "extra_mean": float(returns.mean()), "extra_std": float(returns.std()),
                   "extra_episodes": len(seeds), "extra_steps": int(lengths.sum()),
                   "seconds": round(time.time() - t0, 1)}
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            done[(str(run), c)] = row
            print(json.dumps(row), flush=True)
    by_run: dict[str, list[dict]] = {}
    for row in done.values():
        by_run.setdefault(row["run"], []).append(row)
    for run, rows in by_run.items():
        def pooled(r: dict) -> float:
            return (first * r["best_real"] + r["extra_episodes"] * r["extra_mean"]) / (
                first + r["extra_episodes"])
        line = {name: max(rows, key=key)["c"] for name, key in (
            ("first_32", lambda r: r["best_real"]), ("extra_only", lambda r: r["extra_mean"]),
            ("pooled", pooled))}
        print(run, line, [(r["c"], round(r["best_real"], 1), round(r["extra_mean"], 1))
                          for r in rows])


if __name__ == "__main__":
    main()

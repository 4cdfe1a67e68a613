"""D11 (Take Cover): does C gain from generations 61-120? Same C time as 2 Cs x 120 vs 3-4 x 60.

Of D9's 8 Cs (seeds 0-1, 60 generations each), 6 validated best at generation 60, the last:
CMA-ES had not converged. This continues a finished C from its generation-60 checkpoint
(``controller.pt`` holds the ES history; every random number depends on (seed, generation)
only, so generations 61-120 are what a 120-generation run would have done) to
``GENS`` generations, validated on the same 32 episodes every 20 generations, in a fresh
folder (the original C is left as it is). The kept C of "2 Cs x 120" is then the
best-validated over C 0 and C 1 at every generation; test only the Cs that beat the 60-generation ones.

    RUNS="/work/runs/d9_s0 /work/runs/d9_s1" CS="controller controller_c1" OUT=/work/runs/d11 \
        python docs/experiments/d11.py
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    from worldmodels import runs as wm_runs
    from worldmodels.commands.train_controller import train_controller
    from worldmodels.config import ControllerConfig, Preset, from_dict

    out = Path(os.environ["OUT"])
    gens = int(os.environ.get("GENS", "120"))
    runs = [Path(r) for r in os.environ["RUNS"].split()]
    for c in os.environ.get("CS", "controller controller_c1").split():
        for run in runs:
            preset = from_dict(Preset, json.loads((run / "preset.json").read_text()))
            src = run / c
            record = json.loads((src / "config.json").read_text())["config"]
            cfg = replace(from_dict(ControllerConfig, record["controller"]), generations=gens)
            dst = out / f"{run.name}_{c}"
            dst.mkdir(parents=True, exist_ok=True)
            for name in ("controller.pt", "controller_best.pt"):
                if not (dst / name).exists():  # a rerun resumes from what this script wrote
                    shutil.copy2(src / name, dst / name)
            t0 = time.time()
            train_controller(run / "vae" / "vae.pt", run / "rnn" / "mdnrnn.pt", dst, cfg,
                             preset.env, device="cpu", progress=False)
            done = wm_runs.read_done(dst)
            evals = [(e[0], round(e[1], 1), round(e[3], 1)) for e in done["evals"]]
            print(f"{run.name} {c}: best {done['best_real']:.1f} at generation "
                  f"{done['best_generation']}; evals (generation, validation, dream) {evals} "
                  f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

"""D8 (Take Cover, a diagnostic): is it M's seed or C's CMA-ES seed that decides?

D6 trained four Ms (seeds differ) and one C in each dream, all with the same CMA-ES seed; their
validation (32 episodes) spread from 250 to 934. Here C is trained again in the dreams of
D6 seed 0's best M (model 0, 933.8) and worst (model 1, 250.2) with other CMA-ES seeds,
everything else as D6 (doom-laptop, sampled dones, 60 generations, validated on 32
episodes every 20). If the Cs of one M agree, M decides (train K Ms); if they spread as
much as across Ms, C's seed decides and K Cs on one M (~7 minutes each on 2 cores, against
~15 for an M and its C) is the cheaper draw.

    RUN=/work/runs/d6_s0 OUT=/work/runs/d8 python docs/experiments/d8.py
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import replace
from pathlib import Path


def main() -> None:
    from worldmodels.commands.train_controller import train_controller
    from worldmodels.config import Preset, from_dict

    run, out = Path(os.environ["RUN"]), Path(os.environ["OUT"])
    preset = from_dict(Preset, json.loads((run / "preset.json").read_text()))
    ms = {0: run / "rnn" / "mdnrnn.pt", 1: run / "m1" / "rnn" / "mdnrnn.pt"}
    seeds = [int(s) for s in os.environ.get("CSEEDS", "1 2").split()]
    for seed in seeds:
        for model in sorted(ms):
            t0 = time.time()
            folder = out / f"m{model}_c{seed}"
            train_controller(run / "vae" / "vae.pt", ms[model], folder / "controller",
                             replace(preset.controller, seed=seed), preset.env, device="cpu",
                             progress=False)
            done = json.loads((folder / "controller" / "done.json").read_text())
            evals = [(e[0], round(e[1], 1), round(e[3], 1)) for e in done["evals"]]
            print(f"model {model}, C seed {seed}: evals (generation, validation, dream) {evals} "
                  f"({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()

"""E14c (session 8): where does round 2's validation peak? C in E14's round-2 M (model 0),
the same config and CMA seed, validated every 2 generations for 10 generations."""
import os
from dataclasses import replace
from pathlib import Path
from worldmodels.config import Preset, from_dict
from worldmodels.utils import read_json
from worldmodels.commands.train_controller import train_controller
S = int(os.environ["S"]); R = Path(f"/work/runs/e14_s{S}")
preset = from_dict(Preset, read_json(Path(f"/work/runs/e9_s{S}") / "preset.json"))
cfg = replace(preset.controller, eval_every=2, generations=10)
train_controller(R / "vae" / "vae.pt", R / "rounds/02/rnn/mdnrnn.pt", Path(f"/work/runs/e14c_s{S}"),
                 cfg, preset.env, device="cpu", progress=False,
                 branch_data=[R / "latents", R / "rounds/01/latents", R / "rounds/02/latents"])
d = read_json(Path(f"/work/runs/e14c_s{S}") / "done.json")
print("evals", [(e[0], round(e[1], 1), round(e[3], 1)) for e in d["evals"]], flush=True)

"""E15 (session 9): which dream setting delays round 2's exploit?

E14c: C trained in E14's round-2 M (model 0; data: 200 random + 100 round-1 + 50 round-2
episodes by round 1's good C, noise on steer and gas only), validated every 2 generations
for 10: the validation peaks at generation 4-8 (516.9, 411.9, 334.3), then C learns an
exploit (dream up, real down). Each variant changes one setting of that same run (same M,
same CMA seed, same validation tracks) and is judged by the validation curve over the 3 seeds
(best and mean of the 5 evaluations) against E14c.

Variants (V=...):
  recent  branched dreams start only from round 2's episodes (the good C's driving), not the
          last 200 episodes (50 random + 100 round-1 + 50 round-2)
  tau15   temperature 1.5 (1.15)
  short   100-step branched dreams (200)
  drop2   dream dropout 0.2 (0.1)
"""
import os
from dataclasses import replace
from pathlib import Path
from worldmodels.config import Preset, from_dict
from worldmodels.utils import read_json
from worldmodels.commands.train_controller import train_controller

S, V = int(os.environ["S"]), os.environ["V"]
R = Path(f"/work/runs/e14_s{S}")
preset = from_dict(Preset, read_json(Path(f"/work/runs/e9_s{S}") / "preset.json"))
cfg = replace(preset.controller, eval_every=2, generations=int(os.environ.get("G", "10")))
data = [R / "latents", R / "rounds/01/latents", R / "rounds/02/latents"]
if V == "recent":
    data = [R / "rounds/02/latents"]
elif V == "tau15":
    cfg = replace(cfg, temperature=1.5)
elif V == "short":
    cfg = replace(cfg, dream_max_steps=100)
elif V == "drop2":
    cfg = replace(cfg, dream_dropout=0.2)
elif V.startswith("combo"):
    data = [R / "rounds/02/latents"]
    for part in V.split("+")[1:]:
        k, v = part.split("=")
        cfg = replace(cfg, **{k: type(getattr(cfg, k))(v)})
else:
    raise SystemExit(f"unknown V={V}")
out = Path(f"/work/runs/e15_{V}_s{S}")
train_controller(R / "vae" / "vae.pt", R / "rounds/02/rnn/mdnrnn.pt", out, cfg, preset.env,
                 device="cpu", progress=False, branch_data=data)
d = read_json(out / "done.json")
print("evals", [(e[0], round(e[1], 1), round(e[3], 1)) for e in d["evals"]], flush=True)

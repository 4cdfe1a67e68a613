"""Which action dimension's noise cripples C? Same C and tracks as noise_diag.py, noise 0.1 on
one dimension only (0 steer, 1 gas, 2 brake) or on all but one ("-2": all but brake)."""
import sys, json
from dataclasses import replace
from pathlib import Path
import numpy as np
from worldmodels.agents import world_models_agent as wma
from worldmodels.config import Preset, from_dict
from worldmodels.utils import read_json
from worldmodels.commands.collect import collect_rollouts
from worldmodels.seeds import derive_seed
which = sys.argv[-1]
mask = np.zeros(3)
if which.startswith("-"):
    mask[:] = 1; mask[int(which[1:])] = 0
else:
    mask[int(which)] = 1
orig = wma.NoisyAgentPolicy.act
def act(self, obs):
    noise = self.rng.normal(0.0, self.noise, 3) * mask
    return self.agent.act(obs, noise)
wma.NoisyAgentPolicy.act = act
preset = from_dict(Preset, read_json("/work/runs/e9_s0/preset.json"))
C = "/work/runs/e12_s0/rounds/01/controller/controller_best.pt"
cfg = replace(preset.collect, policy="agent", controller=C, episodes=8, workers=1,
              action_noise=0.1, seed=derive_seed(preset.collect.seed, 2, 7))
out = Path(f"/work/runs/noise_diag/d{which}")
collect_rollouts(out, cfg, preset.env, progress=False)
rets = [json.loads(l)["return"] for l in (out / "manifest.jsonl").read_text().splitlines()]
print("noise 0.1 on", which, [round(r, 1) for r in rets], "mean", round(sum(rets) / len(rets), 1), flush=True)

"""Why does a C validated at ~458 collect ~31 in the next round? Collect with E12 s0's chosen C
(val 457.5) at action noise 0 / 0.05 / 0.1 on the same 8 training tracks (iterate's round-2
collection seed), and on the 8 first validation tracks without noise for reference."""
import os, sys, json
from dataclasses import replace
from pathlib import Path
from worldmodels.config import Preset, from_dict
from worldmodels.utils import read_json
from worldmodels.commands.collect import collect_rollouts
from worldmodels.seeds import derive_seed
noise = float(sys.argv[1])
preset = from_dict(Preset, read_json("/work/runs/e9_s0/preset.json"))
C = "/work/runs/e12_s0/rounds/01/controller/controller_best.pt"
cfg = replace(preset.collect, policy="agent", controller=C, episodes=8, workers=1,
              action_noise=noise, seed=derive_seed(preset.collect.seed, 2, 7))
out = Path(f"/work/runs/noise_diag/n{noise}")
collect_rollouts(out, cfg, preset.env, progress=False)
rets = [json.loads(l)["return"] for l in (out / "manifest.jsonl").read_text().splitlines()]
print("noise", noise, "returns", [round(r, 1) for r in rets], "mean", round(sum(rets) / len(rets), 1), flush=True)

"""E13 (session 8): E12's protocol with 4 Ms in the round (iterate.models 4).

Everything of E12 of the same seed is reused (hard-linked): round 0, round 1's data, models 0
and 1 with their Cs. Models 2 and 3 (rnn seeds derive_seed(rnn.seed, 1, i, 11)) are trained
fresh with their own C; the round keeps the C with the best validation; scored on the 100
test tracks.    S=1 python e13.py
"""
import os, shutil, subprocess
from dataclasses import replace
from pathlib import Path

from worldmodels.config import Preset, from_dict
from worldmodels.utils import read_json
from worldmodels.commands.iterate import run_rounds
from worldmodels.commands.evaluate import evaluate_agent, describe

S = int(os.environ.get("S", "1"))
K = int(os.environ.get("K", "4"))
src, dst = Path(f"/work/runs/e12_s{S}"), Path(f"/work/runs/e13_s{S}")
if not dst.exists():
    tmp = dst.with_name(dst.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    for part in ("preset.json", "rollouts", "vae", "latents", "rnn", "controller",
                 "rounds/01/rollouts", "rounds/01/latents", "rounds/01/rnn",
                 "rounds/01/controller", "rounds/01/m1"):
        if not (src / part).exists():
            continue
        (tmp / part).parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cp", "-al", str(src / part), str(tmp / part)], check=True)
    for lock in tmp.rglob("run.lock"):
        lock.unlink()
    for rec in list(tmp.rglob("*.json")):
        text = rec.read_text()
        if str(src) in text:
            rec.unlink()  # a hard link: write a new file, never E12's
            rec.write_text(text.replace(str(src) + "/", str(dst) + "/").replace(str(src) + '"', str(dst) + '"'))
    tmp.rename(dst)
preset_src = Path(f"/work/runs/e9_s{S}") / "preset.json"
preset = from_dict(Preset, read_json(preset_src))
preset = replace(preset, iterate=replace(preset.iterate, rounds=1, models=K))
chosen = run_rounds(dst, preset, dst / "controller" / "controller_best.pt", device="cpu", progress=False)
res = evaluate_agent(chosen, episodes=preset.eval.episodes, workers=1, env_cfg=preset.env,
                     use_mu=preset.eval.use_mu, device="cpu", out_path=dst / "eval" / "results.json",
                     progress=False)
print("score:", describe(res), flush=True)

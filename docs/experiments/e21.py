"""E21 (session 11): a second M on round 3's offset data (E18, offset 0.15).

E13: four Ms per round, the best-validated C kept, lifted round 1 by +94 over seeds; E20:
choosing over two round-3 collections by validation would give 575.8. Hypothesis: a second M
(another rnn seed) on E18's offset-arm data, with its own C trained as in E18, validates
above the first M's C on some seeds, so the best-validated of the two beats E18's offset arm
(best validation 532.8, test 519.0) at the cost of one M and C (80k validation steps), no
new collection. The new C is scored on the test tracks only where it validates higher.
Run: S=0 python docs/experiments/e21.py
"""
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from worldmodels.config import Preset, from_dict
from worldmodels.seeds import derive_seed
from worldmodels.utils import read_json


def main():
    import importlib.util

    from worldmodels.commands.train_rnn import train_rnn

    spec = importlib.util.spec_from_file_location("e18", Path(__file__).with_name("e18.py"))
    e18 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(e18)

    torch.set_num_threads(1)
    S = int(os.environ["S"])
    R, P = Path(f"/work/runs/e14_s{S}"), Path(f"/work/runs/e18_offset_s{S}")
    O = Path(f"/work/runs/e21_s{S}")
    O.mkdir(exist_ok=True)
    preset = from_dict(Preset, read_json(Path(f"/work/runs/e9_s{S}") / "preset.json"))
    vae, t0 = R / "vae/vae.pt", time.time()
    lat = [R / "latents", R / "rounds/01/latents", R / "rounds/02/latents", P / "latents"]
    rcfg = replace(preset.rnn, seed=derive_seed(preset.rnn.seed, 3, 1, 11))
    m = train_rnn(lat, O / "rnn", rcfg, device="cpu", progress=False)
    print(f"M trained ({time.time() - t0:.0f} s)", flush=True)
    c = e18.train_c(O, vae, m, preset, lat)
    evals = read_json(O / "controller" / "done.json")["evals"]
    first = read_json(P / "controller" / "done.json")["evals"]
    best, before = max(e[1] for e in evals), max(e[1] for e in first)
    print(f"best validation {best:.1f} (first M's C: {before:.1f})", flush=True)
    if best > before:
        e18.test_c(O, c, preset, t0)

if __name__ == "__main__":
    main()

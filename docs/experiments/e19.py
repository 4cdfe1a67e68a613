"""E19 (session 11): does a fourth round with episode offsets add to the third?

E18: round 3 collected with one Gaussian action offset per episode (`collect.episode_offset
0.15` on steer and gas) tested 519.0 +- 77.7 over 3 seeds (622.1, 434.5, 500.3), against
462.7 +- 76.7 without the offset; round 2's Cs (E14c) validated 421.0 on average.
Hypothesis: each round with the offset adds; a round 4 collected the same way by E18's
offset C (100 episodes), M retrained on all five folders, C trained in its dream as in E18
(10 generations, validated every 2 on the 16 validation tracks) validates and tests above
round 3's C on each seed. If rounds add ~+50 each, ~3 more rounds reach 650; if round 4 is
flat or falls, the offset does not make rounds add and the protocol's ceiling is ~520.
The protocol's pick, the best-validated C over rounds 3 and 4, is reported beside it.
Run: S=0 python docs/experiments/e19.py
"""
import os
import time
from pathlib import Path

import torch

from worldmodels.config import CollectConfig, Preset, from_dict
from worldmodels.seeds import derive_seed
from worldmodels.utils import atomic_write_json, read_json


def main():
    from worldmodels.commands.collect import collect_rollouts
    from worldmodels.commands.encode import encode_rollouts
    from worldmodels.commands.train_rnn import train_rnn

    # gas_response of E18, same folder
    import importlib.util
    spec = importlib.util.spec_from_file_location("e18", Path(__file__).with_name("e18.py"))
    e18 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(e18)

    torch.set_num_threads(1)
    S = int(os.environ["S"])
    R, P = Path(f"/work/runs/e14_s{S}"), Path(f"/work/runs/e18_offset_s{S}")
    C0 = P / "controller/controller_best.pt"
    O = Path(f"/work/runs/e19_s{S}")
    O.mkdir(exist_ok=True)
    preset = from_dict(Preset, read_json(Path(f"/work/runs/e9_s{S}") / "preset.json"))
    vae = R / "vae/vae.pt"
    t0 = time.time()
    cfg = CollectConfig(episodes=100, workers=1, policy="agent", controller=str(C0),
                        action_noise=0.1, action_noise_dims="0,1", episode_offset=0.15,
                        seed=derive_seed(preset.collect.seed, 4, 7))
    collect_rollouts(O / "rollouts", cfg, preset.env, progress=False)
    print(f"collected ({time.time() - t0:.0f} s)", flush=True)
    encode_rollouts(O / "rollouts", vae, O / "latents", device="cpu", progress=False)
    lat = [R / "latents", R / "rounds/01/latents", R / "rounds/02/latents", P / "latents",
           O / "latents"]
    m = train_rnn(lat, O / "rnn", preset.rnn, device="cpu", progress=False)
    print(f"M trained ({time.time() - t0:.0f} s)", flush=True)
    gas = {"round3_M": e18.gas_response(P / "rnn/mdnrnn.pt", vae, C0, [O / "latents"]),
           "round4_M": e18.gas_response(m, vae, C0, [O / "latents"])}
    print("dream return of C0 with gas shifted, from round 4's states:", gas, flush=True)
    atomic_write_json(O / "gas_response.json", gas)
    e18.train_and_test(O, vae, m, preset, lat, t0)

if __name__ == "__main__":
    main()

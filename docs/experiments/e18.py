"""E18 (session 10): does exploration that persists for a whole episode give M (and so the
dream) a sense of speed?

Diagnostic first (session 10): E14c seed 0's best C (test 513.5) drives slowly: gas 0.10 on
average, ~38 speed units, 60% of a track's tiles in 1000 steps, no lap finished. Shifting its
gas pre-activation by +0.4 lifts its real return on 8 validation tracks from 502.7 to 588.3
(+0.8: 405.5, too fast for its steering), but M's dream return of the same shifted Cs is flat
(56.2 / 54.8 / 51.6 at +0 / +0.4 / +0.8, 256 dreams from round 2's states). Per-step action
noise averages out within a few steps, so M has never seen this C drive faster or slower for
long, and the dream cannot tell C that speed pays.
Hypothesis: collecting round 3 with one Gaussian action offset per episode
(`collect.episode_offset 0.15` on steer and gas, on top of the per-step noise 0.1) teaches M
what driving faster or slower leads to; the new dream's return rises with gas where the real
one does, and C trained in it validates higher than C trained on a round 3 collected without
the offset (the control arm: the same in all else).
Round 3 from E14c seed S's best C (round-2 M), 100 episodes; M retrained on all four
folders (E14's M config and seed); C as E14c (10 generations, validated every 2 on 16
tracks); the best-validated C on the 100 test tracks.
Run: S=0 ARM=offset python docs/experiments/e18.py   (ARM: offset | control | offset30)
"""
import os
import time
from dataclasses import replace
from pathlib import Path

import torch

from worldmodels.config import CollectConfig, Preset, from_dict
from worldmodels.seeds import derive_seed
from worldmodels.utils import atomic_write_json, read_json


def gas_response(m_path, vae_path, c_path, branch, deltas=(0.0, 0.4, 0.8), n=256):
    """M's dream return of C with its gas pre-activation bias shifted by each delta."""
    from worldmodels.agents.world_models_agent import load_controller
    from worldmodels.commands.train_controller import BRANCH_STARTS
    from worldmodels.dream import BatchedDream, branch_starts, dream_kwargs
    from worldmodels.mdnrnn import load_mdnrnn
    from worldmodels.worlds import world_of

    c = read_json(Path(c_path).parent / "config.json")["config"]["controller"]
    world = world_of("worldmodels/CarRacingFast-v3")
    m, _ = load_mdnrnn(m_path, vae_path=vae_path)
    dream = BatchedDream.from_checkpoint(
        m_path, "cpu", vae_path=vae_path, starts=branch_starts(m, branch, BRANCH_STARTS, seed=0),
        **dream_kwargs(c, world))
    C, _ = load_controller(c_path)
    b0, params = C.fc.bias.data.clone(), []
    for d in deltas:
        C.fc.bias.data = b0.clone()
        C.fc.bias.data[1] += d
        params.append(torch.as_tensor(C.get_flat()))
    R = dream.evaluate(torch.stack(params).double(), n, seed=12345)
    return {f"{d:+.1f}": round(float(r.mean()), 2) for d, r in zip(deltas, R)}


def main():
    from worldmodels.commands.collect import collect_rollouts
    from worldmodels.commands.encode import encode_rollouts
    from worldmodels.commands.train_rnn import train_rnn

    torch.set_num_threads(1)
    S, arm = int(os.environ["S"]), os.environ["ARM"]
    offsets = {"control": 0.0, "offset": 0.15, "offset30": 0.3}  # offset30: E20 (session 11)
    assert arm in offsets
    R, C0 = Path(f"/work/runs/e14_s{S}"), Path(f"/work/runs/e14c_s{S}/controller_best.pt")
    O = Path(f"/work/runs/e18_{arm}_s{S}")
    O.mkdir(exist_ok=True)
    preset = from_dict(Preset, read_json(Path(f"/work/runs/e9_s{S}") / "preset.json"))
    vae = R / "vae/vae.pt"
    t0 = time.time()
    cfg = CollectConfig(episodes=100, workers=1, policy="agent", controller=str(C0),
                        action_noise=0.1, action_noise_dims="0,1",
                        episode_offset=offsets[arm],
                        seed=derive_seed(preset.collect.seed, 3, 7))
    collect_rollouts(O / "rollouts", cfg, preset.env, progress=False)
    print(f"collected ({time.time() - t0:.0f} s)", flush=True)
    encode_rollouts(O / "rollouts", vae, O / "latents", device="cpu", progress=False)
    lat = [R / "latents", R / "rounds/01/latents", R / "rounds/02/latents", O / "latents"]
    m = train_rnn(lat, O / "rnn", preset.rnn, device="cpu", progress=False)
    print(f"M trained ({time.time() - t0:.0f} s)", flush=True)
    gas = {"round2_M": gas_response(R / "rounds/02/rnn/mdnrnn.pt", vae, C0, [O / "latents"]),
           "round3_M": gas_response(m, vae, C0, [O / "latents"])}
    print("dream return of C0 with gas shifted, from round 3's states:", gas, flush=True)
    atomic_write_json(O / "gas_response.json", gas)
    train_and_test(O, vae, m, preset, lat, t0)


def train_and_test(O, vae, m, preset, lat, t0):
    """C in M's dream as E14c (10 generations, validated every 2), then its best on the test."""
    test_c(O, train_c(O, vae, m, preset, lat), preset, t0)


def train_c(O, vae, m, preset, lat):
    """C in M's dream as E14c (10 generations, validated every 2 on the 16 tracks)."""
    from worldmodels.commands.train_controller import train_controller

    ccfg = replace(preset.controller, eval_every=2, generations=10)
    c = train_controller(vae, m, O / "controller", ccfg, preset.env, device="cpu",
                         progress=False, branch_data=lat)
    d = read_json(O / "controller" / "done.json")
    print("evals", [(e[0], round(e[1], 1), round(e[3], 1)) for e in d["evals"]], flush=True)
    return c


def test_c(O, c, preset, t0):
    """C on the 100 test tracks."""
    from worldmodels.commands.evaluate import describe, evaluate_agent

    res = evaluate_agent(c, episodes=100, workers=1, env_cfg=preset.env,
                         use_mu=preset.eval.use_mu, device="cpu",
                         out_path=O / "eval" / "results.json", progress=False)
    print("test:", describe(res), f"({time.time() - t0:.0f} s)", flush=True)

if __name__ == "__main__":
    main()

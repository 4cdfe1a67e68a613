"""Does C's input [z, h] carry the car's speed? (session 11 diagnostic)

V sees frames cropped to rows 0:84 (as the paper), so the dashboard's speed bar is cut away:
speed is in the features only if M's h infers it from motion. Linear probes (ridge) of the
true speed (|car.hull.linearVelocity|) from z, from h and from [z, h], fitted on some
episodes and scored (R^2) on others. The episodes are driven by a dream-trained C with one
gas offset per episode, so speed varies between and within episodes.
With a third argument, a V trained on whole frames (`--env.crop-rows 96`, the dashboard
kept), the probes also read that V's z of the same frames ("z96").
Session 19 (E22) added M's LSTM cell c ("c", "z+h+c": does c carry the speed that h does
not?) and a shipped agent's folder as the first argument (e.g. agents/zoo/carracing).
Run: python speed_probe.py CONTROLLER_OR_AGENT_DIR [EPISODES [VAE_96]]
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from worldmodels.agents.world_models_agent import WorldModelsAgent
from worldmodels.envs import make_env

from worldmodels.config import EnvConfig
from worldmodels.vae import frames_to_tensor, load_vae
from worldmodels.worlds import CARRACING, preprocess_frame

torch.set_num_threads(1)
src = Path(sys.argv[1])
agent = (WorldModelsAgent.from_checkpoints(src / "controller.pt", src / "vae.pt", src / "mdnrnn.pt")
         if src.is_dir() else WorldModelsAgent.from_checkpoints(src))
n = int(sys.argv[2]) if len(sys.argv) > 2 else 8
v96 = load_vae(sys.argv[3])[0] if len(sys.argv) > 3 else None
env = make_env(EnvConfig(env_id="worldmodels/CarRacingFast-v3", max_steps=1000))
offsets = [-0.2, 0.0, 0.2, 0.4]
data = []
for i in range(n):
    seed, off = 900_000 + i, offsets[i % len(offsets)]
    agent.reset(seed)
    obs, info = env.reset(seed=seed)
    Z, H, S, Z96, C, ret = [], [], [], [], [], 0.0
    while True:
        C.append(agent.state[1][0][0].numpy().copy())  # M's cell before this step, as h
        a = agent.act(obs, noise=np.array([0.0, off, 0.0], dtype=np.float32))
        Z.append(agent.last["mu"][0].numpy())
        H.append(agent.last["h"][0].numpy())
        if v96 is not None:
            whole = preprocess_frame(CARRACING, info["raw_frame"], 64, 96)
            with torch.no_grad():
                Z96.append(v96.encode(frames_to_tensor(torch.from_numpy(whole)[None]))[0][0].numpy())
        obs, r, term, trunc, info = env.step(a)
        ret += r
        v = env.unwrapped.car.hull.linearVelocity
        S.append((v[0] ** 2 + v[1] ** 2) ** 0.5)
        if term or trunc:
            break
    data.append((np.array(Z), np.array(H), np.array(S), np.array(Z96), np.array(C)))
    print(f"episode {i}: gas offset {off:+.1f} return {ret:.0f} speed {np.mean(S):.1f} "
          f"(p10 {np.percentile(S, 10):.1f}, p90 {np.percentile(S, 90):.1f})", flush=True)


def r2(feats, train, test, lam=1.0):
    X = np.concatenate([feats(d) for d in train])
    y = np.concatenate([d[2] for d in train])
    mx, my = X.mean(0), y.mean()
    Xc = X - mx
    w = np.linalg.solve(Xc.T @ Xc + lam * len(X) * 1e-3 * np.eye(X.shape[1]), Xc.T @ (y - my))
    Xt = np.concatenate([feats(d) for d in test])
    yt = np.concatenate([d[2] for d in test])
    pred = (Xt - mx) @ w + my
    return 1 - ((yt - pred) ** 2).sum() / ((yt - yt.mean()) ** 2).sum()


feats = {"z": lambda d: d[0], "h": lambda d: d[1], "z+h": lambda d: np.hstack([d[0], d[1]]),
         "z, z_t - z_t-1": lambda d: np.hstack([d[0], np.diff(d[0], axis=0, prepend=d[0][:1])]),
         "c": lambda d: d[4], "z+h+c": lambda d: np.hstack([d[0], d[1], d[4]])}
if v96 is not None:
    feats["z96"] = lambda d: d[3]
    feats["z96+h"] = lambda d: np.hstack([d[3], d[1]])
out = {}
for name, f in feats.items():
    # two folds: even episodes -> odd, odd -> even
    scores = [r2(f, data[0::2], data[1::2]), r2(f, data[1::2], data[0::2])]
    out[name] = round(float(np.mean(scores)), 3)
print("held-out R^2 of speed:", json.dumps(out), flush=True)

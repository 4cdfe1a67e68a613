"""Does M's LSTM cell c carry the car's speed? (session 19 diagnostic, E19's probe + c)

E19's probe found the speed poorly in C's input [z, h] (held-out R^2 0.24-0.31). The paper's
Doom C also reads M's cell c (``controller.features zch``); h = o * tanh(c) is what the
output gate lets out, c holds the rest. This is E19's probe (the agent drives 8 tracks,
seeds 900000..., with one gas offset per episode of -0.2 / 0 / +0.2 / +0.4; ridge probes of
|car.hull.linearVelocity| fitted on half the episodes and scored (R^2) on the other half,
two folds) with c and [z, h, c] added.
Run: python speed_probe_c.py [AGENT_DIR_OR_CONTROLLER [EPISODES]]   (default: the shipped
CarRacing agent, agents/zoo/carracing)
"""
import json
import sys
from pathlib import Path

import numpy as np
import torch
from worldmodels.agents.world_models_agent import WorldModelsAgent
from worldmodels.envs import make_env

from worldmodels.config import EnvConfig

torch.set_num_threads(1)
src = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[3] / "agents/zoo/carracing"
if src.is_dir():
    agent = WorldModelsAgent.from_checkpoints(src / "controller.pt", src / "vae.pt", src / "mdnrnn.pt")
else:
    agent = WorldModelsAgent.from_checkpoints(src)
n = int(sys.argv[2]) if len(sys.argv) > 2 else 8
env = make_env(EnvConfig(env_id="worldmodels/CarRacingFast-v3", max_steps=1000))
offsets = [-0.2, 0.0, 0.2, 0.4]
data = []
for i in range(n):
    seed, off = 900_000 + i, offsets[i % len(offsets)]
    agent.reset(seed)
    obs, info = env.reset(seed=seed)
    Z, H, C, S, ret = [], [], [], [], 0.0
    while True:
        C.append(agent.state[1][0][0].numpy().copy())
        a = agent.act(obs, noise=np.array([0.0, off, 0.0], dtype=np.float32))
        Z.append(agent.last["mu"][0].numpy())
        H.append(agent.last["h"][0].numpy())
        obs, r, term, trunc, info = env.step(a)
        ret += r
        v = env.unwrapped.car.hull.linearVelocity
        S.append((v[0] ** 2 + v[1] ** 2) ** 0.5)
        if term or trunc:
            break
    data.append((np.array(Z), np.array(H), np.array(S), np.array(C)))
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


feats = {"z": lambda d: d[0], "h": lambda d: d[1], "c": lambda d: d[3],
         "z+h": lambda d: np.hstack([d[0], d[1]]),
         "z+h+c": lambda d: np.hstack([d[0], d[1], d[3]])}
out = {}
for name, f in feats.items():
    scores = [r2(f, data[0::2], data[1::2]), r2(f, data[1::2], data[0::2])]
    out[name] = round(float(np.mean(scores)), 3)
print("held-out R^2 of speed:", json.dumps(out), flush=True)

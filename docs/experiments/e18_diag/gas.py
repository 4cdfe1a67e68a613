"""Diagnostic: shift C's gas pre-activation bias by delta; real return on validation tracks."""
import json, sys, numpy as np, torch
torch.set_num_threads(1)
from worldmodels.envs import make_env
from worldmodels.config import EnvConfig
from worldmodels.agents.world_models_agent import WorldModelsAgent
res = json.load(open(sys.argv[1])); n = int(sys.argv[2]); deltas = [float(d) for d in sys.argv[3].split(",")]
agent = WorldModelsAgent.from_checkpoints(res["controller"], res["vae"], res["mdnrnn"])
env = make_env(EnvConfig(env_id=res["env_id"], max_steps=1000))
b0 = agent.controller.fc.bias.data.clone()
for d in deltas:
    agent.controller.fc.bias.data = b0.clone(); agent.controller.fc.bias.data[1] += d
    rets, gas, tiles, spd = [], [], [], []
    for seed in range(1_000_000_000, 1_000_000_000 + n):
        agent.reset(seed); obs, _ = env.reset(seed=seed); u = env.unwrapped; tot = 0.0; G = []; S = []
        while True:
            a = agent.act(obs); G.append(a[1]); obs, r, te, tr, _ = env.step(a); tot += r
            v = u.car.hull.linearVelocity; S.append((v[0]**2 + v[1]**2) ** 0.5)
            if te or tr: break
        rets.append(tot); gas.append(np.mean(G)); tiles.append(u.tile_visited_count / len(u.track)); spd.append(np.mean(S))
    print(f"delta {d:+.1f}: return {np.mean(rets):.1f} +- {np.std(rets):.1f} gas {np.mean(gas):.2f} speed {np.mean(spd):.1f} tiles {np.mean(tiles):.2f}  {np.round(rets,0)}", flush=True)

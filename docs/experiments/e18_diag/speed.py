import json, sys, numpy as np, torch
torch.set_num_threads(1)
from worldmodels.envs import make_env
from worldmodels.config import EnvConfig
from worldmodels.agents.world_models_agent import WorldModelsAgent
res = json.load(open(sys.argv[1]))
agent = WorldModelsAgent.from_checkpoints(res["controller"], res["vae"], res["mdnrnn"])
env = make_env(EnvConfig(env_id=res["env_id"], max_steps=1000))
n = int(sys.argv[2]) if len(sys.argv) > 2 else 5
for seed in res["seeds"][:n]:
    agent.reset(seed); obs, _ = env.reset(seed=int(seed))
    u = env.unwrapped
    acts, speeds, tot = [], [], 0.0
    while True:
        a = agent.act(obs); acts.append(a)
        obs, r, term, trunc, _ = env.step(a); tot += r
        v = u.car.hull.linearVelocity; speeds.append((v[0]**2 + v[1]**2) ** 0.5)
        if term or trunc: break
    A = np.array(acts); S = np.array(speeds)
    tiles = getattr(u, "tile_visited_count", None); N = len(u.track)
    print(f"seed {seed}: ret {tot:.0f} len {len(A)} tiles {tiles}/{N} speed mean {S.mean():.1f} p90 {np.percentile(S,90):.1f} "
          f"gas {A[:,1].mean():.2f} brake>0 {(A[:,2]>0).mean():.2f} brake mean {A[:,2].mean():.2f} |steer| {np.abs(A[:,0]).mean():.2f}", flush=True)

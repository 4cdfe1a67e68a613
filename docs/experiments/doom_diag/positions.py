"""Where does the shipped Take Cover agent go, and what kills it? (session 19 diagnostic)

Plays N episodes (seeds 777000...; not test seeds) with the shipped agent (agents/zoo/doom)
and prints, per episode: steps survived, the range of the player's position along the strafe
axis (the room's walls are near 16 and 752), the position at death, the steps where health
fell, and the share of left / stay / right moves.
Run: python positions.py [EPISODES]
"""
import sys
from pathlib import Path

import numpy as np
import torch
import vizdoom as vzd
from worldmodels.agents.world_models_agent import WorldModelsAgent
from worldmodels.envs import make_env

from worldmodels.config import EnvConfig

torch.set_num_threads(1)
src = Path(__file__).resolve().parents[3] / "agents/zoo/doom"
agent = WorldModelsAgent.from_checkpoints(src / "controller.pt", src / "vae.pt", src / "mdnrnn.pt")
env = make_env(EnvConfig(env_id="worldmodels/DoomTakeCover-v0", max_steps=2100))
GV = vzd.GameVariable
for ep in range(int(sys.argv[1]) if len(sys.argv) > 1 else 6):
    seed = 777_000 + ep
    obs, info = env.reset(seed=seed)
    agent.reset(seed)
    game = env.unwrapped._game
    xs, ys, hp, moves = [], [], [], []
    while True:
        a = agent.act(obs)
        xs.append(game.get_game_variable(GV.POSITION_X))
        ys.append(game.get_game_variable(GV.POSITION_Y))
        hp.append(game.get_game_variable(GV.HEALTH))
        moves.append(float(np.asarray(a).reshape(-1)[0]))
        obs, r, term, trunc, info = env.step(a)
        if term or trunc:
            break
    x, y, hp, m = map(np.array, (xs, ys, hp, moves))
    pos = y if y.std() > x.std() else x
    hits = np.where(np.diff(hp) < 0)[0]
    print(f"episode {ep}: {len(pos)} steps, position [{pos.min():.0f}, {pos.max():.0f}], at death "
          f"{pos[-1]:.0f}; health fell at steps {hits.tolist()} to {hp[hits + 1].tolist()}; "
          f"left / stay / right {np.mean(m < 0):.2f} / {np.mean(m == 0):.2f} / {np.mean(m > 0):.2f}",
          flush=True)

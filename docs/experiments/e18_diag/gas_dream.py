"""Diagnostic: M's dream return (E14c's training dreams) of C with its gas bias shifted."""
import json, sys, torch
torch.set_num_threads(2)
from worldmodels.dream import BatchedDream, branch_starts
from worldmodels.commands.train_controller import BRANCH_STARTS
from worldmodels.agents.world_models_agent import load_controller
from worldmodels.mdnrnn import load_mdnrnn
from worldmodels.worlds import world_of
cfgf, ctrl = sys.argv[1], sys.argv[2]; TAU = float(sys.argv[5]) if len(sys.argv) > 5 else None; DROP = float(sys.argv[6]) if len(sys.argv) > 6 else None; STEPS = int(sys.argv[7]) if len(sys.argv) > 7 else None; deltas = [float(d) for d in sys.argv[3].split(",")]
rec = json.load(open(cfgf))["config"]; c = rec["controller"]
res = json.load(open(sys.argv[4]))
world = world_of(rec["env"]["env_id"])
m, _ = load_mdnrnn(res["mdnrnn"], vae_path=res["vae"])
BD = rec["branch_data"][-1:] if len(sys.argv) > 8 else rec["branch_data"]; print("branch", BD); starts = branch_starts(m, BD, BRANCH_STARTS, seed=c["seed"])
dream = BatchedDream.from_checkpoint(res["mdnrnn"], "cpu", vae_path=res["vae"], temperature=TAU if TAU is not None else c["temperature"],
    max_steps=STEPS or c["dream_max_steps"], done_threshold=c["done_threshold"], sample_done=c["sample_done"],
    dropout=DROP if DROP is not None else c["dream_dropout"], reward_penalty=c["reward_penalty"], action_map=world.action_map,
    reward=world.dream_reward, starts=starts)
C, _ = load_controller(ctrl); b0 = C.fc.bias.data.clone(); P = []
for d in deltas:
    C.fc.bias.data = b0.clone(); C.fc.bias.data[1] += d; P.append(torch.as_tensor(C.get_flat()))
R = dream.evaluate(torch.stack(P).double(), 256, seed=12345)
for d, r in zip(deltas, R):
    print(f"delta {d:+.1f}: dream return {r.mean():.1f} +- {r.std():.1f} (256 dreams of {c['dream_max_steps']} steps)")

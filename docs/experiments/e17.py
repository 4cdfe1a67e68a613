"""E17 (session 9, diagnostic): is the ~500 ceiling the dream or the features?
C trained in the REAL env with the ES of the `laptop-real` preset (`laptop` then; the protocol
that scored 504.7 on seed 0 with round 0's V and M, random data only), on E14 seed 0's round-2
M (trained on random + round-1 + round-2 agent data; same V). Then the 100 test tracks."""
import os
from pathlib import Path
from worldmodels.config import PRESETS
from worldmodels.commands.train_controller import train_controller
from worldmodels.commands.evaluate import evaluate_agent, describe

def main():
    S = int(os.environ.get("S", "0")); R = Path(f"/work/runs/e14_s{S}"); O = Path(f"/work/runs/e17_s{S}")
    p = PRESETS["laptop-real"]  # `laptop` until session 21
    c = train_controller(R / "vae/vae.pt", R / "rounds/02/rnn/mdnrnn.pt", O / "controller", p.controller,
                         p.env, device="cpu", progress=False)
    res = evaluate_agent(c, episodes=100, workers=2, env_cfg=p.env, use_mu=p.eval.use_mu, device="cpu",
                         out_path=O / "eval" / "results.json", progress=False)
    print("score:", describe(res), flush=True)


if __name__ == "__main__":
    main()

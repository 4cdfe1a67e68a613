"""Teacher-forced reward head vs actual reward on real episodes (sum per 200-step window)."""
import sys, glob, numpy as np, torch
from worldmodels.mdnrnn import load_mdnrnn
m, _ = load_mdnrnn(sys.argv[1], vae_path=sys.argv[2]); m.eval()
for d in sys.argv[3:]:
    P, A = [], []
    for f in sorted(glob.glob(d + "/*.npz"))[:20]:
        x = np.load(f); mu, lv = torch.tensor(x["mu"]), torch.tensor(x["logvar"])
        z = mu + torch.exp(lv / 2) * torch.randn_like(mu)
        with torch.no_grad():
            out, _ = m(z[None], torch.tensor(x["action"])[None].float())
        pr = out.reward[0].numpy(); r = np.clip(x["reward"], -5, 5)
        # the head at step t predicts the reward of step t (after action t)
        for s in range(100, len(r) - 200, 200):
            P.append(pr[s:s+200].sum()); A.append(r[s:s+200].sum())
    P, A = np.array(P), np.array(A)
    print(f"{d}: per 200 steps predicted {P.mean():.1f} actual {A.mean():.1f} corr {np.corrcoef(P, A)[0,1]:.2f} n {len(P)}")

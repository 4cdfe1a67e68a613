"""D13's diagnostic: M's losses on Take Cover episodes that no M of the comparison has seen.

For each seed, the control M (D9 / D10: 500 sticky episodes, 60 epochs) and D13's M (1000
episodes, 30 epochs) share one V; both are scored on the same held-out latents (100 sticky
episodes of another collection seed, encoded by that V), with the loss M trains on
(``worldmodels.commands.train_rnn.evaluate``: GMM NLL of z, done BCE with its positive weight).

    worldmodels collect --preset doom-laptop --out /work/runs/heldout/rollouts \
        --collect.seed 1000 --collect.episodes 100
    worldmodels encode --data /work/runs/heldout/rollouts --vae /work/runs/d10_s2/vae/vae.pt \
        --out /work/runs/heldout/lat_s2     # the same for seeds 0 and 1 with their V
    python docs/experiments/d13_heldout.py d10_s2:d13_s2:heldout/lat_s2 ...

Each argument is CONTROL:D13:LATENTS, folders under ``--root`` (default /work/runs).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from worldmodels.commands.train_rnn import evaluate, load_latents, make_sequences
from worldmodels.config import MDNRNNConfig, from_dict
from worldmodels.data import episode_files
from worldmodels.mdnrnn import load_mdnrnn


def score(rnn_path: Path, latents: Path) -> dict[str, float]:
    model, ckpt = load_mdnrnn(rnn_path)
    cfg = from_dict(MDNRNNConfig, ckpt["config"])
    data = load_latents(episode_files(latents, kind="latent"))
    seqs = make_sequences(data.starts, data.lengths, cfg.seq_len)
    torch.manual_seed(0)
    losses = evaluate(model, data, seqs, cfg, torch.device("cpu"))
    return {**losses, **hazard(model, data, cfg.done_pos_weight)}


@torch.no_grad()
def hazard(model, data, pos_weight: float) -> dict[str, float]:
    """M's done probabilities along each whole held-out episode (z = mu): their sum over an
    episode (a calibrated hazard sums to ~1 over an episode that ends in death), the same with
    the logit shifted by -log(pos_weight) (the probability a head trained with that weight
    means), and the true rate (episodes that ended in death, per step)."""
    sums, sums_cal, deaths, steps = [], [], 0, 0
    for start, length in zip(data.starts, data.lengths):
        sl = slice(int(start), int(start + length))
        out, _ = model(data.mu[sl].float()[None], data.action[sl].float()[None])
        logit = out.done_logit[0]
        sums.append(torch.sigmoid(logit).sum().item())
        sums_cal.append(torch.sigmoid(logit - math.log(pos_weight)).sum().item())
        deaths += int(data.terminated[sl].any())
        steps += int(length)
    n = len(sums)
    return {"hazard_sum": sum(sums) / n, "hazard_sum_calibrated": sum(sums_cal) / n,
            "deaths_per_episode": deaths / n, "mean_p": sum(sums) / steps,
            "true_rate": deaths / steps}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("triples", nargs="+", help="CONTROL:D13:LATENTS run folders")
    parser.add_argument("--root", type=Path, default=Path("/work/runs"))
    args = parser.parse_args()
    for triple in args.triples:
        control, d13, latents = (args.root / p for p in triple.split(":"))
        row = {run.name: score(run / "rnn" / "mdnrnn.pt", latents) for run in (control, d13)}
        print(json.dumps({"latents": str(latents), **row}))


if __name__ == "__main__":
    main()

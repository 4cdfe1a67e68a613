"""Does M's reward head know what the real game pays? A diagnostic for the dream protocol.

M reads real encoded episodes with teacher forcing (z = mu, the actions taken) and its
predicted rewards are compared with the real ones: per episode, the real return against the
sum of M's rewards (their means, and the correlation over episodes), and per step, the
correlation of the two reward series. A reward head that tracks the returns of episodes it
never saw (e.g. the next round's driving) is not what stops the dream; compounding errors of
the open-loop dream are then the suspect.

    python scripts/reward_calibration.py --rnn RUN/rounds/01/rnn/mdnrnn.pt \
        --data RUN/rounds/02/latents --episodes 40
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch


def calibration(rnn: Path, data: Path, episodes: int) -> dict[str, float]:
    from worldmodels.data import episode_files, load_episodes
    from worldmodels.mdnrnn import load_mdnrnn

    m, _ = load_mdnrnn(rnn)
    if m.reward_head is None:
        raise ValueError(f"{rnn} has no reward head")
    files = episode_files(data, kind="latent")[:episodes]
    if not files:
        raise ValueError(f"{data} lists no encoded episode")
    real, pred, per_step = [], [], []
    with torch.no_grad():
        for ep in load_episodes(files, kind="latent", keys=("mu", "action", "reward")):
            z = torch.from_numpy(ep["mu"].astype(np.float32))[None]
            a = torch.from_numpy(ep["action"].astype(np.float32))[None]
            r = m(z, a)[0].reward[0]
            r = (r.mean(-1) if r.dim() > 1 else r).numpy()  # an ensemble: the heads' mean
            real.append(float(ep["reward"].sum()))
            pred.append(float(r.sum()))
            if r.std() > 0 and ep["reward"].std() > 0:
                per_step.append(float(np.corrcoef(r, ep["reward"])[0, 1]))
    real_a, pred_a = np.array(real), np.array(pred)
    corr = float(np.corrcoef(real_a, pred_a)[0, 1]) if len(real) > 1 and real_a.std() > 0 \
        and pred_a.std() > 0 else float("nan")
    return {"episodes": len(real), "real_return_mean": float(real_a.mean()),
            "real_return_std": float(real_a.std()), "m_return_mean": float(pred_a.mean()),
            "m_return_std": float(pred_a.std()), "corr_over_episodes": corr,
            "corr_per_step": float(np.mean(per_step)) if per_step else float("nan")}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("--rnn", required=True, type=Path, help="M's checkpoint (mdnrnn.pt)")
    parser.add_argument("--data", required=True, type=Path,
                        help="latent folder (worldmodels encode) of the episodes to read")
    parser.add_argument("--episodes", type=int, default=40,
                        help="the first N episodes of the folder (default 40)")
    args = parser.parse_args(argv)
    if args.episodes < 1:
        parser.error(f"--episodes must be >= 1, got {args.episodes}")
    torch.set_num_threads(1)
    try:
        result = calibration(args.rnn, args.data, args.episodes)
    except (OSError, ValueError) as e:
        print(f"reward_calibration: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""D20 (CPU part): Cs in the dreams of the Ms that docs/experiments/d20_gpu.sh trained on a lent
GPU. Their run folders came back without the .npz data (unpacked into runs/d20_<variant>,
vae.pt reassembled from its pieces), so the pipeline's collect and encode would redo them:
this runs round 0's Cs and the choice (``iterate.choose_round0``, as the pipeline's
round0-models stage) and the test (``evaluate_agent``) directly, on the run's own preset.json.

    python docs/experiments/d20_cpu.py --controllers 2 --no-test m256e12 m256e24 m512e16
    python docs/experiments/d20_cpu.py --controllers 2 m256e12 m256e24 m512e16   # + the tests
"""
import argparse
import json
from pathlib import Path

import torch

from worldmodels.commands.evaluate import evaluate_agent
from worldmodels.commands.iterate import choose_round0
from worldmodels.commands.pipeline import _finished_evaluation
from worldmodels.config import Preset, from_dict, with_values


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("variants", nargs="+")
    p.add_argument("--controllers", type=int, default=2)
    p.add_argument("--no-test", action="store_true")
    p.add_argument("--root", type=Path, default=Path("runs"))
    args = p.parse_args()
    torch.set_num_threads(2)
    for v in args.variants:
        run = args.root / f"d20_{v}"
        preset = from_dict(Preset, json.loads((run / "preset.json").read_text()))
        preset = with_values(preset, {"iterate.controllers": args.controllers, "controller.workers": 2,
                                      "eval.workers": 2})
        choose_and_test(run, preset, test=not args.no_test, label=f"d20 {v}")


def choose_and_test(run: Path, preset: Preset, test: bool, label: str) -> None:
    """Round 0's Cs and choice in ``run`` (as the pipeline), then the kept C's test into
    ``run/eval/results.json`` unless that file already scores it (the pipeline's own check,
    by the C's sha256 and the episodes). Also used by d21.py."""
    controller = choose_round0(run, preset, device="cpu", progress=False)
    print(f"{label}: kept {controller}", flush=True)
    if not test:
        return
    out = run / "eval" / "results.json"
    if _finished_evaluation(out, Path(controller), preset) is None:  # the pipeline's rule (sha256)
        evaluate_agent(controller, episodes=preset.eval.episodes, workers=2, env_cfg=preset.env,
                       use_mu=preset.eval.use_mu, device="cpu", out_path=out, progress=False)
    res = json.loads(out.read_text())
    print(f"{label}: test {res['summary']['mean']:.1f} +- {res['summary']['std']:.1f}", flush=True)


if __name__ == "__main__":  # the real-env workers are spawned processes
    main()

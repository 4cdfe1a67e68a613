"""D21: the dream's temperature under today's Take Cover recipe (sampled dones, [z, h, c]).

D1's temperature table was measured on an M of per-step random data with thresholded dones;
with sampled dones (D3 on) no other temperature than 1.15 was tried. This trains round 0's Cs
again in the dream of a finished run's M (the same M, V and latents, hard-linked into a new
folder ``<run>_<tag>``) with one preset value changed, and makes round 0's choice as the
pipeline does (``iterate.choose_round0``; the Cs' CMA-ES seeds are the pipeline's, so C j
pairs with the run's own C j). With ``--test``, the kept C is tested on the 100 test episodes.

    python docs/experiments/d21.py --run runs/d20_m256e24 --tag tau130 \
        --set controller.temperature=1.3 --controllers 2
"""
import argparse
import json
import os
from pathlib import Path

import torch
from d20_cpu import choose_and_test  # docs/experiments is on sys.path when run as a script

from worldmodels.config import Preset, from_dict, to_json, with_values

SHARED = ("rollouts", "latents", "vae", "rnn")  # what the new folder takes from the run


def link_tree(src: Path, dst: Path) -> None:
    """Hard-link every file of ``src`` under ``dst`` (the run's stages stay untouched)."""
    for root, _, files in os.walk(src):
        out = dst / Path(root).relative_to(src)
        out.mkdir(parents=True, exist_ok=True)
        for f in files:
            if not (out / f).exists():
                os.link(Path(root) / f, out / f)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--tag", required=True)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="a preset value (JSON), e.g. controller.temperature=1.3")
    p.add_argument("--controllers", type=int, default=2)
    p.add_argument("--test", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(2)
    run = args.run.resolve()
    new = run.parent / f"{run.name}_{args.tag}"
    for part in SHARED:
        if (run / part).exists():
            link_tree(run / part, new / part)
    values = {k: json.loads(v) for k, v in (s.split("=", 1) for s in args.set)}
    values |= {"iterate.controllers": args.controllers, "controller.workers": 2, "eval.workers": 2}
    preset = with_values(from_dict(Preset, json.loads((run / "preset.json").read_text())), values)
    (new / "preset.json").write_text(to_json(preset) + "\n")  # the folder records its own values
    choose_and_test(new, preset, test=args.test, label=f"d21 {new.name}")

if __name__ == "__main__":  # the real-env workers are spawned processes
    main()

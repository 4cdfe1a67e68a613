"""Write a trained C, with the V and M it records, as a shipped agent folder (``worldmodels.zoo``):
V and M in float16, a manifest with every file's sha256, the label and the score.

    worldmodels export-agent --controller runs/x/controller/controller_best.pt \\
        --results runs/x/eval/results.json --name carracing --out agents/zoo/carracing \\
        --label "laptop-dream, seed 0: the best dream-trained agent so far" \\
        --command "worldmodels pipeline --preset laptop-dream ..." --machine "2-core CPU"

Then ``worldmodels play --agent carracing`` (or ``--agent agents/zoo/carracing``) uses it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..zoo import export_agent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--controller", type=Path, required=True, help="C checkpoint to ship")
    parser.add_argument("--out", type=Path, required=True, help="agent folder to write")
    parser.add_argument("--name", required=True, help="the agent's name (its folder in agents/zoo)")
    parser.add_argument("--label", required=True,
                        help="one line on what this agent is, shown whenever it is loaded")
    parser.add_argument("--results", type=Path,
                        help="`worldmodels evaluate` results.json of this C (its score)")
    parser.add_argument("--command", help="the command that trained it (recorded)")
    parser.add_argument("--machine", help="the machine that trained it (recorded)")


def run(args: argparse.Namespace) -> int:
    shipped = export_agent(args.controller, args.out, args.name, args.label, args.results,
                           args.command, args.machine)
    total = sum(f["bytes"] for f in shipped.manifest["files"].values())
    print(f"agent {args.name}: {shipped.folder} ({total / 1e6:.1f} MB)")
    return 0

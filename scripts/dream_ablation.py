"""Dream-protocol ablation: several training seeds x variants of the pipeline, side by side.

Each seed's round-0 data (collect -> V -> encode) is made once and copied to every variant,
so variants of one seed differ only in what the variant changes. Every run is an ordinary
`worldmodels pipeline` run folder (resumable: rerun this script after a kill), and the
table at the end (also written to ROOT/ablation.json and ROOT/ablation.md) gives, per
variant, the test score over seeds with each seed's score, the round chosen, real env steps
and wall time.

    python scripts/dream_ablation.py --root runs/ablation --seeds 1 2 3 \
        --variant base: --variant "clip:--rnn.reward-clip 5" --parallel 3 -- --preset laptop-dream

A variant is ``NAME:OPTIONS``: `worldmodels pipeline` options of its runs (an overlay, or
``--SECTION.FIELD VALUE`` options; none for the baseline). Arguments after `--` go to every
`worldmodels pipeline` call (e.g. `--preset`, `--iterate.rounds 3`), before the variant's.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

SEEDED = ("--collect.seed", "--vae.seed", "--rnn.seed", "--controller.seed")


def pipeline(run_dir: Path, common: list[str], options: list[str], log: Path,
             until: str | None = None) -> int:
    cmd = [sys.executable, "-m", "worldmodels.cli", "pipeline", "--run-dir", str(run_dir),
           "--no-progress", *common, *options]
    if until:
        cmd += ["--until", until]
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)


def run_seed(root: Path, seed: int, variants: dict[str, list[str]], common: list[str]) -> None:
    seeded = [arg for option in SEEDED for arg in (option, str(seed))]
    base = root / f"seed{seed}" / "_round0"
    base.mkdir(parents=True, exist_ok=True)
    if pipeline(base, common, seeded, base.parent / "round0.log", until="encode") != 0:
        raise RuntimeError(f"seed {seed}: round 0 failed, see {base.parent / 'round0.log'}")
    with ThreadPoolExecutor(len(variants)) as pool:
        futures = []
        for name, options in variants.items():
            run_dir = root / f"seed{seed}" / name
            if not (run_dir / "vae").exists():
                tmp = run_dir.with_name(run_dir.name + ".copying")
                shutil.rmtree(tmp, ignore_errors=True)
                shutil.copytree(base, tmp, ignore=shutil.ignore_patterns("tb", "preset.json",
                                                                         "timings.json"))
                tmp.rename(run_dir)
            futures.append(pool.submit(pipeline, run_dir, common, seeded + options,
                                       run_dir.parent / f"{name}.log"))
        for f in futures:
            f.result()


def table(root: Path, seeds: list[int], variants: dict[str, list[str]]) -> dict:
    out = {}
    for name in variants:
        rows = []
        for seed in seeds:
            run_dir = root / f"seed{seed}" / name
            res = run_dir / "eval" / "results.json"
            if not res.exists():
                continue
            r = json.loads(res.read_text())
            it = run_dir / "iterate.json"
            itj = json.loads(it.read_text()) if it.exists() else {}
            timings = json.loads((run_dir / "timings.json").read_text())
            base_t = root / f"seed{seed}" / "_round0" / "timings.json"
            wall = sum(timings.values()) + (sum(json.loads(base_t.read_text()).values())
                                            if base_t.exists() else 0)
            rows.append({"seed": seed, "mean": r["summary"]["mean"], "std": r["summary"]["std"],
                         "chosen_round": itj.get("chosen", {}).get("round"),
                         "real_steps": itj.get("real_steps_total"),
                         "rounds": [(x["round"], x["best_val_return"], x["dream_return"])
                                    for x in itj.get("rounds", [])],
                         "wall_s": round(wall)})
        if rows:
            means = np.array([r["mean"] for r in rows])
            out[name] = {"seeds": rows, "mean_over_seeds": float(means.mean()),
                         "std_over_seeds": float(means.std())}
    return out


def main() -> int:
    argv = sys.argv[1:]
    common = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--variant", action="append", required=True,
                        help="NAME:PIPELINE_OPTIONS, e.g. 'dropout:--preset dropout' or "
                             "'short:--controller.dream-max-steps 200' (NAME: for no change)")
    parser.add_argument("--parallel", type=int, default=1, help="seeds run at once")
    args = parser.parse_args(argv)
    variants = {}
    for v in args.variant:
        name, _, options = v.partition(":")
        variants[name] = shlex.split(options)
    args.root.mkdir(parents=True, exist_ok=True)
    start = time.time()
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    with ThreadPoolExecutor(args.parallel) as pool:
        for f in [pool.submit(run_seed, args.root, s, variants, common) for s in args.seeds]:
            f.result()
    result = table(args.root, args.seeds, variants)
    (args.root / "ablation.json").write_text(json.dumps(result, indent=2))
    lines = ["| variant | test mean over seeds | per seed (mean +- std, chosen round) |",
             "|---|---|---|"]
    for name, r in result.items():
        per = "; ".join(f"s{x['seed']}: {x['mean']:.1f} +- {x['std']:.1f} (r{x['chosen_round']})"
                        for x in r["seeds"])
        lines.append(f"| {name} | {r['mean_over_seeds']:.1f} +- {r['std_over_seeds']:.1f} | {per} |")
    (args.root / "ablation.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"wall time {time.time() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

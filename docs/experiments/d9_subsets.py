"""D9's sub-selections: the kept C of a run with J = 1..4 Cs in one M's dream.

The J-th C's CMA-ES seed does not depend on how many Cs a run trains
(``derive_seed(controller.seed, 0, 0, j, 13)``, C 0 the preset's seed), so a run with
``--iterate.controllers 4`` holds the runs with 1, 2 and 3 Cs: the best-validated of its
first J Cs is what a J-C run keeps. Each C's wall time is the gap between its done.json and
the previous stage's. Test scores come from any results JSON in RUN/eval* whose
controller_sha256 is that C's (the pipeline's own test, or an extra
``worldmodels evaluate --out RUN/eval_cJ/results.json``).

Usage: python docs/experiments/d9_subsets.py /work/runs/d9_s0 /work/runs/d9_s1 ...
"""
import json
import sys
from pathlib import Path

from worldmodels.checkpoint import checkpoint_sha256

for run in map(Path, sys.argv[1:]):
    index = json.loads((run / "round0_models.json").read_text())
    tests = {}
    for res in run.glob("eval*/results.json"):
        r = json.loads(res.read_text())
        tests[r["controller_sha256"]] = r["summary"]["mean"]
    stages = ["collect", "train-vae", "encode", "train-rnn"]
    times = json.loads((run / "timings.json").read_text())
    base = sum(times.get(s, 0.0) for s in stages)
    prev = (run / "rnn" / "done.json").stat().st_mtime
    c_times = []
    for m in index["models"]:
        done = Path(m["controller"]).parent / "done.json"
        t = done.stat().st_mtime
        c_times.append(t - prev)
        prev = t
    test_s = times.get("evaluate", 0.0)
    print(f"{run}: V..M {base:.0f} s, Cs {[round(c) for c in c_times]} s, test {test_s:.0f} s")
    for j in range(1, len(index["models"]) + 1):
        first = index["models"][:j]
        best = max(first, key=lambda m: m["best_val_return"])
        s = checkpoint_sha256(best["controller"])
        total = base + sum(c_times[:j]) + test_s
        print(f"  J={j}: kept C {first.index(best)} (validation {best['best_val_return']:.1f}), "
              f"test {tests.get(s, 'not tested')}, end to end ~{total / 60:.1f} min")

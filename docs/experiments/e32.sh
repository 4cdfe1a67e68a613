#!/bin/bash
# E32: validate each round's Cs once, at generation 20 (--iterate.eval-start 20), instead of at
# generations 10 and 20. Validation does not touch CMA-ES or the dreams (their seeds derive from
# the C's seed and the generation), so a round's Cs train the same either way and only the kept
# checkpoint can change. On seeds 0 and 2 (E28) every round >= 1 kept a generation-20 C, so their
# runs are E28's, less the generation-10 validations. Seed 1 (E27f) kept a generation-10 C in
# round 1; this forks that run, rewrites round 1's C records as if they had been validated at
# generation 20 only (done.json, config.json, controller_best.pt := controller.pt), drops
# round 2 and the test, and reruns them with the option:
#   bash docs/experiments/e32.sh [SRC] [DST]
set -euo pipefail
SRC=${1:-/work/runs/e27f_s1}; DST=${2:-/work/runs/e32_s1}
cd "$(dirname "$0")/../.."
bash docs/experiments/fork.sh "$SRC" "$DST"
rm -rf "$DST/rounds/02" "$DST/tb/rounds/02" "$DST/eval"
python3 - "$DST" <<'PY'
import csv, glob, json, os, shutil, sys
dst = sys.argv[1]
for done_path in sorted(glob.glob(f"{dst}/rounds/01/**/done.json", recursive=True)):
    folder = os.path.dirname(done_path)
    if not os.path.basename(folder).startswith("controller"):
        continue
    rel = os.path.relpath(folder, f"{dst}/rounds/01")
    done = json.load(open(done_path))
    ev20 = [e for e in done["evals"] if e[0] == 20]
    assert len(ev20) == 1, folder
    # the generation-10 validation's steps, from the C's scalars (else 16 full episodes)
    steps10, source = 16000, "assumed"
    scalars = f"{dst}/tb/rounds/01/{rel}/scalars.csv"
    if os.path.exists(scalars):
        for row in csv.DictReader(open(scalars)):
            if row["tag"] == "eval/real_steps" and int(row["step"]) == 10:
                steps10, source = int(float(row["value"])), "scalars"
    done.update(evals=ev20, best_real=ev20[0][1], best_generation=20,
                real_steps=done["real_steps"] - steps10,
                controller_best=os.path.join(folder, "controller_best.pt"))
    with open(done_path + ".tmp", "w") as f:
        json.dump(done, f)
    os.replace(done_path + ".tmp", done_path)
    cfg_path = os.path.join(folder, "config.json")
    cfg = json.load(open(cfg_path))
    cfg["config"]["controller"]["eval_start"] = 20
    with open(cfg_path + ".tmp", "w") as f:
        json.dump(cfg, f)
    os.replace(cfg_path + ".tmp", cfg_path)
    best = os.path.join(folder, "controller_best.pt")
    # a new file, never written through the hard link the fork made to the source's
    shutil.copyfile(os.path.join(folder, "controller.pt"), best + ".tmp")
    os.replace(best + ".tmp", best)
    print(f"{rel}: validation {ev20[0][1]:.1f} at generation 20, steps {done['real_steps']} "
          f"(generation 10's {steps10}, {source})")
PY
S=1
exec worldmodels --threads "${THREADS:-2}" pipeline --preset laptop --run-dir "$DST" \
    --collect.seed $S --vae.seed $S --rnn.seed $S --controller.seed $S --iterate.eval-start 20

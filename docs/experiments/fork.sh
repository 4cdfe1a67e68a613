#!/bin/bash
# Fork a finished run folder (every stage and every iterate round) into DST, so that an arm of
# an experiment resumes from the same state as its source without retraining it:
#   bash docs/experiments/fork.sh /work/runs/e24_s0 /work/runs/e28_s0
# Rollouts (.npz) and checkpoints (.pt) are hard-linked: the package only ever replaces them
# by rename, so the source stays as it was. Every other file (records, manifests, TensorBoard
# events and scalars, which are appended in place) is copied, and each text record's paths
# that name SRC are rewritten to name DST. The source's lock files are not forked.
set -euo pipefail
SRC=$(realpath "${1:?source run folder}"); DST=${2:?fork folder}
[ -e "$DST" ] && { echo "fork.sh: $DST exists; not overwriting it" >&2; exit 1; }
DST=$(realpath -m "$DST")
cp -al "$SRC" "$DST"
find "$DST" -name '*.lock' -delete
python3 - "$SRC" "$DST" <<'PY'
import os, shutil, sys
src, dst = sys.argv[1], sys.argv[2]
for root, _, files in os.walk(dst):
    for name in files:
        if name.endswith((".npz", ".pt")):
            continue
        path = os.path.join(root, name)
        tmp = path + ".fork"
        shutil.copyfile(path, tmp)  # a file of its own, not the source's inode
        if name.endswith((".json", ".jsonl", ".csv")):
            with open(tmp, encoding="utf-8") as f:
                text = f.read()
            with open(tmp, "w", encoding="utf-8") as f:
                f.write(text.replace(src + "/", dst + "/").replace(f'"{src}"', f'"{dst}"'))
        os.replace(tmp, path)
PY
echo "fork.sh: $SRC -> $DST"

#!/bin/bash
# E24 (planned in session 21): `laptop`'s round 1 collected with one action offset per episode
# (E18's `collect.episode_offset 0.15`, noise on steer and gas only), as a paired fork of a
# finished `laptop` run: round 0 (rollouts, V, latents, M, C) is hard-linked from SRC (its
# files are only ever replaced by rename, never written in place, so the source stays as it
# was), its TensorBoard logs copied, and `worldmodels pipeline` reruns only `iterate` and
# `evaluate` in DST. The control arm is SRC itself (the same round 0, round 1 without the
# offset).
#   SRC=/work/runs/ld_s0 DST=/work/runs/e24_s0 S=0 bash docs/experiments/e24.sh
# Extra pipeline options after the variables (ARGS) change the arm, e.g.
#   ARGS="--collect.episode-offset 0 --collect.action-noise-dims 0,1" (noise dims alone).
# WMOPTS="--threads 1" for two forks at once on 2 cores.
set -euo pipefail
SRC=${SRC:?finished laptop run folder}; DST=${DST:?fork folder}; S=${S:-0}
ARGS=${ARGS:-"--collect.episode-offset 0.15 --collect.action-noise-dims 0,1"}
if [ ! -d "$DST" ]; then
  mkdir -p "$DST"
  for part in rollouts vae latents rnn controller; do cp -al "$SRC/$part" "$DST/$part"; done
  mkdir -p "$DST/tb" && cp -r "$SRC/tb/vae" "$SRC/tb/rnn" "$SRC/tb/controller" "$DST/tb/"
  # no lock files of the source's stages: a fork is its own run
  find "$DST" -name '*.lock' -delete
  # C's record names the latents its dreams branch from by path: point it at the fork's (the
  # same files), written anew so that the source's record is not touched through the link
  python3 - "$SRC" "$DST" <<'PY'
import json, os, sys
src, dst = sys.argv[1], sys.argv[2]
path = os.path.join(dst, "controller", "config.json")
text = open(path).read().replace(json.dumps(os.path.join(src, "latents")),
                                 json.dumps(os.path.join(dst, "latents")))
os.remove(path)
open(path, "w").write(text)
PY
fi
# shellcheck disable=SC2086  # ARGS and WMOPTS are lists of options
worldmodels ${WMOPTS:-} pipeline --preset laptop --run-dir "$DST" --collect.seed "$S" --vae.seed "$S" \
  --rnn.seed "$S" --controller.seed "$S" $ARGS --no-progress "$@"

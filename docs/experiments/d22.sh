#!/bin/bash
# D22: `doom-laptop` on 5x the episodes (2,500 sticky) with M at the same number of updates
# (12 epochs instead of 60) and V as the preset (the same images, unlike D20's 2.3x), 2 Cs;
# then the C that was not kept is tested too (every C's test: the M's level, not one draw).
# Usage: S=2 [WAIT=pattern] bash docs/experiments/d22.sh    (resumable: rerun the same line)
if [ -n "$WAIT" ]; then while pgrep -f "$WAIT" > /dev/null; do sleep 20; done; fi
S=${S:?}; R=${R:-runs/d22_s$S}
echo "d22 s$S start $(date -u +%FT%TZ)"
worldmodels --threads 2 pipeline --preset doom-laptop --run-dir $R \
  --collect.seed $S --vae.seed $S --rnn.seed $S --controller.seed $S \
  --collect.episodes 2500 --rnn.epochs 12 --iterate.controllers 2 --no-progress \
  --vae.max-frames-per-epoch 175000
rc=$?; echo "d22 s$S pipeline end $(date -u +%FT%TZ) rc=$rc"
for C in controller controller_c1; do
  if ! grep -q "$C/controller_best.pt" $R/eval/results.json 2>/dev/null; then
    worldmodels --threads 2 evaluate --preset doom-laptop --controller $R/$C/controller_best.pt \
      --vae $R/vae/vae.pt --rnn $R/rnn/mdnrnn.pt --out $R/eval_$C/results.json --no-progress
  fi
done
echo "d22 s$S end $(date -u +%FT%TZ)"

#!/bin/bash
# D17+: Cs trained in the dream of D9 / D10's M (everything else reused), with extra ARGS.
# Usage: TAG=d17 ARGS="--controller.popsize 16 --controller.rollouts-per-candidate 16" SEEDS="2 0 1" C=2 ./d17.sh
# WAIT: a pgrep -f pattern to wait for before starting.
if [ -n "$WAIT" ]; then while pgrep -f "$WAIT" > /dev/null; do sleep 20; done; fi
C=${C:-2}; TAG=${TAG:?}
for S in ${SEEDS:-2 0 1}; do
  case $S in 0) SRC=d9_s0;; 1) SRC=d9_s1;; 2) SRC=d10_s2;; esac
  R=/work/runs/${TAG}_s$S
  if [ ! -d $R ]; then
    for d in rollouts vae latents rnn; do
      mkdir -p $R/$d
      for f in /work/runs/$SRC/$d/*; do
        case $(basename $f) in run.lock) ;; *.npz|*.pt) ln $f $R/$d/ ;; *) cp $f $R/$d/ ;; esac
      done
    done
  fi
  echo "$TAG s$S start $(date -u +%FT%TZ)"
  worldmodels --threads 2 pipeline --preset doom-laptop --run-dir $R \
    --collect.seed $S --vae.seed $S --rnn.seed $S --controller.seed $S \
    --iterate.controllers $C --no-progress $ARGS
  rc=$?; echo "$TAG s$S end $(date -u +%FT%TZ) rc=$rc"
done

#!/bin/bash
# Test (100 episodes) every C of D18 (zch) and of its control (D9 s0/s1, D10 s2) that has no test yet.
P=$1; while kill -0 $P 2>/dev/null; do sleep 15; done
for RC in d18_s2:controller_c1 d18_s2:controller_c2 d18_s0:controller_c1 d18_s1:controller d18_s1:controller_c2 \
          d9_s0:controller_c1 d9_s0:controller_c2 d10_s2:controller d10_s2:controller_c2 d18_s1:controller_c1; do
  R=${RC%%:*}; C=${RC##*:}; OUT=/work/runs/$R/eval_$C/results.json
  if [ -f $OUT ]; then echo "have $OUT"; continue; fi
  echo "test $R $C $(date -u +%T)"
  worldmodels --threads 2 evaluate --preset doom-laptop --controller /work/runs/$R/$C/controller_best.pt \
    --vae /work/runs/$R/vae/vae.pt --rnn /work/runs/$R/rnn/mdnrnn.pt --out $OUT --no-progress 2>&1 | tail -1
done

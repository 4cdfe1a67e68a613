#!/bin/bash
# D20 (CPU part): Cs in the dreams of the Ms that docs/experiments/d20_gpu.sh trained on a lent
# GPU (their run folders unpacked into runs/d20_<variant>, vae.pt reassembled from its pieces).
# The same options as there, so every stage up to M is found finished; C as doom-laptop's.
#   C=2 UNTIL=round0-models bash docs/experiments/d20_cpu.sh   (then without UNTIL: the tests)
C=${C:-2}; UNTIL=${UNTIL:-evaluate}
A="--preset doom-laptop --collect.seed 0 --vae.seed 0 --rnn.seed 0 --controller.seed 0
   --collect.episodes 2500 --vae.max-frames-per-epoch 400000 --collect.workers 15 --no-progress"
for v in ${VARIANTS:-m256e12:--rnn.epochs=12 m256e24:--rnn.epochs=24 m512e16:--rnn.hidden-size=512,--rnn.epochs=16}; do
  n=${v%%:*}; extra=${v#*:}
  echo "d20 $n C=$C until $UNTIL start $(date -u +%FT%TZ)"
  # shellcheck disable=SC2086  # A and extra are lists
  worldmodels --threads 2 pipeline $A ${extra//,/ } --run-dir runs/d20_$n --iterate.controllers "$C" --until "$UNTIL"
  echo "d20 $n end $(date -u +%FT%TZ) rc=$?"
done

#!/bin/bash
# One `worldmodels pipeline` per seed, side by side, on a lent GPU machine (one H100 + 16 CPU
# cores, Python 3.12, torch with CUDA, no network): M, V and the dream on the GPU, 7 worker
# processes per stage and seed. Run from the repository root there; what it finds under
# runs/ is resumed (a warm machine keeps runs/ between calls). After LIMIT seconds each
# pipeline is stopped (rerun to resume), then each seed's small files, and the V, M and C of
# the kept agent, are packed into $OUT/<name>_s<seed>.tar.gz.
#   NAME=d6 SEEDS="1 2" PRESET=doom-laptop ARGS="--collect.policy sticky ..." bash gpu_pipeline.sh
# The packages missing there travel as .whl/site.zip, made here by
# docs/experiments/make_site_zip.sh (doom or carracing), unpacked to /tmp/site.
# D6 (notebook) ran it as:
#   NAME=d6 SEEDS="1 2" PRESET=doom-laptop LIMIT=470 ARGS="--collect.policy sticky
#   --controller.sample-done --controller.eval-every 20 --controller.eval-episodes 32
#   --iterate.round0-models 4" bash docs/experiments/gpu_pipeline.sh
NAME=${NAME:-run}; SEEDS=${SEEDS:-"1 2"}; PRESET=${PRESET:-doom-laptop}; DEV=${DEV:-cuda}
LIMIT=${LIMIT:-480}; WK=${WK:-7}; O=${OUT:-/tmp/gpu_out}; mkdir -p $O runs
export PYTHONUNBUFFERED=1
. docs/experiments/device_site.sh  # .whl/site.zip -> /tmp/site, PYTHONPATH
T0=$(date +%s); log() { echo "[$(date +%T) +$(( $(date +%s) - T0 ))s] $*" | tee -a $O/$NAME.log; }
log "start; $(nvidia-smi -L 2>&1 | head -1); $(python3 -c 'import torch;print(torch.__version__, torch.cuda.is_available())' 2>&1 | tail -1)"
for S in $SEEDS; do
  # shellcheck disable=SC2086  # ARGS is a list of options
  timeout $LIMIT python3 -m worldmodels --threads 2 pipeline --preset $PRESET --run-dir runs/${NAME}_s$S \
    --collect.seed $S --vae.seed $S --rnn.seed $S --controller.seed $S $ARGS \
    --device $DEV --collect.workers $WK --controller.workers $WK --eval.workers $WK --iterate.workers $WK \
    --no-progress > $O/${NAME}_s$S.log 2>&1 &
done
wait; log "pipelines ended"
for S in $SEEDS; do
  log "seed $S: $(tail -1 $O/${NAME}_s$S.log)"
  R=runs/${NAME}_s$S; files="$R/timings.json $R/round0_models.json $R/iterate.json $R/eval/results.json $R/preset.json"
  # the kept C and its M, as round 0's record names them (any M, any of its Cs)
  kept=$(python3 -c "import json;c=json.load(open('$R/round0_models.json'))['chosen'];print(c['rnn'], c['controller'])" 2>/dev/null)
  [ -n "$kept" ] && files="$files $R/vae/vae.pt $kept"
  # shellcheck disable=SC2046,SC2086
  tar czf $O/${NAME}_s$S.tar.gz $O/${NAME}_s$S.log $(ls $files $R/m*/rnn/done.json $R/rnn/done.json 2>/dev/null) 2>/dev/null
done
log end

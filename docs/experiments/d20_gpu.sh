#!/bin/bash
# D20 (device part): Take Cover's data scale. One collection of EPS sticky episodes (seed 0),
# one V (2 epochs of at most FR frames each), then several Ms on the
# same latents side by side on the GPU; C is trained afterwards on the 2-core CPU here
# (docs/experiments/d20_cpu.py). Each M's run folder comes back without its .npz data, and
# with the optimizer state dropped from vae.pt / mdnrnn.pt (the V before encode and M read it,
# so every recorded sha256 matches); vae.pt travels in 15 MB pieces.
#   run (device): bash docs/experiments/d20_gpu.sh     (carry .whl: make_site_zip.sh doom)
#   test (here):  SITE=0 PRESET=doom-debug EPS=6 FR=0 DEV=cpu WK=2 OUT=/tmp/d20t bash docs/experiments/d20_gpu.sh
PRESET=${PRESET:-doom-laptop}; EPS=${EPS:-2500}; FR=${FR:-400000}; DEV=${DEV:-cuda}; WK=${WK:-15}
O=${OUT:-/tmp/gpu_out}; mkdir -p "$O" runs; export PYTHONUNBUFFERED=1
VARIANTS=${VARIANTS:-"m256e12:--rnn.epochs 12;m256e24:--rnn.epochs 24;m512e16:--rnn.hidden-size 512 --rnn.epochs 16"}
MLIMIT=${MLIMIT:-530}  # the Ms stop this many seconds after the start (their folders still come back)
. docs/experiments/device_site.sh  # .whl/site.zip -> /tmp/site, PYTHONPATH
T0=$(date +%s); log() { echo "[$(date +%T) +$(( $(date +%s) - T0 ))s] $*" | tee -a "$O/d20.log"; }
log "start; $(nvidia-smi -L 2>&1 | head -1); $(python3 -c 'import torch;print(torch.__version__, torch.cuda.is_available())' 2>&1 | tail -1)"
A="--preset $PRESET --collect.seed 0 --vae.seed 0 --rnn.seed 0 --controller.seed 0
   --collect.episodes $EPS --vae.max-frames-per-epoch $FR --collect.workers $WK --device $DEV --no-progress"
B=runs/d20_base
slim() {  # drop the optimizer state of a finished checkpoint, atomically
  python3 - "$1" <<'PY' || exit 1
import os, sys, torch
p = sys.argv[1]; c = torch.load(p, map_location="cpu", weights_only=True); c["optimizer"] = None
torch.save(c, p + ".tmp"); os.replace(p + ".tmp", p)
PY
}
# shellcheck disable=SC2086  # A and the variants' options are lists
python3 -m worldmodels --threads 4 pipeline $A --run-dir $B --until train-vae > "$O/base.log" 2>&1 || { tail -20 "$O/base.log"; exit 1; }
log "collect + V done: $(grep -h 'wall time' "$O/base.log" | tail -1)"
slim $B/vae/vae.pt
# shellcheck disable=SC2086
python3 -m worldmodels --threads 4 pipeline $A --run-dir $B --until encode >> "$O/base.log" 2>&1 || { tail -20 "$O/base.log"; exit 1; }
log "encode done"
IFS=';' read -ra VS <<< "$VARIANTS"
for v in "${VS[@]}"; do
  n=${v%%:*}; R=runs/d20_$n
  for d in rollouts vae latents; do
    mkdir -p $R/$d
    for f in $B/$d/*; do case $(basename "$f") in run.lock) ;; *.npz|*.pt) ln "$f" $R/$d/ ;; *) cp "$f" $R/$d/ ;; esac; done
  done
  cp $B/preset.json $B/timings.json $R/ 2>/dev/null
  # shellcheck disable=SC2086
  timeout $(( MLIMIT - $(date +%s) + T0 )) python3 -m worldmodels --threads 4 pipeline $A ${v#*:} --run-dir $R --until train-rnn > "$O/$n.log" 2>&1 &
done
wait; log "Ms done"
for v in "${VS[@]}"; do
  n=${v%%:*}; R=runs/d20_$n
  log "$n: $(grep -h 'wall time' "$O/$n.log" | tail -1)"
  [ -f $R/rnn/mdnrnn.pt ] && slim $R/rnn/mdnrnn.pt
  tar czf "$O/d20_$n.tar.gz" --exclude='*.npz' --exclude='vae.pt' --exclude=run.lock -C runs d20_$n
done
split -b 15000000 $B/vae/vae.pt "$O/vae.pt.part-"
sha256sum $B/vae/vae.pt | tee -a "$O/d20.log"; ls -la "$O" | tee -a "$O/d20.log"; log end
(cd "$O" && tar czf logs.tar.gz ./*.log && rm -f ./*.log)  # 8 files at most come back

#!/bin/bash
# D5 (Take Cover): M of 512 units on 500 random + 500 sticky episodes, 4 variants
# (epochs 30/10 x dropout 0/0.05), C in each sampled-done dream at tau 1.15, every C scored on
# the 100 test episodes. Pick rule (fixed before the run): lowest held-out val_done_bce.
# Scale knobs for a dry run: EPS GENS TEST E_LONG E_SHORT HID DEV WK VAL
EPS=${EPS:-500}; GENS=${GENS:-60}; TEST=${TEST:-100}; E_LONG=${E_LONG:-30}; E_SHORT=${E_SHORT:-10}
HID=${HID:-512}; DEV=${DEV:-cuda}; WK=${WK:-7}; VAL=${VAL:-50}; R=${R:-/tmp/d5}; O=${OUT:-/tmp/d5out}
mkdir -p $R $O
WM="python3 -m worldmodels --threads 2"
P="--preset doom-laptop --no-progress"
log() { echo "[$(date +%T) +$(( $(date +%s) - T0 ))s] $*" | tee -a $O/d5.log; }
T0=$(date +%s)
log start
$WM collect $P --collect.episodes $EPS --collect.workers $WK --out $R/rand > $O/collect_rand.log 2>&1 &
$WM collect $P --collect.episodes $EPS --collect.workers $WK --collect.policy sticky --out $R/sticky > $O/collect_sticky.log 2>&1 &
wait; log "collected: $(tail -1 $O/collect_rand.log) | $(tail -1 $O/collect_sticky.log)"
$WM train-vae $P --data $R/rand --out $R/vae --device $DEV --vae.val-episodes ${VVAL:-10} > $O/vae.log 2>&1 || { log "vae failed"; tail $O/vae.log; exit 1; }
log "vae: $(tail -1 $O/vae.log)"
$WM encode --data $R/rand --vae $R/vae/vae.pt --out $R/lat_rand --device $DEV --no-progress > $O/enc1.log 2>&1 &
$WM encode --data $R/sticky --vae $R/vae/vae.pt --out $R/lat_sticky --device $DEV --no-progress > $O/enc2.log 2>&1 &
wait; log "encoded"
declare -A EP DR
EP[a]=$E_LONG; DR[a]=0; EP[b]=$E_LONG; DR[b]=0.05; EP[c]=$E_SHORT; DR[c]=0; EP[d]=$E_SHORT; DR[d]=0.05
chain() {  # one variant: M -> C in its dream -> 100 test episodes (variants run side by side)
  v=$1; dd=0; [ "${DR[$v]}" != "0" ] && dd=0.1
  $WM train-rnn $P --data $R/lat_rand $R/lat_sticky --out $R/$v/rnn --device $DEV --rnn.hidden-size $HID \
      --rnn.epochs ${EP[$v]} --rnn.dropout ${DR[$v]} --rnn.val-episodes $VAL > $O/rnn_$v.log 2>&1 || return 1
  log "M $v trained"
  $WM train-controller $P --vae $R/vae/vae.pt --rnn $R/$v/rnn/mdnrnn.pt --out $R/$v/controller --device $DEV \
      --controller.sample-done --controller.dream-dropout $dd --controller.generations $GENS > $O/c_$v.log 2>&1 || return 1
  log "C $v trained"
  $WM evaluate $P --controller $R/$v/controller/controller.pt --eval.episodes $TEST --eval.workers 4 \
      --device cpu --out $R/$v/eval/results.json > $O/eval_$v.log 2>&1 || return 1
  log "C $v evaluated: $(tail -1 $O/eval_$v.log)"
}
for v in a b c d; do chain $v & done
wait; log "all variants done"
for v in a b c d; do
  python3 - $R/$v $v ${EP[$v]} ${DR[$v]} <<'PY' | tee -a $O/d5.log
import json, sys
from pathlib import Path
d = Path(sys.argv[1]); rnn = json.loads((d / "rnn/done.json").read_text())
def pick(o, *ks):
    return {k: o.get(k) for k in ks}
c = json.loads((d / "controller/done.json").read_text()) if (d / "controller/done.json").exists() else {}
c = {k: c.get(k) for k in ("final_fitness_best", "final_fitness_mean")}
e = json.loads((d / "eval/results.json").read_text()) if (d / "eval/results.json").exists() else {}
losses = rnn.get("metrics", {})
print(sys.argv[2], "epochs", sys.argv[3], "dropout", sys.argv[4],
      "| M train/val done_bce", losses.get("done_bce"), losses.get("val_done_bce"),
      "| C", c,
      "| test", {k: e.get("summary", {}).get(k) for k in ("mean", "std", "min", "max", "episodes")})
PY
  grep "dream/return_mean" $O/c_$v.log | tail -1 | tee -a $O/d5.log
done
for v in a b c d; do cp $R/$v/rnn/done.json $O/rnn_done_$v.json 2>/dev/null; cp $R/$v/eval/results.json $O/eval_$v.json 2>/dev/null; done
log end

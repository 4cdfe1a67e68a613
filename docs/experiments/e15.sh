#!/bin/bash
# S=seed; runs the variants in order, one after another
for V in ${VARIANTS:-recent tau15 short drop2}; do
  OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 S=$S V=$V /work/e15venv/bin/python /work/runs/e15.py > /work/runs/e15_${V}_s$S.log 2>&1
done

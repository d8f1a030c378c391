#!/bin/sh
# Alternating A/B of whole PCD-1 training runs (seconds_per_epoch as ebm reports it: updates
# only), for docs/rbm.md "Binary-aware kernels". Run from the repository root:
#
#   sh benches/rbm_epoch_ab.sh BEFORE_BINARY AFTER_BINARY [PAIRS] [HIDDEN] [BATCH] [EPOCHS] [DATA]
#
# defaults: 5 pairs, MNIST-5k x 500 hidden, batch 100 (= persistent chains), 5 epochs, seed 0.
# EXTRA="--threads 1" passes global flags. Prints one "before|after seconds" line per run.
B=$1; A=$2; N=${3:-5}; H=${4:-500}; BS=${5:-100}; E=${6:-5}; D=${7:-data/mnist5k_train.txt}
OUT=${TMPDIR:-/tmp}/rbm_epoch_ab.safetensors
for i in $(seq "$N"); do
  for which in before after; do
    if [ "$which" = before ]; then X=$B; else X=$A; fi
    # shellcheck disable=SC2086
    "$X" $EXTRA train-rbm --data "$D" --hidden "$H" --batch-size "$BS" --learning-rate 0.05 \
      --epochs "$E" --persistent --chains "$BS" --eval none --seed 0 --output "$OUT" --json |
      python3 -c "import json, sys; print('$which', json.load(sys.stdin)['seconds_per_epoch'])"
  done
done

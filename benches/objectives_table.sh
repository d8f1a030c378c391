#!/usr/bin/env bash
# The comparison of docs/rbm.md ("Objectives compared"): exact test log-likelihood and seconds per
# epoch of CD-1, CD-10, PCD, pseudo-likelihood, ratio matching and NCE on bars-and-stripes 4x4
# (16 hidden), digits 8x8 (16 hidden) and MNIST-5k (25 hidden), the same epochs, batch size and
# learning rate for every objective of a dataset (the defaults otherwise, seed 42). Also the
# per-epoch logs from which benches/plot_objectives.py draws test LL against seconds (digits).
#   cargo build --release && benches/objectives_table.sh [OUT_DIR]
set -euo pipefail
EBM=${EBM:-target/release/ebm}
OUT=${1:-/tmp/objectives}
mkdir -p "$OUT"
objectives=("cd1:--objective cd --cd-k 1" "cd10:--objective cd --cd-k 10" "pcd:--objective pcd"
            "pl:--objective pseudo-likelihood" "rm:--objective ratio-matching" "nce:--objective nce")
run() { # name train test hidden epochs batch eval_every
  local name=$1 train=$2 test=$3 hidden=$4 epochs=$5 batch=$6 every=$7
  for entry in "${objectives[@]}"; do
    local key=${entry%%:*} flags=${entry#*:}
    # shellcheck disable=SC2086
    "$EBM" --json --quiet train-rbm --data "$train" --test "$test" --hidden "$hidden" \
      --epochs "$epochs" --batch-size "$batch" --eval-every "$every" $flags \
      --log "$OUT/$name.$key.csv" --output "$OUT/$name.$key.safetensors" > "$OUT/$name.$key.json"
  done
}
run bas data/bars_stripes_4x4.txt data/bars_stripes_4x4.txt 16 1000 10 100
run digits data/digits_train.txt data/digits_test.txt 16 200 20 10
run mnist data/mnist5k_train.txt data/mnist5k_test.txt 25 100 100 100
python3 - "$OUT" <<'PY'
import json, sys
out = sys.argv[1]
names = {"cd1": "CD-1", "cd10": "CD-10", "pcd": "PCD", "pl": "pseudo-likelihood",
         "rm": "ratio matching", "nce": "NCE"}
print("| objective | BAS 4x4/16 test LL | s/epoch | digits/16 test LL | s/epoch | MNIST-5k/25 test LL | s/epoch |")
print("|---|---|---|---|---|---|---|")
for key, label in names.items():
    cells = []
    for data in ["bas", "digits", "mnist"]:
        r = json.load(open(f"{out}/{data}.{key}.json"))
        cells += [f"{r['test_log_likelihood']:.2f}", f"{r['seconds_per_epoch']:.3g}"]
    print(f"| {label} | " + " | ".join(cells) + " |")
PY

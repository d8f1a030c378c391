#!/usr/bin/env bash
# Figures of docs/gaussian.md: Gaussian-Bernoulli RBMs (16 hidden units) on the grey 8x8 digits
# by CD-1, PCD-1, score matching and denoising score matching, exact test log-likelihood and
# seconds per epoch (median of REPEATS runs, run side by side), and sample pictures.
#   cargo build --release && benches/gaussian_digits.sh [OUT_DIR]
set -euo pipefail
EBM=${EBM:-target/release/ebm}
OUT=${1:-/tmp/gaussian_digits}
EPOCHS=${EPOCHS:-100}
REPEATS=${REPEATS:-3}
mkdir -p "$OUT"
common=(train-rbm --visible gaussian --standardise --data data/digits_grey_train.csv
        --test data/digits_grey_test.csv --hidden 16 --epochs "$EPOCHS" --eval-every 10 --json)
for r in $(seq 1 "$REPEATS"); do
  for obj in cd pcd score-matching denoising-score-matching; do
    "$EBM" "${common[@]}" --objective "$obj" --log "$OUT/$obj.csv" \
      --output "$OUT/$obj.safetensors" > "$OUT/$obj.$r.json"
  done
done
python3 - "$OUT" "$REPEATS" <<'PY'
import json, statistics, sys
out, repeats = sys.argv[1], int(sys.argv[2])
print("| objective | test LL (nats/image) | train LL | s/epoch (median of %d) |" % repeats)
print("|---|---|---|---|")
for obj in ["cd", "pcd", "score-matching", "denoising-score-matching"]:
    runs = [json.load(open(f"{out}/{obj}.{r}.json")) for r in range(1, repeats + 1)]
    spe = statistics.median(r["seconds_per_epoch"] for r in runs)
    print(f"| {obj} | {runs[0]['test_log_likelihood']:.2f} | {runs[0]['train_log_likelihood']:.2f} | {spe:.4f} |")
print()
print("test LL every 10 epochs:")
for obj in ["cd", "pcd", "score-matching", "denoising-score-matching"]:
    rows = [l.split(",") for l in open(f"{out}/{obj}.csv").read().split("\n")[1:] if l]
    print(obj, " ".join(f"{float(r[4]):.1f}" for r in rows if r[4]))
PY
for sampler in langevin mala gibbs; do
  step=()
  [ "$sampler" != gibbs ] && step=(--step-size 0.05)
  "$EBM" sample --model "$OUT/score-matching.safetensors" --sampler "$sampler" "${step[@]}" \
    --chains 64 --steps 1000 --image "$OUT/samples_$sampler.png" --json
done
# Pictures for docs/img, enlarged 4x (nearest neighbour) when Pillow is available:
#   PYTHON=/path/to/venv/bin/python benches/gaussian_digits.sh
"${PYTHON:-python3}" - "$OUT" <<'PY' || echo "(Pillow not found: pictures left at 1x in $OUT)"
import sys
from PIL import Image
out = sys.argv[1]
for s in ["langevin", "mala", "gibbs"]:
    im = Image.open(f"{out}/samples_{s}.png")
    im.resize((im.width * 4, im.height * 4), Image.NEAREST).save(f"{out}/gaussian_samples_{s}.png", optimize=True)
PY

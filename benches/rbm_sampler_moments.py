#!/usr/bin/env python3
"""Issue 13, figure (2): how fast block Gibbs, GWG and DMALA move the visible units of a
784 x 500 RBM trained on MNIST-5k towards the model's moments, against seconds.

    cargo build --release
    python3 benches/rbm_sampler_moments.py [--ebm target/release/ebm] [--chains 64]

Steps: (1) `ebm train-rbm` on data/mnist5k_train.txt (500 hidden, PCD, 20 epochs, seed 0);
(2) a reference for the mean of every visible unit from a long block-Gibbs run (200 chains x
2000 steps, seed 7); (3) for each sampler and each run length t, `ebm sample --chains C --steps t
--seed 1 --output F`, i.e. C chains from the same random start run for t steps; the mean of
their final states estimates E[v_i] at time t. Printed per run: the sampler's own `seconds`
(sampling only, both cores) and the RMS over the 784 pixels of (estimate - reference). With C
chains that distance cannot fall below about sqrt(mean_i p_i (1 - p_i) / C) plus the
reference's own error; both floors are printed. Standard library only (no numpy needed).
"""

import argparse
import json
import math
import os
import subprocess
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(ebm, *args):
    out = subprocess.run([ebm, "--json", *args], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def column_means(path):
    rows = [line.strip() for line in open(path) if line.strip()]
    n = len(rows[0])
    sums = [0] * n
    for r in rows:
        for i, ch in enumerate(r):
            if ch == "1":
                sums[i] += 1
    return [s / len(rows) for s in sums], len(rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ebm", default=os.path.join(ROOT, "target", "release", "ebm"))
    ap.add_argument("--chains", type=int, default=64)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="rbm_moments_")
    model = os.path.join(tmp, "mnist500.safetensors")
    tr = run(a.ebm, "train-rbm", "--data", os.path.join(ROOT, "data", "mnist5k_train.txt"),
             "--hidden", "500", "--batch-size", "100", "--learning-rate", "0.05", "--epochs",
             "20", "--persistent", "--chains", "100", "--eval", "none", "--seed", "0",
             "--output", model)
    print(f"trained 784 x 500 RBM in {tr['seconds']:.1f} s")
    ref_file = os.path.join(tmp, "ref.txt")
    ref_run = run(a.ebm, "sample", "--model", model, "--chains", "200", "--steps", "2000",
                  "--seed", "7", "--output", ref_file)
    ref, n_ref = column_means(ref_file)
    var = sum(p * (1 - p) for p in ref) / len(ref)
    print(f"reference: block Gibbs, {n_ref} chains x 2000 steps, {ref_run['seconds']:.1f} s; "
          f"floors: C chains {math.sqrt(var / a.chains):.4f}, reference {math.sqrt(var / n_ref):.4f}")
    plans = {
        "gibbs": [], "gwg": ["--sampler", "gwg"],
        "dmala": ["--sampler", "dmala", "--step-size", "0.2"],
    }
    # One GWG step is a sweep (784 proposals); one DMALA or block-Gibbs step updates every bit.
    lengths = {"gibbs": [1, 3, 10, 30, 100, 300, 1000], "gwg": [1, 2, 5, 10, 20],
               "dmala": [1, 10, 30, 100, 300, 1000, 3000]}
    print(f"{'sampler':8} {'steps':>6} {'seconds':>9} {'rms distance':>13}")
    results = []
    for name, flags in plans.items():
        for t in lengths[name]:
            f = os.path.join(tmp, f"{name}_{t}.txt")
            r = run(a.ebm, "sample", "--model", model, *flags, "--chains", str(a.chains),
                    "--steps", str(t), "--seed", "1", "--output", f)
            est, _ = column_means(f)
            d = math.sqrt(sum((x - y) ** 2 for x, y in zip(est, ref)) / len(ref))
            print(f"{name:8} {t:6d} {r['seconds']:9.3f} {d:13.4f}")
            results.append({"sampler": name, "steps": t, "seconds": r["seconds"], "rms": d})
    out = os.path.join(ROOT, "target", "rbm_sampler_moments.json")
    with open(out, "w") as fh:
        json.dump(results, fh, indent=1)
    print(f"written {out}")


if __name__ == "__main__":
    main()

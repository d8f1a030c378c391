#!/usr/bin/env python3
"""ebm train-rbm versus scikit-learn's BernoulliRBM, side by side on the same data and settings.

    python3 benches/rbm_vs_sklearn.py [--quick] [--with-500 | --only-500] [--sklearn-threads 1]
                                      [--ebm target/release/ebm]

Creates its own virtual environment under benches/.venv (numpy, scikit-learn, safetensors) on
first use. For each configuration (data, hidden units, batch size, learning rate, epochs) it
  1. trains scikit-learn's BernoulliRBM (PCD with one persistent chain per batch example,
     constant learning rate, no momentum) and times `fit` -> seconds per epoch;
  2. converts its parameters to an ebm .safetensors file (weights = components_.T,
     visible_bias = intercept_visible_, hidden_bias = intercept_hidden_; same energy
     E(v, h) = -v^T W h - b^T v - c^T h);
  3. trains ebm with `--persistent` and the same hidden units, batch size, learning rate,
     epochs and number of persistent chains (= batch size, as scikit-learn); ebm's own defaults
     for everything else (momentum 0.5, weight decay 1e-4, linear decay of the learning rate),
     timed by ebm itself (`seconds_per_epoch`: updates only, monitoring excluded);
  4. scores BOTH models with `ebm evaluate` on the test set (exact ln Z when the smaller layer
     has <= 25 units, AIS otherwise).
Both programs use all cores (the machine's, shared). Prints a Markdown table and writes
benches/out/rbm_vs_sklearn.json.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv"


def ensure_venv():
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "numpy", "scikit-learn",
                        "safetensors"], check=True)
    os.execv(str(py), [str(py), __file__, *sys.argv[1:]])


def read_bits(path):
    import gzip
    import numpy as np
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        rows = [line.strip().replace(" ", "") for line in f if line.strip()]
    return np.array([[c == "1" for c in r] for r in rows], dtype=np.float64)


def ebm_json(ebm, *args):
    out = subprocess.run([ebm, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def run_config(ebm, name, train, test, hidden, batch, lr, epochs, outdir, seed):
    import numpy as np
    from safetensors.numpy import save_file
    from sklearn.neural_network import BernoulliRBM

    x = read_bits(ROOT / "data" / train)
    sk = BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch,
                      n_iter=epochs, random_state=seed)
    t0 = time.perf_counter()
    sk.fit(x)
    sk_epoch = (time.perf_counter() - t0) / epochs
    sk_path = outdir / f"sk_{name}.safetensors"
    save_file({
        "weights": np.ascontiguousarray(sk.components_.T, dtype=np.float64),
        "visible_bias": sk.intercept_visible_.astype(np.float64),
        "hidden_bias": sk.intercept_hidden_.astype(np.float64),
    }, str(sk_path), metadata={"format": "ebm-rbm", "version": "1", "source": "sklearn"})

    ebm_path = outdir / f"ebm_{name}.safetensors"
    tr = ebm_json(ebm, "train-rbm", "--data", str(ROOT / "data" / train), "--hidden", str(hidden),
                  "--batch-size", str(batch), "--learning-rate", str(lr), "--epochs", str(epochs),
                  "--persistent", "--chains", str(batch), "--eval", "none", "--seed", str(seed), "--output", str(ebm_path))
    ev_args = ["--data", str(ROOT / "data" / test), "--seed", str(seed)]
    ev_sk = ebm_json(ebm, "evaluate", "--model", str(sk_path), *ev_args)
    ev_ebm = ebm_json(ebm, "evaluate", "--model", str(ebm_path), *ev_args)
    return {
        "config": name, "hidden": hidden, "batch_size": batch, "learning_rate": lr,
        "epochs": epochs,
        "sklearn_seconds_per_epoch": sk_epoch, "ebm_seconds_per_epoch": tr["seconds_per_epoch"],
        "speedup": sk_epoch / tr["seconds_per_epoch"],
        "sklearn_test_ll": ev_sk["log_likelihood"], "ebm_test_ll": ev_ebm["log_likelihood"],
        "method": ev_ebm["method"],
        "sklearn_log_z_spread": [ev_sk.get("log_z_low"), ev_sk.get("log_z_high")],
        "ebm_log_z_spread": [ev_ebm.get("log_z_low"), ev_ebm.get("log_z_high")],
    }


def main():
    ensure_venv()
    ap = argparse.ArgumentParser()
    ap.add_argument("--ebm", default=str(ROOT / "target" / "release" / "ebm"))
    ap.add_argument("--quick", action="store_true", help="fewer epochs (smoke run)")
    ap.add_argument("--with-500", action="store_true", help="also MNIST-5k with 500 hidden")
    ap.add_argument("--only-500", action="store_true", help="only MNIST-5k with 500 hidden")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sklearn-threads", type=int, default=0,
                    help="BLAS threads for numpy/scikit-learn (0: the library's default). On this "
                         "loaded 2-core machine multithreaded OpenBLAS made batch-100 epochs 4x "
                         "slower than 1 thread, so compare with both")
    a = ap.parse_args()
    if a.sklearn_threads > 0:
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(a.sklearn_threads)
    outdir = HERE / "out"
    outdir.mkdir(exist_ok=True)
    q = 0.1 if a.quick else 1.0
    configs = [
        # name, train, test, hidden, batch, lr, epochs
        ("digits-16", "digits_train.txt", "digits_test.txt", 16, 10, 0.05, 200),
        ("digits-64", "digits_train.txt", "digits_test.txt", 64, 10, 0.05, 200),
        ("mnist5k-25", "mnist5k_train.txt", "mnist5k_test.txt", 25, 100, 0.05, 100),
    ]
    if a.only_500:
        configs = []
    if a.with_500 or a.only_500:
        configs.append(("mnist5k-500", "mnist5k_train.txt", "mnist5k_test.txt", 500, 100,
                        0.05, 50))
    rows = []
    for name, train, test, h, b, lr, e in configs:
        e = max(1, int(e * q))
        r = run_config(a.ebm, name, train, test, h, b, lr, e, outdir, a.seed)
        rows.append(r)
        print(f"{name}: {json.dumps(r)}", file=sys.stderr)
    print("| config | hidden | batch | lr | epochs | sklearn s/epoch | ebm s/epoch | speed-up "
          "| sklearn test LL | ebm test LL | ln Z by |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['config']} | {r['hidden']} | {r['batch_size']} | {r['learning_rate']} "
              f"| {r['epochs']} | {r['sklearn_seconds_per_epoch']:.4f} "
              f"| {r['ebm_seconds_per_epoch']:.4f} | {r['speedup']:.1f}x "
              f"| {r['sklearn_test_ll']:.2f} | {r['ebm_test_ll']:.2f} | {r['method']} |")
    (outdir / "rbm_vs_sklearn.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

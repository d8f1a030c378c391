#!/usr/bin/env python3
"""Digit classification on the bundled split: ebm's class-conditional RBMs versus scikit-learn.

    python3 benches/classify_vs_sklearn.py [--ebm target/release/ebm] [--hidden 16] [--epochs 200]

Creates its own virtual environment under benches/.venv (numpy, scikit-learn) on first use.
On data/digits_train.txt / data/digits_test.txt with their label files:
  1. ebm: `train-rbm --labels ... --persistent` (one RBM per class, exact ln Z) and
     `classify --labels ...` -> test accuracy;
  2. scikit-learn: one BernoulliRBM per class (same hidden units, n_iter = epochs, batch size 10,
     learning rate 0.05, random_state 0), scored the same way: argmax_k -F_k(v) - ln Z_k +
     ln prior_k, with ln Z_k computed exactly here by summing over the 2^hidden hidden states;
  3. scikit-learn baselines on the same bits: LogisticRegression (max_iter 2000) and BernoulliNB.
Prints a Markdown table and writes benches/out/classify_vs_sklearn.json.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sklearn_common import HERE, ROOT, ensure_venv, read_bits, read_labels  # noqa: E402


def free_energy(v, w, b, c):
    """F(v) = -v.b - sum_j softplus(c_j + (v W)_j), W: n_visible x n_hidden."""
    import numpy as np
    return -v @ b - np.logaddexp(0.0, v @ w + c).sum(axis=1)


def log_z_over_hidden(w, b, c):
    """ln Z = ln sum_h exp(c.h + sum_i softplus(b_i + (W h)_i)), enumerating the hidden states."""
    import numpy as np
    from scipy.special import logsumexp
    nh = w.shape[1]
    states = ((np.arange(2 ** nh)[:, None] >> np.arange(nh)) & 1).astype(np.float64)
    return float(logsumexp(states @ c + np.logaddexp(0.0, states @ w.T + b).sum(axis=1)))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ebm", default=str(ROOT / "target" / "release" / "ebm"))
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=200)
    args = ap.parse_args()
    ensure_venv(__file__)
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import BernoulliNB
    from sklearn.neural_network import BernoulliRBM

    data = ROOT / "data"
    x_tr, y_tr = read_bits(data / "digits_train.txt"), read_labels(data / "digits_train_labels.txt")
    x_te, y_te = read_bits(data / "digits_test.txt"), read_labels(data / "digits_test_labels.txt")
    out = HERE / "out" / "classify"
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "digits.json"
    subprocess.run([args.ebm, "train-rbm", "--data", str(data / "digits_train.txt"), "--labels",
                    str(data / "digits_train_labels.txt"), "--hidden", str(args.hidden), "--epochs",
                    str(args.epochs), "--persistent", "--quiet", "--output", str(manifest)], check=True)
    res = subprocess.run([args.ebm, "classify", "--model", str(manifest), "--data",
                          str(data / "digits_test.txt"), "--labels",
                          str(data / "digits_test_labels.txt"), "--json"],
                         check=True, capture_output=True, text=True)
    ebm_acc = json.loads(res.stdout)["accuracy"]

    classes = np.unique(y_tr)
    post = np.zeros((len(x_te), len(classes)))
    for k, cls in enumerate(classes):
        rows = x_tr[y_tr == cls]
        rbm = BernoulliRBM(n_components=args.hidden, learning_rate=0.05, batch_size=10,
                           n_iter=args.epochs, random_state=0).fit(rows)
        w, b, c = rbm.components_.T, rbm.intercept_visible_, rbm.intercept_hidden_
        post[:, k] = (-free_energy(x_te, w, b, c) - log_z_over_hidden(w, b, c)
                      + np.log(len(rows) / len(x_tr)))
    sk_rbm_acc = float(np.mean(classes[post.argmax(axis=1)] == y_te))
    lr_acc = float(LogisticRegression(max_iter=2000).fit(x_tr, y_tr).score(x_te, y_te))
    nb_acc = float(BernoulliNB().fit(x_tr, y_tr).score(x_te, y_te))
    result = {"hidden": args.hidden, "epochs": args.epochs, "test_rows": int(len(x_te)),
              "ebm_class_rbms": ebm_acc, "sklearn_class_rbms_exact_log_z": sk_rbm_acc,
              "sklearn_logistic_regression": lr_acc, "sklearn_bernoulli_nb": nb_acc}
    (HERE / "out" / "classify_vs_sklearn.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"digits test accuracy (300 rows), hidden {args.hidden}, epochs {args.epochs}\n")
    print("| ebm: RBM per class | sklearn: BernoulliRBM per class, exact ln Z | logistic regression | Bernoulli naive Bayes |")
    print("|---|---|---|---|")
    print(f"| {ebm_acc:.4f} | {sk_rbm_acc:.4f} | {lr_acc:.4f} | {nb_acc:.4f} |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Anomaly detection with RBMs on the bundled digits: ebm score versus scikit-learn.

    python3 benches/anomaly_vs_sklearn.py [--ebm target/release/ebm] [--hidden 16]
                                          [--epochs 200] [--held-out 9,4]

Creates its own virtual environment under benches/.venv (numpy, scikit-learn) on first use.
For each held-out digit d:
  1. the normal training data are the rows of data/digits_train.txt whose label
     (data/digits_train_labels.txt) is not d; the test set is all of data/digits_test.txt,
     with anomaly label 1 for the rows of digit d and 0 for the others;
  2. ebm trains one RBM on the normal rows (`ebm train-rbm --persistent`, --hidden, --epochs,
     the other settings ebm's defaults) and scores the test set with `ebm score --log-z exact
     --labels ...`: AUROC and average precision of the free energy F(v) (higher = more
     anomalous), and the per-example ln p(v) = -F(v) - ln Z from scores.csv;
  3. the AUROC of -ln p is recomputed here with scikit-learn's roc_auc_score: for one model
     ln p = -F - ln Z is a shift of -F by a constant, so the ranking and the AUROC are the same
     (the script checks both that and ebm's own AUROC against roc_auc_score);
  4. scikit-learn's BernoulliRBM (same hidden units, epochs = n_iter, batch size 10, learning
     rate 0.05, random_state 0) is trained on the same rows and scored two ways: its
     `score_samples` (a stochastic pseudo-likelihood: n_visible times the log-sigmoid of the
     free-energy change of ONE randomly flipped bit per example; 20 draws of the flipped bits,
     random_state 0..19, reported as the mean and range of their AUROCs) and the exact free energy of the same
     fitted model, computed here from its parameters.
Prints a Markdown table and writes benches/out/anomaly_vs_sklearn.json.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sklearn_common import HERE, ROOT, ensure_venv, read_bits, read_labels  # noqa: E402


def write_bits(path, rows):
    with open(path, "w") as f:
        for r in rows:
            f.write("".join("1" if x else "0" for x in r) + "\n")


def ebm_json(ebm, *args):
    out = subprocess.run([ebm, *args, "--json"], check=True, capture_output=True, text=True)
    return json.loads(out.stdout)


def free_energy(v, w, b, c):
    """F(v) = -v.b - sum_j softplus(c_j + (v W)_j), W: n_visible x n_hidden."""
    import numpy as np
    return -v @ b - np.logaddexp(0.0, v @ w + c).sum(axis=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--ebm", default=str(ROOT / "target" / "release" / "ebm"))
    ap.add_argument("--hidden", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--held-out", default="9,4")
    args = ap.parse_args()
    ensure_venv(__file__)
    import numpy as np
    from sklearn.metrics import roc_auc_score, average_precision_score
    from sklearn.neural_network import BernoulliRBM

    data = ROOT / "data"
    train, train_y = read_bits(data / "digits_train.txt"), read_labels(data / "digits_train_labels.txt")
    test, test_y = read_bits(data / "digits_test.txt"), read_labels(data / "digits_test_labels.txt")
    out_dir = HERE / "out" / "anomaly"
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for d in [int(x) for x in args.held_out.split(",")]:
        normal = train[train_y != d]
        anomaly = (test_y == d).astype(np.int64)
        tr, te, lab = out_dir / f"train_no{d}.txt", out_dir / "test.txt", out_dir / f"anomaly_{d}.txt"
        write_bits(tr, normal)
        write_bits(te, test)
        lab.write_text("".join(f"{x}\n" for x in anomaly))
        model = out_dir / f"rbm_no{d}.safetensors"
        scores = out_dir / f"scores_no{d}.csv"
        trained = ebm_json(args.ebm, "train-rbm", "--data", str(tr), "--hidden", str(args.hidden),
                           "--epochs", str(args.epochs), "--persistent", "--output", str(model))
        scored = ebm_json(args.ebm, "score", "--model", str(model), "--data", str(te), "--labels",
                          str(lab), "--log-z", "exact", "--output", str(scores))
        cols = np.genfromtxt(scores, delimiter=",", names=True)
        f, log_p = cols["free_energy"], cols["log_p"]
        auroc_f_sklearn = roc_auc_score(anomaly, f)
        auroc_logp = roc_auc_score(anomaly, -log_p)
        assert abs(auroc_f_sklearn - scored["auroc"]) < 1e-12, (auroc_f_sklearn, scored["auroc"])
        assert abs(average_precision_score(anomaly, f) - scored["average_precision"]) < 1e-12
        assert auroc_logp == auroc_f_sklearn, (auroc_logp, auroc_f_sklearn)

        sk = BernoulliRBM(n_components=args.hidden, learning_rate=0.05, batch_size=10,
                          n_iter=args.epochs, random_state=0)
        sk.fit(normal)
        # score_samples draws its flipped bits from check_random_state(self.random_state): with
        # a fixed random_state every call repeats the same draw, so each call gets its own.
        pl = []
        for draw in range(20):
            sk.random_state = draw
            pl.append(roc_auc_score(anomaly, -sk.score_samples(test)))
        sk_f = free_energy(test, sk.components_.T, sk.intercept_visible_, sk.intercept_hidden_)
        results.append({
            "held_out_digit": d,
            "normal_train_rows": int(len(normal)),
            "test_rows": int(len(test)),
            "anomalies": int(anomaly.sum()),
            "ebm_auroc_free_energy": scored["auroc"],
            "ebm_auroc_exact_log_p": auroc_logp,
            "ebm_average_precision": scored["average_precision"],
            "ebm_log_z": scored["log_z"],
            "ebm_test_mean_log_likelihood": scored["mean_log_likelihood"],
            "ebm_train_log_likelihood": trained["train_log_likelihood"],
            "sklearn_auroc_score_samples_mean": float(np.mean(pl)),
            "sklearn_auroc_score_samples_min": float(np.min(pl)),
            "sklearn_auroc_score_samples_max": float(np.max(pl)),
            "sklearn_auroc_exact_free_energy": float(roc_auc_score(anomaly, sk_f)),
            "sklearn_average_precision_exact_free_energy": float(average_precision_score(anomaly, sk_f)),
        })
    settings = {"hidden": args.hidden, "epochs": args.epochs, "ebm": "train-rbm --persistent, defaults otherwise",
                "sklearn": "BernoulliRBM(learning_rate=0.05, batch_size=10, n_iter=epochs, random_state=0)"}
    (HERE / "out" / "anomaly_vs_sklearn.json").write_text(
        json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    print(f"hidden {args.hidden}, epochs {args.epochs}; test set: data/digits_test.txt (300 rows)\n")
    print("| held-out digit | anomalies / normal | ebm: F | ebm: exact ln p | ebm AP (F) "
          "| sklearn: score_samples (mean, range of 20) | sklearn model: exact F | sklearn AP (F) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['held_out_digit']} | {r['anomalies']} / {r['test_rows'] - r['anomalies']} "
              f"| {r['ebm_auroc_free_energy']:.4f} | {r['ebm_auroc_exact_log_p']:.4f} "
              f"| {r['ebm_average_precision']:.4f} "
              f"| {r['sklearn_auroc_score_samples_mean']:.4f} ({r['sklearn_auroc_score_samples_min']:.4f}"
              f"-{r['sklearn_auroc_score_samples_max']:.4f}) "
              f"| {r['sklearn_auroc_exact_free_energy']:.4f} | {r['sklearn_average_precision_exact_free_energy']:.4f} |")


if __name__ == "__main__":
    main()

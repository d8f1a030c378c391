#!/usr/bin/env python3
"""`ebm fit` pseudo-likelihood against a Python reference (scipy L-BFGS-B, vectorised numpy).

Both minimise the same symmetric pseudo-likelihood objective of docs/learning.md,

    L(J, h) = -(1/N) sum_n sum_i ln sigma(2 s_i^n f_i^n) + (l2 / 2) sum_{i<j} J_ij^2,
    f_i = h_i + sum_{j != i} J_ij s_j,

on the complete graph, on the same data, and the script prints both times side by side and
the largest absolute difference between the two optima (fields and couplings).

The data (kept out of the repository, written under --data-dir and reused when present) are
--examples states of a --spins complete Ising model with couplings J_ij ~ N(0, (beta/sqrt(n))^2)
and fields uniform in [-0.3, 0.3) (numpy seed --seed), each drawn by --sweeps sweeps of
sequential Gibbs sampling from an independent random start (one chain per example, the chains
updated together as one vectorised array).

Usage (the figures in docs/learning.md):

    cargo build --release
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy scipy
    /tmp/venv/bin/python benches/fit_vs_scipy.py --ebm target/release/ebm --threads 2

Options: --spins 64 --examples 100000 --l2 0.01 --repeats 3 --tolerance 1e-6
--data-dir /tmp --ebm-before PATH (a second binary timed side by side, e.g. an older build).
Python is only used here, never by the tests.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time

import numpy as np
from scipy.optimize import minimize


def draw_data(spins, examples, beta, sweeps, seed):
    """Bits (examples x spins, uint8) by vectorised sequential Gibbs sampling."""
    rng = np.random.default_rng(seed)
    couplings = rng.normal(0.0, beta / np.sqrt(spins), size=(spins, spins))
    couplings = np.triu(couplings, 1)
    couplings = couplings + couplings.T
    fields = rng.uniform(-0.3, 0.3, size=spins)
    state = np.where(rng.random((examples, spins)) < 0.5, 1.0, -1.0)
    for _ in range(sweeps):
        for i in range(spins):
            local = state @ couplings[:, i] + fields[i]
            up = rng.random(examples) < 1.0 / (1.0 + np.exp(-2.0 * local))
            state[:, i] = np.where(up, 1.0, -1.0)
    return (state > 0).astype(np.uint8)


def pl_objective(theta, spins_pm, l2, iu):
    """Value and gradient of L at theta = (h, J upper triangle in row-major order)."""
    n_examples, n = spins_pm.shape
    h = theta[:n]
    couplings = np.zeros((n, n))
    couplings[iu] = theta[n:]
    couplings = couplings + couplings.T
    local = spins_pm @ couplings + h
    u = -2.0 * spins_pm * local
    value = np.logaddexp(0.0, u).sum() / n_examples
    # g = dloss/df = -2 s sigma(u)
    g = -2.0 * spins_pm * (0.5 * (1.0 + np.tanh(0.5 * u)))
    grad_h = g.sum(axis=0) / n_examples
    a = spins_pm.T @ g / n_examples  # a[j, i] = (1/N) sum_n s_j g_i
    grad_couplings = (a + a.T)[iu]
    j_upper = theta[n:]
    value += 0.5 * l2 * np.dot(j_upper, j_upper)
    grad_couplings = grad_couplings + l2 * j_upper
    return value, np.concatenate([grad_h, grad_couplings])


def fit_scipy(bits, l2, tolerance):
    spins_pm = 2.0 * bits.astype(np.float64) - 1.0
    n = bits.shape[1]
    iu = np.triu_indices(n, 1)
    means = np.clip(spins_pm.mean(axis=0), -1.0 + 1e-6, 1.0 - 1e-6)
    theta0 = np.concatenate([np.arctanh(means), np.zeros(len(iu[0]))])
    start = time.perf_counter()
    result = minimize(
        pl_objective,
        theta0,
        args=(spins_pm, l2, iu),
        jac=True,
        method="L-BFGS-B",
        options={"gtol": tolerance, "ftol": 0.0, "maxiter": 100000, "maxcor": 10},
    )
    seconds = time.perf_counter() - start
    return result, seconds, iu


def read_fitted(path, n, iu):
    """(h, J upper triangle) of an Ising-form UAI file written by `ebm fit`."""
    tokens = open(path).read().split()
    assert tokens[0] == "MARKOV"
    pos = 1
    num_vars = int(tokens[pos])
    pos += 1 + num_vars
    num_factors = int(tokens[pos])
    pos += 1
    scopes = []
    for _ in range(num_factors):
        arity = int(tokens[pos])
        scopes.append([int(t) for t in tokens[pos + 1 : pos + 1 + arity]])
        pos += 1 + arity
    h = np.zeros(n)
    couplings = np.zeros((n, n))
    for scope in scopes:
        size = int(tokens[pos])
        table = np.array([float(t) for t in tokens[pos + 1 : pos + 1 + size]])
        pos += 1 + size
        logs = np.log(table)
        if len(scope) == 1:
            h[scope[0]] += 0.5 * (logs[1] - logs[0])
        else:
            i, j = scope
            couplings[i, j] = couplings[j, i] = 0.25 * (logs[0] + logs[3] - logs[1] - logs[2])
    return np.concatenate([h, couplings[iu]])


def time_ebm(binary, data_path, args, out_path):
    walls, inner, report = [], [], None
    for _ in range(args.repeats):
        cmd = [
            binary, "fit", "--data", data_path, "--graph", "complete",
            "--l2", str(args.l2), "--tolerance", str(args.tolerance),
            "--threads", str(args.threads), "--json", "--quiet", "--output", out_path,
        ]
        start = time.perf_counter()
        text = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
        walls.append(time.perf_counter() - start)
        report = json.loads(text)
        inner.append(report["seconds"])
    return statistics.median(walls), statistics.median(inner), report


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ebm", default="target/release/ebm")
    parser.add_argument("--ebm-before", default=None)
    parser.add_argument("--spins", type=int, default=64)
    parser.add_argument("--examples", type=int, default=100_000)
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--sweeps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--l2", type=float, default=0.01)
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--data-dir", default=tempfile.gettempdir())
    parser.add_argument("--skip-scipy", action="store_true")
    args = parser.parse_args()

    data_path = os.path.join(
        args.data_dir,
        f"ebm_fit_bench_{args.spins}x{args.examples}_b{args.beta}_s{args.sweeps}_seed{args.seed}.npy",
    )
    if os.path.exists(data_path):
        bits = np.load(data_path)
    else:
        start = time.perf_counter()
        bits = draw_data(args.spins, args.examples, args.beta, args.sweeps, args.seed)
        np.save(data_path, bits)
        print(f"drew {data_path} in {time.perf_counter() - start:.1f} s")
    n = bits.shape[1]
    print(f"data: {bits.shape[0]} examples x {n} spins, complete graph, l2 {args.l2}, "
          f"tolerance {args.tolerance}, {args.threads} threads, median of {args.repeats}")

    with tempfile.TemporaryDirectory() as tmp:
        out_path = os.path.join(tmp, "fit.uai")
        rows = []
        for label, binary in [("ebm fit", args.ebm), ("ebm fit (before)", args.ebm_before)]:
            if binary is None:
                continue
            wall, inner, report = time_ebm(binary, data_path, args, out_path)
            rows.append((label, wall, inner, report))
            print(f"{label:18s} wall {wall:7.2f} s  fit {inner:7.2f} s  iterations "
                  f"{report['iterations']:5d}  objective {report['objective']:.12f}  "
                  f"gradient norm {report['gradient_norm']:.1e}")
        time_ebm(args.ebm, data_path, argparse.Namespace(**{**vars(args), "repeats": 1}), out_path)
        iu = np.triu_indices(n, 1)
        ebm_theta = read_fitted(out_path, n, iu)

    if args.skip_scipy:
        return
    times = []
    for _ in range(args.repeats):
        result, seconds, _ = fit_scipy(bits, args.l2, args.tolerance)
        times.append(seconds)
    print(f"{'scipy L-BFGS-B':18s} wall {statistics.median(times):7.2f} s  (optimiser only) "
          f"iterations {result.nit:5d}  objective {result.fun:.12f}  gradient norm "
          f"{np.abs(result.jac).max():.1e}  ({result.message})")
    diff = np.abs(result.x - ebm_theta)
    print(f"max |theta_ebm - theta_scipy| = {diff.max():.2e} (fields {diff[:n].max():.2e}, "
          f"couplings {diff[n:].max():.2e})")


if __name__ == "__main__":
    main()

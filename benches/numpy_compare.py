#!/usr/bin/env python3
"""Side-by-side speed of `ebm partition` and a straightforward numpy enumeration.

Both sides enumerate the same models on ONE core (ebm --threads 1, numpy with one BLAS
thread) in the same run, check that they agree on ln Z, and print states per second and the
ratio. Comparison only: nothing in ebm or its tests needs Python.

Setup (a throwaway venv; never needed by cargo test):
    python3 -m venv /tmp/npvenv && /tmp/npvenv/bin/pip install numpy
    cargo build --release
    OPENBLAS_NUM_THREADS=1 /tmp/npvenv/bin/python benches/numpy_compare.py [--runs 3]
"""

import argparse
import json
import os
import struct
import subprocess
import tempfile
import time

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
import numpy as np  # noqa: E402


def logsumexp(x):
    m = np.max(x)
    if not np.isfinite(m):
        return m
    return m + np.log(np.sum(np.exp(x - m)))


def combine(a, b):
    if a == -np.inf:
        return b
    m = max(a, b)
    return m + np.log(np.exp(a - m) + np.exp(b - m))


def bits_block(start, count, n):
    idx = np.arange(start, start + count, dtype=np.int64)
    return ((idx[:, None] >> np.arange(n, dtype=np.int64)) & 1).astype(np.float64)


def numpy_pairwise(h, J, block=1 << 16):
    """ln sum_s exp(sum_{i<j} J_ij s_i s_j + sum_i h_i s_i), s in {-1,+1}^n (J symmetric)."""
    n = len(h)
    total = -np.inf
    for start in range(0, 1 << n, block):
        S = 2.0 * bits_block(start, min(block, (1 << n) - start), n) - 1.0
        logw = 0.5 * np.einsum("ij,ij->i", S @ J, S) + S @ h
        total = combine(total, logsumexp(logw))
    return total


def numpy_rbm(W, b, c, block=1 << 12):
    """ln Z of an RBM by enumerating the hidden layer (W: n_visible x n_hidden)."""
    k = W.shape[1]
    total = -np.inf
    for start in range(0, 1 << k, block):
        H = bits_block(start, min(block, (1 << k) - start), k)
        A = H @ W.T + b
        logw = H @ c + np.logaddexp(0.0, A).sum(axis=1)
        total = combine(total, logsumexp(logw))
    return total


def write_uai(path, h, J):
    n = len(h)
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n) if J[i, j] != 0.0]
    lines = ["MARKOV", str(n), " ".join(["2"] * n), str(n + len(pairs))]
    lines += [f"1 {i}" for i in range(n)]
    lines += [f"2 {i} {j}" for i, j in pairs]
    lines.append("")
    for i in range(n):
        lines.append(f"2\n {float(np.exp(-h[i]))!r} {float(np.exp(h[i]))!r}\n")
    for i, j in pairs:
        s, d = float(np.exp(J[i, j])), float(np.exp(-J[i, j]))
        lines.append(f"4\n {s!r} {d!r}\n {d!r} {s!r}\n")
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_safetensors(path, W, b, c):
    tensors = {"weights": W, "visible_bias": b, "hidden_bias": c}
    header, offset, blobs = {}, 0, []
    for name, arr in tensors.items():
        data = np.ascontiguousarray(arr, dtype="<f8").tobytes()
        header[name] = {"dtype": "F64", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "ebm-rbm", "version": "1"}
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw + b"".join(blobs))


def run_ebm(ebm, model, runs):
    times, value = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = subprocess.run(
            [ebm, "partition", "--model", model, "--method", "enumerate", "--threads", "1", "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
        times.append(time.perf_counter() - t)
        value = json.loads(out)["log_z"]
    return float(np.median(times)), value


def run_ebm_lattice(ebm, w, h, beta, runs):
    times, value = [], None
    for _ in range(runs):
        t = time.perf_counter()
        out = subprocess.run(
            [ebm, "partition", "ising", "--width", str(w), "--height", str(h), "--beta", str(beta),
             "--method", "enumerate", "--threads", "1", "--json"],
            check=True, capture_output=True, text=True,
        ).stdout
        times.append(time.perf_counter() - t)
        value = json.loads(out)["log_z"]
    return float(np.median(times)), value


def torus_couplings(w, h, beta):
    """beta J matrix of the w x h torus (sides >= 3, so no double bonds)."""
    n = w * h
    J = np.zeros((n, n))
    for r in range(h):
        for c in range(w):
            i = r * w + c
            for j in (r * w + (c + 1) % w, ((r + 1) % h) * w + c):
                J[i, j] += beta
                J[j, i] += beta
    return J


def run_numpy(fn, runs):
    times, value = [], None
    for _ in range(runs):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)), value


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ebm", default="target/release/ebm")
    ap.add_argument("--n", type=int, default=22, help="variables of the dense pairwise model")
    ap.add_argument("--hidden", type=int, default=16, help="hidden units of the 784 x k RBM")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(1)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        w, h_, beta = 6, 4, 0.4406868
        te, ve = run_ebm_lattice(args.ebm, w, h_, beta, args.runs)
        Jt = torus_couplings(w, h_, beta)
        tn, vn = run_numpy(lambda: numpy_pairwise(np.zeros(w * h_), Jt), args.runs)
        rows.append((f"{w}x{h_} torus (2^{w * h_} states)", 2.0 ** (w * h_), te, tn, ve, vn))

        n = args.n
        J = np.triu(rng.uniform(-1, 1, (n, n)), 1)
        J = J + J.T
        h = rng.uniform(-1, 1, n)
        uai = os.path.join(tmp, "dense.uai")
        write_uai(uai, h, J)
        te, ve = run_ebm(args.ebm, uai, args.runs)
        tn, vn = run_numpy(lambda: numpy_pairwise(h, J), args.runs)
        rows.append((f"dense pairwise, n = {n} (2^{n} states)", 2.0 ** n, te, tn, ve, vn))

        k = args.hidden
        W = rng.normal(0, 0.05, (784, k))
        b = rng.normal(0, 0.5, 784)
        c = rng.normal(0, 0.5, k)
        st = os.path.join(tmp, "rbm.safetensors")
        write_safetensors(st, W, b, c)
        te, ve = run_ebm(args.ebm, st, args.runs)
        tn, vn = run_numpy(lambda: numpy_rbm(W, b, c), args.runs)
        rows.append((f"RBM 784 x {k} (2^{k} hidden states)", 2.0 ** k, te, tn, ve, vn))

    print(f"one core each, median of {args.runs} runs (ebm time includes process start and file reading)")
    print(f"{'model':<36} {'ebm s':>9} {'numpy s':>9} {'ebm states/s':>13} {'numpy states/s':>15} {'ratio':>7}  |ln Z diff|")
    for name, states, te, tn, ve, vn in rows:
        print(f"{name:<36} {te:>9.3f} {tn:>9.3f} {states / te:>13.3e} {states / tn:>15.3e} {tn / te:>6.1f}x  {abs(ve - vn):.2e}")


if __name__ == "__main__":
    main()

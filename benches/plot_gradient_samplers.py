"""Plots the curves of `cargo bench --bench gradient_samplers` (docs/sampling.md).

Usage: python benches/plot_gradient_samplers.py  (reads target/gradient_{lattice,uai,glass}.csv
when present, writes docs/img/gradient_{lattice,uai,glass}.png). Needs matplotlib.
"""
import csv
import math
import os
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

TITLES = {
    "lattice": "5x5 periodic Ising, J = 0.2, h = 0.2",
    "uai": "frustrated grid data/uai/Grids_11.uai (100 spins)",
    "glass": "10x10 +-J spin glass, J = +-0.75, h = +-0.25 (seed 13)",
}

for name, title in TITLES.items():
    if not os.path.exists(f"target/gradient_{name}.csv"):
        continue
    rows = defaultdict(lambda: defaultdict(list))
    with open(f"target/gradient_{name}.csv") as f:
        for r in csv.DictReader(f):
            rows[r["sampler"]][int(r["seed"])].append(
                (int(r["sweeps"]), float(r["seconds"]), float(r["rmse"]))
            )
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for sampler, seeds in rows.items():
        # Mean of log RMSE over the chains, at the sweep counts all chains reached.
        length = min(len(v) for v in seeds.values())
        sweeps = [seeds[0][k][0] for k in range(length)]
        secs = [sum(v[k][1] for v in seeds.values()) / len(seeds) for k in range(length)]
        log_rmse = [
            sum(math.log10(max(v[k][2], 1e-12)) for v in seeds.values()) / len(seeds)
            for k in range(length)
        ]
        axes[0].plot(sweeps, log_rmse, label=sampler)
        axes[1].plot(secs, log_rmse, label=sampler)
    axes[0].set_xscale("log")
    axes[0].set_xlabel("sweeps (n site updates / n GWG proposals / 1 DULA-DMALA proposal)")
    axes[1].set_xscale("log")
    axes[1].set_xlabel("seconds (CPU time of one core)")
    for ax in axes:
        ax.set_ylabel("log10 RMSE of running marginals")
        ax.grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(f"docs/img/gradient_{name}.png", dpi=80)
    print(f"docs/img/gradient_{name}.png")


def plot_rbm_moments():
    """docs/img/gradient_rbm_moments.png from target/rbm_sampler_moments.json (written by
    benches/rbm_sampler_moments.py), when present."""
    import json

    path = "target/rbm_sampler_moments.json"
    if not os.path.exists(path):
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = json.load(open(path))
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name in ["gibbs", "gwg", "dmala"]:
        pts = sorted((r["seconds"], r["rms"]) for r in rows if r["sampler"] == name)
        label = {"gibbs": "block Gibbs", "gwg": "GWG", "dmala": "DMALA (alpha 0.2)"}[name]
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=label)
    ax.set_xscale("log")
    ax.set_xlabel("seconds (64 chains, both cores)")
    ax.set_ylabel("RMS distance of E[v_i] to reference")
    ax.set_title("784 x 500 RBM trained on MNIST-5k")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig("docs/img/gradient_rbm_moments.png", dpi=100)
    print("docs/img/gradient_rbm_moments.png")


plot_rbm_moments()

#!/usr/bin/env python3
"""Side-by-side comparison of `ebm denoise --method graphcut` with PyMaxflow.

PyMaxflow (Python over Kolmogorov's C++ Boykov-Kolmogorov code, GPL) is only *run* here, as the
reference a user would pick today; none of its code is part of ebm.

    python3 benches/compare_pymaxflow.py --setup      # once: benches/.venv with PyMaxflow, numpy, pillow
    cargo build --release
    benches/.venv/bin/python benches/compare_pymaxflow.py [--sizes 256,512,1024,2048,4096] [--runs 5]
        [--baseline /path/to/older/ebm]

For each size the script draws a clean picture (discs and a bar, as benches/denoise.rs), flips
10% of its pixels with `ebm noise --seed 1`, and then runs, alternately, `ebm denoise --json`
and a PyMaxflow worker (a fresh Python process: read the PNG, build the grid graph, max-flow,
read the segments). Each side reports its own time for the work after reading the image (ebm's
`seconds`; for PyMaxflow graph construction + maxflow + segments) and the script records each
process's wall time and peak resident memory (wait4). The energies of both results, computed by
the same formula (PRML 8.3.3, beta = 1, eta = 2.1, h = 0), must agree: both are exact minima.
Printed: medians over the runs, the median PyMaxflow/ebm ratio of the paired times, both for
the solve (each side's own time) and for the whole process (wall), with the lowest and highest
pair, and Mpixel/s. `--baseline` runs a second ebm binary in the same rounds (ebm, baseline,
PyMaxflow, ebm, ...) for a before/after comparison under the same load.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
BETA, ETA, FIELD = 1.0, 2.1, 0.0


def setup():
    if not os.path.exists(os.path.join(VENV, "bin", "python")):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    pip = os.path.join(VENV, "bin", "pip")
    subprocess.run([pip, "install", "-q", "PyMaxflow==1.3.2", "numpy", "pillow"], check=True)
    print(f"installed PyMaxflow, numpy and pillow into {VENV}")


def energy(s, x):
    """E(s; x) = h sum s - beta sum_<ij> s_i s_j - eta sum x s, from integer sums (as ebm)."""
    import numpy as np

    s = s.astype(np.int64)
    x = x.astype(np.int64)
    spin_sum = int(s.sum())
    bond_sum = int((s[:, 1:] * s[:, :-1]).sum() + (s[1:, :] * s[:-1, :]).sum())
    evidence_sum = int((s * x).sum())
    return FIELD * spin_sum - BETA * bond_sum - ETA * evidence_sum


def worker(path):
    """One PyMaxflow restoration of the image at `path`; prints a JSON line."""
    import maxflow
    import numpy as np
    from PIL import Image

    x = np.where(np.asarray(Image.open(path).convert("L")) >= 128, 1, -1).astype(np.int8)
    t0 = time.perf_counter()
    a = FIELD - ETA * x.astype(np.float64)  # unary: a_i s_i
    g = maxflow.Graph[float]()
    ids = g.add_grid_nodes(x.shape)
    structure = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0]])
    g.add_grid_edges(ids, weights=2.0 * BETA, structure=structure, symmetric=True)
    # source side = +1: source -> i is cut when s_i = -1 (cost 2|a| if a < 0), i -> sink when +1.
    g.add_grid_tedges(ids, np.maximum(-2.0 * a, 0.0), np.maximum(2.0 * a, 0.0))
    g.maxflow()
    sink = g.get_grid_segments(ids)
    seconds = time.perf_counter() - t0
    s = np.where(sink, -1, 1).astype(np.int8)
    print(json.dumps({"seconds": seconds, "energy": energy(s, x)}))


def run_measured(cmd):
    """Runs cmd; returns (stdout, wall seconds, peak RSS in MB)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = proc.stdout.read()
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({proc.returncode}): {err.decode()}")
    return out.decode(), wall, usage.ru_maxrss / 1024.0


def picture(size):
    import numpy as np

    y, x = np.mgrid[0:size, 0:size] / float(size)
    disc = np.zeros((size, size), bool)
    for cx, cy, r in [(0.3, 0.35, 0.2), (0.7, 0.6, 0.25), (0.45, 0.8, 0.12)]:
        disc |= (x - cx) ** 2 + (y - cy) ** 2 < r * r
    bar = (x >= 0.1) & (x < 0.9) & (y >= 0.05) & (y < 0.12)
    return np.where(disc ^ bar, 255, 0).astype(np.uint8)


def spread(ratios):
    """'median (lowest-highest)' of the paired ratios."""
    return f"{statistics.median(ratios):.1f} ({min(ratios):.1f}-{max(ratios):.1f})"


def compare(sizes, runs, binaries):
    """binaries: [(label, path)], run in this order, then PyMaxflow, `runs` times per size."""
    names = "; ".join(f"{label}: {path}" for label, path in binaries)
    print(f"{names}; PyMaxflow worker: {sys.executable}; {runs} runs per size, alternating")
    print("solve = each side's own time after reading the image (ebm's `seconds`; PyMaxflow: graph"
          " + maxflow + segments); wall = the whole process; ratio = PyMaxflow / ebm per pair,"
          " median (lowest-highest)")
    header = (
        f"{'size':>6} {'ebm':>8} {'ebm ms':>8} {'pymf ms':>8} {'solve ratio':>18}"
        f" {'ebm wall ms':>11} {'pymf wall ms':>12} {'wall ratio':>18} {'ebm Mpx/s':>9}"
        f" {'ebm MB':>6} {'pymf MB':>7}  energies"
    )
    print(header)
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            clean = os.path.join(tmp, f"clean{size}.png")
            noisy = os.path.join(tmp, f"noisy{size}.png")
            out = os.path.join(tmp, f"out{size}.png")
            # In a child process: the parent stays small, because a child inherits the parent's
            # peak resident size at fork, which would hide the child's own figure.
            run_measured([sys.executable, __file__, "--picture", str(size), clean])
            run_measured([binaries[0][1], "noise", "--input", clean, "--flip", "0.1", "--output",
                          noisy, "--seed", "1", "--quiet"])
            rows = {label: [] for label, _ in binaries}
            for _ in range(runs):
                ebm_runs = []
                for label, path in binaries:
                    e_out, e_wall, e_mb = run_measured(
                        [path, "--json", "denoise", "--input", noisy, "--output", out,
                         "--method", "graphcut"])
                    ebm_runs.append((label, json.loads(e_out), e_wall, e_mb))
                p_out, p_wall, p_mb = run_measured([sys.executable, __file__, "--worker", noisy])
                p = json.loads(p_out)
                for label, e, e_wall, e_mb in ebm_runs:
                    rows[label].append((e["seconds"], p["seconds"], e_wall, p_wall, e_mb, p_mb,
                                        e["energy"], p["energy"]))
            for label, _ in binaries:
                r = rows[label]
                med = lambda k: statistics.median(row[k] for row in r)
                solve = spread([row[1] / row[0] for row in r])
                wall = spread([row[3] / row[2] for row in r])
                n = size * size / 1e6
                same = all(abs(row[6] - row[7]) <= 1e-9 * abs(row[7]) for row in r)
                print(f"{size:>6} {label:>8} {1e3 * med(0):>8.3f} {1e3 * med(1):>8.2f} {solve:>18}"
                      f" {1e3 * med(2):>11.1f} {1e3 * med(3):>12.1f} {wall:>18}"
                      f" {n / med(0):>9.1f} {max(row[4] for row in r):>6.0f}"
                      f" {max(row[5] for row in r):>7.0f}  {'equal' if same else 'DIFFER'}"
                      f" ({r[0][6]:.1f})", flush=True)
            if len(binaries) > 1:
                base, new = rows[binaries[1][0]], rows[binaries[0][0]]
                paired = spread([b[0] / e[0] for b, e in zip(base, new)])
                print(f"{size:>6} baseline / ebm solve time per round: {paired}", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--setup", action="store_true", help="create benches/.venv with PyMaxflow")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--picture", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--sizes", default="256,512,1024,2048,4096")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ebm", default=os.path.join(ROOT, "target", "release", "ebm"))
    ap.add_argument("--baseline", help="another ebm binary (e.g. one built from an older commit),"
                    " run in alternation with --ebm and reported on its own line")
    args = ap.parse_args()
    if args.setup:
        setup()
        return
    if args.worker:
        worker(args.worker)
        return
    if args.picture:
        from PIL import Image

        Image.fromarray(picture(int(args.picture[0]))).save(args.picture[1])
        return
    try:
        import maxflow  # noqa: F401
    except ImportError:
        sys.exit("PyMaxflow is missing: run `python3 benches/compare_pymaxflow.py --setup`, then "
                 "run this script with benches/.venv/bin/python")
    if not os.path.exists(args.ebm):
        sys.exit(f"{args.ebm} not found: run `cargo build --release` first")
    binaries = [("ebm", args.ebm)]
    if args.baseline:
        if not os.path.exists(args.baseline):
            sys.exit(f"--baseline {args.baseline} not found")
        binaries.append(("baseline", args.baseline))
    compare([int(s) for s in args.sizes.split(",")], args.runs, binaries)


if __name__ == "__main__":
    main()

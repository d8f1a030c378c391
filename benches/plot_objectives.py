"""Exact test log-likelihood against training seconds on the digits (16 hidden units), one
curve per objective, from the logs benches/objectives_table.sh writes.

    benches/objectives_table.sh /tmp/objectives
    python benches/plot_objectives.py /tmp/objectives docs/img/objectives_digits16.png

Needs matplotlib. The x axis is the cumulative `seconds` column of each log (update time only;
the likelihood evaluations are not counted).
"""
import csv
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

out, png = sys.argv[1], sys.argv[2]
names = {"cd1": "CD-1", "cd10": "CD-10", "pcd": "PCD", "pl": "pseudo-likelihood",
         "rm": "ratio matching", "nce": "NCE"}
fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
for key, label in names.items():
    elapsed, xs, ys = 0.0, [], []
    with open(f"{out}/digits.{key}.csv") as f:
        for row in csv.DictReader(f):
            elapsed += float(row["seconds"])
            if row["test_log_likelihood"]:
                xs.append(elapsed)
                ys.append(float(row["test_log_likelihood"]))
    ax.plot(xs, ys, marker=".", label=label)
ax.set_xscale("log")
ax.set_xlabel("training seconds (2 cores, update time only)")
ax.set_ylabel("exact test log-likelihood (nats)")
ax.set_title("digits 8x8, 16 hidden units, 200 epochs")
ax.set_ylim(-26, -17)
ax.grid(True, alpha=0.3)
ax.legend()
fig.tight_layout()
fig.savefig(png)

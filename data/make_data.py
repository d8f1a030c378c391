"""Makes the bundled data files of data/ (run once; ebm itself never needs Python).

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install scikit-image scikit-learn
    /tmp/venv/bin/python data/make_data.py

Made with scikit-image 0.26.0, scikit-learn 1.9.1, NumPy 2.4.6, Pillow. Every output is
deterministic (fixed seed); see data/README.md for each file's source, license and facts.
"""

from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data as skdata
from sklearn.datasets import load_digits

OUT = Path(__file__).resolve().parent
SPLIT_SEED = 20240607  # fixed seed of the digits train/test permutation
N_TEST = 300


def save_binary_png(path, white):
    """Saves a boolean array as an 8-bit greyscale PNG: True -> 255 (white), False -> 0."""
    Image.fromarray(np.where(white, 255, 0).astype(np.uint8), mode="L").save(path, optimize=True)


def write_bits(path, rows):
    """One example per line, written with the characters 0 and 1."""
    with open(path, "w") as f:
        for row in rows:
            f.write("".join("1" if x else "0" for x in row) + "\n")


def images():
    (OUT / "images").mkdir(exist_ok=True)
    # The horse silhouette: black horse (False) on a white background (True).
    save_binary_png(OUT / "images" / "horse.png", skdata.horse())
    # The camera man, averaged over 2x2 blocks to 256x256, then thresholded at 128.
    camera = skdata.camera().astype(np.float64)
    small = camera.reshape(256, 2, 256, 2).mean(axis=(1, 3))
    save_binary_png(OUT / "images" / "camera_256.png", small >= 128)
    # Synthetic shapes on black: a disc, a square and a triangle (white), 96x96.
    n = 96
    y, x = np.mgrid[0:n, 0:n]
    disc = (x - 28) ** 2 + (y - 30) ** 2 <= 18**2
    square = (x >= 56) & (x < 86) & (y >= 12) & (y < 42)
    triangle = (y >= 54) & (y < 88) & (np.abs(x - 48) <= (y - 54))
    save_binary_png(OUT / "images" / "shapes.png", disc | square | triangle)


def bars_and_stripes():
    """All 30 distinct 4x4 bars-and-stripes patterns, row-major: first the 16 stripe patterns
    (each row all 0 or all 1; row r on when bit r of k is set), then the 14 bar patterns (each
    column all 0 or all 1) that are not all-0 or all-1."""
    patterns = []
    for k in range(16):
        rows = [(k >> r) & 1 for r in range(4)]
        patterns.append([rows[r] for r in range(4) for _ in range(4)])
    for k in range(1, 15):
        cols = [(k >> c) & 1 for c in range(4)]
        patterns.append([cols[c] for _ in range(4) for c in range(4)])
    assert len({tuple(p) for p in patterns}) == 30
    write_bits(OUT / "bars_stripes_4x4.txt", patterns)


def write_labels(path, labels):
    """One integer (the digit) per line, in the order of the rows of the matching data file."""
    with open(path, "w") as f:
        for label in labels:
            f.write(f"{int(label)}\n")


def digits():
    d = load_digits()
    bits = d.data >= 8  # pixels are 0..16: half the maximum and above is 1
    order = np.random.default_rng(SPLIT_SEED).permutation(len(bits))
    test, train = order[:N_TEST], order[N_TEST:]
    write_bits(OUT / "digits_train.txt", bits[train])
    write_bits(OUT / "digits_test.txt", bits[test])
    write_labels(OUT / "digits_train_labels.txt", d.target[train])
    write_labels(OUT / "digits_test_labels.txt", d.target[test])
    # The same images and split as grey levels 0..16 scaled to [0, 1] (exact in decimal: k/16).
    # Thresholded at 0.5 (grey >= 8) they are exactly the binary files above.
    grey = d.data / 16.0
    assert ((grey >= 0.5) == bits).all()
    for name, rows in [("digits_grey_train.csv", grey[train]), ("digits_grey_test.csv", grey[test])]:
        with open(OUT / name, "w") as f:
            for row in rows:
                f.write(",".join(f"{x:g}" for x in row) + "\n")


if __name__ == "__main__":
    import sys

    # `--digits-only` rewrites just the digits files (no scikit-image needed for those).
    if "--digits-only" not in sys.argv:
        images()
        bars_and_stripes()
    digits()

"""Shared pieces of the scikit-learn comparison scripts (anomaly_vs_sklearn.py,
classify_vs_sklearn.py): their virtual environment and readers of the bundled data."""

import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
VENV = HERE / ".venv"


def ensure_venv(script):
    """Re-runs `script` (with this process's arguments) under benches/.venv, creating it with
    numpy and scikit-learn on first use; returns when already running there."""
    py = VENV / "bin" / "python"
    if Path(sys.prefix).resolve() == VENV.resolve():
        return
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "-q", "numpy", "scikit-learn"], check=True)
    os.execv(str(py), [str(py), script, *sys.argv[1:]])


def read_bits(path):
    """A `.txt` dataset (one row of 0/1 characters per line) as a float64 array."""
    import numpy as np
    with open(path) as f:
        rows = [line.strip() for line in f if line.strip()]
    return np.array([[c == "1" for c in r] for r in rows], dtype=np.float64)


def read_labels(path):
    """A label file (one integer per line) as an int64 array."""
    import numpy as np
    return np.array([int(line) for line in open(path)], dtype=np.int64)

"""Shared test setup: keep torch to the cores CI has, and make runs reproducible."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("OMP_NUM_THREADS", "2")

"""Shared data sets for the tests: small, seeded, made here."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_iris

# scikit-learn's own test files run on emkit's classes (tests/sklearn_suites): the fixture
# and hooks they need, here so that no second conftest.py shadows this one's module
from sklearn_suites._sklearn_harness import (  # noqa: F401
    global_dtype,
    pytest_collection_modifyitems,
    pytest_generate_tests,
)


def blobs(n: int = 400, d: int = 3, k: int = 3, seed: int = 0, spread: float = 4.0) -> np.ndarray:
    """Samples from a random Gaussian mixture with random full covariances."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, spread, (k, d))
    parts = []
    for j, m in enumerate(np.array_split(np.arange(n), k)):
        A = rng.normal(size=(d, d)) * (0.3 + 0.3 * j)
        parts.append(rng.multivariate_normal(means[j], A @ A.T + 0.2 * np.eye(d), len(m)))
    return rng.permutation(np.vstack(parts))


def mclust_data(name: str) -> np.ndarray:
    """One of mclust's bundled data sets as tests/data/mclust_reference.R exported it
    (faithful, iris, diabetes, banknote, wreath, thyroid, waiting), shape (n, d)."""
    data = Path(__file__).parent / "data"
    path = data / f"mclust_{name}.csv"
    if not path.exists():
        path = data / f"{name}.csv"
    return np.loadtxt(path, delimiter=",", skiprows=1, ndmin=2)


DATASETS = {
    "iris": lambda: load_iris().data,
    "blobs3d": lambda: blobs(400, 3, 3, seed=1),
    "blobs5d_shifted": lambda: blobs(300, 5, 4, seed=2) + 1e3,
    "overlapping2d": lambda: blobs(500, 2, 4, seed=3, spread=1.0),
}


@pytest.fixture(params=sorted(DATASETS))
def dataset(request: pytest.FixtureRequest) -> np.ndarray:
    return DATASETS[request.param]()

"""Initial responsibilities, the same four schemes as scikit-learn's mixtures.

An initialization is a responsibility matrix; the model's own M-step turns it into
parameters, so every family initializes the same way.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = ["INIT_METHODS", "initial_responsibilities", "seed_from"]

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data")


def seed_from(rng: np.random.Generator) -> int:
    """An integer seed for libraries that take ``random_state`` (scikit-learn)."""
    return int(rng.integers(np.iinfo(np.int32).max))


def initial_responsibilities(
    method: str,
    X: NDArray[np.floating[Any]],
    n_components: int,
    rng: np.random.Generator,
    sample_weight: NDArray[np.floating[Any]] | None = None,
) -> NDArray[np.float64]:
    """Responsibilities (n_samples, n_components) to start EM from.

    ``kmeans`` runs one k-means (scikit-learn's, weighted); ``k-means++`` one-hot marks
    the k-means++ seeds (weighted); ``random`` draws uniform responsibilities;
    ``random_from_data`` one-hot marks ``n_components`` distinct rows drawn with
    probability proportional to their weight.
    """
    n = X.shape[0]
    resp = np.zeros((n, n_components))
    if method == "kmeans":
        from sklearn.cluster import KMeans

        labels = (
            KMeans(n_clusters=n_components, n_init=1, random_state=seed_from(rng))
            .fit(X, sample_weight=sample_weight)
            .labels_
        )
        resp[np.arange(n), labels] = 1.0
    elif method == "k-means++":
        from sklearn.cluster import kmeans_plusplus

        _, indices = kmeans_plusplus(
            X, n_components, random_state=seed_from(rng), sample_weight=sample_weight
        )
        resp[indices, np.arange(n_components)] = 1.0
    elif method == "random":
        resp = rng.uniform(size=(n, n_components))
        resp /= resp.sum(axis=1, keepdims=True)
    elif method == "random_from_data":
        p = None if sample_weight is None else sample_weight / sample_weight.sum()
        indices = rng.choice(n, size=n_components, replace=False, p=p)
        resp[indices, np.arange(n_components)] = 1.0
    else:  # validated by the estimators; a clear message all the same
        raise ValueError(f"init_params must be one of {INIT_METHODS}, got {method!r}.")
    return resp

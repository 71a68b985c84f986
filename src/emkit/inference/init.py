"""Initial responsibilities: the four schemes of scikit-learn's mixtures, mclust's
model-based hierarchical clustering (``"hc"``, :mod:`emkit.inference.hierarchical`) and
``"auto"``, the best of several k-means++ seedings on a bounded sample of the rows.

An initialization is a responsibility matrix; the model's own M-step turns it into
parameters, so every family initializes the same way.
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emkit._validation import check_random_state
from emkit.inference.hierarchical import HierarchicalTree, hc_tree

__all__ = [
    "AUTO_SEEDINGS",
    "INIT_METHODS",
    "RandomSource",
    "init_random_source",
    "initial_responsibilities",
    "one_hot",
    "sample_rows",
    "seed_from",
]

INIT_METHODS = ("kmeans", "k-means++", "random", "random_from_data", "hc")

# "auto": k-means++ seedings whose best k-means (least inertia) starts EM. One k-means
# ends below mclust's Mclust on two of three seeds of bench/bench_gmm.py's 100k x 8
# (K = 8), 200k x 16 (K = 16) and 500k x 32 diag (K = 32) workloads; the best of 10 on
# 8192 rows reaches it on seeds 0-9 of the first two and 0-2 of the third (so did 5
# seedings, or 4096 rows: 10 on 8192 leaves a margin; bench/bench_default_fit.py).
AUTO_SEEDINGS = 10
# ... on a uniform sample of at most this many rows, and at least this many a component
_AUTO_ROWS = 1 << 13
_AUTO_ROWS_PER_COMPONENT = 256

# What an initialization draws from: emkit's Generator, or scikit-learn's legacy RandomState
RandomSource = np.random.Generator | np.random.RandomState


def seed_from(rng: np.random.Generator) -> int:
    """An integer seed for libraries that take ``random_state`` (scikit-learn)."""
    return int(rng.integers(np.iinfo(np.int32).max))


def init_random_source(random_state: Any) -> RandomSource:
    """The source of an estimator's initial draws: for an int seed or a RandomState, the
    RandomState scikit-learn's mixtures draw from (a seed gives the same start as theirs,
    and a RandomState is consumed as they consume it); otherwise a Generator
    (:func:`emkit._validation.check_random_state`)."""
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return np.random.RandomState(int(random_state))
    return check_random_state(random_state)


def sample_rows(method: str, n_components: int) -> int | None:
    """The rows ``method`` clusters at most, a uniform sample of them beyond (None: every
    row, or as the caller bounds them): ``"auto"``'s k-means reads max(8192, 256 *
    n_components) rows, enough for each component of a mixture whose smallest weight is
    a few percent, and few enough that its ``AUTO_SEEDINGS`` runs cost a few EM
    iterations of large data."""
    if method != "auto":
        return None
    return max(_AUTO_ROWS, _AUTO_ROWS_PER_COMPONENT * n_components)


def initial_responsibilities(
    method: str,
    X: NDArray[np.floating[Any]],
    n_components: int,
    rng: RandomSource,
    sample_weight: NDArray[np.floating[Any]] | None = None,
    tree: HierarchicalTree | None = None,
    overwrite: bool = False,
) -> NDArray[Any]:
    """Responsibilities to start EM from: hard labels (n_samples,) or a soft matrix.

    ``kmeans`` labels every row by one k-means (scikit-learn's, weighted); ``auto`` by
    the k-means of least inertia from ``AUTO_SEEDINGS`` k-means++ seedings (callers run
    it on at most :func:`sample_rows` rows and label the others by the nearest centre);
    ``k-means++``
    labels the k-means++ seeds (weighted) and leaves the other rows out (-1);
    ``random_from_data`` labels ``n_components`` distinct rows drawn with probability
    proportional to their weight; ``random`` draws a uniform soft matrix
    (n_samples, n_components); ``hc`` labels the rows by mclust's model-based
    agglomerative clustering (VVV criterion on the SVD-transformed data, on a random
    subset of 2000 rows beyond that, the other rows left out), or cuts ``tree`` when
    given (one tree serves every ``n_components``); its merges count rows, and the
    weights enter through the M-step that turns the labels into parameters. Hard labels
    keep memory at one integer a row; expand them chunk by chunk with :func:`one_hot`.
    With a RandomState (:func:`init_random_source`) the draws are those of scikit-learn's
    mixtures. ``overwrite=True`` lets ``kmeans`` and ``auto`` centre a C-contiguous ``X`` in place
    (scikit-learn's ``copy_x=False``: no copy of ``X``, whose values come back changed by
    round-off); for rows the caller made for it (a sample), not the user's data.
    """
    n = X.shape[0]
    labels = np.full(n, -1, dtype=np.intp)
    if method in ("kmeans", "k-means++", "auto"):
        X = _within_range(X)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        labels[:] = (
            KMeans(n_clusters=n_components, n_init=1, random_state=_seed(rng), copy_x=not overwrite)
            .fit(X, sample_weight=sample_weight)
            .labels_
        )
    elif method == "auto":
        from sklearn.cluster import KMeans

        from emkit.engines.memory import _blas_controller

        # a sample on one thread: its products are small, and scikit-learn's OpenMP and
        # BLAS threads on them were measured 7x slower on a busy machine than one thread
        # (every row, as with known labels, keeps the threads)
        small = n <= (sample_rows(method, n_components) or n)
        with _blas_controller().limit(limits=1) if small else nullcontext():
            km = KMeans(
                n_clusters=n_components,
                n_init=AUTO_SEEDINGS,
                random_state=_seed(rng),
                copy_x=not overwrite,
            )
            labels[:] = km.fit(X, sample_weight=sample_weight).labels_
    elif method == "k-means++":
        from sklearn.cluster import kmeans_plusplus

        _, indices = kmeans_plusplus(
            X, n_components, random_state=_seed(rng), sample_weight=sample_weight
        )
        labels[indices] = np.arange(n_components)
    elif method == "random":
        resp = rng.uniform(size=(n, n_components))
        return resp / resp.sum(axis=1, keepdims=True)
    elif method == "hc":
        if tree is None:
            tree = hc_tree(X, rng=rng)
        labels[:] = tree.labels(n_components)
    elif method == "random_from_data":
        p = None
        if sample_weight is not None and np.count_nonzero(sample_weight) >= n_components:
            p = sample_weight / sample_weight.sum()
        indices = rng.choice(n, size=n_components, replace=False, p=p)
        labels[indices] = np.arange(n_components)
    else:  # validated by the estimators; a clear message all the same
        raise ValueError(f"init_params must be one of {INIT_METHODS}, got {method!r}.")
    return labels


def _seed(rng: RandomSource) -> int | np.random.RandomState:
    """What scikit-learn's ``random_state`` gets from ``rng``."""
    return rng if isinstance(rng, np.random.RandomState) else seed_from(rng)


def _within_range(X: NDArray[np.floating[Any]]) -> NDArray[np.floating[Any]]:
    """``X`` as it is, or, where the sums of squares k-means forms would overflow its
    dtype (float32 data around 1e18 and beyond), divided by a power of two near its
    largest ``|x|`` in float64: k-means' labels and seeds do not change under one scale."""
    top = max(float(X.max()), -float(X.min()))
    if not top > 0 or top < 1e-2 * float(np.sqrt(np.finfo(X.dtype).max / X.size)):
        return X
    return np.asarray(X, dtype=np.float64) / np.exp2(np.floor(np.log2(top)))


def one_hot(labels: NDArray[np.integer[Any]], n_components: int) -> NDArray[np.float64]:
    """Responsibilities (n, n_components) of hard labels; a label of -1 is a zero row."""
    resp = np.zeros((labels.shape[0], n_components))
    rows = np.flatnonzero(labels >= 0)
    resp[rows, labels[rows]] = 1.0
    return resp

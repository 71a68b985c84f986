"""What a fit reads of the rows before EM, without whole-X arrays: a statistics pass for
the binding (shift, scale, whether values are missing) and a bounded sample for the
initialization.

The rows may be in memory or streamed from a file (:func:`emkit.io.open_table`); both go
through the engine, so that the same code binds and initializes a fit wherever the rows
live. Data with at most ``INIT_ROWS`` rows is initialized exactly as before (k-means on
every row, scikit-learn's draws); beyond it, k-means runs on a uniform sample of
``INIT_ROWS`` rows and every row is labelled by the nearest of its centers, a chunk at a
time.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emkit._validation import check_fit_range
from emkit.engines._source import RowIndex, RowSource
from emkit.exceptions import InputError
from emkit.inference.init import (
    RandomSource,
    initial_responsibilities,
    one_hot,
    seed_from,
)

__all__ = [
    "INIT_ROWS",
    "ColumnSummary",
    "bind_gaussian",
    "check_streamed",
    "column_summary",
    "filler",
    "fit_checkpoint",
    "initial_statistics_bounded",
    "is_streamed",
]

Array = NDArray[np.floating[Any]]

# Rows the initialization reads at most (a sample beyond): 2^17 rows of 32 float64
# columns are 32 MiB, and k-means' own copies and distances a few times that.
INIT_ROWS = 1 << 17
# Rows of the evenly spaced sample a Gaussian family's column scale is the median over
# (families/gaussian.py: centred_column_scale takes every max(1, n // 65536)-th row).
_SCALE_ROWS = 65536


def is_streamed(X: Any) -> bool:
    """Whether ``X`` is a table read a block at a time (:class:`emkit.io.ChunkedTable`)."""
    return hasattr(X, "iter_chunks")


@dataclass(frozen=True)
class ColumnSummary:
    """Additive per-column statistics of the rows: weighted sums over observed values,
    extremes, counts, and the evenly spaced rows a column scale is taken from."""

    weight: Array  # (d,) the weight of the observed values of each column
    sums: Array  # (d,) the weighted sum of the observed values
    low: Array  # (d,) the smallest observed value (+inf where none)
    high: Array  # (d,) the largest (-inf where none)
    missing: bool  # whether any value is missing
    spaced: tuple[Array, ...]  # every step-th row of the whole, in row order

    def __add__(self, other: ColumnSummary) -> ColumnSummary:
        return ColumnSummary(
            self.weight + other.weight,
            self.sums + other.sums,
            np.fmin(self.low, other.low),
            np.fmax(self.high, other.high),
            self.missing or other.missing,
            self.spaced + other.spaced,
        )

    @property
    def shift(self) -> Array:
        return self.sums / np.where(self.weight > 0, self.weight, 1.0)

    def scale(self, shift: Array) -> float:
        """max |x - shift| over the observed values (:func:`centred_scale`'s)."""
        spread = np.nan_to_num(np.maximum(self.high - shift, shift - self.low), neginf=0.0)
        return float(max(np.abs(spread).max(), 1e-300))


def column_summary(engine: Any, source: RowSource) -> ColumnSummary:
    """One pass of ``engine`` over ``source``'s rows and weights: its summary."""
    n = source.n_rows
    step = max(1, n // _SCALE_ROWS)

    def summarize(X: Array, w: Array | None, index: NDArray[np.intp]) -> ColumnSummary:
        observed = ~np.isnan(X)
        missing = not bool(observed.all())
        values = np.where(observed, X, 0.0) if missing else X
        if w is None:
            weight = observed.sum(axis=0).astype(np.float64)
            sums = values.sum(axis=0, dtype=np.float64)
        else:
            w64 = np.asarray(w, dtype=np.float64)
            weight = w64 @ observed
            sums = w64 @ values
        low = np.fmin.reduce(X, axis=0).astype(np.float64)
        high = np.fmax.reduce(X, axis=0).astype(np.float64)
        low = np.where(np.isnan(low), np.inf, low)
        high = np.where(np.isnan(high), -np.inf, high)
        first = int((-index[0]) % step) if index.size else 0
        # a copy: a view would keep a streamed block alive
        return ColumnSummary(weight, sums, low, high, missing, (X[first::step].copy(),))

    return engine.map_reduce(
        summarize, RowSource(source.rows, source.weights, columns=(RowIndex(n),))
    )


def bind_gaussian(family: Any, summary: ColumnSummary, n_rows: int) -> Any:
    """A Gaussian family bound to the rows from their summary, as ``family.bind(X, w)``
    binds it from the rows (without a prior: its default reads the data covariance)."""
    from emkit.families.gaussian import centred_column_scale

    if (summary.weight <= 0).any():
        j = int(np.argmax(summary.weight <= 0))
        raise InputError(
            f"Column {j} of X has no observed value (with a positive sample_weight); nothing "
            "can be learned about it. Drop the column."
        )
    shift = summary.shift
    scale = summary.scale(shift)
    check_fit_range(scale, (n_rows, shift.shape[0]), "a Gaussian fit")
    spaced = np.concatenate(summary.spaced)
    return replace(
        family, shift=shift, scale=scale, column_scale=centred_column_scale(spaced, shift)
    )


def filler(means: Array) -> Any:
    """A function that fills the missing values (NaN) of rows with ``means``."""

    def fill(rows: Array) -> Array:
        return np.where(np.isnan(rows), means.astype(rows.dtype), rows)

    return fill


def check_streamed(estimator: Any, X: Any, *, reset: bool) -> Any:
    """A streamed table as the estimator's ``X``: its number of columns set (a fit) or
    checked (a fitted estimator) as scikit-learn's ``validate_data`` does for arrays."""
    d = int(X.shape[1])
    if reset:
        estimator.n_features_in_ = d
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    elif d != estimator.n_features_in_:
        raise InputError(
            f"X has {d} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input ({X!r}). Open the table with "
            "the columns the estimator was fitted on (columns=...)."
        )
    return X


def fit_checkpoint(estimator: Any, directory: Any, shape: tuple[int, ...]) -> Any:
    """The :class:`~emkit.inference.checkpoint.Checkpoint` of ``fit(..., checkpoint=)``
    (None without one), keyed by the estimator's arguments and the data's shape."""
    if directory is None:
        return None
    from emkit.inference.checkpoint import Checkpoint

    if getattr(estimator, "accelerate", None) is not None:
        raise InputError(
            f"checkpoint works with plain EM steps; accelerate={estimator.accelerate!r} "
            "carries state between iterations. Fit with accelerate=None to checkpoint."
        )
    # what the result depends on; not where it runs (engine, threads) nor what it logs
    ignored = {"engine", "n_threads", "verbose", "verbose_interval"}
    params = sorted((k, repr(v)) for k, v in estimator.get_params().items() if k not in ignored)
    key = repr((type(estimator).__name__, params, tuple(int(s) for s in shape)))
    return Checkpoint(directory, key)


def _sample_seed(rng: RandomSource) -> int:
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(np.iinfo(np.int32).max))
    return seed_from(rng)


def uniform_rows(rng: np.random.Generator, n: int, size: int) -> NDArray[np.intp]:
    """``size`` distinct indices of ``range(n)``, a uniform draw, sorted, in memory of the
    order of ``size`` whatever ``n`` (``Generator.choice`` shuffles all ``n`` indices
    when ``size`` exceeds ``n / 50``: 32 MiB for 4 million rows)."""
    if n <= 4 * size:
        return np.sort(rng.choice(n, size, replace=False))
    # distinct values of uniform draws, then a uniform subset of them: a uniform subset
    chosen = np.unique(rng.integers(0, n, size + size // 8))
    while chosen.shape[0] < size:
        chosen = np.union1d(chosen, rng.integers(0, n, size - chosen.shape[0] + size // 8))
    return np.sort(rng.choice(chosen, size, replace=False))


def _rows_at(X: Any, indices: NDArray[np.intp]) -> Array:
    """The rows of ``X`` at sorted ``indices`` (read block by block from a stream)."""
    if not is_streamed(X):
        return np.asarray(X[indices])
    out = np.empty((indices.shape[0], X.shape[1]))
    for start, rows in X.iter_chunks():
        lo, hi = np.searchsorted(indices, [start, start + rows.shape[0]])
        out[lo:hi] = rows[indices[lo:hi] - start]
    return out


def initial_statistics_bounded(
    method: str,
    model: Any,
    engine: Any,
    X: Any,
    w: Array | None,
    n_components: int,
    rng: RandomSource,
    prepare: Any = None,
    work_bytes: int = 0,
    tree: Any = None,
) -> Any:
    """The statistics EM starts from, for ``init_params=method``, reading at most
    ``INIT_ROWS`` rows at once. ``tree`` is a hierarchy built beforehand on the same rows
    for ``'hc'`` (:class:`~emkit.inference.hierarchical.HierarchicalTree`), used on the
    exact path.

    With at most ``INIT_ROWS`` rows in memory this is the exact initialization
    (:func:`~emkit.inference.init.initial_responsibilities` on every row). Beyond, or for
    rows streamed from a file: k-means (or k-means++, or the random draw of rows) on a
    uniform sample of ``INIT_ROWS`` rows gives ``n_components`` centers, every row is
    labelled by the nearest (``'kmeans'``), a chunk at a time, and the model's statistics
    of those labels are summed; ``'random'`` draws each chunk's soft responsibilities from
    a generator keyed by the chunk's first row. ``prepare`` maps rows to what the
    initialization reads (default: the rows; e.g. missing values filled).
    """
    from emkit.models.kmeans import nearest

    n = X.shape[0]
    K = n_components
    prepare = prepare or (lambda rows: rows)
    if n <= INIT_ROWS:
        rows = prepare(X.read() if is_streamed(X) else X)
        resp = initial_responsibilities(method, rows, K, rng, w, tree=tree)
        from emkit.estimators._mixture_base import initial_statistics

        return initial_statistics(model, engine, rows, w, resp, K, work_bytes)
    seed = _sample_seed(rng)
    if method == "random":

        def random_stats(Xc: Array, wc: Array | None, index: NDArray[np.intp]) -> Any:
            chunk_rng = np.random.default_rng([seed, int(index[0])])
            resp = chunk_rng.uniform(size=(Xc.shape[0], K))
            resp /= resp.sum(axis=1, keepdims=True)
            return model.statistics_from_resp(prepare(Xc), wc, resp)

        source = RowSource(X, w, columns=(RowIndex(n),), work_bytes=work_bytes)
        return engine.map_reduce(random_stats, source)
    indices = uniform_rows(np.random.default_rng(seed), n, INIT_ROWS)
    sample = prepare(_rows_at(X, indices))
    w_sample = None if w is None else w[indices]
    labels = initial_responsibilities(method, sample, K, rng, w_sample)
    if method != "kmeans":  # seeds only: the labelled rows of the sample
        seeds = np.flatnonzero(labels >= 0)
        wk = None if w_sample is None else w_sample[seeds]
        return model.statistics_from_resp(sample[seeds], wk, one_hot(labels[seeds], K))
    prepared = sample
    # the centers k-means ended with: the (weighted) means of its clusters
    weights = np.ones(labels.shape[0]) if w_sample is None else w_sample.astype(np.float64)
    totals = np.bincount(labels, weights, minlength=K)
    sums = np.zeros((K, prepared.shape[1]))
    np.add.at(sums, labels, weights[:, None] * prepared)
    centers = np.where(totals[:, None] > 0, sums / np.maximum(totals, 1e-300)[:, None], prepared[0])
    del sample, prepared

    def labelled_stats(Xc: Array, wc: Array | None) -> Any:
        rows = prepare(Xc)
        return model.statistics_from_resp(rows, wc, one_hot(nearest(rows, centers), K))

    return engine.map_reduce(labelled_stats, RowSource(X, w, work_bytes=work_bytes))

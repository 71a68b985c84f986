"""What a family's data-dependent settings read of the rows, as values that add across
chunks: a family binds from a :class:`Summary` of its training rows.

A family's ``summarize(X, w, index, n_rows)`` summarizes one chunk of rows (``index``:
their positions in the whole, ``n_rows``: the number of rows in the whole) and
``bind_summary(summary, n_rows)`` binds the family from the sum over every chunk, so that
rows in memory, streamed from a file or on Dask bind the same family from one pass, and
no binding reads a whole-X array. ``family.bind(X, w)`` is :func:`bind_rows`: the same
two calls on ``X`` as one chunk.

The parts of a summary add by their own rule: arrays and numbers add, :class:`Low` and
:class:`High` keep the extremes, :class:`Counts` adds counts of different lengths,
:class:`Tally` merges weighted distinct values, :class:`Moments` pools means and centred
second moments (Chan, Golub & LeVeque 1979), tuples concatenate (rows in row order), and
a :class:`Summary` adds key by key (a product's blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Counts",
    "High",
    "Low",
    "Moments",
    "Summary",
    "Tally",
    "bind_rows",
    "column_reduce",
    "weighted_sum",
]

Array = NDArray[np.floating[Any]]


class Summary(dict[str, Any]):
    """Named additive parts; ``a + b`` adds each part by its own rule."""

    def __add__(self, other: Summary) -> Summary:
        return Summary({key: value + other[key] for key, value in self.items()})


@dataclass(frozen=True)
class Low:
    """The smallest value of each entry (``fmin``: NaN skipped)."""

    value: Array

    def __add__(self, other: Low) -> Low:
        return Low(np.fmin(self.value, other.value))


@dataclass(frozen=True)
class High:
    """The largest value of each entry (``fmax``: NaN skipped)."""

    value: Array

    def __add__(self, other: High) -> High:
        return High(np.fmax(self.value, other.value))


@dataclass(frozen=True)
class Counts:
    """(d, C) weighted counts of codes 0..C-1 per column; chunks with fewer codes are
    padded with zeros."""

    value: Array

    def __add__(self, other: Counts) -> Counts:
        width = max(self.value.shape[1], other.value.shape[1])
        out = np.zeros((self.value.shape[0], width))
        out[:, : self.value.shape[1]] += self.value
        out[:, : other.value.shape[1]] += other.value
        return Counts(out)

    @staticmethod
    def of(codes: NDArray[np.intp], weights: Array | None) -> Counts:
        """The counts of integer ``codes`` (n, d), each row weighing its weight."""
        width = int(codes.max(initial=-1)) + 1
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        rows = [np.bincount(codes[:, j], w, width) for j in range(codes.shape[1])]
        return Counts(np.array(rows, dtype=np.float64).reshape(codes.shape[1], width))


@dataclass(frozen=True)
class Tally:
    """Distinct values, sorted, and the weight of the rows that hold each."""

    values: Array
    weights: Array

    def __add__(self, other: Tally) -> Tally:
        return Tally.of(
            np.concatenate([self.values, other.values]),
            np.concatenate([self.weights, other.weights]),
        )

    @staticmethod
    def of(values: Array, weights: Array | None) -> Tally:
        distinct, index = np.unique(values, return_inverse=True)
        w = None if weights is None else np.asarray(weights, dtype=np.float64)
        counts = np.bincount(index.reshape(-1), w, distinct.size).astype(np.float64)
        return Tally(distinct, counts)


@dataclass(frozen=True)
class Moments:
    """Weighted mean and centred second moments of rows: ``weight`` = sum w,
    ``squares`` = sum w^2, ``mean``, ``m2`` = sum w (x - mean)(x - mean)^T. Two summaries
    pool by ``m2 = m2_a + m2_b + delta delta^T w_a w_b / (w_a + w_b)``, delta the
    difference of their means: no cancellation of large raw sums."""

    weight: float
    squares: float
    mean: Array
    m2: Array

    def __add__(self, other: Moments) -> Moments:
        total = self.weight + other.weight
        if other.weight == 0:
            return self
        if self.weight == 0:
            return other
        delta = other.mean - self.mean
        share = other.weight / total
        m2 = self.m2 + other.m2 + np.outer(delta, delta) * (self.weight * share)
        return Moments(total, self.squares + other.squares, self.mean + delta * share, m2)

    @staticmethod
    def of(X: Array, weights: Array | None) -> Moments:
        X64 = np.asarray(X, dtype=np.float64)
        w = np.ones(X64.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        total = float(w.sum())
        mean = (w @ X64) / total if total > 0 else np.zeros(X64.shape[1])
        centred = X64 - mean
        return Moments(total, float(w @ w), mean, (centred * w[:, None]).T @ centred)

    def covariance(self) -> Array:
        """What ``numpy.cov(X, rowvar=False, aweights=w)`` gives: ``m2 / (W - W2 / W)``."""
        return np.asarray(self.m2 / (self.weight - self.squares / self.weight))


# Values an inner loop of :func:`column_reduce` covers: that many / d rows at a time.
_LANES = 512


def column_reduce(op: np.ufunc, X: Array, dtype: Any = None) -> Array:
    """``op.reduce(X, axis=0)`` (d,) for a ufunc whose reduction may run in any order
    (``fmin``, ``fmax``; ``add`` up to its rounding), at the speed of a pass over memory.

    NumPy reduces a C-ordered (n, d) array over its rows with an inner loop of d values a
    row, which costs ~25 ns a row whatever d is: 50x a pass over the memory at d = 2.
    Seen as (n / r, r d) with r = 512 / d rows a line, the reduction's inner loop runs
    over 512 values; the (r, d) result is then reduced over its r rows.
    """
    n, d = X.shape
    rows = max(1, _LANES // max(d, 1))
    lines = n // rows
    if lines < 2 or not X.flags.c_contiguous:
        return np.asarray(op.reduce(X, axis=0, dtype=dtype))
    head = op.reduce(X[: lines * rows].reshape(lines, rows * d), axis=0, dtype=dtype)
    out = op.reduce(head.reshape(rows, d), axis=0)
    if lines * rows < n:
        out = op(out, op.reduce(X[lines * rows :], axis=0, dtype=dtype))
    return np.asarray(out)


def weighted_sum(X: Array, weights: Array | None) -> Array:
    """(d,) ``sum_i w_i x_i`` in float64 (``sum_i x_i`` without weights, at the speed of
    a pass over memory: :func:`column_reduce`, the rows added in another order than
    ``X.sum(axis=0)``'s)."""
    # a sum that overflows is inf, without a warning (a binding's range check refuses it)
    with np.errstate(over="ignore"):
        if weights is None:
            return column_reduce(np.add, X, np.float64)
        w = np.asarray(weights, dtype=np.float64)
        return np.asarray(w @ np.asarray(X, dtype=np.float64))


def total_weight(X: Array, weights: Array | None) -> float:
    """The weight of the rows: their number without weights."""
    return float(X.shape[0]) if weights is None else float(np.sum(weights, dtype=np.float64))


def statistic_summary(X: Array, weights: Array | None, **more: Any) -> Summary:
    """The summary of a family whose statistics are the values themselves (counts,
    durations): the rows' weight, the weighted column sums and each column's largest
    ``|x|`` (the scale of its statistics), with the family's ``more`` fields."""
    return Summary(
        weight=total_weight(X, weights),
        sums=weighted_sum(X, weights),
        size=High(np.abs(X).max(axis=0, initial=0.0)),
        **more,
    )


def bind_rows(family: Any, X: Array, weights: Array | None) -> Any:
    """``family`` bound to the rows ``X`` (one chunk): its summary, then its binding."""
    n = int(X.shape[0])
    summary = family.summarize(X, weights, np.arange(n), n)
    return family.bind_summary(summary, n)

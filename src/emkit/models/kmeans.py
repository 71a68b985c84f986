"""k-means as hard EM: Gaussian components with equal weights and one shared spherical
covariance, each row given wholly to its most likely component.

With p(x | k) = N(x; c_k, s^2 I) and equal weights, log p(x, k) = -||x - c_k||^2 / (2 s^2)
+ const, so the C-step (the arg-max over k) assigns each row to its nearest center and the
M-step sets each center to the weighted mean of its rows. The objective is minus the
inertia (sum_n w_n ||x_n - c_{z_n}||^2) per unit of weight; neither step can lower it.

A block of centred rows comes as its design matrix A = [x, 1, ||x||^2], so that both
passes over the rows are matrix products:

    D = A[:, :d+1] @ [-2 C^T ; ||c||^2]       (n, K): ||x - c_k||^2 - ||x||^2
    z = argmin_k D                            the C-step
    S = Z^T A = [sum_x, nk, sum_xx]           Z: one w_n per row, in column z_n (sparse)

and the inertia comes from the statistics alone:
sum_k sum_xx_k - 2 c_k . sum_x_k + nk_k ||c_k||^2.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csc_array

__all__ = [
    "FarRows",
    "KMeansModel",
    "KMeansParams",
    "KMeansStats",
    "design_matrix",
    "nearest",
    "squared_distances",
]

Array = NDArray[np.floating[Any]]


class KMeansParams(NamedTuple):
    """The cluster centers, in the centred coordinates of the fit, and the sums they were
    computed from (before an empty cluster moved; None at a start)."""

    centers: NDArray[np.float64]  # (K, d)
    sums: NDArray[np.float64] | None = None  # (K, d + 1): [sum_x, nk] of the assignment


class FarRows(NamedTuple):
    """The rows farthest from their assigned centers, farthest first (ties: earlier row
    first), at most K of them: where the M-step moves clusters that got no rows."""

    distance: NDArray[np.float64]  # (m,) ||x - c_z||^2, computed directly
    x: NDArray[np.float64]  # (m, d)
    weight: NDArray[np.float64]  # (m,)
    label: NDArray[np.intp]  # (m,) the cluster each row was assigned to

    def merge(self, other: FarRows, limit: int) -> FarRows:
        distance = np.concatenate([self.distance, other.distance])
        keep = np.argsort(-distance, kind="stable")[:limit]
        return FarRows(
            distance[keep],
            np.concatenate([self.x, other.x])[keep],
            np.concatenate([self.weight, other.weight])[keep],
            np.concatenate([self.label, other.label])[keep],
        )


@dataclass(frozen=True)
class KMeansStats:
    """Additive statistics of a block of rows under hard assignments (float64)."""

    nk: NDArray[np.float64]  # (K,) sum of the weights of the rows assigned to k
    sum_x: NDArray[np.float64]  # (K, d) sum_n w_n x_n over those rows
    sum_xx: NDArray[np.float64]  # (K,) sum_n w_n ||x_n||^2 over those rows
    far: FarRows | None = None  # only from the supplementary pass (an empty cluster)

    def __add__(self, other: KMeansStats) -> KMeansStats:
        far = self.far if other.far is None else other.far
        if self.far is not None and other.far is not None:
            far = self.far.merge(other.far, self.nk.shape[0])
        return KMeansStats(
            self.nk + other.nk, self.sum_x + other.sum_x, self.sum_xx + other.sum_xx, far
        )

    def inertia(self, centers: NDArray[np.float64]) -> float:
        """sum_n w_n ||x_n - c_{z_n}||^2 for the centers the rows were assigned with."""
        # sum over k of sum_xx_k - 2 c_k . sum_x_k + nk_k ||c_k||^2
        cross = np.einsum("kd,kd->", centers, self.sum_x)
        norms = np.einsum("kd,kd->k", centers, centers)
        return float(self.sum_xx.sum() - 2.0 * cross + self.nk @ norms)


def design_matrix(X: Array, shift: Array) -> Array:
    """[x - shift, 1, ||x - shift||^2] for each row, shape (n, d + 2), in X's dtype.

    Built once per fit: the ones fold ||c||^2 into the distance product and give nk in
    the statistics' product; the squared norms give sum_xx there.
    """
    n, d = X.shape
    A = np.empty((n, d + 2), dtype=X.dtype)
    np.subtract(X, shift, out=A[:, :d])
    A[:, d] = 1.0
    np.einsum("ij,ij->i", A[:, :d], A[:, :d], out=A[:, d + 1])
    return A


# Bytes of the distances of one block of rows: they stay in a core's L2 cache, while the
# engine's chunks are larger, so that the sparse product of the sums (whose Python-side
# cost is per call) runs once per chunk. 2048 rows were fastest for K = 32 on the bench
# machine (1024 and 4096 slower).
_BLOCK_BYTES = 512 << 10


def _distance_product(centers: NDArray[np.float64], dtype: Any) -> Array:
    """[-2 C^T ; ||c||^2], shape (d + 1, K): A[:, :d+1] @ it is ||x - c||^2 - ||x||^2."""
    return np.vstack([-2.0 * centers.T, np.einsum("kd,kd->k", centers, centers)]).astype(dtype)


def _distance_blocks(A: Array, product: Array) -> Iterator[tuple[slice, Array]]:
    """(rows, ||x - c||^2 - ||x||^2 for those rows) block by block of the design matrix;
    the C-step and the far rows' pass share the blocks, so they agree to the last bit."""
    d1, K = product.shape
    step = max(64, _BLOCK_BYTES // (8 * K))
    for start in range(0, A.shape[0], step):
        rows = slice(start, min(start + step, A.shape[0]))
        yield rows, A[rows, :d1] @ product


def _as_float64(D: Array) -> NDArray[np.float64]:
    """Distances to take the arg-min of: NumPy's float32 arg-min along rows was 4x slower
    than converting to float64 first (exactly, so the same labels) and its float64 one."""
    return D.astype(np.float64, copy=False)


def nearest(X: Array, centers: NDArray[np.float64]) -> NDArray[np.intp]:
    """The nearest center of each (centred) row, ties to the lower index."""
    product = _distance_product(centers, X.dtype)
    D = X @ product[:-1]
    D += product[-1]
    return np.asarray(_as_float64(D).argmin(axis=1))


def squared_distances(
    X: Array, centers: NDArray[np.float64], labels: NDArray[np.intp]
) -> NDArray[np.float64]:
    """||x_n - c_{labels_n}||^2, computed directly (no expansion), in float64."""
    diff = X - centers[labels].astype(X.dtype)
    return np.einsum("ij,ij->i", diff, diff, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class KMeansModel:
    """Hard EM for k-means, as pure functions of (params, rows) for :func:`fit_em`.

    ``tol`` is the stopping threshold on the squared shift of the centers,
    sum_k ||c_k^new - c_k||^2 (scikit-learn's, already scaled by the data's variance).
    ``dtype`` is the working precision of the distance product.
    """

    tol: float = 0.0
    dtype: Any = np.float64

    def expectation(self, params: KMeansParams) -> Callable[[Array, Array | None], KMeansStats]:
        """The C-step for one iteration, as a function of a block of the design matrix
        (:func:`design_matrix`) and the rows' weights."""
        centers = params.centers
        K, d = centers.shape
        product = _distance_product(centers, self.dtype)

        def e_step(A: Array, weights: Array | None) -> KMeansStats:
            n = A.shape[0]
            labels = np.empty(n, dtype=np.intp)
            for rows, D in _distance_blocks(A, product):
                np.argmin(_as_float64(D), axis=1, out=labels[rows])
            w = np.ones(n) if weights is None else weights.astype(np.float64, copy=False)
            # Z^T A with Z the sparse (n, K) matrix of the weights at the labels; summed in
            # float64 whatever A's dtype, so that the objective's changes stay exact
            Z_T = csc_array((w, labels, np.arange(n + 1)), shape=(K, n))
            S = Z_T @ A
            return KMeansStats(S[:, d], S[:, :d], S[:, d + 1])

        return e_step

    def supplement(
        self, params: KMeansParams, stats: KMeansStats
    ) -> Callable[[Array, Array | None], KMeansStats] | None:
        """When a cluster got no rows, the pass that finds the K rows farthest from their
        centers (scikit-learn moves empty clusters onto them); None otherwise."""
        if (stats.nk > 0).all():
            return None
        centers = params.centers
        K, d = centers.shape
        product = _distance_product(centers, self.dtype)

        def far_rows(A: Array, weights: Array | None) -> KMeansStats:
            far = None
            w = np.ones(A.shape[0]) if weights is None else weights.astype(np.float64, copy=False)
            for rows, D in _distance_blocks(A, product):
                labels = _as_float64(D).argmin(axis=1)
                # ||x - c_z||^2 = ||x||^2 + D[n, z_n] (D read as a flat array)
                distance = A[rows, d + 1] + D.ravel()[labels + np.arange(0, D.size, K)]
                block = _farthest(A[rows], distance, labels, w[rows], centers)
                far = block if far is None else far.merge(block, K)
            return KMeansStats(np.zeros(K), np.zeros((K, d)), np.zeros(K), far)

        return far_rows

    def m_step(self, params: KMeansParams, stats: KMeansStats) -> KMeansParams:
        """Each center to the weighted mean of its rows.

        A cluster with no rows (no weight) takes, as in scikit-learn, one of the rows
        farthest from their centers, which leaves its old cluster: the empty clusters,
        in index order, take the rows in decreasing distance. If every row lies on its
        center, or a cluster is still empty after that, it keeps its center.
        """
        nk, sum_x = stats.nk.copy(), stats.sum_x.copy()
        empty = np.flatnonzero(nk == 0)
        far = stats.far
        if empty.size and far is not None and far.distance[0] > 0:
            for k, x, w, old in zip(empty, far.x, far.weight, far.label, strict=False):
                sum_x[old] -= w * x
                nk[old] -= w
                sum_x[k] = w * x
                nk[k] = w
        filled = nk > 0
        centers = params.centers.copy()
        centers[filled] = sum_x[filled] / nk[filled, None]
        return KMeansParams(centers, np.column_stack([stats.sum_x, stats.nk]))

    def m_step_gap(self, params: KMeansParams, stats: KMeansStats) -> float:
        """The M-step is exact (the mean minimizes the squared distances): 0."""
        return 0.0

    def objective(self, params: KMeansParams, stats: KMeansStats) -> float:
        """Minus the inertia per unit of weight (what hard EM increases)."""
        return -stats.inertia(params.centers) / float(stats.nk.sum())

    def converged(self, previous: KMeansParams, params: KMeansParams) -> bool:
        """scikit-learn's rule: no row changed cluster in the last C-step (the same sums:
        an empty cluster's move does not count), or the squared shift of the centers is
        at most ``tol``."""
        if (
            previous.sums is not None
            and params.sums is not None
            and np.array_equal(previous.sums, params.sums)
        ):
            return True
        return float(((params.centers - previous.centers) ** 2).sum()) <= self.tol

    def row_bytes(self, n_features: int) -> int:
        """Working memory of a row of a chunk in the C-step: its design row, its label,
        weight and sparse indices (the distances are held a block of rows at a time)."""
        return (n_features + 2) * np.dtype(self.dtype).itemsize + 4 * 8


def _farthest(
    A: Array,
    distance: Array,
    labels: NDArray[np.intp],
    weights: NDArray[np.float64],
    centers: NDArray[np.float64],
) -> FarRows:
    """The block's K rows farthest from their centers (scikit-learn's choice for empty
    clusters): picked by the expanded ``distance``, ordered by the direct one."""
    n = A.shape[0]
    K, d = centers.shape
    keep = min(K, n)
    # every row at or beyond the K-th largest distance (ties included, so that which
    # rows are kept does not depend on the blocks)
    rows = np.flatnonzero(distance >= np.partition(distance, n - keep)[n - keep])
    x = A[rows, :d].astype(np.float64)
    label = labels[rows]
    direct = squared_distances(x, centers, label)
    order = np.argsort(-direct, kind="stable")[:keep]
    return FarRows(direct[order], x[order], weights[rows][order], label[order])

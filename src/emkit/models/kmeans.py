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

Exact acceleration (Hamerly, "Making k-means even faster", SDM 2010). Each row keeps an
upper bound u_n >= ||x_n - c_{z_n}|| and a lower bound l_n <= min_{j != z_n} ||x_n - c_j||
from one C-step to the next; when the centers move by m_k, u_n + m_{z_n} and
l_n - max_{j != z_n} m_j bound the new distances (triangle inequality), and so does
s_{z_n} - u_n, where s_k = min_{j != k} ||c_k - c_j||. Where the bounds leave a gap wider
than the round-off of the expanded distances D,

    max(l_n, s_{z_n} - u_n)^2 - u_n^2 > kappa (||x_n||^2 + max_k ||c_k||^2),

Lloyd's arg-min of D is z_n again, strictly, so the row is skipped; otherwise u_n is
tightened to the distance itself and the test repeated, and a row that still fails is
measured with D exactly as Lloyd measures it. The labels, and so the centers, are those of
Lloyd's algorithm at every iteration, ties going to the lower index. (A measured row's D
comes from a matrix product over the rows measured with it: identical to the last bit to
plain Lloyd's as long as BLAS rounds a row's product whatever the other rows, which holds
for OpenBLAS once single rows are sent as two, and which the tests check; a BLAS where it
does not would only ever differ on rows within round-off of a tie.)

Only rows that changed cluster change the statistics: S_new = S_old + (moved in - moved
out). They are summed in full on the first iteration, after an empty cluster moved, when
many rows moved, and every ``_RESUM_EVERY`` iterations, which bounds the round-off that
the incremental sums accumulate.

k-means is classification EM of exactly that mixture, built from the parts every mixture
shares (:mod:`emkit.models.mixing`): the weights are a :class:`MixingWeights` held fixed
and equal (:func:`equal_weights`), the C-step is the :class:`Hard` policy (its tie rule,
known labels and sparse :class:`Labels`, whose statistics are the segment sums Z^T A
above), and the component is :class:`SphericalCenters`, which answers the policy's
"nearest component per row" query by distances rather than log-densities: with equal
weights and one shared spherical covariance the arg-max of log p(x, k) is the nearest
center, and Hamerly's bounds (below) make that query cheap.

Sparse rows (CSR, e.g. TF-IDF) are not centred, which would fill them: their design matrix
is sparse too, and both products above are sparse-times-dense products, so the rows are
never made dense. They are measured at every iteration (plain Lloyd, ``bounds=False``);
their distances to assigned centers expand ||x||^2 - 2 x.c + ||c||^2 over the stored
entries.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeAlias

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csr_array, issparse

from emkit.exceptions import InputError
from emkit.families._base import Fixed
from emkit.models.mixing import NK_FLOOR, Hard, Labels, MixingWeights
from emkit.models.statistics import Statistics

__all__ = [
    "FarRows",
    "KMeansModel",
    "KMeansParams",
    "KMeansStats",
    "LastStep",
    "Sparse",
    "SparseRows",
    "SphericalCenters",
    "as_dense",
    "design_matrix",
    "equal_weights",
    "euclidean_distances",
    "nearest",
    "row_state",
    "squared_distances",
]

Array = NDArray[np.floating[Any]]
# Rows in compressed sparse row format (scipy.sparse.csr_array or csr_matrix); Any for
# mypy, as issparse() does not narrow a union with ndarray.
Sparse: TypeAlias = Any

# C-steps between two summations of the statistics in full (the incremental sums in between
# gather round-off of the order of eps * sum |S_k| per step), and between two measurements
# of every row (the bounds in between gather round-off that kappa's 1e-12 covers).
_RESUM_EVERY = 10
_REMEASURE_EVERY = 100
# Measure every row (and sum them in full) when more than this share of the rows moved in
# the last C-step: many rows would then fail the bounds' test, and a failed row costs more
# than a row of plain Lloyd.
_BOUNDED_MOVED = 0.05


@dataclass(frozen=True)
class KMeansStats(Statistics):
    """Additive statistics of a block of rows under hard assignments (float64).

    ``moved`` is how many rows changed cluster in the C-step (every row, when there was no
    assignment before it) and ``count`` how many rows of positive weight each cluster holds
    (None where not counted). From the accelerated C-step the statistics may be the change
    since the last assignment, which :meth:`KMeansModel.totals` adds to the last totals.
    """

    nk: NDArray[np.float64]  # (K,) sum of the weights of the rows assigned to k
    sum_x: NDArray[np.float64]  # (K, d) sum_n w_n x_n over those rows
    sum_xx: NDArray[np.float64]  # (K,) sum_n w_n ||x_n||^2 over those rows
    far: FarRows | None = None  # only from the supplementary pass (an empty cluster)
    moved: int = 0
    count: NDArray[np.intp] | None = None  # (K,)

    def __add__(self, other: KMeansStats) -> KMeansStats:
        far = self.far if other.far is None else other.far
        if self.far is not None and other.far is not None:
            far = self.far.merge(other.far, self.nk.shape[0])
        count = None
        if self.count is not None and other.count is not None:
            count = self.count + other.count
        return KMeansStats(
            self.nk + other.nk,
            self.sum_x + other.sum_x,
            self.sum_xx + other.sum_xx,
            far,
            self.moved + other.moved,
            count,
        )

    def __mul__(self, scale: float) -> KMeansStats:
        """The rows' weights scaled: the sums scale, which rows moved or are far do not."""
        return KMeansStats(
            self.nk * scale,
            self.sum_x * scale,
            self.sum_xx * scale,
            self.far,
            self.moved,
            self.count,
        )

    def zero(self) -> KMeansStats:
        count = None if self.count is None else np.zeros_like(self.count)
        return KMeansStats(
            np.zeros_like(self.nk),
            np.zeros_like(self.sum_x),
            np.zeros_like(self.sum_xx),
            None,
            0,
            count,
        )

    def inertia(self, centers: NDArray[np.float64]) -> float:
        """sum_n w_n ||x_n - c_{z_n}||^2 for the centers the rows were assigned with."""
        # sum over k of sum_xx_k - 2 c_k . sum_x_k + nk_k ||c_k||^2
        cross = np.einsum("kd,kd->", centers, self.sum_x)
        norms = np.einsum("kd,kd->k", centers, centers)
        return float(self.sum_xx.sum() - 2.0 * cross + self.nk @ norms)


class LastStep(NamedTuple):
    """What a C-step leaves to the next one, besides the rows' labels and bounds."""

    stats: KMeansStats  # the totals of its assignment (before an empty cluster moved)
    centers: NDArray[np.float64]  # (K, d) the centers it assigned the rows to
    bounds: bool  # the rows' bounds hold for those centers (False: an empty cluster moved)
    measured: int  # C-steps since every row was measured
    summed: int  # C-steps since the statistics were summed in full


class KMeansParams(NamedTuple):
    """The cluster centers, in the centred coordinates of the fit, what the last C-step
    left for the next (None at a start), and the mixing weights of the last M-step (None
    at a start; k-means' are fixed and equal)."""

    centers: NDArray[np.float64]  # (K, d)
    last: LastStep | None = None
    weights: NDArray[np.float64] | None = None  # (K,)


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


def design_matrix(X: Array | Sparse, shift: Array) -> Array | Sparse:
    """[x - shift, 1, ||x - shift||^2] for each row, shape (n, d + 2), in X's dtype.

    Built once per fit: the ones fold ||c||^2 into the distance product and give nk in
    the statistics' product; the squared norms give sum_xx there. Sparse rows (CSR, no
    duplicate entries) give a sparse design matrix (CSR: give the engine its
    :class:`SparseRows`), and must not be moved (``shift`` all zero).
    """
    n, d = X.shape
    if issparse(X):
        if np.any(shift):
            raise ValueError("design_matrix: sparse rows cannot be centred; pass a zero shift.")
        return _sparse_design_matrix(X)
    A = np.empty((n, d + 2), dtype=X.dtype)
    np.subtract(X, shift, out=A[:, :d])
    A[:, d] = 1.0
    np.einsum("ij,ij->i", A[:, :d], A[:, :d], out=A[:, d + 1])
    return A


def _sparse_design_matrix(X: Sparse) -> Sparse:
    """[x, 1, ||x||^2] for each row of the CSR matrix X (canonical: no duplicate entries),
    as a CSR matrix: each row's stored entries, then the two new ones."""
    from sklearn.utils.extmath import row_norms

    n, d = X.shape
    total = X.nnz + 2 * n
    index = np.int32 if max(total, d + 2) < np.iinfo(np.int32).max else np.int64
    indptr = X.indptr.astype(index) + 2 * np.arange(n + 1, dtype=index)
    ones_at, norms_at = indptr[1:] - 2, indptr[1:] - 1
    old = np.ones(total, dtype=bool)
    old[ones_at] = False
    old[norms_at] = False
    data = np.empty(total, dtype=X.dtype)
    indices = np.empty(total, dtype=index)
    data[old], indices[old] = X.data, X.indices
    data[ones_at], indices[ones_at] = 1.0, d
    data[norms_at], indices[norms_at] = row_norms(X, squared=True), d + 1
    return csr_array((data, indices, indptr), shape=(n, d + 2))


class SparseRows(csr_array):
    """A CSR array whose slices of rows, ``A[a:b]``, are views of its stored values
    (scipy's own row slice of a CSR matrix copies them), so that the engine's chunking
    costs nothing; any other indexing is scipy's. Built on a CSR matrix, it shares its
    arrays. A canonical matrix (sorted, no duplicate entries) gives canonical chunks."""

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, slice) or key.step not in (None, 1):
            return super().__getitem__(key)
        start, stop, _ = key.indices(self.shape[0])
        stop = max(start, stop)
        indptr = self.indptr[start : stop + 1]
        first, last = indptr[0], indptr[-1]
        # scipy's constructor copies arrays that are views of much larger ones: an empty
        # chunk of the right shape, then its documented attributes set to the views
        chunk = csr_array(
            (self.data[:0], self.indices[:0], np.zeros(stop - start + 1, self.indptr.dtype)),
            shape=(stop - start, self.shape[1]),
        )
        chunk.data, chunk.indices = self.data[first:last], self.indices[first:last]
        chunk.indptr = indptr - first
        return chunk


def as_dense(rows: Sparse, dtype: Any = None) -> Array:
    """A few rows (a start, the farthest rows) as a dense array, sparse or not."""
    return np.asarray(rows.toarray() if issparse(rows) else rows, dtype=dtype)


def row_state(n_samples: int) -> tuple[NDArray[np.intp], NDArray[np.float64], NDArray[np.float64]]:
    """The arrays in which the C-step keeps, row by row, its label and its two bounds
    from one iteration to the next (their contents at a start do not matter)."""
    return np.zeros(n_samples, dtype=np.intp), np.zeros(n_samples), np.zeros(n_samples)


# Bytes of the distances of one block of rows: they stay in a core's L2 cache, while the
# engine's chunks are larger, so that the sparse product of the sums (whose Python-side
# cost is per call) runs once per chunk. 2048 rows were fastest for K = 32 on the bench
# machine (1024 and 4096 slower).
_BLOCK_BYTES = 512 << 10


def _distance_product(centers: NDArray[np.float64], dtype: Any) -> Array:
    """[-2 C^T ; ||c||^2 ; 0], shape (d + 2, K): A @ it is ||x - c||^2 - ||x||^2 (the
    zeros meet the column ||x||^2 of a sparse design matrix, which is not sliced; a dense
    one is, A[:, :d+1] @ its first d + 1 rows)."""
    K, d = centers.shape
    product = np.zeros((d + 2, K), dtype=dtype)
    product[:d] = -2.0 * centers.T
    product[d] = np.einsum("kd,kd->k", centers, centers)
    return product


def _product(rows: Array, product: Array) -> Array:
    """rows @ product, always through BLAS's matrix-matrix product: NumPy sends a single
    row to a matrix-vector product, which rounds differently, and a row's distances must
    not depend on which rows are measured with it."""
    if rows.shape[0] == 1:
        return (np.concatenate([rows, rows]) @ product)[:1]
    return rows @ product


def _distance_blocks(A: Array | Sparse, product: Array) -> Iterator[tuple[slice, Array]]:
    """(rows, ||x - c||^2 - ||x||^2 for those rows) block by block of the design matrix
    (a sparse one in one product)."""
    if issparse(A):
        yield slice(0, A.shape[0]), np.asarray(A @ product)
        return
    d1, K = product.shape[0] - 1, product.shape[1]
    head = product[:d1]
    step = max(64, _BLOCK_BYTES // (8 * K))
    for start in range(0, A.shape[0], step):
        rows = slice(start, min(start + step, A.shape[0]))
        yield rows, _product(A[rows, :d1], head)


def _as_float64(D: Array) -> NDArray[np.float64]:
    """Distances to take the arg-min of: NumPy's float32 arg-min along rows was 4x slower
    than converting to float64 first (exactly, so the same labels) and its float64 one."""
    return D.astype(np.float64, copy=False)


def _round_off_factor(n_features: int, dtype: Any) -> float:
    """kappa: kappa (||x||^2 + max_k ||c_k||^2) bounds the round-off of two expanded
    distances D (a dot product of d + 1 terms, |terms| summing to at most
    2 ||x|| ||c|| + ||c||^2 <= 2 (||x||^2 + ||c||^2)) and of the stored ||x||^2, with room
    to spare; the 1e-12 covers the float64 arithmetic of the bounds themselves."""
    return 8.0 * (n_features + 4) * float(np.finfo(dtype).eps) + 1e-12


def _set_bounds(
    D: NDArray[np.float64],
    labels: NDArray[np.intp],
    xx: Array,
    norms_max: float,
    kappa: float,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(u, l) of measured rows from their expanded distances D (C-contiguous; its
    entries at the labels are overwritten): ||x - c||^2 lies within
    kappa (||x||^2 + max ||c||^2) of D + ||x||^2."""
    n, K = D.shape
    flat = D.reshape(-1)
    starts = np.arange(0, n * K, K)
    at = labels + starts
    xx64 = np.asarray(xx, dtype=np.float64)
    margin = xx64 + norms_max
    margin *= kappa
    upper = flat.take(at)
    upper += xx64
    upper += margin
    if K > 1:
        # the second smallest through a second arg-min (NumPy's min along short rows
        # was 5x slower than its arg-min)
        flat[at] = np.inf
        lower = flat.take(D.argmin(axis=1) + starts)
        lower += xx64
        lower -= margin
    else:
        lower = np.full(n, np.inf)
    np.maximum(upper, 0.0, out=upper)
    np.maximum(lower, 0.0, out=lower)
    return np.sqrt(upper, out=upper), np.sqrt(lower, out=lower)


def nearest(X: Array, centers: NDArray[np.float64]) -> NDArray[np.intp]:
    """The nearest center of each (centred) row, ties to the lower index."""
    product = _distance_product(centers, X.dtype)
    with np.errstate(over="ignore", invalid="ignore"):  # rows beyond the dtype: below
        D = X @ product[:-2]
        D += product[-2]
    labels = np.asarray(_as_float64(D).argmin(axis=1))
    # inf or NaN shows in the sum (one reduction, no temporary); rows beyond the dtype
    # are rare, so only then is each row looked at
    with np.errstate(over="ignore", invalid="ignore"):
        clean = bool(np.isfinite(D.sum()))
    bad = np.zeros(0, dtype=np.intp) if clean else np.flatnonzero(~np.isfinite(D).all(axis=1))
    if bad.size and not isinstance(X, np.ndarray):  # sparse rows: their values are finite
        bad = np.zeros(0, dtype=np.intp)
    if bad.size:
        # (||x - c||^2 - ||x||^2) / t keeps the arg-min; with t a power of two per row
        # the terms stay in float64's range
        Xb = X[bad].astype(np.float64)
        t = np.exp2(np.floor(np.log2(np.max(np.abs(Xb), axis=1))))[:, None]
        scaled = (Xb / t) @ (-2.0 * centers.T) + np.einsum("kd,kd->k", centers, centers) / t
        labels[bad] = scaled.argmin(axis=1)
    return labels


def euclidean_distances(Xc: Array, centers: NDArray[np.float64]) -> Array:
    """Distances ||x - c_k|| of rows ``Xc`` to ``centers`` (both centred alike), shape
    (n, K), in the rows' dtype.

    scikit-learn's expanded form for the rows whose squared distances fit the dtype; a
    row beyond that (a value around 1e155 in float64, 1e19 in float32) is scaled by a
    power of two t first, ``||x - c|| = t ||x/t - c/t||``, so a distance the dtype can hold
    is never returned as inf.
    """
    from sklearn.metrics.pairwise import euclidean_distances as expanded

    dtype = Xc.dtype
    if Xc.shape[0] == 0:
        return np.zeros((0, centers.shape[0]), dtype=dtype)
    d = Xc.shape[1]
    limit = 0.25 * float(np.sqrt(np.finfo(dtype).max / d)) - float(np.max(np.abs(centers)))
    with np.errstate(over="ignore", invalid="ignore"):  # far rows are redone below
        D = np.asarray(expanded(Xc, centers.astype(dtype)))
    if max(float(Xc.max()), -float(Xc.min())) <= limit:
        return D
    far = np.flatnonzero(~(np.max(np.abs(Xc), axis=1) <= limit))
    X64 = Xc[far].astype(np.float64)
    t = np.exp2(np.floor(np.log2(np.max(np.abs(X64), axis=1))))
    diff = X64[:, None, :] / t[:, None, None] - centers[None, :, :] / t[:, None, None]
    with np.errstate(over="ignore"):  # beyond the dtype: inf is then the true answer
        D[far] = (t[:, None] * np.sqrt(np.einsum("nkj,nkj->nk", diff, diff))).astype(dtype)
    return D


def squared_distances(
    X: Array | Sparse, centers: NDArray[np.float64], labels: NDArray[np.intp]
) -> NDArray[np.float64]:
    """||x_n - c_{labels_n}||^2, computed directly (no expansion), in float64; for
    sparse rows, ||x||^2 - 2 x.c + ||c||^2 over their stored entries (floored at 0)."""
    if issparse(X):
        X = csr_array(X)
        n = X.shape[0]
        row = np.repeat(np.arange(n), np.diff(X.indptr))
        data = X.data.astype(np.float64)
        z = labels[row]
        xx = np.bincount(row, data * data, minlength=n)
        xc = np.bincount(row, data * centers[z, X.indices], minlength=n)
        cc = np.einsum("kd,kd->k", centers, centers)[labels]
        return np.maximum(xx - 2.0 * xc + cc, 0.0)
    diff = X - centers[labels].astype(X.dtype)
    return np.einsum("ij,ij->i", diff, diff, dtype=np.float64)


def _full_sums(A: Array, q: Labels, moved: int) -> KMeansStats:
    """Z^T A for the hard assignment ``q`` (its segment sums, :meth:`Labels.sums`),
    summed in float64 whatever A's dtype, so that the objective's changes stay exact."""
    d = A.shape[1] - 2
    S = q.sums(A)
    return KMeansStats(S[:, d], S[:, :d], S[:, d + 1], None, moved, q.row_counts())


def _moved_sums(
    A: Array, w: NDArray[np.float64], old: NDArray[np.intp], new: NDArray[np.intp], K: int
) -> KMeansStats:
    """The change in the statistics when the rows A move from clusters ``old`` to
    ``new``: M A with M (K, m) holding +w at the new cluster, -w at the old one."""
    m, d = A.shape[0], A.shape[1] - 2
    M = np.zeros((K, m))
    at = np.arange(m)
    M[new, at] = w
    M[old, at] = -w
    S = M @ np.asarray(A, dtype=np.float64)
    positive = w > 0
    count = np.bincount(new[positive], minlength=K) - np.bincount(old[positive], minlength=K)
    return KMeansStats(S[:, d], S[:, :d], S[:, d + 1], None, m, count)


def _shifts(before: NDArray[np.float64], after: NDArray[np.float64]) -> NDArray[np.float64]:
    """||c_k^after - c_k^before||, rounded up (relative error of the direct sum)."""
    d = after.shape[1]
    diff = after - before
    eps = float(np.finfo(np.float64).eps)
    return np.sqrt(np.einsum("kd,kd->k", diff, diff)) * (1.0 + 4.0 * (d + 4) * eps)


def _largest_other(values: NDArray[np.float64]) -> NDArray[np.float64]:
    """max_{j != k} values_j for each k (0 when K = 1)."""
    K = values.shape[0]
    if K == 1:
        return np.zeros(1)
    order = np.argsort(values)
    out = np.full(K, values[order[-1]])
    out[order[-1]] = values[order[-2]]
    return out


def _nearest_other(centers: NDArray[np.float64]) -> NDArray[np.float64]:
    """s_k = min_{j != k} ||c_k - c_j||, rounded down (inf when K = 1)."""
    K, d = centers.shape
    diff = centers[:, None, :] - centers[None, :, :]
    dist = np.sqrt(np.einsum("ijd,ijd->ij", diff, diff))
    dist[np.arange(K), np.arange(K)] = np.inf
    eps = float(np.finfo(np.float64).eps)
    return np.asarray(dist.min(axis=1) * (1.0 - 4.0 * (d + 4) * eps))


def equal_weights(n_clusters: int) -> MixingWeights:
    """k-means' mixing weights: known, 1/K each (their M-step returns them as they are).

    Examples
    --------
    >>> equal_weights(4).m_step(np.array([5.0, 1.0, 0.0, 2.0])).tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    K = int(n_clusters)
    return MixingWeights(fixed=Fixed(np.ones(K, dtype=bool), np.full(K, 1.0 / K)))


@dataclass(frozen=True)
class SphericalCenters:
    """k-means' component family: N(c_k, s^2 I), one variance s^2 shared by the
    components, which neither step needs (the C-step compares distances, the M-step
    sets means).

    Its M-step moves each center to the mean of its rows, c_k = sum_x_k / N_k (a
    component with no weight keeps its center). Its :meth:`nearest` answers the
    :class:`~emkit.models.mixing.Hard` policy's query, each row's most probable
    component, by the distances D = A @ [-2 C^T ; ||c||^2] (block by block of the design
    matrix; ties to the lower index), which equal -2 s^2 (log p(x, k) - log pi) up to a
    term of the row: with equal weights, the same arg-max. :class:`KMeansModel` narrows
    the query further with Hamerly's bounds.
    """

    def m_step(
        self, centers: NDArray[np.float64], nk: NDArray[np.float64], sum_x: NDArray[np.float64]
    ) -> NDArray[np.float64]:
        filled = nk > 0
        out = centers.copy()
        out[filled] = sum_x[filled] / nk[filled, None]
        return out

    @staticmethod
    def nearest(
        A: Array | Sparse, product: Array, out: NDArray[np.intp] | None = None
    ) -> NDArray[np.intp]:
        """The nearest center of each row of the design matrix ``A`` (distances from
        ``product``, :func:`_distance_product`), into ``out`` when given."""
        labels = np.empty(A.shape[0], dtype=np.intp) if out is None else out
        for rows, D in _distance_blocks(A, product):
            np.argmin(_as_float64(D), axis=1, out=labels[rows])
        return labels


def _check_equal(weights: MixingWeights, n_clusters: int) -> None:
    """The nearest-center query is the arg-max of log p(x, k) only for equal weights."""
    known = weights.fixed
    equal = (
        known is not None
        and known.mask.shape == (n_clusters,)
        and bool(known.mask.all())
        and bool(np.all(known.values == 1.0 / n_clusters))
    )
    if not equal:
        raise InputError(
            f"KMeansModel(weights=...) must be the {n_clusters} equal weights that k-means "
            "assumes (emkit.models.kmeans.equal_weights(n_clusters)): its C-step takes the "
            "nearest center, which is the most probable component only when the weights are "
            "equal. Use a GaussianMixture with e_step='hard' for unequal weights."
        )


@dataclass(frozen=True, eq=False)
class KMeansModel:
    """Hard EM for k-means, as pure functions of (params, rows) for :func:`fit_em`.

    ``tol`` is the stopping threshold on the squared shift of the centers,
    sum_k ||c_k^new - c_k||^2 (scikit-learn's, already scaled by the data's variance).
    ``dtype`` is the working precision of the distance product. ``bounds=False`` measures
    every row at every iteration and sums the statistics in full (plain Lloyd: what the
    tests compare the accelerated steps with, and what sparse rows use).

    The rows the driver maps over are ``(A, sample_weight, labels, upper, lower)``:
    the design matrix (:func:`design_matrix`), the weights (or None), and three arrays of
    :func:`row_state` that are the C-step's memory across iterations. The C-step of
    iteration t reads the label and the bounds u_n, l_n that iteration t - 1 left for each
    row, moves the bounds by how far the M-step moved the centers (``params.last`` holds
    the centers they were set for), and writes back the new label and bounds, chunk by
    chunk in place (chunks are disjoint rows: no two threads write the same entry). They
    are an input and an output of the step, like its statistics, not a cache: the step
    trusts them only when ``params.last`` says they belong to this run (``last`` is None
    at a start, so the first C-step measures every row), and they need an engine whose
    chunks are views of the arrays (:class:`~emkit.engines.memory.InMemoryEngine`).
    Called with ``(A, sample_weight)`` alone, the C-step measures every row from scratch.
    """

    tol: float = 0.0
    dtype: Any = np.float64
    bounds: bool = True
    # the mixture's shared parts: fixed, equal weights (None: 1/K for the K centers),
    # the hard assignment policy, and the component family
    weights: MixingWeights | None = field(default=None, kw_only=True)
    assign: Hard = field(default_factory=Hard, kw_only=True)
    family: SphericalCenters = field(default_factory=SphericalCenters, kw_only=True)

    def _weights(self, n_clusters: int) -> MixingWeights:
        weights = equal_weights(n_clusters) if self.weights is None else self.weights
        _check_equal(weights, n_clusters)
        return weights

    def plan(self, params: KMeansParams) -> tuple[bool, bool, bool]:
        """(measure every row, set the rows' bounds, sum the statistics in full) for the
        C-step from ``params``.

        Bounds pay only once few rows change cluster: while many do (the first
        iterations), every row is measured as in plain Lloyd, without bounds; the first
        C-step after few rows moved measures every row and sets the bounds, and the steps
        after it skip rows.
        """
        last = params.last
        if not self.bounds or last is None:
            return True, False, True
        assert last.stats.count is not None
        rows = float(last.stats.count.sum())
        few = last.stats.moved <= _BOUNDED_MOVED * rows
        if few and last.bounds and last.measured + 1 < _REMEASURE_EVERY:
            return False, True, last.summed + 1 >= _RESUM_EVERY
        return True, few, True

    def totals(self, params: KMeansParams, stats: KMeansStats) -> KMeansStats:
        """The statistics of the assignment: ``stats`` where the C-step summed them in
        full, the last totals plus ``stats`` where it summed the rows that moved."""
        if self.plan(params)[2]:
            return stats
        assert params.last is not None
        base = params.last.stats
        assert base.count is not None and stats.count is not None
        count = base.count + stats.count
        nk, sum_x, sum_xx = base.nk + stats.nk, base.sum_x + stats.sum_x, base.sum_xx + stats.sum_xx
        # a cluster every row (of positive weight) left is empty, not round-off
        gone = count == 0
        nk[gone], sum_x[gone], sum_xx[gone] = 0.0, 0.0, 0.0
        return KMeansStats(nk, sum_x, sum_xx, stats.far, stats.moved, count)

    def expectation(self, params: KMeansParams) -> Callable[..., KMeansStats]:
        """The C-step for one iteration, as a function of a block of the design matrix
        (:func:`design_matrix`), the rows' weights and, optionally, their state."""
        centers = params.centers
        K, d = centers.shape
        self._weights(K)  # equal: the nearest center is the most probable component
        product = _distance_product(centers, self.dtype)
        measure_all, track, sum_all = self.plan(params)
        hard, nearest = self.assign, self.family.nearest
        last = params.last
        kappa = _round_off_factor(d, self.dtype)
        norms_max = float(np.einsum("kd,kd->k", centers, centers).max())
        if not measure_all:
            assert last is not None
            shift = _shifts(last.centers, centers)
            others = _largest_other(shift)
            gap = _nearest_other(centers)
            # Skip a row when L^2 - u^2 > kappa (||x||^2 + max ||c||^2). As
            # ||x||^2 <= (u + ||c_z||)^2 <= 2 u^2 + 2 max ||c||^2, it suffices that
            # L > sqrt((alpha u)^2 + beta), alpha^2 = 1 + 2 kappa, beta = 3 kappa max ||c||^2
            alpha = float(np.sqrt(1.0 + 2.0 * kappa))
            beta = 3.0 * kappa * norms_max

            def threshold(u: NDArray[np.float64]) -> NDArray[np.float64]:
                t = u * alpha
                t *= t
                t += beta
                return np.sqrt(t, out=t)

        def e_step(
            A: Array,
            weights: Array | None,
            labels: NDArray[np.intp] | None = None,
            upper: NDArray[np.float64] | None = None,
            lower: NDArray[np.float64] | None = None,
        ) -> KMeansStats:
            n = A.shape[0]
            w = np.ones(n) if weights is None else weights.astype(np.float64, copy=False)
            if labels is None or upper is None or lower is None:  # stateless
                q = hard.choose(nearest(A, product), w, None, K)
                return _full_sums(A, q, n)
            if measure_all:
                old = None if last is None else labels.copy()
                if track:
                    # the query with the bounds set from its distances
                    for rows, D in _distance_blocks(A, product):
                        D64 = _as_float64(D)
                        np.argmin(D64, axis=1, out=labels[rows])
                        upper[rows], lower[rows] = _set_bounds(
                            D64, labels[rows], A[rows, d + 1], norms_max, kappa
                        )
                else:
                    nearest(A, product, out=labels)
                moved = n if old is None else int(np.count_nonzero(old != labels))
                return _full_sums(A, hard.choose(labels, w, None, K), moved)

            # u_n + m_{z_n} and l_n - max_{j != z_n} m_j bound the distances now
            upper += shift.take(labels)
            lower -= others.take(labels)
            # L_n = max(l_n, s_{z_n} - u_n) <= min_{j != z_n} ||x_n - c_j||
            L = gap.take(labels)
            L -= upper
            np.maximum(L, lower, out=L)
            # the rows to look at (a NaN fails the test, and is looked at)
            idx = np.flatnonzero(~(L > threshold(upper)))
            moved_stats = None
            moved = 0
            if idx.size:
                # tighten u_n to the distance itself (direct: relative error (d + 2) eps)
                z = labels.take(idx)
                picked = A.take(idx, axis=0)
                diff = picked[:, :d] - centers.take(z, axis=0)
                u = np.sqrt(np.einsum("ij,ij->i", diff, diff) * (1.0 + kappa))
                upper[idx] = u
                Li = np.maximum(gap.take(z) - u, lower.take(idx))
                still = np.flatnonzero(~(Li > threshold(u)))
                idx, picked, before = idx[still], picked[still], z[still]
            if idx.size:
                # measure the row as Lloyd does
                D64 = _as_float64(_product(picked[:, : d + 1], product[: d + 1]))
                new = hard.choose(D64.argmin(axis=1), None, None, K).labels
                upper[idx], lower[idx] = _set_bounds(D64, new, picked[:, d + 1], norms_max, kappa)
                labels[idx] = new
                changed = np.flatnonzero(before != new)
                moved = int(changed.size)
                if moved and not sum_all:
                    moved_stats = _moved_sums(
                        picked[changed], w.take(idx[changed]), before[changed], new[changed], K
                    )
            if sum_all:
                return _full_sums(A, hard.choose(labels, w, None, K), moved)
            if moved_stats is None:
                zero = np.zeros(K)
                return KMeansStats(
                    zero, np.zeros((K, d)), zero.copy(), None, 0, np.zeros(K, np.intp)
                )
            return moved_stats

        return e_step

    def supplement(
        self, params: KMeansParams, stats: KMeansStats
    ) -> Callable[..., KMeansStats] | None:
        """When a cluster got no rows, the pass that finds the K rows farthest from their
        centers (scikit-learn moves empty clusters onto them); None otherwise."""
        if (self.totals(params, stats).nk > 0).all():
            return None
        centers = params.centers
        K, d = centers.shape
        product = _distance_product(centers, self.dtype)

        def far_rows(
            A: Array, weights: Array | None, labels: NDArray[np.intp] | None = None, *_: Any
        ) -> KMeansStats:
            n = A.shape[0]
            w = np.ones(n) if weights is None else weights.astype(np.float64, copy=False)
            if labels is None:  # stateless: the C-step's labels again
                labels = SphericalCenters.nearest(A, product)
            # the distances to the assigned centers, computed directly, as scikit-learn does
            distance = squared_distances(A[:, :d], centers, labels)  # sparse: a copy, rarely
            far = _farthest(A[:, :d], distance, labels, w, K)
            zero = np.zeros(K)
            return KMeansStats(zero, np.zeros((K, d)), zero.copy(), far, 0, np.zeros(K, np.intp))

        return far_rows

    def m_step(self, params: KMeansParams, stats: KMeansStats) -> KMeansParams:
        """Each center to the weighted mean of its rows.

        A cluster with no rows (no weight) takes, as in scikit-learn, one of the rows
        farthest from their centers, which leaves its old cluster: the empty clusters,
        in index order, take the rows in decreasing distance. If every row lies on its
        center, or a cluster is still empty after that, it keeps its center.
        """
        totals = self.totals(params, stats)
        moved, relocated = _relocated(totals)
        # the weights' step (fixed and equal: it keeps them; the floor as in every mixture)
        weights = np.asarray(
            self._weights(moved.nk.shape[0]).m_step(moved.nk + NK_FLOOR), dtype=np.float64
        )
        centers = self.family.m_step(params.centers, moved.nk, moved.sum_x)
        measure_all, track, sum_all = self.plan(params)
        last = params.last
        step = LastStep(
            KMeansStats(totals.nk, totals.sum_x, totals.sum_xx, None, totals.moved, totals.count),
            params.centers,
            # the labels stay those of the C-step; after an empty cluster moved, the bounds
            # are measured anew, for safety
            track and not relocated,
            0 if measure_all or last is None else last.measured + 1,
            0 if sum_all or last is None else last.summed + 1,
        )
        return KMeansParams(centers, step, weights)

    def m_step_gap(self, params: KMeansParams, stats: KMeansStats) -> float:
        """The M-step is exact (the mean minimizes the squared distances): 0."""
        return 0.0

    def objective(self, params: KMeansParams, stats: KMeansStats) -> float:
        """Minus the inertia per unit of weight (what hard EM increases)."""
        totals = self.totals(params, stats)
        return -totals.inertia(params.centers) / float(totals.nk.sum())

    def lower_bound(self, params: KMeansParams, new: KMeansParams, stats: KMeansStats) -> float:
        """Hard EM's bound after the M-step: minus the inertia of the C-step's assignment
        (with the rows an empty cluster took) at the new centers, per unit of weight. The
        next C-step, assigning each row to its nearest center, can only lower the
        inertia; the M-step, each center to its rows' mean, has lowered it from the
        objective's."""
        totals = self.totals(params, stats)
        moved, _ = _relocated(totals)
        return -moved.inertia(new.centers) / float(totals.nk.sum())

    def converged(self, previous: KMeansParams, params: KMeansParams) -> bool:
        """scikit-learn's rule: no row changed cluster in the last C-step (an empty
        cluster's move does not count), or the squared shift of the centers is at most
        ``tol``."""
        if params.last is not None and params.last.stats.moved == 0:
            return True
        return float(((params.centers - previous.centers) ** 2).sum()) <= self.tol

    def row_bytes(self, n_features: int) -> int:
        """Working memory of a row of a chunk in the C-step. Plain Lloyd: its design row,
        its label, weight and sparse indices (the distances are held a block of rows at a
        time). With bounds, most rows are skipped, and a skipped row touches only its
        label, its two bounds and five temporaries: larger chunks, fewer NumPy calls per
        row (which two threads otherwise queue for, GIL in hand)."""
        if self.bounds:
            return 8 * 8
        return (n_features + 2) * np.dtype(self.dtype).itemsize + 4 * 8

    @staticmethod
    def sparse_row_bytes(X: Sparse, n_clusters: int) -> int:
        """Working memory of a row of a chunk of the sparse rows ``X``: its stored values
        and column indices, and its distances to every center (a chunk's held at once)."""
        stored_per_row = X.nnz / max(X.shape[0], 1)
        return int(stored_per_row * (X.dtype.itemsize + 8)) + 8 * (n_clusters + 6)


def _relocated(totals: KMeansStats) -> tuple[KMeansStats, bool]:
    """The assignment's sums after the M-step moved each empty cluster onto one of the
    rows farthest from their centers (which leave their clusters), and whether any
    moved."""
    nk, sum_x, sum_xx = totals.nk.copy(), totals.sum_x.copy(), totals.sum_xx.copy()
    empty = np.flatnonzero(nk == 0)
    far = totals.far
    relocated = bool(empty.size and far is not None and far.distance[0] > 0)
    if relocated:
        assert far is not None
        for k, x, w, old in zip(empty, far.x, far.weight, far.label, strict=False):
            xx = w * float(x @ x)
            sum_x[old] -= w * x
            nk[old] -= w
            sum_xx[old] -= xx
            sum_x[k] = w * x
            nk[k] = w
            sum_xx[k] = xx
    return KMeansStats(nk, sum_x, sum_xx), relocated


def _farthest(
    X: Array | Sparse,
    distance: NDArray[np.float64],
    labels: NDArray[np.intp],
    weights: NDArray[np.float64],
    K: int,
) -> FarRows:
    """The block's K rows farthest from their centers (scikit-learn's choice for empty
    clusters), farthest first, ties to the earlier row."""
    n = X.shape[0]
    keep = min(K, n)
    # every row at or beyond the K-th largest distance (ties included, so that which
    # rows are kept does not depend on the blocks)
    rows = np.flatnonzero(distance >= np.partition(distance, n - keep)[n - keep])
    rows = rows[np.argsort(-distance[rows], kind="stable")[:keep]]
    x = as_dense(X[rows]).astype(np.float64)
    return FarRows(distance[rows], x, weights[rows], labels[rows])

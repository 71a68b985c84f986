"""Model-based agglomerative hierarchical clustering: mclust's ``hc()`` start for EM.

Each row starts as a cluster of its own; the two clusters whose merge costs the least
classification likelihood are merged, until one cluster is left (Banfield & Raftery 1993,
Fraley 1998). With W_k the scatter matrix of cluster k (sum of the outer products of its
rows' deviations from its mean) and n_k its size, the criteria are

- ``"VVV"`` (unconstrained covariances): the sum over clusters of
  ``n_k log(|W_k / n_k| + beta (tr W_k + alpha) / n_k)``, where the determinant counts only
  for n_k > p (below, W_k is singular). The trace term is Fraley's (1998) regularization,
  which keeps singletons and small clusters finite; ``alpha`` is a multiple of the data's
  mean variance per coordinate, ``tr(W) / (n p)`` (mclust's defaults: alpha = beta = 1).
- ``"EII"`` (equal spherical covariances): ``n p log(sum_k tr W_k / (n p))``, minimized
  merge by merge by Ward's criterion (scipy's ``ward`` linkage).

The merge of clusters i and j changes only their own terms, so a merge is decided by
``term(i + j) - term(i) - term(j)`` and, after it, only the costs of the new cluster with
the others change. The scatter of a union is ``W_i + W_j + n_i n_j / (n_i + n_j) d d^T``
with ``d`` the difference of the means.

mclust 6.0.0's compiled ``hcVVV`` does not always follow this criterion: where two
clusters that were both formed by merges are joined and their triangular factors hold
more than ``p`` rows together, its cost can differ from the criterion (five random points
in two dimensions suffice; on mclust's ``wreath`` data from the merge to 17 clusters on, so
that its partitions at 2 and 3 clusters differ from these). The Fortran source of
``hcvvv`` published with mclust, compiled on its own, gives the criterion's costs, which
are these; the merges here follow the criterion.

Before the merges, the data are transformed as mclust's default ``hcUse="SVD"`` does:
columns standardized, rotated onto their principal axes and each axis divided by the
square root of its singular value. On more rows than ``subset`` (mclust's 2000) the
hierarchy is built on a random subset of rows, as mclust's ``Mclust`` does; the other rows
get no initial label (the M-step starts from the subset's clusters).

On ``COMPILED_FROM`` rows or more, the VVV merges run as plain loops compiled by Numba
(optional, ``emkit[fast]``; imported only then), the same merges as the NumPy loop (the
tests compare the two, ties included): on 2000 rows, about 3x (8 columns) to 7x (2
columns) faster. Below, the NumPy loop costs less than importing Numba, unless another
fit imported it already (ModelBasedClustering's iterative M-steps do): then the compiled
loop runs on any number of rows (faithful's 272: ~2 ms against ~30 ms).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emkit._compiled_modules import numba_loaded, numba_module
from emkit._validation import check_choice, check_number, check_positive_int
from emkit.exceptions import InputError

__all__ = [
    "HC_MODELS",
    "HierarchicalTree",
    "hc_partition",
    "hc_tree",
    "svd_transform",
]

HC_MODELS = ("VVV", "EII")

# mclust.options("subset"): the rows the hierarchy is built on at most
DEFAULT_SUBSET = 2000

# Rows from which the VVV merges run compiled (Numba, when installed): the NumPy loop
# costs about half a millisecond a merge in Python, importing Numba about half a second
COMPILED_FROM = 1000

Array = NDArray[np.float64]


@dataclass(frozen=True)
class HierarchicalTree:
    """The merges of an agglomerative clustering of ``rows`` (indices into the data).

    ``merges`` has shape (len(rows) - 1, 2) and scipy's numbering: leaf ``i`` is
    ``rows[i]``, and the cluster formed by merge ``t`` is ``len(rows) + t``. ``cost`` is
    each merge's increase of the criterion. ``n_samples`` is the number of rows of the data.
    """

    rows: NDArray[np.intp]
    merges: NDArray[np.intp]
    cost: Array
    n_samples: int
    # each cut made once (a model-selection sweep cuts one tree hundreds of times)
    _cuts: dict[int, NDArray[np.intp]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def labels(self, n_components: int) -> NDArray[np.intp]:
        """Labels 0..n_components-1 of the partition with ``n_components`` clusters, for
        every row of the data: -1 for a row outside the subset the tree was built on.
        Clusters are numbered in the order of their first row."""
        cut = self._cuts.get(n_components)
        if cut is None:
            cut = self._cuts[n_components] = self._cut(n_components)
        return cut.copy()  # (the caller's to change)

    def _cut(self, n_components: int) -> NDArray[np.intp]:
        m = self.rows.shape[0]
        if not 1 <= n_components <= m:
            raise InputError(
                f"n_components must be from 1 to {m} (the rows the hierarchy was built on), "
                f"got {n_components}. Decrease n_components or build the tree on more rows."
            )
        parent = np.arange(2 * m - 1)
        n_merges = m - n_components
        done = self.merges[:n_merges]
        parent[done[:, 0]] = m + np.arange(n_merges)
        parent[done[:, 1]] = m + np.arange(n_merges)
        # pointer jumping: every node's root in log(depth) vectorised steps
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped
        roots = parent[:m]
        _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))  # clusters numbered by their first row
        labels = np.full(self.n_samples, -1, dtype=np.intp)
        labels[self.rows] = order[inverse]
        return labels


def svd_transform(X: NDArray[np.floating[Any]]) -> Array:
    """mclust's ``hcUse="SVD"`` transform: standardized columns (constant ones dropped)
    projected onto their right singular vectors, each divided by the square root of its
    singular value. Axes with a zero singular value (collinear columns) are dropped."""
    X = np.asarray(X, dtype=np.float64)
    centred = X - X.mean(axis=0)
    sd = centred.std(axis=0, ddof=1) if X.shape[0] > 1 else np.zeros(X.shape[1])
    keep = sd > 0
    scaled = centred[:, keep] / sd[keep]
    if scaled.shape[1] == 0:
        return np.zeros((X.shape[0], 1))
    _, s, vt = np.linalg.svd(scaled, full_matrices=False)
    axes = s > s[0] * np.finfo(np.float64).eps * max(scaled.shape)
    return np.asarray((scaled @ vt[axes].T) / np.sqrt(s[axes]))


def hc_tree(
    X: NDArray[np.floating[Any]],
    *,
    model: str = "VVV",
    subset: int = DEFAULT_SUBSET,
    rng: np.random.Generator | np.random.RandomState | None = None,
    alpha: float = 1.0,
    beta: float = 1.0,
    transform: bool = True,
) -> HierarchicalTree:
    """Agglomerate the rows of ``X`` by the model-based criterion of ``model``.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        Finite values (a NaN raises: fill missing values first).
    model : {'VVV', 'EII'}, default='VVV'
        The covariance model whose classification likelihood the merges maximize.
    subset : int, default=2000
        On more rows than this, the tree is built on ``subset`` rows drawn by ``rng``
        without replacement (mclust's ``Mclust`` default); otherwise on every row, and
        the result does not depend on ``rng``.
    rng : Generator or RandomState, default=None
        Draws the subset (a fresh unseeded Generator if None).
    alpha, beta : float, default=1.0
        The regularization of the ``"VVV"`` criterion (mclust's ``hcVVV`` arguments).
    transform : bool, default=True
        Transform the data as mclust's ``hcUse="SVD"`` (:func:`svd_transform`) first.

    Returns
    -------
    HierarchicalTree
    """
    check_choice("model", model, HC_MODELS)
    check_positive_int("subset", subset, minimum=2)
    check_number("alpha", alpha)
    check_number("beta", beta)
    X64: Array = np.asarray(X, dtype=np.float64)
    if X64.ndim != 2 or X64.shape[0] < 1:
        raise InputError(f"X must be a 2-D array with at least one row, got shape {X.shape}.")
    bad = ~np.isfinite(X64)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise InputError(
            f"X[{row}, {col}] is {X64[row, col]}: hierarchical clustering needs finite values. "
            "Drop or fill the missing values first (GaussianMixture(init_params='hc') fills "
            "them with their column's mean for the start)."
        )
    n = X64.shape[0]
    if n > subset:
        source = rng if rng is not None else np.random.default_rng()
        rows = np.sort(source.choice(n, size=subset, replace=False)).astype(np.intp)
    else:
        rows = np.arange(n, dtype=np.intp)
    Z = svd_transform(X64[rows]) if transform else X64[rows]
    if rows.shape[0] == 1:
        return HierarchicalTree(rows, np.zeros((0, 2), np.intp), np.zeros(0), n)
    if model == "EII":
        from scipy.cluster.hierarchy import linkage

        link = linkage(Z, method="ward")
        return HierarchicalTree(rows, link[:, :2].astype(np.intp), link[:, 2], n)
    merges, cost = _agglomerate_vvv(Z, alpha, beta)
    return HierarchicalTree(rows, merges, cost, n)


def hc_partition(
    X: NDArray[np.floating[Any]],
    n_components: int,
    *,
    model: str = "VVV",
    subset: int = DEFAULT_SUBSET,
    rng: np.random.Generator | np.random.RandomState | None = None,
) -> NDArray[np.intp]:
    """Labels of the ``n_components``-cluster level of :func:`hc_tree` (-1 for rows
    outside the subset)."""
    return hc_tree(X, model=model, subset=subset, rng=rng).labels(n_components)


def _agglomerate_vvv(Z: Array, alpha: float, beta: float) -> tuple[NDArray[np.intp], Array]:
    """Merges (scipy numbering) and their costs under the regularized VVV criterion.

    Clusters live in slots 0..g-1 as in mclust's ``hcVVV``: a union takes the smaller
    slot of the two and the last slot's cluster moves into the larger one. Among pairs of
    equal cost (duplicate rows), the pair (i < j) with the largest j, then the largest i,
    is merged, as mclust does; so ties are broken the same way.
    """
    from scipy.spatial.distance import cdist

    m, p = Z.shape
    # mclust: alpha times traceW(Z / sqrt(n p)), the mean variance per coordinate
    alpha = max(alpha * float(((Z - Z.mean(axis=0)) ** 2).sum()) / (m * p), np.finfo(float).eps)
    # singleton pairs: W = d d^T / 2, tr W = |d|^2 / 2, |W / 2| = |d|^2 / 4 when p == 1
    sq = cdist(Z, Z, "sqeuclidean")
    cost = beta * (sq / 2.0 + alpha) / 2.0
    if p == 1:
        cost += sq / 4.0
    # a singleton's own term is log(beta alpha)
    cost = 2.0 * np.log(cost) - 2.0 * float(np.log(beta * alpha))
    np.fill_diagonal(cost, np.inf)
    # (below COMPILED_FROM rows, only where another fit paid Numba's import)
    compiled = _kernels() if m >= COMPILED_FROM or numba_loaded() else None
    if compiled is not None:
        merges = np.empty((m - 1, 2), dtype=np.int64)
        costs = np.empty(m - 1)
        Zc = np.ascontiguousarray(Z, dtype=np.float64)
        compiled.agglomerate_vvv(Zc, cost, float(alpha), float(beta), merges, costs)
        return merges.astype(np.intp), costs
    return _agglomerate_vvv_numpy(Z, cost, alpha, beta)


def _agglomerate_vvv_numpy(
    Z: Array, cost: Array, alpha: float, beta: float
) -> tuple[NDArray[np.intp], Array]:
    """:func:`_agglomerate_vvv` in NumPy, from the singleton pairs' costs ``cost`` (m, m)
    (changed in place) and the scaled ``alpha``: the path without Numba."""
    m, p = Z.shape

    def term(size: Array, det: Array, trace: Array) -> Array:
        # n_k log(|W_k / n_k| + beta (tr W_k + alpha) / n_k); |W_k| counts for n_k > p only
        det = np.where(size > p, np.maximum(det, 0.0), 0.0)
        return np.asarray(size * np.log(det + beta * (trace + alpha) / size))

    size = np.ones(m)
    means = Z.copy()
    scatter = np.zeros((m, p, p))
    trace = np.zeros(m)
    own = term(size, np.zeros(m), trace)  # log(beta alpha) for a singleton
    ident = np.arange(m)  # scipy's number of the cluster in each slot
    nearest = np.empty(m, dtype=np.intp)
    nearest_cost = np.empty(m)
    for r in range(m):
        nearest[r], nearest_cost[r] = _nearest(cost[r])

    merges = np.empty((m - 1, 2), dtype=np.intp)
    costs = np.empty(m - 1)
    for t in range(m - 1):
        g = m - t  # slots 0..g-1 are in use
        low = nearest_cost[:g].min()
        tied = np.flatnonzero(nearest_cost[:g] == low)
        pairs = np.sort(np.column_stack([tied, nearest[tied]]), axis=1)
        i, j = pairs[np.lexsort((pairs[:, 0], pairs[:, 1]))[-1]]
        merges[t] = sorted((ident[i], ident[j]))
        costs[t] = cost[i, j]
        # the union's size, mean and scatter, in slot i
        ni, nj = size[i], size[j]
        d = means[j] - means[i]
        coef = ni * nj / (ni + nj)
        scatter[i] = scatter[i] + scatter[j] + coef * np.outer(d, d)
        trace[i] = trace[i] + trace[j] + coef * float(d @ d)
        means[i] = (ni * means[i] + nj * means[j]) / (ni + nj)
        size[i] = ni + nj
        own[i] = cost[i, j] + own[i] + own[j]
        ident[i] = m + t
        last = g - 1
        stale = (nearest[:last] == i) | (nearest[:last] == j) | (nearest[:last] == last)
        if j != last:  # the last slot's cluster moves into slot j
            for array in (size, means, scatter, trace, own, ident, nearest, nearest_cost):
                array[j] = array[last]
            cost[j, :] = cost[last, :]
            cost[:, j] = cost[:, last]
            cost[j, j] = np.inf
            stale[j] = True
        cost[last, :] = np.inf
        cost[:, last] = np.inf
        nearest_cost[last] = np.inf
        if last == 1:
            continue
        # the cost of merging the union with every other cluster
        others = np.flatnonzero(np.arange(last) != i)
        n_other = size[others]
        joint = size[i] + n_other
        coef_o = size[i] * n_other / joint
        diff = means[others] - means[i]
        joint_trace = trace[i] + trace[others] + coef_o * (diff * diff).sum(axis=1)
        det = np.zeros(others.size)
        big = joint > p
        if big.any():
            W = (
                scatter[i]
                + scatter[others[big]]
                + coef_o[big, None, None] * (diff[big, :, None] * diff[big, None, :])
            )
            det[big] = np.linalg.det(W / joint[big, None, None])
        row = term(joint, det, joint_trace) - own[i] - own[others]
        cost[i, others] = row
        cost[others, i] = row
        stale[i] = True
        for s in np.flatnonzero(stale):
            nearest[s], nearest_cost[s] = _nearest(cost[s, :last])
        # rows for which the union is now the nearest (ties: the larger slot)
        fresh = others[~stale[others]]
        closer = (row[~stale[others]] < nearest_cost[fresh]) | (
            (row[~stale[others]] == nearest_cost[fresh]) & (i > nearest[fresh])
        )
        nearest[fresh[closer]] = i
        nearest_cost[fresh[closer]] = row[~stale[others]][closer]
    return merges, costs


def _nearest(row: Array) -> tuple[int, float]:
    """The slot of least cost in ``row`` (ties: the largest slot) and that cost."""
    low = row.min()
    return int(np.flatnonzero(row == low)[-1]), float(low)


@functools.cache
def _kernels() -> Any:
    """The compiled merge loop (compiled on first use and cached on disk), or None when
    Numba is not installed."""
    numba = numba_module()
    if numba is None:
        return None
    jit = numba.njit(cache=True, nogil=True, error_model="numpy")
    return SimpleNamespace(agglomerate_vvv=jit(_agglomerate_vvv_loops))


def _agglomerate_vvv_loops(
    Z: Array, cost: Array, alpha: float, beta: float, merges: Any, costs: Array
) -> None:
    """:func:`_agglomerate_vvv_numpy` as plain loops for Numba, the same merges in the
    same slots with the same ties: ``merges`` (m - 1, 2) and ``costs`` (m - 1) are
    filled; ``cost`` (m, m) holds the singleton pairs' costs and is changed in place.
    Each determinant is an LU factorization with partial pivoting (LAPACK's ``getrf``,
    which ``numpy.linalg.det`` calls, unblocked at these sizes)."""
    m, p = Z.shape
    size = np.ones(m)
    means = Z.copy()
    scatter = np.zeros((m, p, p))
    trace = np.zeros(m)
    own = np.full(m, np.log(beta * alpha))  # a singleton's term
    ident = np.arange(m)
    nearest = np.empty(m, dtype=np.int64)
    nearest_cost = np.empty(m)
    stale = np.zeros(m, dtype=np.bool_)
    d = np.empty(p)
    W = np.empty((p, p))
    for r in range(m):
        # the slot of least cost in row r (ties: the largest slot), as _nearest
        low, at = np.inf, m - 1
        for c in range(m):
            if cost[r, c] <= low:
                low, at = cost[r, c], c
        nearest[r], nearest_cost[r] = at, low
    for t in range(m - 1):
        g = m - t
        low = np.inf
        for r in range(g):
            if nearest_cost[r] < low:
                low = nearest_cost[r]
        # among the pairs of least cost, the largest j, then the largest i (mclust's ties)
        i = j = -1
        for r in range(g):
            if nearest_cost[r] == low:
                a, b = min(r, nearest[r]), max(r, nearest[r])
                if b > j or (b == j and a > i):
                    i, j = a, b
        merges[t, 0] = min(ident[i], ident[j])
        merges[t, 1] = max(ident[i], ident[j])
        costs[t] = cost[i, j]
        ni, nj = size[i], size[j]
        coef = ni * nj / (ni + nj)
        dd = 0.0
        for a in range(p):
            d[a] = means[j, a] - means[i, a]
        for a in range(p):
            for b in range(p):
                scatter[i, a, b] = scatter[i, a, b] + scatter[j, a, b] + coef * (d[a] * d[b])
            dd += d[a] * d[a]
        trace[i] = trace[i] + trace[j] + coef * dd
        for a in range(p):
            means[i, a] = (ni * means[i, a] + nj * means[j, a]) / (ni + nj)
        size[i] = ni + nj
        own[i] = cost[i, j] + own[i] + own[j]
        ident[i] = m + t
        last = g - 1
        for r in range(last):
            stale[r] = nearest[r] == i or nearest[r] == j or nearest[r] == last
        if j != last:  # the last slot's cluster moves into slot j
            size[j], trace[j], own[j], ident[j] = size[last], trace[last], own[last], ident[last]
            nearest[j], nearest_cost[j] = nearest[last], nearest_cost[last]
            means[j] = means[last]
            scatter[j] = scatter[last]
            for r in range(m):
                cost[j, r] = cost[last, r]
            for r in range(m):
                cost[r, j] = cost[r, last]
            cost[j, j] = np.inf
            stale[j] = True
        for r in range(m):
            cost[last, r] = np.inf
            cost[r, last] = np.inf
        nearest_cost[last] = np.inf
        if last == 1:
            continue
        # the cost of merging the union with every other cluster
        for o in range(last):
            if o == i:
                continue
            joint = size[i] + size[o]
            coef_o = size[i] * size[o] / joint
            dd = 0.0
            for a in range(p):
                d[a] = means[o, a] - means[i, a]
                dd += d[a] * d[a]
            joint_trace = trace[i] + trace[o] + coef_o * dd
            det = 0.0
            if joint > p:
                for a in range(p):
                    for b in range(p):
                        W[a, b] = (
                            scatter[i, a, b] + scatter[o, a, b] + coef_o * (d[a] * d[b])
                        ) / joint
                # |W| by LU with partial pivoting, W overwritten
                det = 1.0
                for c in range(p):
                    pivot = c
                    for r in range(c + 1, p):
                        if abs(W[r, c]) > abs(W[pivot, c]):
                            pivot = r
                    if W[pivot, c] == 0.0:
                        det = 0.0
                        break
                    if pivot != c:
                        for b in range(p):
                            W[c, b], W[pivot, b] = W[pivot, b], W[c, b]
                        det = -det
                    det *= W[c, c]
                    for r in range(c + 1, p):
                        factor = W[r, c] / W[c, c]
                        for b in range(c + 1, p):
                            W[r, b] -= factor * W[c, b]
                det = max(det, 0.0)
            row = joint * np.log(det + beta * (joint_trace + alpha) / joint) - own[i] - own[o]
            cost[i, o] = row
            cost[o, i] = row
        stale[i] = True
        for r in range(last):
            if stale[r]:
                low, at = np.inf, last - 1
                for c in range(last):
                    if cost[r, c] <= low:
                        low, at = cost[r, c], c
                nearest[r], nearest_cost[r] = at, low
        # rows for which the union is now the nearest (ties: the larger slot)
        for o in range(last):
            if o == i or stale[o]:
                continue
            row = cost[o, i]
            if row < nearest_cost[o] or (row == nearest_cost[o] and i > nearest[o]):
                nearest[o] = i
                nearest_cost[o] = row

"""Gaussian components with missing coordinates: the exact E-step (Ghahramani & Jordan, 1994).

For a row with observed coordinates o and missing coordinates m, and a component with
mean mu and precision P = Sigma^-1 (centred coordinates), let delta = x - mu on o and 0
on m, and v = P delta. The Schur complement of the block P_mm gives, with no inverse of
the large block Sigma_oo:

    (x_o - mu_o)^T Sigma_oo^-1 (x_o - mu_o) = delta^T v - v_m^T P_mm^-1 v_m
    log |Sigma_oo| = log |P_mm| - log |P|
    E[x_m | x_o, k] = mu_m - P_mm^-1 v_m,      Cov[x_m | x_o, k] = P_mm^-1

So each (missingness pattern, component) needs the inverse of its small block P_mm alone,
and all of them are inverted together (:func:`spd_inverse`, vectorized over the batch).
With x0 the row with 0 at its missing coordinates and g = P x0, a row needs beyond its
complete-data terms only its s coordinates g_m (:func:`missing_log_prob`). Rows are
handled in groups with the same number s of missing coordinates, so every array of a
group is rectangular; the rows of a common pattern share a small matrix product, stacked
with those of patterns of similar size (:func:`_by_pattern`), the others go row by row
(:func:`_by_row`).

When Numba is installed (the optional extra ``fast``), the same algebra runs as compiled
loops instead (:mod:`emkit.families._missing_kernels`, reached through
:func:`_compiled_log_prob`): about twice as fast, the results equal to rounding.

The M-step receives the expected statistics sum_n r_nk E_k[x] and
sum_n r_nk E_k[x x^T] = sum_n r_nk (E_k[x] E_k[x]^T + pad(P_mm^-1)), packed the way the
covariance structure packs its statistics: it never learns that values were missing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from emkit.families import _missing_kernels
from emkit.families._base import pattern_ids, statistic_rows
from emkit.families._missing_kernels import kernels

__all__ = [
    "MissingState",
    "conditional_means",
    "dense_precisions",
    "full_natural",
    "full_statistics",
    "missing_log_prob",
    "missing_statistics",
    "packed_products",
    "spd_inverse",
]

Array = NDArray[np.floating[Any]]
LOG_2PI = float(np.log(2.0 * np.pi))

# A pattern with at least this many rows in a block shares its products with its bucket
# (the complete-data statistics of its rows, and P_m of its missing coordinates); rarer
# patterns go row by row, where the per-pattern algebra would cost more than it saves
# (bench/bench_missing.py's data, single thread: 32, 48 and 64 equal, 16 6% and 8 12% slower).
_PATTERN_ROWS = 32

# Whether rows go to the compiled loops (:mod:`emkit.families._missing_kernels`) when
# Numba is installed; the tests switch it off to check the NumPy form as well.
_COMPILED = True


class _Algebra(NamedTuple):
    """The conditional Gaussians of the patterns with s missing coordinates, per
    (pattern, component): x_m | x_obs ~ N(mu_m - C (g_m - b), C), g = P x0."""

    missing: NDArray[np.intp]  # (n_patterns, s) the missing coordinates
    cond_cov: Array  # (s, s, K, n_patterns) C = P_mm^-1, batch last
    mu_m: Array  # (s, K, n_patterns)
    b: Array  # (s, K, n_patterns) (P (o mu))_m, o mu: mu with 0 at the missing coordinates
    # (K, n_patterns) log N(x_obs) - (its complete-data form on x0) + g_m.mu_m - v.C v / 2
    const: Array


class _Rows(NamedTuple):
    """Rows of rare patterns, each under every component."""

    rows: NDArray[np.intp]  # (n_r,) positions in the block of rows
    filled: Array  # (K, n_r, d) E_k[x | x_obs]: the observed values and conditional means
    groups: list[tuple[slice, NDArray[np.intp], _Algebra]]  # (rows in filled, pattern, algebra)


class _Patterns(NamedTuple):
    """Rows of common patterns with s missing coordinates, sorted by pattern."""

    rows: NDArray[np.intp]  # (n_rows,) positions in the block of rows
    bounds: NDArray[np.intp]  # (n_q + 1,) each pattern's slice of the rows
    # patterns of similar row counts: (their indices, (n_b, width) their rows padded with
    # n_rows, the zero row), so that one stacked product serves each bucket
    buckets: list[tuple[NDArray[np.intp], NDArray[np.intp]]]
    stats: Array  # (d + d (d + 1) / 2, n_rows) T(x0), statistic-major: x0, packed x0 x0^T
    values: Array  # (n_rows + 1, d + K s): x0, then E_k[x_m | x_obs] by k; a zero row
    missing: NDArray[np.intp]  # (n_q, s) each pattern's missing coordinates
    cond_cov: Array  # (s, s, K, n_q) Cov_k[x_m | x_obs]


class _Compiled(NamedTuple):
    """Rows evaluated by the compiled loops, per number s of missing coordinates."""

    x0: Array  # (n, d) the rows, 0 at their missing coordinates
    # (rows, each row's pattern, missing (n_p, s), C on the loops' tiles (n_tiles, s, s,
    # _TILE K), E_k[x_m | x_obs] (n_s, K, s))
    groups: list[tuple[NDArray[np.intp], NDArray[np.intp], NDArray[np.intp], Array, Array]]


class MissingState(NamedTuple):
    """What the E-step of rows with missing values leaves for their statistics."""

    rows: _Rows | None
    patterns: list[_Patterns]
    n_components: int
    n_features: int
    compiled: _Compiled | None = None
    # log p(x_obs | k) terms equal for every component, apart from the log-probabilities:
    # rows far beyond float64's range of squared distances (see GaussianFamily)
    row: Array | None = None


@functools.lru_cache(maxsize=64)
def triu_indices(d: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column indices of the packed upper triangle (i <= j), in packing order
    (read-only: shared)."""
    i, j = np.triu_indices(d)
    i.flags.writeable = j.flags.writeable = False
    return i, j


def dense_precisions(structure: Any, prec_chol: Array, n_components: int, d: int) -> Array:
    """Every component's precision matrix, (K, d, d), whatever the covariance structure."""
    P = np.asarray(structure.precisions(prec_chol))
    if structure.dense:
        return np.broadcast_to(P, (n_components, d, d))
    eye = np.eye(d)
    if P.ndim == 1:  # spherical: one precision per component
        return P[:, None, None] * eye
    return P[:, :, None] * eye  # diag: (K, d) precisions on the diagonals


def spd_inverse(A: Array) -> tuple[Array, Array]:
    """Inverses and log-determinants of a stack of small symmetric positive-definite
    matrices laid out batch last, (s, s, ...), by Gauss-Jordan elimination vectorized
    over the stack: LAPACK's per-matrix call costs more than a 4 x 4 inverse, and with
    the batch last every step runs over contiguous memory. No pivoting is needed for
    positive-definite matrices (every pivot is a Schur complement's diagonal, > 0).
    Row by row, in blocks of the stack that stay in cache."""
    s = A.shape[0]
    W = np.array(A, dtype=np.float64, order="C")  # a copy, eliminated in place
    log_det = np.zeros(A.shape[2:])
    if s == 0:
        return W, log_det
    flat, flat_log_det = W.reshape(s, s, -1), log_det.reshape(-1)
    n = flat.shape[2]
    for lo in range(0, n, _BLOCK):
        _gauss_jordan(flat[:, :, lo : lo + _BLOCK], flat_log_det[lo : lo + _BLOCK])
    return W, log_det


# Matrices that :func:`spd_inverse` eliminates together: long enough that each NumPy call
# does real work, short enough that the stack stays in cache (bench/bench_missing.py).
_BLOCK = 8192


def _gauss_jordan(W: Array, log_det: Array) -> None:
    """Invert the (s, s, b) stack ``W`` in place, adding its log-determinants."""
    s = W.shape[0]
    row = np.empty(W.shape[1:])  # scratch: no allocation in the loop
    factor = np.empty(W.shape[2])
    for k in range(s):
        inverse = 1.0 / W[k, k]
        log_det -= np.log(inverse)
        W[k] *= inverse  # the pivot row, scaled: W[k, k] = 1
        for i in range(s):
            if i != k:
                factor[...] = W[i, k]
                np.multiply(W[k], factor, out=row)
                W[i] -= row
                np.multiply(factor, -inverse, out=W[i, k])
        W[k, k] = inverse


def _groups(observed: NDArray[np.bool_]) -> Iterator[tuple[Any, ...]]:
    """(rows, each row's pattern, each pattern's missing coordinates) per number s of
    missing coordinates; the rows are a slice when they are consecutive (a fit sorts
    them by s, then by pattern)."""
    missing = ~observed
    n, d = missing.shape
    if d > 47:  # a pattern's code below would not be exact in float64
        yield from _groups_by_bytes(missing)
        return
    # code = s 2^d + the pattern's bits (column 0 highest): exact in float64, and it
    # orders rows as a fit sorts them
    code = missing.astype(np.float64) @ (2.0 ** np.arange(d - 1, -1, -1) + 2.0**d)
    if n > 1 and (code[1:] >= code[:-1]).all():
        first = np.flatnonzero(np.concatenate([[True], code[1:] != code[:-1]]))
        pattern = np.cumsum(np.concatenate([[0], (code[1:] != code[:-1]).astype(np.intp)]))
    else:
        _, first, pattern = np.unique(code, return_index=True, return_inverse=True)
        pattern = pattern.reshape(-1)
    counts = (code[first] // 2.0**d).astype(np.intp)  # s of each pattern, ascending
    edges = np.flatnonzero(np.diff(counts)) + 1
    for lo, hi in zip(
        np.concatenate([[0], edges]), np.concatenate([edges, [counts.shape[0]]]), strict=True
    ):
        s = int(counts[lo])
        rows: Any = np.flatnonzero((pattern >= lo) & (pattern < hi))
        coords = np.nonzero(missing[first[lo:hi]])[1].reshape(hi - lo, s)
        mine = pattern[rows] - lo
        if rows[-1] - rows[0] + 1 == rows.shape[0]:
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        yield rows, mine, coords


def _groups_by_bytes(missing: NDArray[np.bool_]) -> Iterator[tuple[Any, ...]]:
    """:func:`_groups` for any number of columns, through the patterns' packed bytes."""
    counts = np.count_nonzero(missing, axis=1)
    for s in np.unique(counts):
        rows: Any = np.flatnonzero(counts == s)
        first, pattern = pattern_ids(missing[rows])
        coords = np.nonzero(missing[rows[first]])[1].reshape(first.shape[0], int(s))
        if rows[-1] - rows[0] + 1 == rows.shape[0]:
            rows = slice(int(rows[0]), int(rows[-1]) + 1)
        yield rows, pattern, coords


def missing_log_prob(
    structure: Any,
    X: Array,
    observed: NDArray[np.bool_],
    means: Array,
    prec_chol: Array,
    offset: Array,
) -> tuple[Array, MissingState]:
    """log N(x_obs | mu_k,obs, Sigma_k,obs) + offset_k, (n, K), for centred float64 rows
    ``X`` (values at missing coordinates are ignored), and the state for the statistics.

    With x0 the row with 0 at its missing coordinates, g = P x0, and o mu the mean with 0
    at the missing coordinates, delta^T P delta = x0.g - 2 x0.(P mu) + 2 g_m.mu_m +
    (o mu)^T P (o mu) and v_m = g_m - (P (o mu))_m: beyond the complete-data terms a row
    needs only the s coordinates g_m, and the rest are per-pattern terms (:class:`_Algebra`).
    """
    K, d = means.shape
    n = X.shape[0]
    P = np.ascontiguousarray(dense_precisions(structure, prec_chol, K, d))
    P_mu = np.einsum("kab,kb->ka", P, means)
    half_log_det = np.broadcast_to(structure.half_log_det(prec_chol, d), (K,))
    # the complete-data constant, log N(x) = x.(P mu) - x^T P x / 2 + constant
    constant = half_log_det + offset - 0.5 * np.einsum("ka,ka->k", means, P_mu) - 0.5 * d * LOG_2PI
    x0 = np.where(observed, X, 0.0)
    compiled = kernels() if _COMPILED else None
    if compiled is not None:
        return _compiled_log_prob(compiled, x0, observed, P, P_mu, means, constant)
    log_prob = np.empty((n, K))
    everything = np.arange(n)
    common_parts, rare_parts = [], []
    for rows, pattern, coords in _groups(observed):
        algebra = _algebra(P, P_mu, means, coords)
        rows = everything[rows]
        common = np.bincount(pattern, minlength=coords.shape[0]) >= _PATTERN_ROWS
        if common.any():
            many = common[pattern]
            common_parts.append((rows[many], pattern[many], np.flatnonzero(common), algebra))
            rows, pattern = rows[~many], pattern[~many]
        if rows.shape[0]:
            rare_parts.append((rows, pattern, algebra))
    state = MissingState(None, [], K, d)
    if rare_parts:
        state = state._replace(rows=_by_row(x0, rare_parts, P, P_mu, means, constant, log_prob))
    if common_parts:
        eta = full_natural(P, P_mu)
        for part in common_parts:
            state.patterns.append(_by_pattern(x0, *part, P, eta, constant, log_prob))
    return log_prob, state


def _compiled_log_prob(
    compiled: Any,
    x0: Array,
    observed: NDArray[np.bool_],
    P: Array,
    P_mu: Array,
    means: Array,
    constant: Array,
) -> tuple[Array, MissingState]:
    """The E-step by the compiled loops: G = x0 [P_1 .. P_K, P mu] for all rows by one
    matrix product, then per group of rows with s missing coordinates the algebra of
    its patterns and each row's terms."""
    K, d = means.shape
    n = x0.shape[0]
    G = x0 @ np.concatenate([P.transpose(1, 0, 2).reshape(d, K * d), P_mu.T], axis=1)
    # components last, for the loops
    parameters = (
        np.ascontiguousarray(P.transpose(1, 2, 0)),
        np.ascontiguousarray(P_mu.T),
        np.ascontiguousarray(means.T),
    )
    constant = np.ascontiguousarray(constant, dtype=np.float64)
    log_prob = np.empty((n, K))
    everything = np.arange(n)
    groups = []
    for rows, pattern, coords in _groups(observed):
        coords = np.ascontiguousarray(coords)
        algebra = _compiled_algebra(compiled, parameters, coords)
        rows = everything[rows]
        y = np.empty((rows.shape[0], K, coords.shape[1]))
        compiled.rows_log_prob(G, x0, rows, pattern, coords, *algebra, constant, log_prob, y)
        groups.append((rows, pattern, coords, algebra[0], y))
    return log_prob, MissingState(None, [], K, d, _Compiled(x0, groups))


def _compiled_algebra(
    compiled: Any, parameters: tuple[Array, Array, Array], coords: NDArray[np.intp]
) -> tuple[Array, Array, Array, Array]:
    """(C, b, mu_m, const) of every (pattern, component), on the compiled loops' tiles
    (:func:`emkit.families._missing_kernels._pattern_algebra`); ``parameters`` are P,
    P mu and mu, components last."""
    n_p, s = coords.shape
    tile = _missing_kernels._TILE
    n_tiles, width = -(-n_p // tile), tile * parameters[0].shape[2]
    C = np.empty((n_tiles, s, s, width))
    b, mu_m = np.empty((n_tiles, s, width)), np.empty((n_tiles, s, width))
    const = np.empty((n_tiles, width))
    compiled.pattern_algebra(*parameters, coords, C, b, mu_m, const)
    return C, b, mu_m, const


def _algebra(P: Array, P_mu: Array, means: Array, coords: NDArray[np.intp]) -> _Algebra:
    """Each (pattern, component)'s conditional Gaussian: the inverse of P_mm, and the
    terms of log N(x_obs) beyond the complete-data form on x0."""
    s = coords.shape[1]
    # P_mm of every (pattern, component), batch last: (s, s, K, n_patterns)
    blocks = P[:, coords.T[:, None, :], coords.T[None, :, :]].transpose(1, 2, 0, 3)
    cond_cov, log_det_mm = spd_inverse(blocks)
    mu_m = means[:, coords].transpose(2, 0, 1)  # (s, K, n_patterns)
    P_mu_m = P_mu[:, coords].transpose(2, 0, 1)
    Pmm_mu_m = np.einsum("ijkp,jkp->ikp", blocks, mu_m)
    # ((o mu)^T P (o mu) - mu^T P mu + log |Sigma_oo| + log |P| - s log 2 pi) / -2,
    # with log |Sigma_oo| = log |P_mm| - log |P|
    const = np.einsum("ikp,ikp->kp", mu_m, Pmm_mu_m - 2.0 * P_mu_m)
    const = -0.5 * (const + log_det_mm - s * LOG_2PI)
    return _Algebra(coords, cond_cov, mu_m, P_mu_m - Pmm_mu_m, const)


def _by_row(
    x0: Array,
    parts: list[tuple[NDArray[np.intp], NDArray[np.intp], _Algebra]],
    P: Array,
    P_mu: Array,
    means: Array,
    constant: Array,
    log_prob: Array,
) -> _Rows:
    """Rows of rare patterns, vectorized over rows: g = P x0 for every row and
    component, then each row's s coordinates g_m."""
    K, d = means.shape
    rows = np.concatenate([part[0] for part in parts])
    x = x0[rows]
    n = x.shape[0]
    filled = np.matmul(x, P)  # (K, n, d): g = P_k x0, then E_k[x | x_obs] in place
    lp = P_mu @ x.T - 0.5 * np.einsum("knd,nd->kn", filled, x)  # (K, n)
    lp += constant[:, None]
    flat = filled.reshape(-1)
    start = (np.arange(K) * (n * d))[:, None, None]
    groups, conditional = [], []
    at = 0
    for part_rows, pattern, algebra in parts:
        mine = slice(at, at + part_rows.shape[0])
        at = mine.stop
        # each row's g_m under every component, (K, n_s, s), then moved to (s, K, n_s)
        index = start + (np.arange(mine.start, mine.stop) * d)[None, :, None]
        index = index + algebra.missing[pattern][None]
        g_m = np.moveaxis(flat.take(index), 2, 0)
        v = g_m - algebra.b[..., pattern]
        w = np.einsum("ijkn,jkn->ikn", np.take(algebra.cond_cov, pattern, axis=3), v)
        mu_rows = algebra.mu_m[..., pattern]
        lp[:, mine] += (
            algebra.const[:, pattern]
            - np.einsum("ikn,ikn->kn", g_m, mu_rows)
            + 0.5 * np.einsum("ikn,ikn->kn", v, w)
        )
        # E_k[x_m | x_obs] = mu_m - P_mm^-1 v_m
        conditional.append((index, np.moveaxis(mu_rows - w, 0, 2)))
        groups.append((mine, pattern, algebra))
    log_prob[rows] = lp.T
    np.copyto(filled, x)  # the observed values; the missing ones below
    for index, values in conditional:
        flat.put(index, values)
    return _Rows(rows, filled, groups)


def _by_pattern(
    x0: Array,
    rows: NDArray[np.intp],
    pattern: NDArray[np.intp],
    common: NDArray[np.intp],
    algebra: _Algebra,
    P: Array,
    eta: Array,
    constant: Array,
    log_prob: Array,
) -> _Patterns:
    """Rows of common patterns: the complete-data form on T(x0) = (x0, x0 x0^T), one
    matrix product for all of them as for complete rows, and for the rest a small
    product per pattern (its rows share m), stacked over a bucket of patterns. With
    g = P_m^T x0 and h = C g (C = P_mm^-1), v.C v / 2 - g.mu_m = g.h / 2 + x0.l +
    b.C b / 2 where l = -P_m (mu_m + C b / 2) - P_m C b / 2, and
    E_k[x_m | x_obs] = mu_m + C b - h: the product gives (g, h, x0.l)."""
    K, d = P.shape[:2]
    n_q = common.shape[0]
    s = algebra.missing.shape[1]
    position = np.full(algebra.missing.shape[0], -1)
    position[common] = np.arange(n_q)
    mine = position[pattern]
    order = np.argsort(mine, kind="stable")  # a fit's rows are sorted already: a no-op
    rows, mine = rows[order], mine[order]
    n = rows.shape[0]
    Ks = K * s
    values = np.zeros((n + 1, d + Ks))  # x0, then the conditional means; a zero row last
    x = values[:n, :d]
    np.copyto(x, x0[rows])
    TT = full_statistics(x).T  # statistic-major T(x0)
    lp = eta @ TT  # (K, n_rows): x0.(P mu) - x0^T P x0 / 2
    lp += constant[:, None]
    counts = np.bincount(mine, minlength=n_q)
    bounds = np.concatenate([[0], np.cumsum(counts)])
    buckets = _buckets(counts, bounds)
    # per (component, pattern): P_m (d, s), C, b, mu_m
    m = algebra.missing[common]  # (n_q, s)
    C = np.ascontiguousarray(algebra.cond_cov[..., common].transpose(2, 3, 0, 1))
    b = algebra.b[..., common].transpose(1, 2, 0)  # (K, n_q, s)
    mu = algebra.mu_m[..., common].transpose(1, 2, 0)
    Cb = (C @ b[..., None])[..., 0]
    # one stacked product: each row's (g, -h, x0.l) by (component, coordinate)
    M = np.empty((n_q, d, 2 * Ks + K))
    P_m = M[:, :, :Ks].reshape(n_q, d, K, s)
    np.copyto(P_m, P[:, :, m].transpose(2, 1, 0, 3))
    minus_PmC = M[:, :, Ks : 2 * Ks].reshape(n_q, d, K, s)
    np.einsum("qdki,kqij->qdkj", P_m, -C, out=minus_PmC)
    # l = -P_m (mu_m + C b / 2) - P_m C b / 2
    np.einsum("qdki,kqi->qdk", P_m, -mu - 0.5 * Cb, out=M[:, :, 2 * Ks :])
    M[:, :, 2 * Ks :] += np.einsum("qdki,kqi->qdk", minus_PmC, 0.5 * b)
    out = np.empty((n, 2 * Ks + K))
    for which, padded in buckets:
        real = padded < n
        out[padded[real]] = np.matmul(values[padded, :d], M[which])[real]
    g, minus_h = out[:, :Ks], out[:, Ks : 2 * Ks]
    const = algebra.const[:, common] + 0.5 * np.einsum("kqs,kqs->kq", b, Cb)
    lp += out[:, 2 * Ks :].T
    lp += np.repeat(const, counts, axis=1)
    lp -= 0.5 * np.einsum("nks,nks->kn", g.reshape(n, K, s), minus_h.reshape(n, K, s))
    log_prob[rows] = lp.T
    # E_k[x_m | x_obs] = mu_m - C (g - b) = (mu_m + C b) - h
    intercept = (mu + Cb).transpose(1, 0, 2).reshape(n_q, Ks)
    np.add(np.repeat(intercept, counts, axis=0), minus_h, out=values[:n, d:])
    return _Patterns(rows, bounds, buckets, TT, values, m, algebra.cond_cov[..., common])


def _buckets(
    counts: NDArray[np.intp], bounds: NDArray[np.intp]
) -> list[tuple[NDArray[np.intp], NDArray[np.intp]]]:
    """Patterns grouped by the power of two below their row count (so padding at most
    doubles a bucket's rows), each with its rows padded with the index of the zero row."""
    n = int(bounds[-1])
    level = np.floor(np.log2(counts)).astype(np.intp)
    out = []
    for value in np.unique(level):
        which = np.flatnonzero(level == value)
        width = int(counts[which].max())
        slot = np.arange(width)
        padded = np.where(slot < counts[which, None], bounds[which, None] + slot, n)
        out.append((which, padded))
    return out


def full_statistics(Xc: Array, out: Array | None = None) -> Array:
    """T(x) = (x, packed upper triangle of x x^T) of rows ``Xc`` (n, d), as the (n,
    d + d (d + 1) / 2) transpose of a statistic-major buffer (``out`` or new)."""
    d = Xc.shape[1]
    XT = np.ascontiguousarray(Xc.T)  # a view when Xc is feature-major
    TT = statistic_rows(out, d + d * (d + 1) // 2, Xc.shape[0], Xc.dtype)
    TT[:d] = XT
    packed_products(XT, TT[d:])
    return TT.T


def full_natural(P: Array, P_mu: Array) -> Array:
    """The natural parameters of T(x) = (x, packed x x^T) for precisions ``P`` (K, d, d)
    and ``P_mu`` = P mu (K, d): x.(P mu) - x^T P x / 2 = T(x) @ eta_k, with
    x^T P x = sum_i P_ii x_i^2 + 2 sum_{i<j} P_ij x_i x_j."""
    i, j = triu_indices(P.shape[1])
    return np.concatenate([P_mu, -np.where(i == j, 0.5, 1.0) * P[:, i, j]], axis=1)


def packed_products(XT: Array, out: Array) -> None:
    """The packed upper triangle of x x^T of every row, statistic-major: ``XT`` is
    (o, n) (each coordinate one contiguous row) and ``out`` (o (o + 1) / 2, n)."""
    o = XT.shape[0]
    at = 0
    for a in range(o):  # row a of the triangle: x_a * x_{a..o-1}
        np.multiply(XT[a], XT[a:], out=out[at : at + o - a])
        at += o - a


def missing_statistics(state: MissingState, resp: Array) -> tuple[Array, Array]:
    """(first moments sum_n r_nk E_k[x], (K, d); second moments sum_n r_nk E_k[x x^T],
    (K, d, d)) of the rows, from their (weighted, so >= 0) responsibilities:
    E_k[x x^T] = E_k[x] E_k[x]^T + pad(P_mm^-1). Consumes the state (the filled rows are
    scaled in place)."""
    K, d = state.n_components, state.n_features
    if state.compiled is not None:
        return _compiled_moments(state.compiled, resp)
    first = np.zeros((K, d))
    second = np.zeros((K, d, d))
    if state.rows is not None:
        f, S = _row_moments(state.rows, resp)
        first += f
        second += S
    for patterns in state.patterns:
        f, S = _pattern_moments(patterns, resp)
        first += f
        second += S
    return first, second


def _compiled_moments(found: _Compiled, resp: Array) -> tuple[Array, Array]:
    """Moments by the compiled loops: with F_k = sqrt(r_k) E_k[x | x_obs] (the loops
    fill it), sum r E_k[x] = sqrt(r_k)^T F_k and sum r E_k[x] E_k[x]^T = F_k^T F_k by
    BLAS, plus each (pattern, component)'s mass times its conditional covariance."""
    x0 = found.x0
    n, d = x0.shape
    K = resp.shape[1]
    root = np.sqrt(np.ascontiguousarray(resp.T, dtype=np.float64))  # (K, n)
    F = np.zeros((K, n, d))  # rows of the state's groups are all filled below
    second = np.zeros((K, d, d))  # the conditional covariances' part
    compiled = kernels()
    for rows, pattern, coords, C, y in found.groups:
        mass = np.zeros(C.shape[::3])  # (n_tiles, _TILE K)
        compiled.rows_fill(x0, rows, pattern, coords, y, root, F, mass)
        compiled.scatter_covariances(coords, C, mass, second)
    first = np.matmul(root[:, None, :], F)[:, 0]
    second += np.matmul(np.swapaxes(F, 1, 2), F)
    return first, second


def _row_moments(found: _Rows, resp: Array) -> tuple[Array, Array]:
    """Moments of rows of rare patterns: with F = sqrt(r) E_k[x] (scaled in place, so
    the state is spent), F^T F, and each pattern's responsibility mass times its
    conditional covariance."""
    filled = found.filled
    K, _, d = filled.shape
    r = np.ascontiguousarray(resp[found.rows].T)  # (K, n)
    root = np.sqrt(r)
    filled *= root[:, :, None]
    first = np.matmul(root[:, None, :], filled)[:, 0]
    second = np.matmul(np.swapaxes(filled, 1, 2), filled)
    for mine, pattern, algebra in found.groups:
        n_patterns = algebra.missing.shape[0]
        # each pattern's responsibility mass times its conditional covariance
        mass = np.bincount(
            (np.arange(K)[:, None] * n_patterns + pattern).ravel(),
            r[:, mine].ravel(),
            K * n_patterns,
        ).reshape(K, n_patterns)
        second += _scatter_symmetric(algebra.cond_cov * mass, algebra.missing, K, d)
    return first, second


def _pattern_moments(patterns: _Patterns, resp: Array) -> tuple[Array, Array]:
    """Moments of rows of common patterns: with x = x0 + y at the missing coordinates,
    sum r x x^T = sum r x0 x0^T (from T(x0), one product) + the cross terms
    sum r x0 y^T and their transpose + sum r y y^T (one stacked product over the
    patterns) + N pad(C)."""
    TT, m, values = patterns.stats, patterns.missing, patterns.values
    n_q, s = m.shape
    K = patterns.cond_cov.shape[2]
    n = values.shape[0] - 1
    d = values.shape[1] - K * s
    r = resp[patterns.rows]  # (n_rows, K)
    sums = TT @ r  # (n_stats, K)
    first = np.ascontiguousarray(sums[:d].T)
    i, j = triu_indices(d)
    second = np.empty((K, d, d))
    second[:, i, j] = sums[d:].T
    second[:, j, i] = sums[d:].T
    z = np.zeros((n + 1, K, s))  # r y, and a zero row for the padding
    np.multiply(values[:n, d:].reshape(n, K, s), r[:, :, None], out=z[:n])
    z = z.reshape(n + 1, K * s)
    # per pattern, (x0, y)^T (r y): the cross terms sum r x0 y^T and sum r y y^T; and
    # sum r y
    sums_q = np.empty((n_q, values.shape[1], K * s))
    sum_z = np.empty((n_q, K * s))
    for which, padded in patterns.buckets:
        z_padded = z[padded]  # (n_b, width, K s)
        sums_q[which] = np.matmul(np.swapaxes(values[padded], 1, 2), z_padded)
        sum_z[which] = z_padded.sum(axis=1)
    k = np.arange(K)[None, :, None]
    # sum r y at (k, m_j)
    first += np.bincount((k * d + m[:, None, :]).ravel(), sum_z.ravel(), K * d).reshape(K, d)
    at = (k * (d * d) + m[:, None, :])[:, None] + (np.arange(d) * d)[None, :, None, None]
    cross = np.bincount(at.ravel(), sums_q[:, :d].ravel(), K * d * d).reshape(K, d, d)
    second += cross + np.swapaxes(cross, 1, 2)
    # the (k, k) blocks of sum r y y^T, plus N C, at (k, m_i, m_j)
    yy = np.diagonal(sums_q[:, d:].reshape(n_q, K, s, K, s), axis1=1, axis2=3)  # (n_q, s, s, K)
    mass = np.add.reduceat(r, patterns.bounds[:-1])  # (n_q, K)
    block = yy.transpose(1, 2, 3, 0) + patterns.cond_cov * mass.T  # (s, s, K, n_q)
    second += _scatter_symmetric(block, m, K, d)
    return first, second


def _scatter_symmetric(block: Array, missing: NDArray[np.intp], K: int, d: int) -> Array:
    """sum over patterns p of ``block[:, :, k, p]`` (symmetric s x s) placed at the
    rows and columns ``missing[p]`` of a (K, d, d) array: one bincount of the upper
    triangles (pairs i <= j, so m_i <= m_j), then mirrored."""
    s = missing.shape[1]
    if not s:
        return np.zeros((K, d, d))
    i, j = triu_indices(s)
    m = missing.T  # (s, n_patterns)
    flat = (np.arange(K) * (d * d))[None, :, None] + (m[i] * d + m[j])[:, None, :]
    upper = np.bincount(flat.ravel(), block[i, j].ravel(), K * d * d).astype(np.float64, copy=False)
    upper = upper.reshape(K, d, d)
    out = upper + np.swapaxes(upper, 1, 2)
    out -= np.einsum("kii->ki", upper)[:, :, None] * np.eye(d)  # the diagonal, once
    return out


def conditional_means(state: MissingState, resp: Array, log_scale: bool = False) -> Array:
    """E[x | x_obs] = sum_k p(k | x_obs) E_k[x | x_obs], (n, d), in centred coordinates;
    with ``log_scale`` (rows are log x), E[e^x | x_obs] instead."""
    out = np.empty((resp.shape[0], state.n_features))
    if state.compiled is not None:
        return _compiled_conditional_means(state.compiled, resp, log_scale, out)
    found = state.rows
    if found is not None:
        values = found.filled
        if log_scale:
            # E[e^x] of a normal x is e^(mean + var / 2)
            K, n, d = values.shape
            var = np.zeros_like(values)
            start = (np.arange(K) * (n * d))[:, None, None]
            for mine, pattern, algebra in found.groups:
                s = algebra.missing.shape[1]
                diag = algebra.cond_cov[np.arange(s), np.arange(s)]  # (s, K, n_patterns)
                index = start + (np.arange(mine.start, mine.stop) * d)[None, :, None]
                index = index + algebra.missing[pattern][None]
                var.reshape(-1).put(index, np.moveaxis(diag[..., pattern], 0, 2))
            values = np.exp(values + 0.5 * var)
        out[found.rows] = np.einsum("nk,knd->nd", resp[found.rows], values)
    for patterns in state.patterns:
        s = patterns.missing.shape[1]
        K = patterns.cond_cov.shape[2]
        x = patterns.values[:-1, : state.n_features]
        n = x.shape[0]
        y = patterns.values[:-1, state.n_features :].reshape(n, K, s)
        counts = np.diff(patterns.bounds)
        at = np.repeat(patterns.missing, counts, axis=0)  # (n_rows, s) missing coordinates
        r = resp[patterns.rows]
        if log_scale:
            var = np.diagonal(patterns.cond_cov, axis1=0, axis2=1)  # (K, n_q, s)
            var = np.repeat(var, counts, axis=1).transpose(1, 0, 2)
            mixed = np.einsum("nk,nks->ns", r, np.exp(y + 0.5 * var))
            filled = np.exp(x)
        else:
            mixed = np.einsum("nk,nks->ns", r, y)
            filled = x.copy()
        filled[np.arange(n)[:, None], at] = mixed
        out[patterns.rows] = filled
    return out


def _compiled_conditional_means(
    found: _Compiled, resp: Array, log_scale: bool, out: Array
) -> Array:
    """:func:`conditional_means` from the compiled loops' state."""
    out[:] = np.exp(found.x0) if log_scale else found.x0
    K = resp.shape[1]
    for rows, pattern, coords, C, y in found.groups:
        if not coords.shape[1]:
            continue  # complete rows: nothing to fill
        if log_scale:
            # the conditional variances, from the tiles: (n_tiles, _TILE K, s) -> (n_p, K, s)
            var = np.diagonal(C, axis1=1, axis2=2).reshape(-1, K, coords.shape[1])
            mixed = np.einsum("nk,nks->ns", resp[rows], np.exp(y + 0.5 * var[pattern]))
        else:
            mixed = np.einsum("nk,nks->ns", resp[rows], y)
        out[rows[:, None], coords[pattern]] = mixed
    return out

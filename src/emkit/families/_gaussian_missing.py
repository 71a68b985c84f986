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
Rows are handled in groups with the same number of missing coordinates, so every array
of a group is rectangular.

The M-step receives the expected statistics sum_n r_nk E_k[x] and
sum_n r_nk E_k[x x^T] = sum_n r_nk (E_k[x] E_k[x]^T + pad(P_mm^-1)), packed the way the
covariance structure packs its statistics: it never learns that values were missing.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from emkit.families._base import pattern_ids

__all__ = [
    "MissingState",
    "conditional_means",
    "dense_precisions",
    "missing_log_prob",
    "missing_statistics",
    "packed_products",
    "spd_inverse",
]

Array = NDArray[np.floating[Any]]
LOG_2PI = float(np.log(2.0 * np.pi))

# A pattern with at least this many rows in a block is evaluated like complete data on its
# observed coordinates (statistics and a matrix product: the per-row cost of complete
# rows); rarer patterns row by row, where the per-pattern algebra would cost more.
_PATTERN_ROWS = 16


class _Group(NamedTuple):
    """Rows with the same number s of missing coordinates, under every component."""

    rows: NDArray[np.intp]  # (n_s,) positions in the block of rows
    pattern: NDArray[np.intp]  # (n_s,) each row's pattern, indexing `missing`
    missing: NDArray[np.intp]  # (n_patterns, s) each pattern's missing coordinates
    filled: Array  # (K, n_s, d) E_k[x | x_obs]: observed values, conditional means
    cond_cov: Array  # (s, s, K, n_patterns) Cov_k[x_m | x_obs] = P_mm^-1, batch last


class _Patterns(NamedTuple):
    """Patterns with many rows, each handled like complete data on its observed
    coordinates: statistics T(x_obs) and a matrix product with the pattern's natural
    parameters."""

    rows: NDArray[np.intp]  # (n_rows,) positions in the block of rows, by pattern
    pattern: NDArray[np.intp]  # (n_rows,) each row's pattern, indexing the arrays below
    bounds: NDArray[np.intp]  # (n_patterns + 1,) each pattern's slice of the rows
    stats: Array  # (n_rows, n_stats_obs) T(x_obs): x_o and the packed x_o x_o^T
    observed: Array  # (n_rows, o) the rows' observed values
    order: NDArray[np.intp]  # (n_patterns, d): observed then missing coordinates
    regression: Array  # (K, n_patterns, s, o) B: E_k[x_m | x_o] = c + B x_o
    intercept: Array  # (K, n_patterns, s) c
    cond_cov: Array  # (K, n_patterns, s, s)


class MissingState(NamedTuple):
    """What the E-step of rows with missing values leaves for their statistics."""

    groups: list[_Group]
    patterns: list[_Patterns]
    n_components: int
    n_features: int


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
    positive-definite matrices (every pivot is a Schur complement's diagonal, > 0)."""
    s = A.shape[0]
    W = np.array(A, dtype=np.float64)  # a copy, eliminated in place
    log_det = np.zeros(A.shape[2:])
    if s == 0:
        return W, log_det
    row = np.empty_like(W[0])  # scratch: no allocation in the inner loop
    factor = np.empty_like(W[0, 0])
    for k in range(s):
        pivot = W[k, k].copy()
        log_det += np.log(pivot)
        inverse = 1.0 / pivot
        W[k] *= inverse
        for i in range(s):
            if i != k:
                factor[...] = W[i, k]
                np.multiply(W[k], factor, out=row)
                W[i] -= row
                np.multiply(factor, -inverse, out=W[i, k])
        W[k, k] = inverse
    return W, log_det


def _groups(observed: NDArray[np.bool_]) -> Iterator[tuple[Any, ...]]:
    """(rows, each row's pattern, each pattern's missing coordinates) per number of
    missing coordinates."""
    missing = ~observed
    counts = missing.sum(axis=1)
    values = np.unique(counts)
    for s in values:
        rows = np.flatnonzero(counts == s) if values.shape[0] > 1 else np.arange(counts.shape[0])
        first, pattern = pattern_ids(missing[rows])
        coords = np.nonzero(missing[rows[first]])[1].reshape(first.shape[0], int(s))
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
    ``X`` (values at missing coordinates are ignored), and the state for the statistics."""
    K, d = means.shape
    P = dense_precisions(structure, prec_chol, K, d)
    half_log_det = np.broadcast_to(structure.half_log_det(prec_chol, d), (K,))
    log_prob = np.empty((X.shape[0], K))
    X = np.ascontiguousarray(X)  # rows gathered below: row-major
    state = MissingState([], [], K, d)
    for rows, pattern, coords in _groups(observed):
        # P_mm of every (pattern, component), batch last: (s, s, K, n_patterns)
        blocks = P[:, coords.T[:, None, :], coords.T[None, :, :]].transpose(1, 2, 0, 3)
        cond_cov, log_det_mm = spd_inverse(blocks)
        # log |Sigma_oo| / 2 = (log |P_mm| - log |P|) / 2, (K, n_patterns)
        half_log_det_oo = 0.5 * log_det_mm - half_log_det[:, None]
        parameters = (P, means, cond_cov, half_log_det_oo, offset)
        common = np.bincount(pattern) >= _PATTERN_ROWS
        if common.any():
            many = common[pattern]
            found = _by_pattern(
                X, rows[many], pattern[many], np.flatnonzero(common), coords, *parameters, log_prob
            )
            state.patterns.append(found)
            rows, pattern = rows[~many], pattern[~many]
        if rows.shape[0]:
            found_rows = _by_row(X, rows, pattern, coords, *parameters, log_prob)
            state.groups.append(found_rows)
    return log_prob, state


def _by_row(
    X: Array,
    rows: NDArray[np.intp],
    pattern: NDArray[np.intp],
    coords: NDArray[np.intp],
    P: Array,
    means: Array,
    cond_cov: Array,
    half_log_det_oo: Array,
    offset: Array,
    log_prob: Array,
) -> _Group:
    """Rows of rare patterns, vectorized over rows: v = P delta, the Schur complement's
    correction, and each row's filled values under every component."""
    K, d = means.shape
    s = coords.shape[1]
    n_s = rows.shape[0]
    at = coords[pattern]  # (n_s, s): each row's missing coordinates
    line = np.arange(n_s)[:, None]
    x = X[rows]
    x[line, at] = 0.0
    filled = np.broadcast_to(x, (K, n_s, d)).copy()  # missing values filled in below
    delta = filled - means[:, None, :]
    delta[:, line, at] = 0.0  # (K, n_s, d): x - mu on the observed coordinates
    v = delta @ P
    maha = np.einsum("knd,knd->kn", delta, v)
    v_m = np.moveaxis(v[:, line, at], 2, 0)  # (s, K, n_s)
    # P_mm^-1 v_m, and its share of the Mahalanobis distance
    shift = np.zeros_like(v_m)
    for i in range(s):
        for j in range(s):
            shift[i] += cond_cov[i, j][:, pattern] * v_m[j]
    maha -= np.einsum("ikn,ikn->kn", v_m, shift)
    const = -half_log_det_oo[:, pattern] - 0.5 * (d - s) * LOG_2PI
    log_prob[rows] = (const - 0.5 * maha).T + offset
    filled[:, line, at] = means[:, at] - np.moveaxis(shift, 0, 2)
    return _Group(rows, pattern, coords, filled, cond_cov)


def _by_pattern(
    X: Array,
    rows: NDArray[np.intp],
    pattern: NDArray[np.intp],
    common: NDArray[np.intp],
    coords: NDArray[np.intp],
    P: Array,
    means: Array,
    cond_cov: Array,
    half_log_det_oo: Array,
    offset: Array,
    log_prob: Array,
) -> _Patterns:
    """Rows of common patterns: per pattern and component, the observed coordinates'
    Gaussian in natural form (precision Q = P_oo - P_om P_mm^-1 P_mo), so the rows cost
    their statistics and one matrix product, like complete rows."""
    K, d = means.shape
    s = coords.shape[1]
    o = d - s
    missing = np.zeros((common.shape[0], d), dtype=bool)
    m_idx = coords[common]  # (n_p, s)
    missing[np.arange(common.shape[0])[:, None], m_idx] = True
    o_idx = np.nonzero(~missing)[1].reshape(common.shape[0], o)
    C = np.moveaxis(cond_cov[..., common], (0, 1), (2, 3))  # (K, n_p, s, s)
    P_mo = P[:, m_idx[:, :, None], o_idx[:, None, :]]  # (K, n_p, s, o)
    B = -C @ P_mo  # E_k[x_m | x_o] = c + B x_o
    Q = P[:, o_idx[:, :, None], o_idx[:, None, :]] + np.swapaxes(P_mo, 2, 3) @ B
    mu_o, mu_m = means[:, o_idx], means[:, m_idx]
    c = mu_m - (B @ mu_o[..., None])[..., 0]
    # log N(x_o) = x_o.(Q mu_o) - 1/2 x_o^T Q x_o - 1/2 mu_o^T Q mu_o - 1/2 log|Sigma_oo| - ...
    Q_mu = (Q @ mu_o[..., None])[..., 0]
    i, j = np.triu_indices(o)
    eta = np.concatenate([Q_mu, -np.where(i == j, 0.5, 1.0) * Q[..., i, j]], axis=2)
    log_norm = 0.5 * np.sum(Q_mu * mu_o, axis=2) + half_log_det_oo[:, common] + 0.5 * o * LOG_2PI
    # the rows sorted by pattern (a fit already sorts them), their T(x_o), and one matrix
    # product per pattern with its natural parameters, on contiguous slices
    n_p = common.shape[0]
    position = np.full(pattern.max() + 1, -1)
    position[common] = np.arange(n_p)
    order = np.argsort(position[pattern], kind="stable")
    rows, mine = rows[order], position[pattern][order]
    x_oT = np.ascontiguousarray(X[rows[:, None], o_idx[mine]].T)  # (o, n_rows)
    TT = np.empty((o + o * (o + 1) // 2, rows.shape[0]))  # statistic-major T(x_o)
    TT[:o] = x_oT
    packed_products(x_oT, TT[o:])
    T, x_o = TT.T, x_oT.T
    bounds = np.concatenate([[0], np.cumsum(np.bincount(mine, minlength=n_p))])
    table = np.ascontiguousarray(np.moveaxis(eta, 0, 2))  # (n_p, n_stats_obs, K)
    values = np.empty((rows.shape[0], K))
    for p in range(n_p):
        np.matmul(T[bounds[p] : bounds[p + 1]], table[p], out=values[bounds[p] : bounds[p + 1]])
    values -= log_norm.T[mine]
    values += offset
    log_prob[rows] = values
    return _Patterns(rows, mine, bounds, T, x_o, np.concatenate([o_idx, m_idx], axis=1), B, c, C)


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
    (K, d, d)) of the rows, from their (weighted) responsibilities."""
    K, d = state.n_components, state.n_features
    first = np.zeros((K, d))
    second = np.zeros((K, d, d))
    for group in state.groups:
        r = np.ascontiguousarray(resp[group.rows].T)  # (K, n_s)
        first += (r[:, None, :] @ group.filled)[:, 0]
        second += np.swapaxes(group.filled * r[:, :, None], 1, 2) @ group.filled
        n_patterns, s = group.missing.shape
        if s:
            # each pattern's responsibility mass times its conditional covariance, added
            # at (k, m_i, m_j): one bincount over flat positions
            k = np.arange(K)[:, None]
            mass = np.bincount(
                (k * n_patterns + group.pattern).ravel(), r.ravel(), K * n_patterns
            ).reshape(K, n_patterns)
            m = group.missing.T  # (s, n_patterns)
            flat = (k[None, None] * d + m[:, None, None, :]) * d + m[None, :, None, :]
            second += np.bincount(flat.ravel(), (group.cond_cov * mass).ravel(), K * d * d).reshape(
                K, d, d
            )
    for patterns in state.patterns:
        f, S = _pattern_moments(patterns, resp, d)
        first += f
        second += S
    return first, second


def _pattern_moments(patterns: _Patterns, resp: Array, d: int) -> tuple[Array, Array]:
    """First and second moments of the rows of common patterns, from each pattern's
    sums N, s1 = sum r x_o and S2 = sum r x_o x_o^T and the affine map x_m = c + B x_o:
    the (m, o) block is c s1^T + B S2 and the (m, m) block N c c^T + c (B s1)^T +
    (B s1) c^T + B S2 B^T + N Cov[x_m | x_o]."""
    B, c, C = patterns.regression, patterns.intercept, patterns.cond_cov
    K, n_p, _, o = B.shape
    r = resp[patterns.rows]
    # every pattern's sums of r_nk T(x_o), one matrix product each
    T, bounds = patterns.stats, patterns.bounds
    sums = np.empty((n_p, T.shape[1], K))
    for p in range(n_p):
        np.matmul(T[bounds[p] : bounds[p + 1]].T, r[bounds[p] : bounds[p + 1]], out=sums[p])
    sums = np.moveaxis(sums, 2, 0)  # (K, n_p, n_stats_obs)
    k = np.arange(K)[:, None]
    N = np.bincount((k * n_p + patterns.pattern).ravel(), r.T.ravel(), K * n_p).reshape(K, n_p)
    s1 = sums[..., :o]
    i, j = np.triu_indices(o)
    S2 = np.empty((K, n_p, o, o))
    S2[..., i, j] = sums[..., o:]
    S2[..., j, i] = sums[..., o:]
    Bs1 = (B @ s1[..., None])[..., 0]  # (K, n_p, s)
    BS2 = B @ S2  # (K, n_p, s, o)
    cs1 = c[..., :, None] * s1[..., None, :]
    Z = np.empty((K, n_p, d, d))
    Z[..., :o, :o] = S2
    Z[..., o:, :o] = cs1 + BS2
    Z[..., :o, o:] = np.swapaxes(Z[..., o:, :o], 2, 3)
    cBs1 = c[..., :, None] * Bs1[..., None, :]
    Z[..., o:, o:] = (
        N[..., None, None] * (c[..., :, None] * c[..., None, :] + C)
        + cBs1
        + np.swapaxes(cBs1, 2, 3)
        + BS2 @ np.swapaxes(B, 2, 3)
    )
    F = np.concatenate([s1, N[..., None] * c + Bs1], axis=2)  # (K, n_p, d)
    # back from (observed, missing) order to the columns' own
    back = np.argsort(patterns.order, axis=1)  # (n_p, d)
    line = np.arange(n_p)
    first = F[:, line[:, None], back].sum(axis=1)
    second = Z[:, line[:, None, None], back[:, :, None], back[:, None, :]].sum(axis=1)
    return first, second


def conditional_means(state: MissingState, resp: Array, log_scale: bool = False) -> Array:
    """E[x | x_obs] = sum_k p(k | x_obs) E_k[x | x_obs], (n, d), in centred coordinates;
    with ``log_scale`` (rows are log x), E[e^x | x_obs] instead."""
    n = resp.shape[0]
    out = np.empty((n, state.n_features))
    for group in state.groups:
        values = group.filled
        if log_scale:
            # E[e^x] of a normal x is e^(mean + var / 2)
            var = np.zeros_like(values)
            s = group.missing.shape[1]
            diag = group.cond_cov[np.arange(s), np.arange(s)][..., group.pattern]  # (s, K, n)
            var[:, np.arange(len(group.rows))[:, None], group.missing[group.pattern]] = np.moveaxis(
                diag, 0, 2
            )
            values = np.exp(values + 0.5 * var)
        out[group.rows] = np.einsum("nk,knd->nd", resp[group.rows], values)
    for patterns in state.patterns:
        o = patterns.regression.shape[3]
        mine, x_o = patterns.pattern, patterns.observed
        # E_k[x_m | x_o] = c + B x_o for every row and component, (K, n_rows, s)
        x_m = patterns.intercept[:, mine] + np.einsum(
            "knso,no->kns", patterns.regression[:, mine], x_o
        )
        if log_scale:
            var = np.diagonal(patterns.cond_cov, axis1=2, axis2=3)[:, mine]  # (K, n_rows, s)
            x_o, x_m = np.exp(x_o), np.exp(x_m + 0.5 * var)
        rows = patterns.rows[:, None]
        out[rows, patterns.order[mine, :o]] = x_o
        out[rows, patterns.order[mine, o:]] = np.einsum("nk,kns->ns", resp[patterns.rows], x_m)
    return out

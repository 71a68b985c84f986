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

__all__ = [
    "MissingState",
    "conditional_means",
    "dense_precisions",
    "missing_log_prob",
    "missing_statistics",
    "packed_statistics",
    "spd_inverse",
]

Array = NDArray[np.floating[Any]]
LOG_2PI = float(np.log(2.0 * np.pi))


class _Group(NamedTuple):
    """Rows with the same number s of missing coordinates, under every component."""

    rows: NDArray[np.intp]  # (n_s,) positions in the block of rows
    pattern: NDArray[np.intp]  # (n_s,) each row's pattern, indexing `missing`
    missing: NDArray[np.intp]  # (n_patterns, s) each pattern's missing coordinates
    filled: Array  # (K, n_s, d) E_k[x | x_obs]: observed values, conditional means
    cond_cov: Array  # (s, s, K, n_patterns) Cov_k[x_m | x_obs] = P_mm^-1, batch last


class MissingState(NamedTuple):
    """What the E-step of rows with missing values leaves for their statistics."""

    groups: list[_Group]
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
    for k in range(s):
        pivot = W[k, k].copy()
        log_det += np.log(pivot)
        inverse = 1.0 / pivot
        W[k] *= inverse
        for i in range(s):
            if i != k:
                factor = W[i, k].copy()
                W[i] -= factor * W[k]
                W[i, k] = -factor * inverse
        W[k, k] = inverse
    return W, log_det


def _pattern_ids(missing: NDArray[np.bool_]) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """(index of a first row of each distinct pattern, each row's pattern)."""
    keys = np.packbits(missing, axis=1)
    if keys.shape[1] <= 8:  # up to 64 columns: one integer per row
        wide = np.zeros((keys.shape[0], 8), dtype=np.uint8)
        wide[:, : keys.shape[1]] = keys
        key = wide.view(np.uint64).ravel()
        if key.shape[0] > 1 and (key[1:] >= key[:-1]).all():
            # rows already sorted by pattern (a fit sorts them): patterns are runs
            new = np.flatnonzero(key[1:] != key[:-1]) + 1
            first = np.concatenate([[0], new])
            pattern = np.zeros(key.shape[0], dtype=np.intp)
            pattern[new] = 1
            return first, np.cumsum(pattern)
        _, first, pattern = np.unique(key, return_index=True, return_inverse=True)
        return first, pattern.reshape(-1)
    _, first, pattern = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return first, pattern.reshape(-1)


def _groups(observed: NDArray[np.bool_]) -> Iterator[tuple[Any, ...]]:
    """(rows, each row's pattern, each pattern's missing coordinates) per number of
    missing coordinates."""
    missing = ~observed
    counts = missing.sum(axis=1)
    values = np.unique(counts)
    for s in values:
        rows = np.flatnonzero(counts == s) if values.shape[0] > 1 else np.arange(counts.shape[0])
        first, pattern = _pattern_ids(missing[rows])
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
    groups = []
    for rows, pattern, coords in _groups(observed):
        s = coords.shape[1]
        # P_mm of every (pattern, component), batch last: (s, s, K, n_patterns)
        blocks = P[:, coords.T[:, None, :], coords.T[None, :, :]].transpose(1, 2, 0, 3)
        cond_cov, log_det_mm = spd_inverse(blocks)
        obs = observed[rows]
        x = np.where(obs, X[rows], 0.0)
        delta = x[None] - means[:, None, :]
        delta *= obs  # (K, n_s, d), 0 where missing
        v = delta @ P
        maha = np.einsum("knd,knd->kn", delta, v)
        n_s = rows.shape[0]
        at = coords[pattern]  # (n_s, s): each row's missing coordinates
        line = np.arange(n_s)[:, None]
        v_m = np.moveaxis(v[:, line, at], 2, 0)  # (s, K, n_s)
        # P_mm^-1 v_m, and its share of the Mahalanobis distance
        shift = np.zeros_like(v_m)
        for i in range(s):
            for j in range(s):
                shift[i] += cond_cov[i, j][:, pattern] * v_m[j]
        maha -= np.einsum("ikn,ikn->kn", v_m, shift)
        const = half_log_det[:, None] - 0.5 * log_det_mm[:, pattern] - 0.5 * (d - s) * LOG_2PI
        log_prob[rows] = (const - 0.5 * maha).T + offset
        filled = np.broadcast_to(x, (K, n_s, d)).copy()
        filled[:, line, at] = means[:, at] - np.moveaxis(shift, 0, 2)
        groups.append(_Group(rows, pattern, coords, filled, cond_cov))
    return log_prob, MissingState(groups, K, d)


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
    return first, second


def packed_statistics(structure_name: str, first: Array, second: Array) -> tuple[Array, Array]:
    """(sum_t, shared) as the covariance structure lays out its statistics, from the
    first and second moments of :func:`missing_statistics`."""
    if structure_name == "full":
        i, j = np.triu_indices(first.shape[1])
        return np.concatenate([first, second[:, i, j]], axis=1), np.zeros(0)
    if structure_name == "tied":  # x x^T sums over components into the shared scatter
        return first, second.sum(axis=0).ravel()
    if structure_name == "diag":
        return np.concatenate([first, np.diagonal(second, axis1=1, axis2=2)], axis=1), np.zeros(0)
    # spherical: x and ||x||^2
    return np.concatenate([first, np.trace(second, axis1=1, axis2=2)[:, None]], axis=1), np.zeros(0)


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
    return out

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
    cond_cov: Array  # (K, n_patterns, s, s) Cov_k[x_m | x_obs] = P_mm^-1


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
    matrices (..., s, s), by Gauss-Jordan sweeps vectorized over the stack (LAPACK's
    per-matrix call costs more than the arithmetic of a 3 x 3 inverse)."""
    A = np.array(A, dtype=np.float64)  # a copy, swept in place
    s = A.shape[-1]
    log_det = np.zeros(A.shape[:-2])
    for k in range(s):
        pivot = A[..., k, k].copy()
        log_det += np.log(pivot)
        col = A[..., :, k].copy()
        row = A[..., k, :] / pivot[..., None]
        A -= col[..., :, None] * row[..., None, :]
        A[..., :, k] = col / pivot[..., None]
        A[..., k, :] = row
        A[..., k, k] = -1.0 / pivot
    return -A, log_det  # sweeping every pivot leaves -A^-1


def _groups(observed: NDArray[np.bool_]) -> Iterator[tuple[Any, ...]]:
    """(rows, each row's pattern, each pattern's missing coordinates) per number of
    missing coordinates."""
    missing = ~observed
    counts = missing.sum(axis=1)
    for s in np.unique(counts):
        rows = np.flatnonzero(counts == s)
        keys = np.packbits(missing[rows], axis=1)
        _, first, pattern = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        coords = np.nonzero(missing[rows[first]])[1].reshape(first.shape[0], int(s))
        yield rows, pattern.reshape(-1), coords


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
    groups = []
    for rows, pattern, coords in _groups(observed):
        s = coords.shape[1]
        cond_cov, log_det_mm = spd_inverse(P[:, coords[:, :, None], coords[:, None, :]])
        obs = observed[rows]
        x = np.where(obs, X[rows], 0.0)
        delta = x[None] - means[:, None, :] * obs[None]  # (K, n_s, d), 0 where missing
        v = delta @ P
        at = coords[pattern][None]  # (1, n_s, s): each row's missing coordinates
        v_m = np.take_along_axis(v, at, axis=2)
        shift = np.einsum("knij,knj->kni", cond_cov[:, pattern], v_m)
        maha = np.einsum("knd,knd->kn", delta, v) - np.einsum("kni,kni->kn", v_m, shift)
        const = half_log_det[:, None] - 0.5 * log_det_mm[:, pattern] - 0.5 * (d - s) * LOG_2PI
        log_prob[rows] = (const - 0.5 * maha).T + offset
        filled = np.broadcast_to(x, (K, *x.shape)).copy()
        np.put_along_axis(filled, at, means[:, coords[pattern]] - shift, axis=2)
        groups.append(_Group(rows, pattern, coords, filled, cond_cov))
    return log_prob, MissingState(groups, K, d)


def missing_statistics(state: MissingState, resp: Array) -> tuple[Array, Array]:
    """(first moments sum_n r_nk E_k[x], (K, d); second moments sum_n r_nk E_k[x x^T],
    (K, d, d)) of the rows, from their (weighted) responsibilities."""
    K, d = state.n_components, state.n_features
    first = np.zeros((K, d))
    second = np.zeros((K, d, d))
    for group in state.groups:
        r = resp[group.rows].T  # (K, n_s)
        first += np.einsum("kn,knd->kd", r, group.filled)
        second += np.swapaxes(group.filled * r[:, :, None], 1, 2) @ group.filled
        if group.missing.shape[1]:
            # sum over a pattern's rows of r_nk, times its conditional covariance
            mass = np.zeros((K, group.missing.shape[0]))
            np.add.at(mass, (slice(None), group.pattern), r)
            k = np.arange(K)[:, None, None, None]
            i = group.missing[None, :, :, None]
            j = group.missing[None, :, None, :]
            np.add.at(second, (k, i, j), mass[:, :, None, None] * group.cond_cov)
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
            diag = np.diagonal(group.cond_cov, axis1=-2, axis2=-1)[:, group.pattern]
            np.put_along_axis(var, group.missing[group.pattern][None], diag, axis=2)
            values = np.exp(values + 0.5 * var)
        out[group.rows] = np.einsum("nk,knd->nd", resp[group.rows], values)
    return out

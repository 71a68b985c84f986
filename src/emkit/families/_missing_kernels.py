"""Compiled loops for the exact E-step of Gaussian rows with missing coordinates.

Optional: used when Numba is installed (``pip install "emkit[fast]"``); without it
:mod:`emkit.families._gaussian_missing` runs the same algebra vectorized in NumPy, which
has to build arrays for every (row, component) and every (pattern, component) and pass
over them many times. These loops do each row's work in place, with the GIL released so
that blocks of rows run in parallel; the products over all rows stay with BLAS in the
caller (below).

For a row with missing coordinates m (s of them), x0 the row with 0 at m, and a
component with precision P and mean mu (centred coordinates):

    g = P_m. x0,  v = g - b,  b = (P mu)_m - P_mm mu_m,  C = P_mm^-1
    log N(x_obs) = [x0.(P mu) - x0^T P x0 / 2 + complete-data constant]
                   - g.mu_m + v.C v / 2 + const,
    const = -(mu_m.(P_mm mu_m - 2 (P mu)_m) + log |P_mm| - s log 2 pi) / 2
    E[x_m | x_obs] = y = mu_m - C v,   Cov[x_m | x_obs] = C

(the derivation is in :mod:`emkit.families._gaussian_missing`; the tests check both
forms against the same row-by-row reference).

The caller gives the loops G = x0 [P_1 .. P_K, P mu] for all rows and components
(one BLAS product, whose columns at m are the g of each component), and after them
forms sum_n r_nk E_k[x x^T] as F_k^T F_k (BLAS again) from the rows the loops fill,
F_k = sqrt(r_k) E_k[x | x_obs]. The per-(pattern, component) algebra works on tiles of
_TILE patterns x K components laid out last, so that its elimination runs over
contiguous vectors that the compiler vectorizes; a loop over the 8 or so components of
one pattern alone would be too short for the vector body.
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

from emkit._compiled_modules import numba_module

__all__ = ["kernels"]

LOG_2PI = math.log(2.0 * math.pi)

# Patterns per tile of the per-(pattern, component) algebra: x K components make the
# length of its vector loops.
_TILE = 16


@functools.cache
def kernels() -> Any:
    """The compiled loops (compiled on first use and cached on disk), or None when
    Numba is not installed."""
    numba = numba_module()
    if numba is None:
        return None
    # reassoc lets reductions be vectorized and contract fuses multiply-adds; NaN and
    # infinity semantics are kept (no nnan / ninf)
    jit = numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"}, error_model="numpy")
    return SimpleNamespace(
        pattern_algebra=jit(_pattern_algebra),
        rows_log_prob=jit(_rows_log_prob),
        rows_fill=jit(_rows_fill),
        scatter_covariances=jit(_scatter_covariances),
    )


def _pattern_algebra(
    Pt: Any, P_mu_t: Any, means_t: Any, coords: Any, C: Any, b: Any, mu_m: Any, const: Any
) -> None:
    """Per (pattern, component): C = P_mm^-1, b, mu_m and const (the terms defined
    above), on tiles: pattern p, component k is slot q = (p % _TILE) K + k of tile
    p // _TILE, ``C`` (n_tiles, s, s, _TILE K), ``b`` and ``mu_m`` (n_tiles, s,
    _TILE K), ``const`` (n_tiles, _TILE K); the slots past the last pattern repeat it.
    The parameters come components last: ``Pt`` (d, d, K), ``P_mu_t`` and ``means_t``
    (d, K); ``coords`` is (n_p, s).

    P_mm is inverted in place by Gauss-Jordan elimination without pivoting (every
    pivot of a positive-definite matrix is a Schur complement's diagonal, > 0), and
    log |P_mm| is the sum of the logs of the pivots."""
    n_p, s = coords.shape
    K = Pt.shape[2]
    n_tiles, _, _, width = C.shape
    pivots = np.empty((s, width))
    det = np.empty(width)
    factor = np.empty(width)
    multiple = np.empty(width)
    P_mu_m = np.empty((s, width))
    for tile in range(n_tiles):
        W = C[tile]
        mu = mu_m[tile]
        # gather P_mm, mu_m and (P mu)_m: K contiguous values at a time
        for slot in range(_TILE):
            m = coords[min(tile * _TILE + slot, n_p - 1)]
            lo = slot * K
            for i in range(s):
                for k in range(K):
                    mu[i, lo + k] = means_t[m[i], k]
                    P_mu_m[i, lo + k] = P_mu_t[m[i], k]
                for j in range(i + 1):
                    for k in range(K):
                        value = Pt[m[i], m[j], k]
                        W[i, j, lo + k] = value
                        W[j, i, lo + k] = value
        # b = (P mu)_m - P_mm mu_m, and the quadratic part of const
        for q in range(width):
            const[tile, q] = 0.0
            det[q] = 1.0
        for i in range(s):
            for q in range(width):
                factor[q] = 0.0
            for j in range(s):
                for q in range(width):
                    factor[q] += W[i, j, q] * mu[j, q]
            for q in range(width):
                b[tile, i, q] = P_mu_m[i, q] - factor[q]
                const[tile, q] += mu[i, q] * (factor[q] - 2.0 * P_mu_m[i, q])
        for pivot in range(s):
            row = W[pivot]
            for q in range(width):
                pivots[pivot, q] = row[pivot, q]
                det[q] *= row[pivot, q]
                factor[q] = 1.0 / row[pivot, q]
            for j in range(s):
                for q in range(width):
                    row[j, q] *= factor[q]
            for i in range(s):
                if i == pivot:
                    continue
                other = W[i]
                for q in range(width):
                    multiple[q] = other[pivot, q]
                for j in range(s):  # every loop over q runs over contiguous memory
                    for q in range(width):
                        other[j, q] -= multiple[q] * row[j, q]
                for q in range(width):
                    other[pivot, q] = -multiple[q] * factor[q]
            for q in range(width):
                row[pivot, q] = factor[q]
        for q in range(width):
            if 0.0 < det[q] < math.inf:
                log_det = math.log(det[q])
            else:  # the product left the floating-point range: one log per pivot
                log_det = 0.0
                for pivot in range(s):
                    log_det += math.log(pivots[pivot, q])
            const[tile, q] = -0.5 * (const[tile, q] + log_det - s * LOG_2PI)


def _rows_log_prob(
    G: Any,
    x0: Any,
    rows: Any,
    pattern: Any,
    coords: Any,
    C: Any,
    b: Any,
    mu_m: Any,
    const: Any,
    constant: Any,
    lp: Any,
    y: Any,
) -> None:
    """Each row's log N(x_obs) + constant under every component into ``lp`` (n, K),
    and its conditional means E_k[x_m | x_obs] into ``y`` (n_s, K, s). ``G`` (n,
    K d + K) holds P_k x0 at columns k d to k d + d - 1 and x0.(P_k mu_k) at K d + k;
    ``constant`` (K,) is the complete-data constant."""
    s = coords.shape[1]
    d = x0.shape[1]
    K = constant.shape[0]
    v = np.empty(s)
    for i in range(rows.shape[0]):
        r = rows[i]
        p = pattern[i]
        tile = p // _TILE
        base = (p % _TILE) * K
        m = coords[p]
        x = x0[r]
        Gr = G[r]
        for k in range(K):
            q = base + k
            quad0 = 0.0
            for a in range(d):
                quad0 += Gr[k * d + a] * x[a]
            term = constant[k] + Gr[K * d + k] - 0.5 * quad0 + const[tile, q]
            for j in range(s):
                g = Gr[k * d + m[j]]
                term -= g * mu_m[tile, j, q]
                v[j] = g - b[tile, j, q]
            quad = 0.0
            for j in range(s):
                w = 0.0
                for t in range(s):
                    w += C[tile, j, t, q] * v[t]
                quad += v[j] * w
                y[i, k, j] = mu_m[tile, j, q] - w
            lp[r, k] = term + 0.5 * quad


def _rows_fill(
    x0: Any, rows: Any, pattern: Any, coords: Any, y: Any, root: Any, F: Any, mass: Any
) -> None:
    """F[k, r] = sqrt(r_k) E_k[x | x_obs] for each row (``root`` (K, n) holds
    sqrt(r)), and each (pattern, component)'s responsibility mass into ``mass``
    (n_tiles, _TILE K), laid out as the algebra's tiles."""
    s = coords.shape[1]
    d = x0.shape[1]
    K = root.shape[0]
    for i in range(rows.shape[0]):
        r = rows[i]
        p = pattern[i]
        tile = p // _TILE
        base = (p % _TILE) * K
        m = coords[p]
        x = x0[r]
        for k in range(K):
            scale = root[k, r]
            mass[tile, base + k] += scale * scale
            Fk = F[k, r]
            for a in range(d):
                Fk[a] = scale * x[a]
            for j in range(s):
                Fk[m[j]] = scale * y[i, k, j]


def _scatter_covariances(coords: Any, C: Any, mass: Any, second: Any) -> None:
    """Add each (pattern, component)'s responsibility mass times its conditional
    covariance C at the rows and columns m of ``second`` (K, d, d)."""
    n_p, s = coords.shape
    K = second.shape[0]
    for p in range(n_p):
        tile = p // _TILE
        base = (p % _TILE) * K
        m = coords[p]
        for k in range(K):
            q = base + k
            weight = mass[tile, q]
            if weight == 0.0:
                continue
            target = second[k]
            for i in range(s):
                for j in range(s):
                    target[m[i], m[j]] += weight * C[tile, i, j, q]

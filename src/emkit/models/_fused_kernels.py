"""One compiled pass for exact EM on Gaussian mixtures (optional: Numba).

The NumPy E-step of a Gaussian mixture builds the statistics T of every row of a chunk
(x and packed x x^T for full covariances, x and x**2 for diagonal ones), multiplies
them by the natural parameters (one matrix product), takes the softmax in NumPy or
:mod:`emkit.models._softmax_kernels`, and multiplies the responsibilities back into T
(a second product): each step one pass over
arrays of the whole chunk, written to memory and read back, and a Python call.
``bench/profile_iteration.py`` found those passes, not the arithmetic, to be most of an
iteration with few features (2, 8), where the products have tiny shapes, and a large
share of it with many.

This kernel does the same arithmetic on tiles of rows that stay in L2 cache, in one call
that releases the GIL (so the in-memory engine's threads run chunks in parallel):

    T = (1, x, s(x))                             (s: packed x x^T, x**2 or ||x||^2;
                                                  statistic-major: a contiguous row each)
    log p(x, k) = eta_k . T                      (BLAS; eta_k0 = log pi_k - log_norm_k)
    r_k = w exp(log p(x, k) - m) / total,  m = max_k log p(x, k)   (the softmax kernel's
                                                                    arithmetic)
    sums_k += sum_rows r_k T                     (BLAS, in the rows' dtype; the tiles'
                                                  sums added in float64)

so the results are the NumPy path's up to the order of the sums (the tests compare the
two to 1e-12 in float64). The statistic 1 makes the first product add the constants and
the second one give N_k. A float32 block is computed in float32 (statistics, products,
exp), its tiles' sums added in float64.
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np

from emkit.models._softmax_kernels import constants

__all__ = ["LAYOUTS", "gaussian_e_step", "kernels", "tile_rows"]

# The second-order statistics the kernel builds after x (see gaussian_e_step).
LAYOUTS = ("full", "diag", "spherical")

# Bytes of a tile's statistics (S x rows): they stay in L2 cache between the products.
_TILE_BYTES = 1 << 17
# Rows per tile at least (short products run BLAS below its speed) and at most.
_TILE_MIN, _TILE_MAX = 128, 2048


def tile_rows(n_stats: int, itemsize: int) -> int:
    """Rows per tile for ``n_stats`` statistics of ``itemsize`` bytes."""
    return int(min(max(_TILE_BYTES // (n_stats * itemsize), _TILE_MIN), _TILE_MAX))


# Partial sums per reduction over a tile's rows: two vectors of float64 (one of float32)
# on AVX-512, so the loop that fills them is a vector loop.
_LANES = 16


@functools.cache
def kernels() -> Any:
    """The compiled loop (compiled on first use and cached on disk), or None when Numba
    is not installed."""
    try:
        import numba
    except ImportError:
        return None
    # contract fuses multiply-adds; no reassoc: the exp's argument reduction and the lane
    # order of the sums stay as written, and NaN and infinity semantics are kept
    jit = numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
    return SimpleNamespace(gaussian_e_step=jit(_gaussian_e_step))


def gaussian_e_step(
    XT: Any, eta: Any, layout: str, floor: float, weights: Any, tile: int | None = None
) -> tuple[Any, Any, Any]:
    """Exact EM's statistics of the rows ``XT`` (d, n) (feature-major, C-contiguous,
    float64 or float32) under Gaussian components whose statistics are T = (x, s(x)),
    ``s`` by ``layout``: ``'full'`` packed x x^T (``np.triu_indices`` order), ``'diag'``
    x**2, ``'spherical'`` ||x||^2. ``eta`` (K, 1 + n_stats) in ``XT``'s dtype: their
    natural parameters after a column 0 of ``log pi_k - log_norm_k``. ``weights``: (n,) or
    None (all 1); ``floor``: where ``log p - m`` is clipped before the exp; ``tile``: rows
    a tile (default: :func:`tile_rows`).

    Returns (sums (K, 1 + n_stats) float64: sum_n w_n r_nk (1, T_n); m (n,), total (n,)
    in ``XT``'s dtype, so that each row's log-likelihood is ``m + log(total)``). Requires
    :func:`kernels`."""
    n = XT.shape[1]
    sums = np.zeros(eta.shape)
    m, total = np.empty(n, dtype=XT.dtype), np.empty(n, dtype=XT.dtype)
    coef, bias, shift = constants(XT.dtype)
    tile = tile_rows(eta.shape[1], XT.dtype.itemsize) if tile is None else tile
    bits = np.empty(tile, dtype=bias.dtype)
    w = np.empty(0) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    kernels().gaussian_e_step(
        XT,
        eta,
        LAYOUTS.index(layout),
        XT.dtype.type(floor),
        w,
        coef,
        bits,
        bits.view(XT.dtype),
        bias,
        shift,
        sums,
        m,
        total,
    )
    return sums, m, total


def _gaussian_e_step(
    XT: Any,
    eta: Any,
    layout: Any,
    floor: Any,
    weights: Any,
    coef: Any,
    bits: Any,
    scale: Any,
    bias: Any,
    shift: Any,
    sums: Any,
    m: Any,
    total: Any,
) -> None:
    """The loops of :func:`gaussian_e_step` (``layout``: its index in ``LAYOUTS``):
    ``coef``, ``bias``, ``shift`` from :func:`~emkit.models._softmax_kernels.constants`;
    ``bits`` (tile,) integers of the dtype's width and ``scale`` the same memory as
    floats (2^n is built in its exponent bits)."""
    d, n = XT.shape
    K, S = eta.shape
    tile = bits.shape[0]
    c13, c12, c11, c10, c9, c8, c7, c6, c5, c4, c3, c2, c1, c0 = coef[:14]
    log2e, ln2_hi, ln2_lo, half, zero = coef[14:]
    weighted = weights.shape[0] > 0
    short = coef.itemsize == 4  # float32
    poly = np.empty(tile, dtype=XT.dtype)
    whole = np.empty((S, tile), dtype=XT.dtype)
    for lo in range(0, n, tile):
        hi = min(lo + tile, n)
        width = hi - lo
        # T = (1, x, second-order statistics), statistic-major (a contiguous row each)
        T = whole if width == tile else np.empty((S, width), dtype=XT.dtype)
        one = T[0]
        for b in range(width):
            one[b] = c0
        for i in range(d):
            xi = XT[i, lo:hi]
            t = T[1 + i]
            for b in range(width):
                t[b] = xi[b]
        if layout == 0:  # full: packed x x^T, row by row of the upper triangle
            at = 1 + d
            for i in range(d):
                xi = XT[i, lo:hi]
                for j in range(i, d):
                    xj = XT[j, lo:hi]
                    t = T[at]
                    for b in range(width):
                        t[b] = xi[b] * xj[b]
                    at += 1
        elif layout == 1:  # diag: x**2
            for i in range(d):
                xi = XT[i, lo:hi]
                t = T[1 + d + i]
                for b in range(width):
                    t[b] = xi[b] * xi[b]
        else:  # spherical: ||x||^2
            t = T[1 + d]
            for b in range(width):
                t[b] = zero
            for i in range(d):
                xi = XT[i, lo:hi]
                for b in range(width):
                    t[b] += xi[b] * xi[b]
        lp = np.dot(eta, T)  # (K, width): log p(x, k)
        # the softmax, as _softmax_kernels._softmax_columns
        mt = m[lo:hi]
        tt = total[lo:hi]
        row0 = lp[0]
        for b in range(width):
            mt[b] = row0[b]
            tt[b] = zero
        for k in range(1, K):
            row = lp[k]
            for b in range(width):
                if row[b] > mt[b]:
                    mt[b] = row[b]
        for k in range(K):
            row = lp[k]
            for b in range(width):
                x = row[b] - mt[b]
                # comparisons, not min/max: a NaN stays NaN (and spreads to the row)
                if x < floor:
                    x = floor
                if x > zero:
                    x = zero
                nf = np.floor(x * log2e + half)
                r = (x - nf * ln2_hi) - nf * ln2_lo
                p = c7
                if not short:  # float64: to r^13 (float32: to r^7, truncation 7e-9)
                    p = c13
                    p = p * r + c12
                    p = p * r + c11
                    p = p * r + c10
                    p = p * r + c9
                    p = p * r + c8
                    p = p * r + c7
                p = p * r + c6
                p = p * r + c5
                p = p * r + c4
                p = p * r + c3
                p = p * r + c2
                p = p * r + c1
                poly[b] = p * r + c0
                bits[b] = (np.int64(nf) + bias) << shift
            for b in range(width):
                e = poly[b] * scale[b]
                row[b] = e
                tt[b] += e
        if weighted:
            for b in range(width):
                poly[b] = weights[lo + b] / tt[b]
        else:
            for b in range(width):
                poly[b] = c0 / tt[b]
        for k in range(K):
            row = lp[k]
            for b in range(width):
                row[b] *= poly[b]
        part = np.dot(lp, T.T)  # (K, S): sum_b r_kb T_b, in the rows' dtype
        for k in range(K):
            for s in range(S):
                sums[k, s] += part[k, s]

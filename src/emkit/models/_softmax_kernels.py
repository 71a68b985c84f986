"""A compiled softmax for exact EM's responsibilities (optional: Numba, ``emkit[fast]``).

:class:`~emkit.models.mixing.Exact` turns log p(x_n, k) into responsibilities in NumPy
with seven passes over the ``n x K`` block (max, subtract, clip, exp, sum, log, scale);
on data with few features that is most of an EM iteration (``bench/profile_iteration.py``:
the softmax phase of the 1m-2d workload). This kernel does the same arithmetic in two
passes over tiles of rows that stay in L1 cache, with an exp the compiler vectorizes.

The block comes component-major, ``a`` (K, n) C-contiguous: the transpose of the
``log_prob`` that the E-step's matrix product ``(eta @ T^T)^T`` leaves, so each pass runs
over contiguous rows of ``a`` and every component's loop is a vector loop over rows.

The exp: with n = round(x / ln 2) and r = x - n ln 2 (ln 2 in two parts, so r is exact
to the last bit), exp(x) = 2^n exp(r), |r| <= ln(2) / 2, exp(r) by its Taylor series to
r^13 (truncation below 1e-17 relative) and 2^n built in the exponent bits. Inputs are
clipped to the responsibility floor first (-600 in float64, -60 in float32), so 2^n is
always a normal number; the result is within a few units in the last place of
``np.exp`` (the tests compare the two paths to 1e-13).
"""

from __future__ import annotations

import functools
import math
from types import SimpleNamespace
from typing import Any

import numpy as np

__all__ = ["kernels"]

# Rows per tile: K x _TILE values of float64 stay in L1 cache between the two passes.
_TILE = 256

_LOG2E = 1.0 / math.log(2.0)
# ln 2 = _LN2_HI + _LN2_LO, _LN2_HI with its last 11 bits zero: n * _LN2_HI is exact
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
# 1 / j! for the Taylor series of exp(r), j = 13 down to 2
_INV_FACTORIALS = tuple(1.0 / math.factorial(j) for j in range(13, 1, -1))


@functools.cache
def kernels() -> Any:
    """The compiled softmax (compiled on first use and cached on disk), or None when
    Numba is not installed."""
    try:
        import numba
    except ImportError:
        return None
    # contract fuses multiply-adds; no reassoc: the sums over components run in the
    # same order as NumPy's, and NaN and infinity semantics are kept
    jit = numba.njit(cache=True, nogil=True, fastmath={"contract"}, error_model="numpy")
    return SimpleNamespace(softmax_columns=jit(_softmax_columns))


def _softmax_columns(a: Any, floor: float, weights: Any, m: Any, total: Any) -> None:
    """Responsibilities of the columns of ``a`` (K, n), in place: ``a[k, j]`` becomes
    ``w_j exp(a[k, j] - m_j) / total_j`` with ``m_j = max_k a[k, j]``, the difference
    clipped to [``floor``, 0] before the exp, and ``total_j`` its sum over k (in k
    order), written to ``m`` and ``total`` (n,). ``weights`` (n,) or empty (all 1)."""
    K, n = a.shape
    c13, c12, c11, c10, c9, c8, c7, c6, c5, c4, c3, c2 = _INV_FACTORIALS
    weighted = weights.shape[0] > 0
    bits = np.empty(_TILE, dtype=np.int64)
    scale = bits.view(np.float64)
    poly = np.empty(_TILE, dtype=np.float64)
    for lo in range(0, n, _TILE):
        hi = min(lo + _TILE, n)
        width = hi - lo
        mt = m[lo:hi]
        tt = total[lo:hi]
        row0 = a[0, lo:hi]
        for j in range(width):
            mt[j] = row0[j]
            tt[j] = 0.0
        for k in range(1, K):
            row = a[k, lo:hi]
            for j in range(width):
                if row[j] > mt[j]:
                    mt[j] = row[j]
        for k in range(K):
            row = a[k, lo:hi]
            for j in range(width):
                x = np.float64(row[j]) - np.float64(mt[j])
                # comparisons, not min/max: a NaN stays NaN (and spreads to the row)
                if x < floor:
                    x = floor
                if x > 0.0:
                    x = 0.0
                nf = math.floor(x * _LOG2E + 0.5)
                r = (x - nf * _LN2_HI) - nf * _LN2_LO
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
                poly[j] = (p * r + 1.0) * r + 1.0
                bits[j] = (np.int64(nf) + 1023) << 52
            for j in range(width):
                e = poly[j] * scale[j]
                row[j] = e
                tt[j] += e
        if weighted:
            for j in range(width):
                poly[j] = weights[lo + j] / tt[j]
        else:
            for j in range(width):
                poly[j] = 1.0 / tt[j]
        for k in range(K):
            row = a[k, lo:hi]
            for j in range(width):
                row[j] *= poly[j]

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
r^13 (truncation below 1e-17 relative; in float32 to r^7, below 1e-8, a sixth fewer
operations a value) and 2^n built in the exponent bits. Inputs are
clipped to the responsibility floor first (-600 in float64, -60 in float32), so 2^n is
always a normal number; the result is within a few units in the last place of
``np.exp`` (the tests compare the two paths to 1e-13 in float64). A float32 block is
computed in float32 throughout (16 values per vector instead of 8).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from emkit._compiled_modules import compiled_module

__all__ = ["constants", "kernels", "softmax_columns"]

# Rows per tile: K x _TILE values stay in L1 cache between the two passes.
_TILE = 256

# ln 2 = hi + lo, hi with its last bits zero (11 in float64, 15 in float32) so that
# n * hi is exact for every n the floor allows
LN2 = {
    np.dtype(np.float64): (6.93147180369123816490e-01, 1.90821492927058770002e-10),
    np.dtype(np.float32): (0.693359375, -2.12194440e-4),
}
# exp(r)'s Taylor coefficients 1 / j!, j = 13 down to 0 (Horner's order), and 1 / ln 2
EXP_TAYLOR = tuple(1.0 / math.factorial(j) for j in range(13, -1, -1))
LOG2E = 1.0 / math.log(2.0)
# exponent bias and position of the exponent bits, and the integers of the same width
_EXPONENT = {np.dtype(np.float64): (1023, 52), np.dtype(np.float32): (127, 23)}
_INT = {np.dtype(np.float64): np.int64, np.dtype(np.float32): np.int32}


@functools.cache
def constants(dtype: np.dtype[Any]) -> tuple[Any, Any, Any]:
    """The kernel's constants for ``dtype`` (float64 or float32): an array in ``dtype``
    (so that the arithmetic stays in it) of the coefficients 1 / j! of the Taylor series
    of exp(r), j = 13 down to 0, then 1 / ln 2, ln 2 in two parts, 1/2 and 0; and the
    exponent's bias and bit position as integers of the dtype's width."""
    hi, lo = LN2[dtype]
    values = [*EXP_TAYLOR, LOG2E, hi, lo, 0.5, 0.0]
    bias, shift = _EXPONENT[dtype]
    coef = np.array(values, dtype=dtype)
    coef.flags.writeable = False  # built once per dtype, shared by every call
    return coef, _INT[dtype](bias), _INT[dtype](shift)


def kernels() -> Any:
    """The compiled loops (:mod:`emkit.models._compiled`: the softmax and the one-pass
    E-step, compiled on first use and cached on disk), or None when Numba is not
    installed."""
    return compiled_module("emkit.models._compiled")


def softmax_columns(a: Any, floor: float, weights: Any) -> tuple[Any, Any]:
    """Responsibilities of the columns of ``a`` (K, n), C-contiguous float64 or float32,
    in place: ``a[k, j]`` becomes ``w_j exp(a[k, j] - m_j) / total_j`` with
    ``m_j = max_k a[k, j]``, the difference clipped to [``floor``, 0] before the exp and
    ``total_j`` its sum over k (in k order). Returns (m, total), (n,) in ``a``'s dtype.
    ``weights``: (n,) or None (all 1). Requires :func:`kernels`."""
    n = a.shape[1]
    m, total = np.empty(n, dtype=a.dtype), np.empty(n, dtype=a.dtype)
    coef, bias, shift = constants(a.dtype)
    bits = np.empty(_TILE, dtype=bias.dtype)
    w = np.empty(0) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    kernels().softmax_columns(a, a.dtype.type(floor), w, m, total, coef, bits, bias, shift)
    return m, total

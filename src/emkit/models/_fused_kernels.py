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
that releases the GIL (so the in-memory engine's threads run chunks in parallel), from
the raw rows:

    x = X_n - shift                              (centred and laid out feature-major
                                                  tile by tile: the NumPy route's
                                                  transposed copy of the whole chunk was
                                                  up to 40% of a diag iteration)
    T = (1, x, s(x))                             (s: packed x x^T, x**2 or ||x||^2;
                                                  statistic-major: a contiguous row each)
    log p(x, k) = eta_k . T                      (a compiled loop, or BLAS;
                                                  eta_k0 = log pi_k - log_norm_k)
    r_k = w exp(log p(x, k) - m) / total,  m = max_k log p(x, k)   (the softmax kernel's
                                                                    arithmetic)
    sums_k += sum_rows r_k T                     (in the rows' dtype: a compiled loop
                                                  of sums in vector lanes, or BLAS's
                                                  r T^T or T r^T (its better shape
                                                  where K S is large); the tiles' sums
                                                  added in float64)

so the results are the NumPy path's up to the order of the sums (the tests compare the
two to 1e-12 in float64). The statistic 1 makes the first product add the constants and
the second one give N_k. A float32 block is computed in float32 (statistics, products,
exp), its tiles' sums added in float64. The kernel also gives the largest centred ``|x|``,
so the caller's check for rows far out (which the general route takes) costs no pass.

The shared softmax of a tile and the loops are in :mod:`emkit.models._compiled`.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from emkit.models._softmax_kernels import constants, kernels

__all__ = [
    "LAYOUTS",
    "Tiling",
    "default_plan",
    "gaussian_e_step",
    "kernels",
    "stored_rows",
    "tiling",
]

# The second-order statistics the kernel builds after x (see gaussian_e_step).
LAYOUTS = ("full", "diag", "spherical")

# Bytes of a tile's statistics (S x rows): they stay in L2 cache between the products.
_TILE_BYTES = 1 << 17
# Rows per tile at least (short products run BLAS below its speed) and at most, in
# float64; a float32 tile takes twice the rows (the same bytes).
_TILE_MIN, _TILE_MAX = 128, 2048
# K * S from which BLAS's second product in float64 is T @ r^T instead of r @ T^T: its
# better shape there (bench/profile_fused.py: 200k-16d, 500k-32d diag; 1m-2d is slower
# with it); in float32 it is faster on every workload (1.3x to 2x: 100k-8d, 1m-2d). The
# plans take the compiled second product instead; this is the layout of a plan without it
_TRANSPOSED_FROM = 1024
# The first product is a compiled loop (_compiled.axpy_product: four components and four
# statistics a vector loop) instead of BLAS, whose kernels run at a third to a half of
# their peak with 8 to 32 columns in either dtype (bench/profile_fused.py, the phase: in
# float32 2.3x BLAS's speed on 200k-16d, 1.7x on 500k-32d diag; in float64 2.8x on
# 100k-8d, 1.7x on 1m-2d and 200k-16d, 1.8x on 500k-32d diag). Its terms are added in s
# order as BLAS's are, its multiply-adds fused: the log-densities differ from BLAS's in
# the last bits
# The second product is a compiled loop of K S sums in vector lanes
# (_compiled.dot_products, four rows of r against two of T): BLAS runs these short, wide
# products (K S outputs, a tile long) slowly (bench/profile_fused.py, the phase: in
# float32 6x BLAS's speed on 1m-2d, 2.8x on 100k-8d, 1.8x on 200k-16d and 500k-32d diag;
# in float64 2.6x on 1m-2d, 3x on 100k-8d, 1.6x on 200k-16d, 1.8x on 500k-32d diag).
# Its sums are reassociated (partial sums a lane), as BLAS's blocks reorder theirs: the
# same sums to round-off
# float32's full covariances take both compiled products in their wider blocks (eight
# components a loop in the first, four statistics in the second: twice the sums a load
# feeds, where a float32 vector holds 16 values) on tiles of at least 768 rows (twice
# float64's where that is more: few statistics, long tiles), fewer where S rows of them
# would pass _WIDE_BYTES (L2 is 1 MiB a core on the machine measured): 768 rows is 3 KiB
# a statistic, away from the 4 KiB multiples (1024, 2048 rows) whose rows fall in the
# same L1 sets and ran up to 1.3x slower on 100k-8d and 200k-16d. The one-pass E-step,
# CPU time of one thread, these against the tiles and blocks before (twice float64's
# rows), same process: 100k-8d 1.78 -> 1.50 ms, 200k-16d 20.1 -> 12.8 ms (load 1.3-2;
# 1.63 -> 1.44 and 14.5 -> 13.3 at load 4.5). float64 keeps
# its tiles and blocks (its bits: the tiles' sums and lanes are its summation order)
# and the other layouts theirs (diag and spherical: not measured with them)
_WIDE_ROWS, _WIDE_BYTES = 768, 1 << 19


class Tiling(NamedTuple):
    """How the pass cuts and multiplies (see :func:`tiling`)."""

    rows: int  # rows a tile
    transposed: bool  # the second product as T @ r^T
    axpy: bool  # the first product by the compiled loop
    dots: bool = False  # the second product by the compiled loop
    wide: bool = False  # the compiled products' wider blocks (float32's)


def stored_rows(n_stats: int, layout: str) -> int:
    """The rows of a tile's statistics under the compiled products for ``n_stats``
    statistics (the constant 1 included) of ``layout``: (1, x) for ``'diag'``, whose
    products square x as they read it (:func:`emkit.models._compiled.axpy_squares`,
    ``dot_squares``), all of them otherwise."""
    return 1 + (n_stats - 1) // 2 if layout == "diag" else n_stats


def tiling(n_stats: int, n_components: int, dtype: Any, layout: str = "full") -> Tiling:
    """Rows per tile for ``n_stats`` rows of statistics (the constant 1 included; see
    :func:`stored_rows`) of ``dtype`` in ``layout``, the second product's layout
    (``transposed`` and ``dots`` of
    :func:`emkit.models._compiled.gaussian_e_step`) and the first product's (``axpy``):
    the compiled products in both dtypes, faster than BLAS on every workload of
    ``bench/profile_fused.py``; in float32 with full covariances their wider blocks
    (``wide``) on tiles of at most ``_WIDE_ROWS`` rows."""
    per = 8 // np.dtype(dtype).itemsize  # float32: twice the rows in the same bytes
    transposed = per == 2 or n_components * n_stats >= _TRANSPOSED_FROM
    rows = _TILE_BYTES // (n_stats * np.dtype(dtype).itemsize)
    rows = min(max(rows, per * _TILE_MIN), per * _TILE_MAX)
    if per == 2 and layout == "full":
        rows = min(max(rows, _WIDE_ROWS), _WIDE_BYTES // (4 * n_stats) // 16 * 16)
        return Tiling(max(rows, per * _TILE_MIN), transposed, True, True, True)
    return Tiling(int(rows), transposed, True, True)


def default_plan(n_stats: int, n_components: int, dtype: Any, layout: str) -> Tiling:
    """The pass's plan for ``n_stats`` statistics (the constant 1 included) of ``layout``:
    :func:`tiling` of the rows a tile holds (:func:`stored_rows`). The diagonal layout's
    statistics are written across the tile's rows, a row of x at a time (a store to
    each of 1 + d rows of T): where those rows lie a multiple of 1 KiB apart they fall in
    a few sets of the L1 cache and evict each other (512 float64 rows a tile, d = 31:
    6x the phase's time, bench/profile_fused.py's phase; 256 rows in float32 4x), so such
    a tile takes 8 rows fewer."""
    plan = tiling(stored_rows(n_stats, layout), n_components, dtype, layout)
    if layout == "diag":
        rows = plan.rows
        while rows > 8 and rows * np.dtype(dtype).itemsize % 1024 == 0:
            rows -= 8
        plan = plan._replace(rows=rows)
    return plan


def gaussian_e_step(
    X: Any,
    shift: Any,
    eta: Any,
    layout: str,
    floor: float,
    weights: Any,
    plan: Tiling | None = None,
) -> tuple[Any, Any, Any, float]:
    """Exact EM's statistics of the rows ``X`` (n, d) (float64 or float32, any strides)
    centred by ``shift`` (d,) in ``X``'s dtype and rounded to ``eta``'s (the working
    dtype, float64 or float32), under Gaussian components whose statistics are
    T = (x, s(x)), ``s`` by ``layout``: ``'full'`` packed x x^T (``np.triu_indices``
    order), ``'diag'`` x**2, ``'spherical'`` ||x||^2. ``eta`` (K, 1 + n_stats): their
    natural parameters after a column 0 of ``log pi_k - log_norm_k``. ``weights``: (n,) or
    None (all 1); ``floor``: where ``log p - m`` is clipped before the exp; ``plan``: the
    tiles and products (default: :func:`default_plan`'s).

    Returns (sums (K, 1 + n_stats) float64: sum_n w_n r_nk (1, T_n); m (n,), total (n,)
    in the working dtype, so that each row's log-likelihood is ``m + log(total)``; the
    largest ``|x|`` of the centred rows, for the caller's far-row check). Requires
    :func:`kernels`."""
    n = X.shape[0]
    dtype = eta.dtype
    sums = np.zeros(eta.shape)
    m, total = np.empty(n, dtype=dtype), np.empty(n, dtype=dtype)
    coef, bias, bit_shift = constants(dtype)
    plan = default_plan(eta.shape[1], eta.shape[0], dtype, layout) if plan is None else plan
    bits = np.empty(plan.rows, dtype=bias.dtype)
    reach = np.zeros(plan.rows, dtype=dtype)
    w = np.empty(0) if weights is None else np.ascontiguousarray(weights, dtype=np.float64)
    compiled = kernels()
    where = LAYOUTS.index(layout)
    args = (X, np.asarray(shift, dtype=X.dtype), eta)
    rest = (dtype.type(floor), w, coef, bits, bias, bit_shift, sums, m, total, reach)
    step = compiled.COMPILED_STEPS.get((where, plan.wide)) if plan.axpy and plan.dots else None
    if step is not None:  # only the layout's code to load
        step(*args, *rest)
    else:
        flags = (plan.transposed, plan.axpy, plan.dots, plan.wide)
        compiled.gaussian_e_step(*args, where, *rest, *flags, 4)  # 4: every phase
    return sums, m, total, float(reach.max())

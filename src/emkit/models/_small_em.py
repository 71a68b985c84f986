"""EM iterations of a small Gaussian mixture as one compiled loop (optional: Numba).

This module imports Numba. Only :meth:`emkit.models.mixture.Mixture.block` loads it,
through :func:`emkit._compiled_modules.compiled_module`, on first use and when Numba is
installed. On small data (a few hundred rows, K of a few, d of a few) the arithmetic of
an EM iteration takes microseconds and the interpreter's share of the Python step
(natural parameters, the engine's map, the posterior, the M-step's strategy objects,
the gap, the bound) a hundred; :func:`run` does the iterations of one exact EM fit of
complete in-memory rows, without a prior or known parameters, in a loop of its own:

- the E-step in the whitened form, ``log p(x, k) = log pi_k + 1/2 log|P_k| - d/2 log 2pi
  - 1/2 ||(x - mu_k) U_k||^2`` (``P_k = U_k U_k^T``), the log-sum-exp with the E-step's
  clip of ``log p(x, k) - max`` at ``-600`` (its exps in one vectorized loop a
  component: :func:`_exp_shifted`), the objective, the responsibilities and the
  statistics ``N_k``, ``sum_n r_nk x_n`` and the second moments of the layout;
- the M-step of :class:`~emkit.families.gaussian.GaussianFamily` (``N_k`` floored by
  ``NK_FLOOR``, ``mu_k = S_k / N_k``, the scatter about them, ``scatter / mass + reg_covar``
  or the composed models' constrained maximizer of
  :mod:`emkit.families._covariance_compiled`, whose kernels are called through this
  module's globals), the precision factors with the degeneracy floor's test, the gap
  (:meth:`~emkit.families.gaussian.GaussianFamily.m_step_gap`) and the bound
  ``objective + (Q(new) - Q(old)) / weight`` (:meth:`~emkit.models.mixture.Mixture.
  lower_bound`);
- the driver's rule: it stops after an iteration with ``0 <= change < threshold``
  (``tol``, or ``tol * (floor + |objective|)`` for a relative one), and before one that
  the Python step handles otherwise: a fall of the objective beyond the last slack and
  the driver's round-off tolerance (a smaller one is a change of 0, as the driver has
  it), a non-finite value, a component without mass, a covariance at the degeneracy
  floor, a composed kernel's ``FAILED``, a row beyond the far-row limit. That iteration
  is then the Python step's.

Every iteration's parameters, objective, bound and slack are written to the caller's
arrays (row ``i``: after iteration ``i``). The arithmetic is that of the Python path up
to round-off (the order of sums, the whitened rather than the expanded quadratic form).
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from emkit.families._covariance_compiled import (
    FAILED,
    OK,
    _eigh_descending,
    factor_dense,
    m_step_dense,
    m_step_variances,
)
from emkit.families.gaussian import _FAR as _GAUSSIAN_FAR
from emkit.families.gaussian import _FLOOR_EPS as _GAUSSIAN_FLOOR_EPS
from emkit.families.gaussian import _OUTSIDE as _GAUSSIAN_OUTSIDE
from emkit.models._small_block import DIAG, FULL, TIED
from emkit.models._softmax_kernels import EXP_TAYLOR, LN2, LOG2E
from emkit.models.mixing import NK_FLOOR, resp_floor

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

# why run stopped: converged (the last iteration met the rule), the iterations asked
# for are done, or the next iteration is the Python step's
CONVERGED, EXHAUSTED, HAND_OVER = 0, 1, 2

_EPS = float(np.finfo(np.float64).eps)
# the Python step's constants, read where they are defined (float64 throughout)
_NK_FLOOR = NK_FLOOR
_FLOOR_EPS = float(_GAUSSIAN_FLOOR_EPS)
_LOG_RESP_FLOOR = float(resp_floor(np.float64))
_OUTSIDE = float(_GAUSSIAN_OUTSIDE)
_FAR = float(_GAUSSIAN_FAR)
_LOG_2PI = math.log(2.0 * math.pi)
_DECREASE = 1e3 * _EPS  # emkit.inference.em._decrease_tolerance in float64
# the most terms' factors the loop holds of each kind (a tile of rows of them): 256 KiB
_FACTORS = 1 << 15
# exp's constants, the compiled softmax's (one exp, two loops): ln 2 split in a high part
# with trailing zeros and the rest, 1 / ln 2, and e^r's Taylor coefficients 1/13!, ...,
# 1/1!, 1 (Horner's order)
_LN2_HI, _LN2_LO = LN2[np.dtype(np.float64)]
_LOG2E = LOG2E
_EXP_TAYLOR = EXP_TAYLOR
# log's: the mantissa's bits, 1.0's, sqrt(2), and fdlibm's minimax coefficients of
# log(1 + f) in s^2 (Lg1 .. Lg7)
_MANTISSA = (1 << 52) - 1
_ONE_BITS = 1023 << 52
_SQRT2 = math.sqrt(2.0)
_LG = (
    6.666666666666735130e-01,
    3.999999999940941908e-01,
    2.857142874366239149e-01,
    2.222219843214978396e-01,
    1.818357216161805012e-01,
    1.531383769920937332e-01,
    1.479819860511658591e-01,
)


@_jit
def half_log_det(layout: int, k: int, d: int, pc3: Any, pc2: Any) -> float:
    # 1/2 log|P_k| = sum_j log U_jj (a variance per component: d log u)
    if layout == FULL or layout == TIED:
        kc = 0 if layout == TIED else k
        s = 0.0
        for j in range(d):
            s += math.log(pc3[kc, j, j])
        return s
    if layout == DIAG:
        s = 0.0
        for j in range(d):
            s += math.log(pc2[k, j])
        return s
    return d * math.log(pc2[k, 0])


@_jit
def _quadratic(
    layout: int, k: int, d: int, mu: Any, pc3: Any, pc2: Any, nk: float, sx: Any, s2: Any
) -> float:
    """``tr(P_k S2_k) - 2 mu_k^T P_k sx_k + N_k mu_k^T P_k mu_k``: the statistics' sum of
    ``r_nk (x - mu_k)^T P_k (x - mu_k)`` (without ``tr(P S2)`` for a tied covariance,
    whose second moments are the data's, added once by the caller)."""
    total = 0.0
    if layout == FULL or layout == TIED:
        kc = 0 if layout == TIED else k
        for i in range(d):
            for j in range(d):
                p = 0.0  # P_ij = sum_q U_iq U_jq
                for q in range(max(i, j), d):
                    p += pc3[kc, i, q] * pc3[kc, j, q]
                if layout == FULL:
                    total += p * s2[k, i, j]
                total += p * (nk * mu[k, i] * mu[k, j] - 2.0 * mu[k, i] * sx[k, j])
        return total
    for j in range(d):
        u = pc2[k, j] if layout == DIAG else pc2[k, 0]
        p = u * u
        total += p * (s2[k, j, j] - 2.0 * mu[k, j] * sx[k, j] + nk * mu[k, j] * mu[k, j])
    return total


@intrinsic
def _bits_as_float(typingctx: Any, bits: Any) -> Any:
    """The float64 whose bits are the int64 ``bits`` (LLVM's bitcast)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.float64))

    return types.float64(types.int64), codegen


@intrinsic
def _add_products4(typingctx: Any, sums: Any, at: Any, r: Any, a: Any, b: Any, offset: Any) -> Any:
    """``sums[at:at + 4] += (r * a[offset:offset + 4]) * b[offset:offset + 4]`` (1-d
    float64 C arrays) as one vector of 4 each (LLVM's <4 x double>: IEEE products and
    sums lane by lane, so each of the four sums is the scalar loop's, bit for bit). The
    statistics' sums are chains, each in the rows' order; LLVM vectorizes none of them
    (the arrays may alias), and four side by side do four chains' adds at once."""
    if not all(
        isinstance(x, types.Array) and x.ndim == 1 and x.dtype == types.float64
        for x in (sums, a, b)
    ):
        return None

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        sums_v, at_v, r_v, a_v, b_v, offset_v = args
        vector = ir.VectorType(ir.DoubleType(), 4)

        def pointer(position: int, value: Any, index: Any) -> Any:
            data = context.make_array(signature.args[position])(context, builder, value).data
            return builder.bitcast(builder.gep(data, [index]), vector.as_pointer())

        to = pointer(0, sums_v, at_v)
        ra = vector(ir.Undefined)
        for lane in range(4):
            ra = builder.insert_element(ra, r_v, ir.Constant(ir.IntType(32), lane))
        fa = builder.load(pointer(3, a_v, offset_v), align=8)
        fb = builder.load(pointer(4, b_v, offset_v), align=8)
        products = builder.fmul(builder.fmul(ra, fa), fb)
        builder.store(builder.fadd(builder.load(to, align=8), products), to, align=8)
        return context.get_dummy_value()

    return types.void(sums, at, r, a, b, offset), codegen


# (contract: a product and the sum after it may be one fused multiply-add, where the
# machine has them: Horner's steps in half the operations, each rounded once)
@numba.njit(cache=True, nogil=True, error_model="numpy", fastmath={"contract"})
def _exp_value(x: float) -> float:
    """``exp(x)`` (E-step values in [-600, 0]) to 1 ulp of the C library's (mean 0.06
    ulp): ``2^n e^r`` with ``n = round(x / ln 2)``, ``r`` the rest (Cody and Waite's
    split of ln 2) and ``e^r`` its Taylor polynomial of degree 13 (``|r| <= ln 2 / 2``:
    the remainder is below 1e-17). Inlined in loops that LLVM vectorizes, where the
    library's exp is one call a value: ~0.5 ns a value against ~4.5 (the E-step's
    largest cost, K exps a row). NaN stays NaN."""
    n = math.floor(x * _LOG2E + 0.5)
    r = (x - n * _LN2_HI) - n * _LN2_LO
    p = _EXP_TAYLOR[0]
    for c in _EXP_TAYLOR[1:]:
        p = p * r + c
    # 2^n from its exponent bits (n >= -1022 for x >= -708)
    e = p * _bits_as_float((np.int64(max(n, -1022.0)) + 1023) << 52)  # type: ignore[call-arg]
    return e if x == x else x


@intrinsic
def _float_bits(typingctx: Any, value: Any) -> Any:
    """The int64 whose bits are the float64 ``value`` (LLVM's bitcast)."""

    def codegen(context: Any, builder: Any, signature: Any, args: Any) -> Any:
        return builder.bitcast(args[0], context.get_value_type(types.int64))

    return types.int64(types.float64), codegen


@_jit
def _log_value(x: float) -> float:
    """``log(x)`` of a positive normal ``x`` (the E-step's row totals, in [1, K]) to 1
    ulp (fdlibm's method): ``x = 2^e m`` with ``m`` in [sqrt(1/2), sqrt(2)), ``f = m -
    1``, ``s = f / (2 + f)``, ``log(1 + f) = f - f^2/2 + s (f^2/2 + R(s^2))`` with
    fdlibm's minimax ``R``, and ``e ln 2`` in two parts. Inlined in a loop that LLVM
    vectorizes, where the library's log is one call a value. NaN stays NaN (a total of
    NaN terms: the objective's test hands such an iteration over)."""
    bits: int = _float_bits(x)  # type: ignore[call-arg]
    e = (bits >> 52) - 1023
    m: float = _bits_as_float((bits & _MANTISSA) | _ONE_BITS)
    big = m > _SQRT2
    m = 0.5 * m if big else m
    k = float(e + 1 if big else e)
    f = m - 1.0
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG[1] + w * (_LG[3] + w * _LG[5]))
    t2 = z * (_LG[0] + w * (_LG[2] + w * (_LG[4] + w * _LG[6])))
    half_square = 0.5 * f * f
    value = k * _LN2_HI - ((half_square - (s * (half_square + t1 + t2) + k * _LN2_LO)) - f)
    return value if x == x else x


@_jit
def _log(v: Any) -> None:
    """:func:`_log_value` of every value of ``v`` in place."""
    for i in range(v.shape[0]):
        v[i] = _log_value(v[i])


@_jit
def _exp(v: Any) -> None:
    """:func:`_exp_value` of every value of ``v`` in place."""
    for i in range(v.shape[0]):
        v[i] = _exp_value(v[i])


@_jit
def _exp_shifted(lpk: Any, tops: Any, totals: Any, first: bool) -> None:
    """``lpk = exp(max(lpk - tops, clip))`` (the E-step's clip, :func:`_exp_value`) in
    place, added to the rows' ``totals`` (set by the ``first`` component): one pass over
    the rows a component."""
    for i in range(lpk.shape[0]):
        e = _exp_value(max(lpk[i] - tops[i], _LOG_RESP_FLOOR))
        lpk[i] = e
        totals[i] = e if first else totals[i] + e


@_jit
def _term_factors(
    A: Any, term_a: Any, term_b: Any, lo: int, n_padded: int, out_a: Any, out_b: Any
) -> None:
    """Rows ``lo`` on of the columns ``A`` (as many as ``out_a`` holds, or to the end):
    row i's factors of term t, ``A[term_a[t], lo + i]`` and ``A[term_b[t], lo + i]``, at
    ``i n_padded + t`` of ``out_a`` and ``out_b``."""
    rows = min(A.shape[1] - lo, out_a.shape[0] // n_padded)
    for i in range(rows):
        for t in range(term_a.shape[0]):
            out_a[i * n_padded + t] = A[term_a[t], lo + i]
            out_b[i * n_padded + t] = A[term_b[t], lo + i]


@_jit
def _spectrum_loss(lam: float, mass: float, r: float) -> float:
    # M/2 (log(lam / m) + s / lam - s / m), s = max(lam - r, 0), m = max(s, r)
    s = max(lam - r, 0.0)
    m = max(s, r)
    loss = math.log(lam / m) + s / lam - s / m
    return 0.5 * mass * max(loss, 0.0)


@_jit
def floors(column_scale: Any, var_floor: Any) -> tuple[float, float]:
    """The degeneracy floor's limits (the Gaussian family's): each column's variance
    into ``var_floor`` (d,) (diag), and (the spherical variance's, the dense factors'
    test's)."""
    d = column_scale.shape[0]
    mean_square = 0.0
    for j in range(d):
        var_floor[j] = _FLOOR_EPS * column_scale[j] * column_scale[j]
        mean_square += column_scale[j] * column_scale[j]
    return _FLOOR_EPS * mean_square / d, _FLOOR_EPS * d


@_jit
def m_step(
    layout: int,
    composed: bool,
    codes: Any,
    exact: bool,
    tolerance: float,
    max_cycles: int,
    reg_covar: float,
    weight: float,
    column_scale: Any,
    var_floor: Any,
    sphere_floor: float,
    dense_floor: float,
    shared: Any,
    nk: Any,
    sx: Any,
    s2: Any,
    prev3: Any,
    prev2: Any,
    nkf: Any,
    W3: Any,
    W2: Any,
    mass: Any,
    mass3: Any,
    gap: Any,
    nw: Any,
    nmu: Any,
    ncov3: Any,
    npc3: Any,
    ncov2: Any,
    npc2: Any,
) -> int:
    """The Gaussian family's M-step from the statistics ``nk`` (K,), ``sx`` (K, d) and
    ``s2`` (K, d, d) (symmetric; ``shared``: the rows' sum of ``w x x^T`` for a tied
    covariance) of rows of total ``weight``: the weights ``nw`` and means ``nmu``, the
    covariances and precision factors in the layout's arrays (``ncov3``, ``npc3`` or
    ``ncov2``, ``npc2``), from the previous covariances ``prev3`` / ``prev2`` where a
    composed model iterates, and ``gap[0]`` its maximizer's gap (NaN for the others).
    ``nkf``, the scatter ``W3`` / ``W2`` and its divisors ``mass`` / ``mass3`` are
    written too (the caller's work arrays). ``OK``, or ``FAILED`` where the Python
    M-step must decide: a component without mass, a composed kernel's failure, a
    covariance at the degeneracy floor (``floors``)."""
    K, d = sx.shape[0], sx.shape[1]
    dense = layout == FULL or layout == TIED
    total_nk = 0.0
    for k in range(K):
        nkf[k] = nk[k] + _NK_FLOOR
        if nkf[k] <= 1e-12 * weight:  # a component without mass: kept, with a warning
            return FAILED
        total_nk += nkf[k]
    for k in range(K):
        nw[k] = nkf[k] / total_nk
        for j in range(d):
            nmu[k, j] = sx[k, j] / nkf[k]
    # the scatter about the new means, in the layout, and its mass
    if layout == FULL:
        for k in range(K):
            mass3[k] = nkf[k]
            for i in range(d):
                for j in range(d):
                    W3[k, i, j] = s2[k, i, j] - nkf[k] * nmu[k, i] * nmu[k, j]
    elif layout == TIED:
        mass3[0] = total_nk
        for i in range(d):
            for j in range(d):
                s = shared[i, j]
                for k in range(K):
                    s -= nkf[k] * nmu[k, i] * nmu[k, j]
                W3[0, i, j] = s
    elif layout == DIAG:
        for k in range(K):
            mass[k] = nkf[k]
            for j in range(d):
                W2[k, j] = s2[k, j, j] - nkf[k] * nmu[k, j] * nmu[k, j]
    else:
        for k in range(K):
            mass[k] = d * nkf[k]
            trace = 0.0
            square = 0.0
            for j in range(d):
                trace += s2[k, j, j]
                square += nmu[k, j] * nmu[k, j]
            W2[k, 0] = trace - nkf[k] * square
    gap[0] = math.nan
    for v in W3.ravel():  # (an overflow: the Python M-step's to report)
        if not math.isfinite(v):
            return FAILED
    for v in W2.ravel():
        if not math.isfinite(v):
            return FAILED
    if composed:
        if dense:
            status = m_step_dense(
                W3, mass3, reg_covar, prev3, codes[0], codes[1], codes[2],
                exact, tolerance, max_cycles, ncov3, gap,
            )  # fmt: skip
        else:
            status = m_step_variances(
                W2, mass, reg_covar, prev2, codes[0], codes[1], exact,
                tolerance, max_cycles, ncov2, gap,
            )  # fmt: skip
        if status != OK or not math.isfinite(gap[0]):
            return FAILED
    elif dense:
        for k in range(W3.shape[0]):
            for i in range(d):
                for j in range(d):
                    ncov3[k, i, j] = W3[k, i, j] / mass3[k]
                ncov3[k, i, i] += reg_covar
    else:
        for k in range(K):
            for j in range(W2.shape[1]):
                ncov2[k, j] = W2[k, j] / mass[k] + reg_covar
    # precision factors, or the degeneracy floor's hand-over
    if dense:
        return factor_dense(ncov3, column_scale, dense_floor, npc3)
    for k in range(K):
        for j in range(ncov2.shape[1]):
            v = ncov2[k, j]
            low = var_floor[j] if layout == DIAG else sphere_floor
            if not (math.isfinite(v) and v >= low):
                return FAILED
            npc2[k, j] = 1.0 / math.sqrt(v)
    return OK


@_jit
def run(
    X: Any,
    w: Any,
    shared: Any,
    layout: int,
    composed: bool,
    codes: Any,
    exact: bool,
    tolerance: float,
    max_cycles: int,
    reg_covar: float,
    column_scale: Any,
    far_scale: float,
    weights0: Any,
    means0: Any,
    cov30: Any,
    pc30: Any,
    cov20: Any,
    pc20: Any,
    previous: float,
    slack: float,
    tol: float,
    relative: bool,
    floor: float,
    n_max: int,
    out_w: Any,
    out_means: Any,
    out_cov3: Any,
    out_pc3: Any,
    out_cov2: Any,
    out_pc2: Any,
    out_gap: Any,
    out_obj: Any,
    out_bound: Any,
    out_slack: Any,
) -> tuple[int, int]:
    """Up to ``n_max`` EM iterations from the parameters ``weights0`` (K,), ``means0``
    (K, d) and the covariances and precision factors in the layout's arrays (dense:
    ``cov30``, ``pc30`` (K, d, d), or (1, d, d) tied; variances: ``cov20``, ``pc20`` (K,
    d), or (K, 1) spherical; the other pair empty), for the centred rows ``X`` (n, d)
    with weights ``w`` (n,) (``shared``: their sum of ``w x x^T``, (d, d)); ``previous``
    the objective before the first and ``slack`` how far it may fall (the driver's);
    ``codes`` (volume, shape, orientation) for a ``composed`` model. Returns (iterations
    written, why it stopped)."""
    n, d = X.shape[0], X.shape[1]
    K = weights0.shape[0]
    dense = layout == FULL or layout == TIED
    Kc = cov30.shape[0]
    dv = cov20.shape[1]
    weight = 0.0
    reach = 0.0
    for i in range(n):
        weight += w[i]
        for j in range(d):
            reach = max(reach, abs(X[i, j]))
    var_floor = np.empty(d)
    sphere_floor, dense_floor = floors(column_scale, var_floor)
    # the passes over the rows run along them, each vectorized (k outer, the rows inner),
    # every sum a row's or a column's in the order of the row-major loop (the same values
    # bit for bit): ``A`` the columns x_j and a row of ones, ``resp`` (K, n)
    A = np.empty((d + 1, n))
    for j in range(d):
        for i in range(n):
            A[j, i] = X[i, j]
    A[d] = 1.0
    # the statistics' terms of a component, ``(r_nk A_a) A_b`` summed over the rows: N_k,
    # then S_k, then the second moments of the layout (r x_j x_q as (r x_j) x_q)
    n_terms = 1 + d + (d * (d + 1) // 2 if layout == FULL else 0 if layout == TIED else d)
    term_a = np.empty(n_terms, dtype=np.int64)
    term_b = np.empty(n_terms, dtype=np.int64)
    term_a[0], term_b[0] = d, d
    t = 1
    for j in range(d):
        term_a[t], term_b[t] = j, d
        t += 1
    for j in range(d):
        for q in range(j, d):
            if layout == FULL or (q == j and layout != TIED):
                term_a[t], term_b[t] = j, q
                t += 1
    # each row's factors (A_a, A_b) of the terms, padded to a multiple of 4 terms (0),
    # for a tile of rows at a time (all of them where they fit: the same every
    # iteration; at most _FACTORS values each)
    n_padded = (n_terms + 3) // 4 * 4
    tile = max(1, min(n, _FACTORS // n_padded))
    factor_a = np.zeros(tile * n_padded)
    factor_b = np.zeros(tile * n_padded)
    if tile == n:
        _term_factors(A, term_a, term_b, 0, n_padded, factor_a, factor_b)
    sums = np.empty(K * n_padded)  # component k's terms at k n_padded on
    resp = np.empty((K, n))
    maha = np.empty(n)
    y = np.empty(n)
    zeros = np.zeros(n)
    tops = np.empty(n)
    totals = np.empty(n)
    log_totals = np.empty(n)
    const = np.empty(K)
    # log pi_k and 1/2 log|P_k| of the parameters an iteration starts from, and of those
    # it makes (the next one's: each computed once)
    log_w, next_log_w = np.empty(K), np.empty(K)
    half_det, next_half_det = np.empty(K), np.empty(K)
    nk = np.empty(K)
    nkf = np.empty(K)
    sx = np.empty((K, d))
    s2 = np.empty((K, d, d))
    W3 = np.empty((Kc, d, d))
    W2 = np.empty((0 if dense else K, dv))
    # the divisors of the covariances (dense: Kc of them)
    mass = np.empty(K)
    mass3 = np.empty(Kc)
    work = np.empty((d, d))
    V = np.empty((d, d))
    lam = np.empty(d)
    gap1 = np.empty(1)
    for it in range(n_max):
        if it == 0:
            cw, cmu, ccov3, cpc3, ccov2, cpc2 = weights0, means0, cov30, pc30, cov20, pc20
        else:
            cw, cmu = out_w[it - 1], out_means[it - 1]
            ccov3, cpc3 = out_cov3[it - 1], out_pc3[it - 1]
            ccov2, cpc2 = out_cov2[it - 1], out_pc2[it - 1]
        # rows beyond the far-row limit take the Python step's far route
        u_max = 0.0
        for v in cpc3.ravel():
            u_max = max(u_max, abs(v))
        for v in cpc2.ravel():
            u_max = max(u_max, abs(v))
        mu_max = 0.0
        for v in cmu.ravel():
            mu_max = max(mu_max, abs(v))
        if not reach <= min(_OUTSIDE * far_scale, _FAR / (d * u_max) - mu_max):
            return it, HAND_OVER
        if it == 0:  # (later: the last iteration's bound computed them)
            for k in range(K):
                log_w[k] = math.log(cw[k])
                half_det[k] = half_log_det(layout, k, d, cpc3, cpc2)
        for k in range(K):
            const[k] = log_w[k] + half_det[k] - 0.5 * d * _LOG_2PI
        # -- E-step ---------------------------------------------------------------------
        # log p(x, k) for every row, component by component (one pass over the rows a
        # column: the whitened coordinates' terms and their squares summed as they come,
        # the last column's pass giving log p and the rows' largest), then
        # ``exp(max(log p - largest, clip))`` and the rows' totals in one more pass each
        tops[:] = -math.inf
        for k in range(K):
            c, lpk = const[k], resp[k]
            kc = 0 if layout == TIED else k
            for j in range(d):
                if dense:
                    # y = sum_{q < j} (x_q - mu_q) U_qj, then the column's own term below
                    for q in range(j):
                        m, u, xq = cmu[k, q], cpc3[kc, q, j], A[q]
                        if q == 0:
                            for i in range(n):
                                y[i] = 0.0 + (xq[i] - m) * u
                        else:
                            for i in range(n):
                                y[i] += (xq[i] - m) * u
                    m, u = cmu[k, j], cpc3[kc, j, j]
                else:
                    m, u = cmu[k, j], cpc2[k, j] if layout == DIAG else cpc2[k, 0]
                # (no terms before the column's own: a diagonal factor, the first column)
                yj = y if dense and j > 0 else zeros
                xj = A[j]
                if j == 0 and j == d - 1:
                    for i in range(n):
                        s = yj[i] + (xj[i] - m) * u
                        v = c - 0.5 * (s * s)
                        lpk[i] = v
                        tops[i] = max(tops[i], v)
                elif j == 0:
                    for i in range(n):
                        s = yj[i] + (xj[i] - m) * u
                        maha[i] = s * s
                elif j < d - 1:
                    for i in range(n):
                        s = yj[i] + (xj[i] - m) * u
                        maha[i] += s * s
                else:
                    for i in range(n):
                        s = yj[i] + (xj[i] - m) * u
                        v = c - 0.5 * (maha[i] + s * s)
                        lpk[i] = v
                        tops[i] = max(tops[i], v)
        for k in range(K):
            _exp_shifted(resp[k], tops, totals, k == 0)
        # (the logs and the divisions in loops of their own: vectorized, where the sum's
        # chain keeps its loop scalar)
        for i in range(n):
            log_totals[i] = _log_value(totals[i])
        loglik = 0.0
        for i in range(n):
            loglik += w[i] * (log_totals[i] + tops[i])
        for i in range(n):
            totals[i] = w[i] / totals[i]
        # the statistics: each term's sum of (r_nk A_a) A_b in the rows' order, four terms
        # of a component at a time (:func:`_add_products4`: four sums side by side)
        sums[:] = 0.0
        for lo in range(0, n, tile):
            rows = min(n - lo, tile)
            if tile < n:
                _term_factors(A, term_a, term_b, lo, n_padded, factor_a, factor_b)
            for i in range(rows):
                scale = totals[lo + i]
                for k in range(K):
                    r = resp[k, lo + i] * scale  # r_nk
                    for t in range(0, n_padded, 4):
                        at, offset = k * n_padded + t, i * n_padded + t
                        _add_products4(sums, at, r, factor_a, factor_b, offset)  # type: ignore[call-arg]
        s2[:] = 0.0
        for k in range(K):
            nk[k] = sums[k * n_padded]
            for t in range(1, n_terms):
                v = sums[k * n_padded + t]
                if t <= d:
                    sx[k, t - 1] = v
                else:
                    s2[k, term_a[t], term_b[t]] = v
        for k in range(K):
            for j in range(d):
                for q in range(j):
                    s2[k, j, q] = s2[k, q, j]
        objective = loglik / weight
        if not math.isfinite(objective):
            return it, HAND_OVER
        change = objective - previous
        if change < 0.0:
            # the driver's allowance: the last M-step's slack and its round-off tolerance
            # (fit_em's _decrease_tolerance); a larger fall (which the model's round-off
            # estimate may still allow, or which is reported) is the Python step's
            if -change <= slack + _DECREASE * max(1.0, abs(objective)):
                change = 0.0
            else:
                return it, HAND_OVER
        # -- M-step ---------------------------------------------------------------------
        nw, nmu = out_w[it], out_means[it]
        ncov3, npc3, ncov2, npc2 = out_cov3[it], out_pc3[it], out_cov2[it], out_pc2[it]
        status = m_step(
            layout, composed, codes, exact, tolerance, max_cycles, reg_covar, weight,
            column_scale, var_floor, sphere_floor, dense_floor, shared, nk, sx, s2, ccov3, ccov2,
            nkf, W3, W2, mass, mass3, gap1, nw, nmu, ncov3, npc3, ncov2, npc2,
        )  # fmt: skip
        if status != OK:
            return it, HAND_OVER
        gap = gap1[0]
        # the M-step's gap (GaussianFamily.m_step_gap): measured by a composed model
        if math.isnan(gap):
            gap = 0.0
            if reg_covar != 0.0:
                if dense:
                    for k in range(Kc):
                        if not _eigh_descending(ncov3[k], lam, V, work):
                            return it, HAND_OVER
                        for j in range(d):
                            gap += _spectrum_loss(lam[j], mass3[k], reg_covar)
                else:
                    for k in range(K):
                        for j in range(dv):
                            gap += _spectrum_loss(ncov2[k, j], mass[k], reg_covar)
        out_gap[it] = gap if composed else math.nan
        # the bound: objective + (Q(new) - Q(old)) / weight, under this E-step's q
        lift = 0.0
        for k in range(K):
            next_log_w[k] = math.log(nw[k])
            next_half_det[k] = half_log_det(layout, k, d, npc3, npc2)
            lift += nk[k] * (next_log_w[k] - log_w[k])
            lift += nk[k] * (next_half_det[k] - half_det[k])
            lift -= 0.5 * (
                _quadratic(layout, k, d, nmu, npc3, npc2, nk[k], sx, s2)
                - _quadratic(layout, k, d, cmu, cpc3, cpc2, nk[k], sx, s2)
            )
        if layout == TIED:  # -1/2 tr((P' - P) sum_n w_n x_n x_n^T)
            for i in range(d):
                for j in range(d):
                    p_new = 0.0
                    p_old = 0.0
                    for q in range(max(i, j), d):
                        p_new += npc3[0, i, q] * npc3[0, j, q]
                        p_old += cpc3[0, i, q] * cpc3[0, j, q]
                    lift -= 0.5 * (p_new - p_old) * shared[i, j]
        out_obj[it] = objective
        out_bound[it] = objective + lift / weight
        slack = gap / weight
        out_slack[it] = slack
        threshold = tol * (floor + abs(objective)) if relative else tol
        if 0.0 <= change < threshold:
            return it + 1, CONVERGED
        previous = objective
        log_w, next_log_w = next_log_w, log_w
        half_det, next_half_det = next_half_det, half_det
    return n_max, EXHAUSTED

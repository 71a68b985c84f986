"""The passes of a small Gaussian mixture outside its EM loop, compiled (optional: Numba).

This module imports Numba; :class:`emkit.GaussianMixture` loads it through
:func:`emkit._compiled_modules.compiled_module` where Numba is loaded already. A sweep of
:class:`emkit.ModelBasedClustering` starts every fit (561 on faithful) from a partition
of the rows and ends every cell with one pass over them; the Python start (the
statistics through the engine, the M-step's strategy objects) spent ~35 us of
interpreter a start, the Python pass (natural parameters, an engine's chunk, an (n, K)
matrix for three reductions) ~70 us a cell, on faithful (272 x 2), where the arithmetic
takes a few. Each is one loop here:

- :func:`start`: the partition's statistics (``N_k``, ``sum x``, the layout's second
  moments), then the M-step of the compiled EM loop (:mod:`emkit.models._small_em`,
  whose composed maximizers and precision factors, those of
  :mod:`emkit.families._covariance_compiled`, the Python M-step calls too), handing
  back to the Python start what it must decide (a component without mass, a covariance
  at the degeneracy floor);
- :func:`cell_values`: each row's log-density, log of its largest posterior (mclust's
  ICL term) and most likely component, ``log p(x, k) = log pi_k + 1/2 log|P_k| - d/2
  log 2pi - 1/2 ||(x - mu_k) U_k||^2`` in the whitened form (``P_k = U_k U_k^T``,
  scikit-learn's ``precisions_cholesky_``), as the compiled EM loop's E-step, where the
  Python pass takes the expanded form ``T(x) eta_k - A(eta_k)`` (they agree to
  round-off); per row, ``M = max_k log p(x, k)`` reached ``m`` times (its first ``k``
  the row's component) and ``s`` the sum of ``exp(log p(x, k) - M)`` over the other
  entries: ``log p(x) = M + log(m) + log1p(s / m)``
  (:func:`emkit.estimators.selection._log_sum_exp_rows`'s form) and ``M - log p(x)``.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

from emkit.families._covariance_compiled import OK
from emkit.models._small_block import DIAG, FULL, TIED
from emkit.models._small_em import floors, half_log_det, m_step

__all__ = ["OK", "cell_values", "start"]

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

_LOG_2PI = math.log(2.0 * math.pi)


@_jit
def cell_values(
    X: Any, means: Any, log_weights: Any, pc3: Any, pc2: Any, layout: int, out: Any
) -> None:
    """``out[i]`` = (log p(x_i), max_k log p(k | x_i), argmax_k p(k | x_i)) for the rows
    ``X`` (n, d) and the components' ``means`` (K, d) (both in the same coordinates),
    ``log_weights`` (K,) and precision factors: ``pc3`` (K, d, d), or (1, d, d) for a
    shared one, with ``pc2`` empty; or ``pc2`` (K, d), or (K, 1) for one variance a
    component, with ``pc3`` empty (``layout`` says which)."""
    n, d = X.shape[0], X.shape[1]
    K = log_weights.shape[0]
    dense = layout == FULL or layout == TIED
    const = np.empty(K)
    for k in range(K):
        const[k] = log_weights[k] + half_log_det(layout, k, d, pc3, pc2) - 0.5 * d * _LOG_2PI
    lp = np.empty(K)
    diff = np.empty(d)
    for i in range(n):
        top = -math.inf
        arg = 0
        for k in range(K):
            for j in range(d):
                diff[j] = X[i, j] - means[k, j]
            maha = 0.0
            if dense:
                kc = 0 if layout == TIED else k
                for j in range(d):  # y = (x - mu) U
                    # (every q: a factor set by hand may be lower triangular, L L^T = P,
                    # which the model's own pass accepts; U's zeros add nothing)
                    y = 0.0
                    for q in range(d):
                        y += diff[q] * pc3[kc, q, j]
                    maha += y * y
            else:
                for j in range(d):
                    u = pc2[k, j] if layout == DIAG else pc2[k, 0]
                    s = diff[j] * u
                    maha += s * s
            v = const[k] - 0.5 * maha
            lp[k] = v
            if v > top:  # (strictly: the first of equal entries, as argmax)
                top = v
                arg = k
        m = 0.0
        s = 0.0
        for k in range(K):
            if lp[k] == top:
                m += 1.0
            else:
                s += math.exp(lp[k] - top)
        total = top + math.log(m) + math.log1p(s / m)
        out[i, 0] = total
        out[i, 1] = top - total
        out[i, 2] = arg


@_jit
def start(
    X: Any,
    labels: Any,
    shared: Any,
    layout: int,
    composed: bool,
    codes: Any,
    exact: bool,
    tolerance: float,
    max_cycles: int,
    reg_covar: float,
    column_scale: Any,
    prev3: Any,
    prev2: Any,
    out_w: Any,
    out_means: Any,
    out_cov3: Any,
    out_pc3: Any,
    out_cov2: Any,
    out_pc2: Any,
    out_gap: Any,
) -> int:
    """The M-step from a partition of the centred rows ``X`` (n, d): ``labels`` (n,) in
    0..K-1 (-1: a row left out), K the length of ``out_w``; ``shared`` the rows' sum of
    ``x x^T`` (d, d) for a shared covariance. Into ``out_*``: the weights (K,), means (K,
    d) and the covariances and precision factors in the layout's arrays (dense:
    ``out_cov3``, ``out_pc3`` (K, d, d), or (1, d, d) shared; variances: ``out_cov2``,
    ``out_pc2`` (K, d), or (K, 1) spherical; the other pair empty), and ``out_gap[0]``
    the composed maximizer's gap from the previous covariances ``prev3`` / ``prev2``
    (NaN otherwise). ``OK``; ``FAILED`` where the Python M-step must decide (a component
    without mass, a non-finite scatter, a composed kernel's failure, a covariance at the
    degeneracy floor)."""
    n, d = X.shape[0], X.shape[1]
    K = out_w.shape[0]
    dense = layout == FULL or layout == TIED
    Kc = out_cov3.shape[0]
    dv = out_cov2.shape[1]
    # the statistics of the partition: N_k, S_k and the layout's second moments
    nk = np.zeros(K)
    sx = np.zeros((K, d))
    s2 = np.zeros((K, d, d))
    for i in range(n):
        k = labels[i]
        if k < 0:
            continue
        nk[k] += 1.0
        for j in range(d):
            x = X[i, j]
            sx[k, j] += x
            if layout == FULL:
                for q in range(j, d):
                    s2[k, j, q] += x * X[i, q]
            elif layout != TIED:
                s2[k, j, j] += x * x
    for k in range(K):  # (the lower triangle: the loop's symmetric s2)
        for j in range(d):
            for q in range(j):
                s2[k, j, q] = s2[k, q, j]
    # the M-step of emkit.models._small_em.run, from these statistics (every row counts
    # in the total weight, as the Python start has it)
    var_floor = np.empty(d)
    sphere_floor, dense_floor = floors(column_scale, var_floor)
    return m_step(
        layout, composed, codes, exact, tolerance, max_cycles, reg_covar, float(n),
        column_scale, var_floor, sphere_floor, dense_floor, shared, nk, sx, s2, prev3, prev2,
        np.empty(K), np.empty((Kc, d, d)), np.empty((0 if dense else K, dv)), np.empty(K),
        np.empty(Kc), out_gap, out_w, out_means, out_cov3, out_pc3, out_cov2, out_pc2,
    )  # fmt: skip

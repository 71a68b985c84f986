"""The compiled M-step of mclust's composed covariance models (optional: Numba).

This module imports Numba. Only :func:`emkit.families.covariance.kernels` imports
imports it, on first use and when Numba is installed; :class:`~emkit.families.covariance.
Composed` documents the arithmetic (block-coordinate ascent over volume, shape and
orientation) and keeps the NumPy path these loops reproduce. Two entry points, each
compiled once (one signature: float64 C arrays, integer codes):

- :func:`m_step_dense`: covariances ``lambda_k D_k A_k D_k^T`` (K, d, d), the models
  whose orientation is estimated (VEE, EVE, VVE, EEV, VEV, EVV; the codes also cover
  EEE and VVV);
- :func:`m_step_variances`: axis-aligned covariances, a diagonal (K, d) or a variance
  per component (K, 1) (EII, EEI, VEI, EVI; also VII and VVI).

The factors are coded ``_EQUAL`` / ``_VARIABLE`` (and ``_IDENTITY`` for a shape), so one
loop serves every model. At the sizes of model-based clustering (d of a few, K up to
about 10) LAPACK's per-call set-up costs more than the arithmetic: the symmetric
eigen-decompositions are cyclic Jacobi sweeps and the Cholesky factors plain loops.
A compiled function calls another through the module's globals (never a closure), so
Numba's disk cache serves new processes.
"""

from __future__ import annotations

import math
from typing import Any

import numba
import numpy as np

_jit = numba.njit(cache=True, nogil=True, error_model="numpy")

# the codes of a factor (the third for a shape only)
_EQUAL, _VARIABLE, _IDENTITY = 0, 1, 2
# what the kernels return: done, or the NumPy path must do it (no convergence)
OK, FAILED = 0, 1

_TINY = float(np.finfo(np.float64).tiny)
_RELATIVE_FLOOR = 1e-100
_JACOBI_SWEEPS = 60


@_jit
def _geometric_mean(x: Any) -> float:
    # exp(mean(log(max(x, tiny))))
    s = 0.0
    for j in range(x.shape[0]):
        s += math.log(max(x[j], _TINY))
    return math.exp(s / x.shape[0])


@_jit
def _unit(x: Any, out: Any) -> None:
    """``x`` (d,) positive, scaled to a product of one into ``out``; entries kept above
    ``_RELATIVE_FLOOR`` times the largest (Composed's ``_unit``)."""
    d = x.shape[0]
    top = x[0]
    for j in range(1, d):
        top = max(top, x[j])
    low = max(_RELATIVE_FLOOR * top, _TINY)
    for j in range(d):
        out[j] = max(x[j], low)
    g = _geometric_mean(out)
    for j in range(d):
        out[j] /= g


@_jit
def _eigh_descending(a: Any, w: Any, v: Any, work: Any) -> bool:
    """Eigenvalues (decreasing, into ``w``) and eigenvectors (columns of ``v``) of the
    symmetric ``a`` (d, d), by cyclic Jacobi rotations on ``work`` (d, d); eigenvalues
    kept above ``_RELATIVE_FLOOR`` times the largest (Composed's ``_eigh_descending``).
    False when the sweeps did not converge (a non-finite ``a``).

    Each rotation of columns and rows p, q by ``t = tan(theta)``, the smaller root of
    ``t^2 + 2 zeta t - 1 = 0`` with ``zeta = (a_qq - a_pp) / (2 a_pq)``, zeroes ``a_pq``."""
    d = a.shape[0]
    total = 0.0
    for i in range(d):
        for j in range(d):
            work[i, j] = a[i, j]
            v[i, j] = 1.0 if i == j else 0.0
            total += a[i, j] * a[i, j]
    converged = False
    for _ in range(_JACOBI_SWEEPS):
        off = 0.0
        for p in range(d - 1):
            for q in range(p + 1, d):
                off += work[p, q] * work[p, q]
        # the off-diagonal part below 1e-17 of the matrix's norm: diagonal to round-off
        if not off > 1e-34 * total:
            converged = off == off
            break
        for p in range(d - 1):
            for q in range(p + 1, d):
                apq = work[p, q]
                if apq == 0.0:
                    continue
                zeta = (work[q, q] - work[p, p]) / (2.0 * apq)
                if abs(zeta) > 1e150:
                    t = 0.5 / zeta
                else:
                    t = 1.0 / (abs(zeta) + math.sqrt(zeta * zeta + 1.0))
                    if zeta < 0.0:
                        t = -t
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                for k in range(d):  # work R, then R^T (work R), and v R
                    x, y = work[k, p], work[k, q]
                    work[k, p] = c * x - s * y
                    work[k, q] = s * x + c * y
                for k in range(d):
                    x, y = work[p, k], work[q, k]
                    work[p, k] = c * x - s * y
                    work[q, k] = s * x + c * y
                for k in range(d):
                    x, y = v[k, p], v[k, q]
                    v[k, p] = c * x - s * y
                    v[k, q] = s * x + c * y
    if not converged:
        return False
    # selection sort by decreasing eigenvalue, columns of v along
    for i in range(d):
        w[i] = work[i, i]
    for i in range(d - 1):
        best = i
        for j in range(i + 1, d):
            if w[j] > w[best]:
                best = j
        if best != i:
            w[i], w[best] = w[best], w[i]
            for k in range(d):
                v[k, i], v[k, best] = v[k, best], v[k, i]
    low = max(_RELATIVE_FLOOR * w[0], _TINY)
    for i in range(d):
        w[i] = max(w[i], low)
    return True


@_jit
def _cholesky(S: Any, L: Any) -> bool:
    """The lower Cholesky factor of ``S`` (d, d) into ``L`` (its lower triangle); False
    where ``S`` has none (a pivot not positive, NaN included)."""
    d = S.shape[0]
    for j in range(d):
        s = S[j, j]
        for i in range(j):
            s -= L[j, i] * L[j, i]
        if not s > 0.0:
            return False
        L[j, j] = math.sqrt(s)
        for r in range(j + 1, d):
            s = S[r, j]
            for i in range(j):
                s -= L[r, i] * L[j, i]
            L[r, j] = s / L[j, j]
    return True


@_jit
def _rotated_diagonal(V: Any, M: Any, out: Any) -> None:
    """The diagonal of ``V^T M V`` (d, d) into ``out`` (d,): ``out_j = v_j^T M v_j``."""
    d = V.shape[0]
    for j in range(d):
        s = 0.0
        for r in range(d):
            for q in range(d):
                s += V[r, j] * M[r, q] * V[q, j]
        out[j] = s


@_jit
def _shapes(omega: Any, lam: Any, shape: int, A: Any, w: Any, a: Any) -> None:
    """The shapes ``A`` (K, d) (determinant 1) of axis variances ``omega`` (K, d) at
    volumes ``lam``: each component's own (variable), or one from ``sum_k omega_k /
    lam_k`` (equal; ``w``, ``a`` (d,) scratch)."""
    K, d = omega.shape[0], omega.shape[1]
    if shape == _VARIABLE:
        for k in range(K):
            _unit(omega[k], A[k])
        return
    w[:] = 0.0
    for k in range(K):
        for j in range(d):
            w[j] += omega[k, j] / lam[k]
    _unit(w, a)
    for k in range(K):
        A[k] = a


@_jit
def _loss_dense(W: Any, m: Any, cov: Any, L: Any) -> float:
    """``sum_k m_k log|Sigma_k| + tr(W_k Sigma_k^-1)``, by a Cholesky factor of each
    Sigma_k = L L^T (into ``L``, (d, d) scratch); infinite where one has none."""
    K, d = W.shape[0], W.shape[1]
    total = 0.0
    Y = np.empty((d, d))
    z = np.empty(d)
    for k in range(K):
        if not _cholesky(cov[k], L):
            return math.inf
        # log|Sigma| = 2 sum log L_jj; tr(W Sigma^-1) = ||L^-1 W^(1/2)||... as sum_j y_j^T
        # with Y = L^-1 W L^-T: forward-solve the columns of W, then the rows
        logdet = 0.0
        for j in range(d):
            logdet += 2.0 * math.log(L[j, j])
        trace = 0.0
        for c in range(d):  # Y[:, c] = L^-1 W[:, c]
            for r in range(d):
                s = W[k, r, c]
                for i in range(r):
                    s -= L[r, i] * Y[i, c]
                Y[r, c] = s / L[r, r]
        for r in range(d):  # (Y L^-T)[r, r]: solve z^T L^T = Y[r, :] up to entry r
            for c in range(r + 1):
                s = Y[r, c]
                for i in range(c):
                    s -= z[i] * L[c, i]
                z[c] = s / L[c, c]
            trace += z[r]
        total += m[k] * logdet + trace
    return total


@_jit
def _rotation_sweep(U: Any, M: Any, beta: Any) -> None:
    """Composed's ``_rotation_sweep``, in place on ``U`` (d, d) and ``M`` (K, d, d)."""
    K, d = M.shape[0], M.shape[1]
    for i in range(d - 1):
        for j in range(i + 1, d):
            P = 0.0
            Q = 0.0
            for k in range(K):
                diff = beta[k, i] - beta[k, j]
                P += diff * (M[k, i, i] - M[k, j, j])
                Q += diff * M[k, i, j]
            P *= 0.5
            if P * P + Q * Q == 0.0:
                continue
            if -math.hypot(P, Q) >= P:
                continue
            half = 0.5 * math.atan2(-Q, -P)
            c, s = math.cos(half), math.sin(half)
            for r in range(d):
                x, y = U[r, i], U[r, j]
                U[r, i] = c * x + s * y
                U[r, j] = -s * x + c * y
            for k in range(K):
                for r in range(d):
                    x, y = M[k, r, i], M[k, r, j]
                    M[k, r, i] = c * x + s * y
                    M[k, r, j] = -s * x + c * y
                for r in range(d):
                    x, y = M[k, i, r], M[k, j, r]
                    M[k, i, r] = c * x + s * y
                    M[k, j, r] = -s * x + c * y


@_jit
def _volumes(B: Any, A: Any, m: Any, d: int, volume: int, lam: Any) -> float:
    """``lambda`` given shape and orientation (``c_k = sum_j B_kj / A_kj``), into
    ``lam``; returns the objective ``sum_k d m_k log lambda_k + c_k / lambda_k``."""
    K = B.shape[0]
    c = np.empty(K)
    for k in range(K):
        s = 0.0
        for j in range(B.shape[1]):
            s += B[k, j] / A[k, j]
        c[k] = s
    if volume == _VARIABLE:
        for k in range(K):
            lam[k] = max(c[k] / (d * m[k]), _TINY)
    else:
        common = max(c.sum() / (d * m.sum()), _TINY)
        for k in range(K):
            lam[k] = common
    loss = 0.0
    for k in range(K):
        loss += d * m[k] * math.log(lam[k]) + c[k] / lam[k]
    return loss


@_jit
def m_step_dense(
    scatter: Any,
    m: Any,
    reg_covar: float,
    previous: Any,
    volume: int,
    shape: int,
    orientation: int,
    exact: bool,
    tolerance: float,
    max_cycles: int,
    cov: Any,
    gap: Any,
) -> int:
    """The constrained maximizer ``lambda_k D_k A_k D_k^T`` for the scatter (K, d, d)
    (``reg_covar * m_k`` added to its diagonal) and masses ``m`` (K,), into ``cov``;
    ``previous`` (K, d, d), or (0, d, d) for none, starts an iterative model and
    ``gap[0]`` becomes how far below its objective the new covariances are
    (Composed.maximize). Returns ``OK`` or ``FAILED``."""
    K, d = scatter.shape[0], scatter.shape[1]
    W = scatter.copy()
    for k in range(K):
        for j in range(d):
            W[k, j, j] += reg_covar * m[k]
    has_previous = previous.shape[0] == K
    lam = np.ones(K)
    A = np.ones((K, d))
    D = np.zeros((K, d, d))
    for k in range(K):
        for j in range(d):
            D[k, j, j] = 1.0
    w = np.empty(d)
    V = np.empty((d, d))
    work = np.empty((d, d))
    C = np.zeros((d, d))
    B = np.empty((K, d))
    M = np.empty((K, d, d))
    if has_previous and not exact:
        # the start: the previous covariances' factors (shared ones averaged)
        if orientation == _EQUAL:
            C[:] = 0.0
            for k in range(K):
                if not _eigh_descending(previous[k], w, V, work):
                    return FAILED
                # (the volume: the geometric mean of the unfloored eigenvalues)
                s = 0.0
                for j in range(d):
                    s += math.log(max(work[j, j], _TINY))
                volume_k = math.exp(s / d)
                for i in range(d):
                    for j in range(d):
                        C[i, j] += previous[k, i, j] / volume_k
            if not _eigh_descending(C, w, V, work):
                return FAILED
            for k in range(K):
                D[k] = V
                _rotated_diagonal(V, previous[k], B[k])
                lam[k] = _geometric_mean(B[k])
        else:
            for k in range(K):
                if not _eigh_descending(previous[k], w, D[k], work):
                    return FAILED
                lam[k] = _geometric_mean(w)
        if volume == _EQUAL:
            common = _geometric_mean(lam)
            for k in range(K):
                lam[k] = common
    omega = np.empty((K, d))
    if orientation == _VARIABLE:  # D_k: W_k's eigenvectors whatever the shape is
        for k in range(K):
            if not _eigh_descending(W[k], omega[k], D[k], work):
                return FAILED
    a = np.empty(d)
    beta = np.empty((K, d))
    last = math.inf
    for _ in range(max_cycles):
        if orientation == _VARIABLE:
            _shapes(omega, lam, shape, A, w, a)
            B[:] = omega
        elif shape == _EQUAL:  # one matrix D A D^T: the eigen-decomposition of sum W_k / lam_k
            C[:] = 0.0
            for k in range(K):
                for i in range(d):
                    for j in range(d):
                        C[i, j] += W[k, i, j] / lam[k]
            if not _eigh_descending(C, w, V, work):
                return FAILED
            _unit(w, a)
            for k in range(K):
                D[k] = V
                A[k] = a
                _rotated_diagonal(V, W[k], B[k])
        else:  # variable shapes, one orientation: A_k given D, then D by plane rotations
            U = D[0].copy()
            for k in range(K):
                for i in range(d):
                    for j in range(d):
                        s = 0.0
                        for r in range(d):
                            for q in range(d):
                                s += U[r, i] * W[k, r, q] * U[q, j]
                        M[k, i, j] = s
                for j in range(d):
                    B[k, j] = M[k, j, j]
                _unit(B[k], A[k])
                for j in range(d):
                    beta[k, j] = 1.0 / (lam[k] * A[k, j])
            _rotation_sweep(U, M, beta)
            for k in range(K):
                D[k] = U
                for j in range(d):
                    B[k, j] = M[k, j, j]
        loss = _volumes(B, A, m, d, volume, lam)
        if exact or not last - loss > tolerance * abs(loss):
            break
        last = loss
    for k in range(K):
        for i in range(d):
            for j in range(i, d):
                s = 0.0
                for q in range(d):
                    s += D[k, i, q] * (lam[k] * A[k, q]) * D[k, j, q]
                cov[k, i, j] = s
                cov[k, j, i] = s
    if has_previous:
        # the objective is the unregularized one: what EM's monotonicity is about
        change = 0.5 * (
            _loss_dense(scatter, m, cov, work) - _loss_dense(scatter, m, previous, work)
        )
        gap[0] = max(change, 0.0) if math.isfinite(change) else math.inf
    return OK


@_jit
def m_step_variances(
    scatter: Any,
    m: Any,
    reg_covar: float,
    previous: Any,
    volume: int,
    shape: int,
    exact: bool,
    tolerance: float,
    max_cycles: int,
    cov: Any,
    gap: Any,
) -> int:
    """:func:`m_step_dense` for axis-aligned covariances ``lambda_k A_k``: ``scatter``
    (K, d) the diagonals (or (K, 1) a trace per component, whose mass counts the d
    axes), ``previous`` (K, d) or (0, d), ``cov`` (K, d) the variances."""
    K, d = scatter.shape[0], scatter.shape[1]
    W = np.empty((K, d))
    for k in range(K):
        for j in range(d):
            W[k, j] = scatter[k, j] + reg_covar * m[k]
    lam = np.ones(K)
    A = np.ones((K, d))
    has_previous = previous.shape[0] == K
    if has_previous and not exact:
        for k in range(K):
            lam[k] = _geometric_mean(previous[k])
        if volume == _EQUAL:
            common = _geometric_mean(lam)
            for k in range(K):
                lam[k] = common
    a = np.empty(d)
    w = np.empty(d)
    last = math.inf
    for _ in range(max_cycles):
        if shape != _IDENTITY:
            _shapes(W, lam, shape, A, w, a)
        loss = _volumes(W, A, m, d, volume, lam)
        if exact or not last - loss > tolerance * abs(loss):
            break
        last = loss
    for k in range(K):
        for j in range(d):
            cov[k, j] = lam[k] * A[k, j]
    if has_previous:
        change = 0.0
        for k in range(K):
            for j in range(d):
                change += m[k] * (math.log(cov[k, j]) - math.log(previous[k, j]))
                change += scatter[k, j] / cov[k, j] - scatter[k, j] / previous[k, j]
        change *= 0.5
        gap[0] = max(change, 0.0) if math.isfinite(change) else math.inf
    return OK


@_jit
def factor_dense(cov: Any, column_scale: Any, floor: float, prec_chol: Any) -> int:
    """The precision Cholesky factors of covariances (K, d, d) into ``prec_chol``: U
    upper triangular with ``U U^T = Sigma_k^-1``, ``U = L^-T`` for ``Sigma_k = L L^T``.
    ``OK`` when every factor exists and passes the degeneracy floor's cheap test (the
    smallest eigenvalue of ``D^-1 Sigma_k D^-1`` is at least ``1 / ||D U||_F^2``, with
    ``D = diag(column_scale)``, above ``floor``); ``FAILED`` otherwise, for the NumPy
    path (:meth:`emkit.families.gaussian._Triangular.factor`) to clip or raise."""
    K, d = cov.shape[0], cov.shape[1]
    L = np.empty((d, d))
    for k in range(K):
        if not _cholesky(cov[k], L):
            return FAILED
        # L^-1 by forward substitution, column by column; U = (L^-1)^T
        U = prec_chol[k]
        norm = 0.0
        for c in range(d):
            for r in range(d):
                if r < c:
                    U[c, r] = 0.0
                    continue
                s = 1.0 if r == c else 0.0
                for i in range(c, r):
                    s -= L[r, i] * U[c, i]
                U[c, r] = s / L[r, r]
                x = column_scale[c] * U[c, r]
                norm += x * x
        if not 1.0 / norm >= floor:
            return FAILED
    return OK

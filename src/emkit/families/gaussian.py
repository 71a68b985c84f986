"""The Gaussian family, with its covariance structure as a small strategy object.

In natural form, with precision P = Sigma^-1 = U U^T (U upper triangular),

    log N(x | mu, Sigma) = x.(P mu) - 1/2 x^T P x - 1/2 mu^T P mu + 1/2 log|P| - d/2 log(2 pi)

so the statistics are ``x`` and the products the structure needs (``x x^T`` packed for
``full``, ``x**2`` for ``diag``, ``||x||^2`` for ``spherical``; ``tied`` shares ``x^T P x``
between components, so it needs ``x`` alone plus one resp-independent scatter matrix).

The data are centred once (``shift``) so the expanded quadratic form stays accurate; where
it would still lose precision (float32, badly scaled data) :meth:`GaussianFamily.natural`
flags it and :meth:`GaussianFamily.log_prob` uses the whitened form ``||(x - mu) U||^2``.

A row so far out that its squared distances leave float64 (a value around 1e155 for data
of unit scale) has a log-density of -inf to float64, but a posterior all the same: such
rows go through :func:`far_log_prob`, which keeps the nearest component's distance as a
term shared by all components (the row term) and the others' differences to it finite.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln, multigammaln

from emkit._validation import check_fit_range
from emkit.exceptions import (
    DegenerateComponentError,
    DegenerateComponentWarning,
    EmkitError,
    InputError,
)
from emkit.families._base import (
    Fixed,
    Group,
    Natural,
    check_finite,
    expanded_log_prob,
    expanded_roundoff,
    frozen_components,
    parse_fixed,
    show,
    statistic_rows,
)
from emkit.families._gaussian_missing import (
    MissingState,
    conditional_means,
    full_statistics,
    missing_log_prob,
    missing_statistics,
    triu_indices,
)
from emkit.families._summary import (
    High,
    Low,
    Moments,
    Summary,
    bind_rows,
    column_reduce,
    total_weight,
    weighted_sum,
)
from emkit.families.priors import AttachedGaussianPrior, GaussianPrior, check_prior

__all__ = [
    "COVARIANCE_TYPES",
    "CovarianceStructure",
    "Diag",
    "Full",
    "Gaussian",
    "GaussianFamily",
    "GaussianParams",
    "Spherical",
    "Tied",
    "centred_scale",
    "check_gaussian_prior",
    "covariance_structure",
    "far_log_prob",
]

Array = NDArray[np.floating[Any]]
LOG_2PI = float(np.log(2.0 * np.pi))

# Absolute error (in nats) of a log-density the expanded form may make before the
# whitened form is used instead: float64 stays at sklearn-parity accuracy, float32 at 1e-3.
_EXPANDED_FORM_TOLERANCE = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-3}

# The degeneracy floor. With D = diag(c), c_j the median |x_j - shift_j| of the training
# rows (a scale no outlier moves), every fitted covariance satisfies
# D^-1 Sigma D^-1 >= _FLOOR_EPS * d * I (a variance of column j: >= _FLOOR_EPS * c_j^2).
# Scatter matrices formed from statistics about the shift carry round-off of about
# eps * c_i * c_j in entry (i, j), so an eigenvalue below the floor is zero to working
# precision: the component collapsed onto fewer rows than it has dimensions, or onto a
# subspace, where the likelihood is unbounded. The floor sits at that round-off, so that no
# component a float64 fit can resolve (tight clusters far from the centre included) is
# touched. The set above it is the same at every iteration of a fit, and clipping the
# eigenvalues of the maximizer to it (in the scaled coordinates) is the maximizer of Q
# over that set, so EM on it stays monotone with no slack (eigenvalue-constrained ML, as
# in Hathaway 1985 and Ingrassia 2004). Components held there are reported as degenerate;
# their log-densities are known to about eps * cond(Sigma_k) only, which the driver's
# tolerance takes in (GaussianFamily.objective_roundoff).
_FLOOR_EPS = 1e3 * float(np.finfo(np.float64).eps)

# A row whose whitened distance may exceed this takes the far-row route (far_log_prob):
# beyond it the squared distances (1e12) leave less than 1e-4 nats of their differences
# between components to the one-form evaluation, and beyond 1e154 they overflow.
_FAR = 1e6
# ... and so does a row beyond this many times the largest centred value seen in training.
_OUTSIDE = 2.0
# the largest float64, what an infinite extreme counts in centred_scale
_LARGEST = float(np.finfo(np.float64).max)
# Statistics beyond this fraction of the working dtype's largest number run in float64.
_STAT_RANGE = 1e-6

# Smallest eigenvalue of the 'auto' prior scale, relative to the largest one.
_PRIOR_SCALE_FLOOR = 1e-6

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)


def _singular(
    structure: CovarianceStructure, cov: Array, floored: NDArray[np.bool_], scale: Array
) -> bool:
    """Whether a covariance the M-step held at the degeneracy floor was singular before
    it, not just below the floor: a matrix with no Cholesky factor, or a variance within
    the round-off of the data's own scale (4 eps c_i^2, where the floor is 1e3 eps c_i^2
    times d). With ``reg_covar=0`` that is a fit without a maximum, not one to mend."""
    eps = float(np.finfo(np.float64).eps)
    for k in np.flatnonzero(floored):
        c = cov if structure.shared else cov[k]
        if isinstance(structure, _Variances):
            zero = 4.0 * eps / _FLOOR_EPS * structure.variance_floor(scale)
            if np.any(c <= zero):
                return True
            continue
        try:
            np.linalg.cholesky(c)
        except np.linalg.LinAlgError:
            return True
    return False


class GaussianFixed(NamedTuple):
    """Known Gaussian parameters: means in the user's coordinates, covariances and their
    precision Cholesky factors (NaN for the free components)."""

    means: Fixed | None
    covariances: Fixed | None
    precisions_cholesky: Array | None


class GaussianParams(NamedTuple):
    """Parameters of all Gaussian components, in the family's centred coordinates."""

    means: Array  # (K, d)
    covariances: Array  # full (K, d, d), tied (d, d), diag (K, d), spherical (K,)
    precisions_cholesky: Array  # same shapes; P = U U^T with U upper triangular
    # (K,) the components whose covariance the M-step held at the degeneracy floor
    # (_FLOOR_EPS): they collapsed; None when no M-step made these parameters
    floored: NDArray[np.bool_] | None = None
    # how far the M-step that made these parameters fell below its starting point's value
    # of Q (nats, >= 0), where the structure measures it (CovarianceStructure.maximize);
    # NaN: not measured, the family's own bound applies (GaussianFamily.m_step_gap)
    gap: float = float("nan")


def _cholesky_upper_of_precision(cov: Array) -> Array:
    """U upper triangular with U U^T = cov^-1, for a stack (..., d, d)."""
    # cov = L L^T  =>  cov^-1 = L^-T L^-1 = U U^T with U = L^-T (inv is LAPACK's solve
    # against the identity, without building one)
    return np.linalg.inv(np.linalg.cholesky(cov)).swapaxes(-1, -2)


def _stat_rows(Xc: Array, n_stats: int, out: Array | None) -> tuple[Array, Array]:
    """A statistic-major buffer (``out`` or new) whose first d rows hold x, and x
    feature-major (see :func:`~emkit.families._base.statistic_rows`)."""
    n, d = Xc.shape
    XT = np.ascontiguousarray(Xc.T)  # a view when Xc comes from prepare
    TT = statistic_rows(out, n_stats, n, Xc.dtype)
    TT[:d] = XT
    return XT, TT


@functools.lru_cache(maxsize=64)
def _packing(d: int) -> tuple[NDArray[np.intp], NDArray[np.intp], Array]:
    """The packed upper triangle's row and column indices and the weights of its entries
    in eta (-1/2 on the diagonal, -1 off it: see ``full_natural``), read-only constants
    made once per ``d`` (np.triu_indices costs ~10 us, and every iteration asks)."""
    i, j = triu_indices(d)
    weight = -np.where(i == j, 0.5, 1.0)
    weight.flags.writeable = False
    return i, j, weight


@functools.lru_cache(maxsize=64)
def _unpacking(d: int) -> NDArray[np.intp]:
    """(d * d,) the column of the full statistics (x, then the packed upper triangle of
    x x^T) that holds each entry of x x^T, row-major: ``T.take(index, axis=1)`` is the
    (n, d, d) matrices, flattened."""
    i, j, _ = _packing(d)
    index = np.empty((d, d), dtype=np.intp)
    index[i, j] = d + np.arange(i.shape[0])
    index[j, i] = index[i, j]
    flat = index.ravel()
    flat.flags.writeable = False
    return flat


# the layouts of the covariances and precision factors in the small compiled loops
# (emkit.models._small_em, _small_pass): (K, d, d), one (d, d) shared, (K, d), (K, 1)
FULL_LAYOUT, TIED_LAYOUT, DIAG_LAYOUT, SPHERICAL_LAYOUT = 0, 1, 2, 3


class CovarianceStructure:
    """How one covariance structure shapes the Gaussian statistics and M-step."""

    name: ClassVar[str]
    has_row_term: ClassVar[bool] = False
    dense: ClassVar[bool] = False  # covariances are (d, d) matrices
    shared: ClassVar[bool] = False  # one covariance for all components
    # the statistics are x and these second-order ones ('full': packed x x^T, 'diag':
    # x**2, 'spherical': ||x||^2) and the E-step has no row term: a mixture's E-step may
    # run as one compiled pass (emkit.models._fused_kernels); None: it may not
    fused_layout: ClassVar[str | None] = None
    # maximize() runs compiled loops where Numba is installed (mclust's composed models;
    # scikit-learn's four divide in NumPy and never import Numba)
    compiled_m_step: ClassVar[bool] = False
    # its layout in the small compiled loops (the ``*_LAYOUT`` codes); None: not covered
    compiled_layout: ClassVar[int | None] = None

    def n_stats(self, d: int) -> int:
        raise NotImplementedError

    def statistics(self, Xc: Array, out: Array | None = None) -> Array:
        raise NotImplementedError

    def stat_scale(self, d: int, s: float) -> Array:
        """Largest magnitude each statistic can take when every ``|x_j| <= s``."""
        raise NotImplementedError

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        """(eta, log_norm) in float64 such that log N = T @ eta_k - log_norm_k + row term."""
        raise NotImplementedError

    def row_term(self, Xc: Array, prec_chol: Array) -> Array | None:
        """A log-density term equal for all components (only ``tied`` has one)."""
        return None

    def shared_statistics(self, Xc: Array, weights: Array | None) -> Array:
        return np.zeros(0)

    def moment_statistics(self, first: Array, second: Array) -> tuple[Array, Array]:
        """(sum_t, shared) laid out as :meth:`statistics` and :meth:`shared_statistics`
        would sum them, from first moments (K, d) and second moments (K, d, d) (expected
        ones, for rows with missing values)."""
        raise NotImplementedError

    def scatter(self, nk: Array, means: Array, sum_t: Array, shared: Array) -> Array:
        """Scatter about the means, ``sum_n r_nk x x^T - N_k mu_k mu_k^T``, in the
        structure's shape (a trace for ``spherical``, summed over components for ``tied``),
        for the means ``mu_k = S_k / N_k`` of the statistics."""
        raise NotImplementedError

    def spread(self, nk: Array, delta: Array) -> Array:
        """What the scatter gains when taken about other means, ``mu_k = xbar_k - delta_k``:

            sum_n r_nk (x - mu_k)(x - mu_k)^T = scatter about xbar_k + N_k delta_k delta_k^T

        in the structure's shape (as :meth:`scatter`)."""
        raise NotImplementedError

    def check_covariance(self, cov: Array) -> str | None:
        """What is wrong with a known covariance of one component (None: nothing)."""
        raise NotImplementedError

    def exact_factor(self, cov: Array) -> Array:
        """Precision Cholesky factors of valid covariances (as given: no regularization)."""
        raise NotImplementedError

    def mass(self, nk: Array, d: int) -> Array:
        """The count each covariance is an average over (its scatter's divisor)."""
        raise NotImplementedError

    def prior_mass(self, d: int, n_components: int, mean_prior: bool) -> float:
        """What a conjugate prior adds to :meth:`mass` beyond its degrees of freedom:
        the inverse-Wishart/-Gamma exponent, plus the means' normal priors."""
        raise NotImplementedError

    def divide(self, scatter: Array, mass: Array, reg_covar: float) -> Array:
        """Covariances ``scatter / mass`` with ``reg_covar`` added to their diagonals."""
        raise NotImplementedError

    def shaped_scale(self, scale: Array, d: int) -> Array:
        """A prior scale given as a scalar, (d,) diagonal or (d, d) matrix, in this
        structure's shape for one component."""
        raise NotImplementedError

    def log_prior_covariance(
        self, cov: Array, prec_chol: Array, scale: Array, dof: float, d: int
    ) -> float:
        """Sum of the inverse-Wishart (-Gamma) log densities of the covariances."""
        raise NotImplementedError

    # the form of this structure's conjugate posterior as a
    # :class:`~emkit.families.normal_wishart.NormalWishart` (None: no conjugate form)
    wishart_form: ClassVar[str | None] = None

    def wishart_update(
        self, scale: Array, dof: float, nk: Array, scatter: Array, d: int
    ) -> tuple[Array, Array]:
        """(nu, W^-1) of the Wishart posterior of the precisions, in this structure's
        shape, from the prior's ``scale`` (W_0^-1, :meth:`shaped_scale`) and ``dof``
        (nu_0), the counts ``nk`` and the :meth:`scatter` about the posterior means
        (shrinkage term included); scikit-learn's BayesianGaussianMixture reading."""
        raise NotImplementedError

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        """(n, K) squared Mahalanobis distances, evaluated in whitened form."""
        raise NotImplementedError

    def whiten(self, Xs: Array, prec_chol: Array, n_components: int) -> Array:
        """(n, K, d) whitened rows ``x_n U_k`` for rows ``Xs`` (n, d), in float64 (the far
        rows' route, see :func:`far_log_prob`)."""
        raise NotImplementedError

    def spectrum(self, cov: Array, mass: Array) -> tuple[Array, Array]:
        """Eigenvalues of the covariances and the :meth:`mass` behind each one."""
        raise NotImplementedError

    def condition(self, cov: Array) -> Array:
        """Condition number of every covariance, (K,) (or () for tied)."""
        lam = np.linalg.eigvalsh(cov) if self.dense else cov
        with np.errstate(divide="ignore", invalid="ignore"):
            cond = np.max(lam, axis=-1) / np.min(lam, axis=-1)
        return np.where(np.isfinite(cond), cond, 0.0)

    def half_log_det(self, prec_chol: Array, d: int) -> Array:
        """1/2 log|P_k| for every component, shape (K,) (or () for tied)."""
        raise NotImplementedError

    def factor(self, cov: Array, column_scale: Array) -> tuple[Array, Array, NDArray[np.bool_]]:
        """(covariances, precision Cholesky factors, floored): the covariances with the
        eigenvalues of ``D^-1 cov D^-1`` (``D = diag(column_scale)``) clipped from below at
        the degeneracy floor, and which covariances were (one flag per covariance)."""
        raise NotImplementedError

    def from_precisions(self, precisions: Array) -> Array:
        raise NotImplementedError

    def precisions(self, prec_chol: Array) -> Array:
        raise NotImplementedError

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        raise NotImplementedError

    def smallest_eigenvalues(
        self, cov: Array, n_components: int, shift: float, scale: Array
    ) -> Array:
        """(n_components,) each component's smallest eigenvalue of ``D^-1 (Sigma_k -
        shift I) D^-1``, ``D = diag(scale)`` (a covariance's own part beyond a ridge
        ``shift``, in the columns' units), from the covariances ``cov`` in this
        structure's shape: every component's matrix in one stack, one batched eigvalsh
        (LAPACK on each matrix, without a call's cost each)."""
        d = scale.shape[0]
        S = np.stack([self.component_covariance(cov, k, d) for k in range(n_components)])
        return np.linalg.eigvalsh((S - shift * np.eye(d)) / np.outer(scale, scale))[:, 0]

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        raise NotImplementedError

    def n_parameters(self, n_components: int, d: int) -> int:
        raise NotImplementedError

    def check_features(self, d: int) -> None:
        """Raise :class:`~emkit.exceptions.InputError` if the structure does not apply
        to ``d`` columns (mclust's one-dimensional models)."""

    def maximize(
        self, scatter: Array, mass: Array, reg_covar: float, previous: Array | None
    ) -> tuple[Array, float | None]:
        """The M-step's covariances from the scatter (plus a prior's scale) and its mass,
        and how far below the ``previous`` covariances' value of the M-step's objective
        they fall when the structure measures it (None: the family's bound applies, see
        :meth:`GaussianFamily.m_step_gap`). Exact structures just :meth:`divide`."""
        return self.divide(scatter, mass, reg_covar), None

    def infeasible(self, covariances: Array) -> str | None:
        """Why known covariances of every component are not of this structure (None:
        they are); structures that tie components together check it."""
        return None

    @property
    def ties(self) -> bool:
        """Some factor of the covariances is shared by components that each have one
        (mclust's E letters beside a V or per-component layout)."""
        return False

    def keep(self, new: Array, old: Array, frozen: NDArray[np.bool_]) -> Array:
        """Keep ``old`` covariance parameters for the components marked ``frozen``."""
        out = new.copy()
        out[frozen] = old[frozen]
        return out


class _Triangular(CovarianceStructure):
    """Shared code of the structures whose covariances are dense matrices."""

    dense = True

    def precisions(self, prec_chol: Array) -> Array:
        return prec_chol @ prec_chol.swapaxes(-1, -2)

    def from_precisions(self, precisions: Array) -> Array:
        # sklearn's convention: U = flip(chol(flip(P))) is upper triangular with P = U U^T
        flipped = precisions[..., ::-1, ::-1]
        return np.ascontiguousarray(np.linalg.cholesky(flipped)[..., ::-1, ::-1])

    def factor(self, cov: Array, column_scale: Array) -> tuple[Array, Array, NDArray[np.bool_]]:
        if not np.isfinite(cov).all():
            raise EmkitError(_ILL_DEFINED)
        stack = cov.reshape((-1, *cov.shape[-2:]))
        d = stack.shape[-1]
        floor = _FLOOR_EPS * d
        floored = np.zeros(stack.shape[0], dtype=bool)
        try:
            prec_chol = _cholesky_upper_of_precision(stack)
            # D^-1 Sigma D^-1 = ((D U)(D U)^T)^-1, so its smallest eigenvalue is at least
            # 1 / ||D U||_F^2: only covariances that fail this cheap test are decomposed
            scaled_u = column_scale[:, None] * prec_chol
            suspect = 1.0 / (scaled_u * scaled_u).sum(axis=(-2, -1)) < floor
        except np.linalg.LinAlgError:
            prec_chol = np.empty_like(stack)
            suspect = np.ones(stack.shape[0], dtype=bool)
        if not suspect.any():
            return cov, prec_chol.reshape(cov.shape), floored
        stack = stack.copy()
        outer = column_scale[:, None] * column_scale[None, :]
        for k in np.flatnonzero(suspect):
            lam, V = np.linalg.eigh(stack[k] / outer)
            # a covariance that factors only above a floor relative to its own largest
            # eigenvalue (the data's scale far off this component's spread) takes that
            # one: no fixed set then, but a factor rather than a crash
            safe = 1e3 * d * float(np.finfo(np.float64).eps) * float(lam[-1])
            for low in (floor, max(floor, safe)):
                if lam[0] < low:
                    clipped = (V * np.maximum(lam, low)) @ V.T
                    stack[k] = 0.5 * (clipped + clipped.T) * outer
                    floored[k] = True
                try:
                    prec_chol[k] = _cholesky_upper_of_precision(stack[k])
                    break
                except np.linalg.LinAlgError:
                    continue
            else:
                raise EmkitError(_ILL_DEFINED)
        return stack.reshape(cov.shape), prec_chol.reshape(cov.shape), floored

    def check_covariance(self, cov: Array) -> str | None:
        scale = float(np.max(np.abs(cov), initial=0.0)) if np.all(np.isfinite(cov)) else 0.0
        if not np.all(np.isfinite(cov)) or not np.allclose(
            cov, cov.T, rtol=1e-10, atol=1e-12 * scale
        ):
            return f"must be a finite symmetric matrix, got {show(cov)}."
        try:
            np.linalg.cholesky(cov)
        except np.linalg.LinAlgError:
            return (
                "must be positive-definite (a covariance matrix has positive eigenvalues), "
                f"got {show(cov)} with eigenvalues "
                f"{show(np.linalg.eigvalsh(cov))}."
            )
        return None

    def exact_factor(self, cov: Array) -> Array:
        return _cholesky_upper_of_precision(cov)

    def whiten(self, Xs: Array, prec_chol: Array, n_components: int) -> Array:
        U = np.broadcast_to(prec_chol, (n_components, *prec_chol.shape[-2:]))
        return np.einsum("nj,kji->nki", Xs, U)

    def half_log_det(self, prec_chol: Array, d: int) -> Array:
        # 1/2 log|P| = sum(log(diag(U)))
        return np.log(prec_chol.diagonal(0, -2, -1)).sum(axis=-1)

    def divide(self, scatter: Array, mass: Array, reg_covar: float) -> Array:
        d = scatter.shape[-1]
        # (a new C-ordered array: its reshape is a view, and this a view of the diagonals)
        cov = np.divide(scatter, np.asarray(mass)[..., None, None], order="C")
        cov.reshape(-1, d * d)[:, :: d + 1] += reg_covar
        return cov

    def shaped_scale(self, scale: Array, d: int) -> Array:
        return scale if scale.ndim == 2 else np.diag(np.broadcast_to(scale, (d,)))

    def log_prior_covariance(
        self, cov: Array, prec_chol: Array, scale: Array, dof: float, d: int
    ) -> float:
        # log IW(S | L, v) = v/2 log|L| - vd/2 log 2 - log Gamma_d(v/2)
        #                    - (v + d + 1)/2 log|S| - 1/2 tr(L S^-1)
        log_det_scale = np.linalg.slogdet(scale)[1]
        trace = np.einsum("ij,...ji->...", scale, self.precisions(prec_chol))
        const = 0.5 * dof * (log_det_scale - d * np.log(2.0)) - multigammaln(0.5 * dof, d)
        log_det_cov = -2.0 * self.half_log_det(prec_chol, d)
        return float(np.sum(const - 0.5 * (dof + d + 1) * log_det_cov - 0.5 * trace))


class Full(_Triangular):
    """Each component has its own full covariance matrix."""

    name = "full"
    fused_layout = "full"
    compiled_layout = FULL_LAYOUT

    def n_stats(self, d: int) -> int:
        return d + d * (d + 1) // 2

    def statistics(self, Xc: Array, out: Array | None = None) -> Array:
        return full_statistics(Xc, out)

    def moment_statistics(self, first: Array, second: Array) -> tuple[Array, Array]:
        i, j = triu_indices(first.shape[1])
        return np.concatenate([first, second[:, i, j]], axis=1), np.zeros(0)

    def stat_scale(self, d: int, s: float) -> Array:
        return np.concatenate([np.full(d, s), np.full(d * (d + 1) // 2, s * s)])

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        d = means.shape[1]
        P = self.precisions(prec_chol)
        Pmu = np.einsum("kij,kj->ki", P, means)
        i, j, weight = _packing(d)
        eta = np.concatenate([Pmu, weight * P[:, i, j]], axis=1)  # full_natural's
        log_norm = 0.5 * (Pmu * means).sum(axis=1) - self.half_log_det(prec_chol, d)
        return eta, log_norm + 0.5 * d * LOG_2PI

    def scatter(self, nk: Array, means: Array, sum_t: Array, shared: Array) -> Array:
        K, d = means.shape
        # the packed upper triangle unpacked into both triangles by one take
        B = sum_t.take(_unpacking(d), axis=1).reshape(K, d, d)
        # sum_n r_nk (x - mu_k)(x - mu_k)^T = sum_n r_nk x x^T - N_k mu_k mu_k^T
        B -= nk[:, None, None] * means[:, :, None] * means[:, None, :]
        return B

    def spread(self, nk: Array, delta: Array) -> Array:
        return nk[:, None, None] * delta[:, :, None] * delta[:, None, :]

    def mass(self, nk: Array, d: int) -> Array:
        return nk

    def prior_mass(self, d: int, n_components: int, mean_prior: bool) -> float:
        return d + 1 + int(mean_prior)

    wishart_form: ClassVar[str | None] = "full"

    def wishart_update(
        self, scale: Array, dof: float, nk: Array, scatter: Array, d: int
    ) -> tuple[Array, Array]:
        # a Wishart per component: nu_0 + N_k, W_0^-1 + scatter_k
        return np.asarray(dof + nk, dtype=np.float64), scale + scatter

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        out = np.empty((Xc.shape[0], means.shape[0]), dtype=Xc.dtype)
        for k in range(means.shape[0]):
            U = prec_chol[k].astype(Xc.dtype)
            y = Xc @ U - (means[k] @ prec_chol[k]).astype(Xc.dtype)
            out[:, k] = np.einsum("ij,ij->i", y, y)
        return out

    def spectrum(self, cov: Array, mass: Array) -> tuple[Array, Array]:
        lam = np.linalg.eigvalsh(cov)
        return lam, mass[:, None].repeat(lam.shape[-1], axis=1)

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        return cov[k]

    def smallest_eigenvalues(
        self, cov: Array, n_components: int, shift: float, scale: Array
    ) -> Array:
        d = scale.shape[0]  # (cov is the stack of the components' matrices)
        return np.linalg.eigvalsh((cov - shift * np.eye(d)) / np.outer(scale, scale))[:, 0]

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        return (n_components, d, d)

    def n_parameters(self, n_components: int, d: int) -> int:
        return n_components * d * (d + 1) // 2


class Tied(_Triangular):
    """All components share one full covariance matrix."""

    name = "tied"
    has_row_term = True
    shared = True
    compiled_layout = TIED_LAYOUT

    def n_stats(self, d: int) -> int:
        return d

    def statistics(self, Xc: Array, out: Array | None = None) -> Array:
        if out is None:
            return Xc
        return _stat_rows(Xc, Xc.shape[1], out)[1].T

    def stat_scale(self, d: int, s: float) -> Array:
        return np.full(d, s)

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        d = means.shape[1]
        Pmu = means @ self.precisions(prec_chol)
        log_norm = 0.5 * np.sum(Pmu * means, axis=1) - self.half_log_det(prec_chol, d)
        return Pmu, log_norm + 0.5 * d * LOG_2PI

    def row_term(self, Xc: Array, prec_chol: Array) -> Array:
        # -1/2 x^T P x, the same for every component
        y = Xc @ prec_chol.astype(Xc.dtype)
        return -0.5 * np.einsum("ij,ij->i", y, y)

    def shared_statistics(self, Xc: Array, weights: Array | None) -> Array:
        # sum_n w_n x_n x_n^T does not depend on the responsibilities (they sum to one)
        Xw = Xc if weights is None else Xc * weights[:, None]
        return (Xw.T @ Xc).astype(np.float64).ravel()

    def moment_statistics(self, first: Array, second: Array) -> tuple[Array, Array]:
        return first, second.sum(axis=0).ravel()  # x x^T is shared by the components

    def scatter(self, nk: Array, means: Array, sum_t: Array, shared: Array) -> Array:
        d = means.shape[1]
        # sum_n w_n x x^T - sum_k N_k mu_k mu_k^T
        return shared.reshape(d, d) - (nk * means.T) @ means

    def spread(self, nk: Array, delta: Array) -> Array:
        return np.asarray((nk * delta.T) @ delta)

    def mass(self, nk: Array, d: int) -> Array:
        return np.asarray(nk.sum())

    def prior_mass(self, d: int, n_components: int, mean_prior: bool) -> float:
        return d + 1 + n_components * int(mean_prior)

    wishart_form: ClassVar[str | None] = "tied"

    def wishart_update(
        self, scale: Array, dof: float, nk: Array, scatter: Array, d: int
    ) -> tuple[Array, Array]:
        # one Wishart, each component's share of it: nu_0 + N / K, W_0^-1 + scatter / K
        K = nk.shape[0]
        return np.asarray(dof + nk.sum() / K, dtype=np.float64), scale + scatter / K

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        U = prec_chol.astype(Xc.dtype)
        y = Xc @ U
        mu = (means @ prec_chol).astype(Xc.dtype)
        out = np.empty((Xc.shape[0], means.shape[0]), dtype=Xc.dtype)
        for k in range(means.shape[0]):
            z = y - mu[k]
            out[:, k] = np.einsum("ij,ij->i", z, z)
        return out

    def spectrum(self, cov: Array, mass: Array) -> tuple[Array, Array]:
        lam = np.linalg.eigvalsh(cov)
        return lam, np.full(lam.shape, mass)

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        return cov

    def smallest_eigenvalues(
        self, cov: Array, n_components: int, shift: float, scale: Array
    ) -> Array:
        # one matrix behind every component: one eigvalsh
        d = scale.shape[0]
        low = np.linalg.eigvalsh((cov - shift * np.eye(d)) / np.outer(scale, scale))[0]
        return np.full(n_components, low)

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        return (d, d)

    def n_parameters(self, n_components: int, d: int) -> int:
        return d * (d + 1) // 2

    def keep(self, new: Array, old: Array, frozen: NDArray[np.bool_]) -> Array:
        return new  # shared by all components: a collapsed one has no say in it


class _Variances(CovarianceStructure):
    """Shared code of the structures whose covariances are variances (diag, spherical)."""

    def smallest_eigenvalues(
        self, cov: Array, n_components: int, shift: float, scale: Array
    ) -> Array:
        # a diagonal matrix's eigenvalues are its diagonal, as LAPACK gives them (bit for
        # bit: the tridiagonal reduction of a diagonal matrix leaves it as it is): no
        # eigvalsh; (n_components, d) variances, or (n_components, 1) for one a component
        variances = cov.reshape(n_components, -1)
        return ((variances - shift) / (scale * scale)).min(axis=1)

    def factor(self, cov: Array, column_scale: Array) -> tuple[Array, Array, NDArray[np.bool_]]:
        if not np.all(np.isfinite(cov)):
            raise EmkitError(_ILL_DEFINED)
        floor = self.variance_floor(column_scale)
        low = cov < floor
        var: Array = np.where(low, floor, cov) if low.any() else cov
        floored = np.asarray(low.reshape(low.shape[0], -1).any(axis=1), dtype=bool)
        return var, np.asarray(1.0 / np.sqrt(var)), floored

    def variance_floor(self, column_scale: Array) -> Array:
        """The degeneracy floor of the variances, broadcastable to their shape."""
        raise NotImplementedError

    def from_precisions(self, precisions: Array) -> Array:
        return np.sqrt(precisions)

    def check_covariance(self, cov: Array) -> str | None:
        if np.all(np.isfinite(cov)) and np.all(cov > 0):
            return None
        return f"must be finite positive variances, got {show(cov)}."

    def exact_factor(self, cov: Array) -> Array:
        return np.asarray(1.0 / np.sqrt(cov))

    def whiten(self, Xs: Array, prec_chol: Array, n_components: int) -> Array:
        u = prec_chol if prec_chol.ndim == 2 else prec_chol[:, None]  # spherical: one per k
        return Xs[:, None, :] * u[None]

    def precisions(self, prec_chol: Array) -> Array:
        return prec_chol**2

    def log_prior_covariance(
        self, cov: Array, prec_chol: Array, scale: Array, dof: float, d: int
    ) -> float:
        # inverse-Gamma(v/2, s/2): log = a log b - log Gamma(a) - (a + 1) log x - b / x
        a, b = 0.5 * dof, 0.5 * scale
        return float(np.sum(a * np.log(b) - gammaln(a) - (a + 1.0) * np.log(cov) - b / cov))


class Diag(_Variances):
    """Each component has its own diagonal covariance matrix."""

    name = "diag"
    fused_layout = "diag"
    compiled_layout = DIAG_LAYOUT

    def n_stats(self, d: int) -> int:
        return 2 * d

    def statistics(self, Xc: Array, out: Array | None = None) -> Array:
        d = Xc.shape[1]
        XT, TT = _stat_rows(Xc, 2 * d, out)
        np.multiply(XT, XT, out=TT[d:])
        return TT.T

    def moment_statistics(self, first: Array, second: Array) -> tuple[Array, Array]:
        return np.concatenate([first, np.diagonal(second, axis1=1, axis2=2)], axis=1), np.zeros(0)

    def stat_scale(self, d: int, s: float) -> Array:
        return np.concatenate([np.full(d, s), np.full(d, s * s)])

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        d = means.shape[1]
        prec = prec_chol**2
        eta = np.concatenate([prec * means, -0.5 * prec], axis=1)
        log_norm = 0.5 * np.sum(prec * means**2, axis=1) - self.half_log_det(prec_chol, d)
        return eta, log_norm + 0.5 * d * LOG_2PI

    def scatter(self, nk: Array, means: Array, sum_t: Array, shared: Array) -> Array:
        d = means.shape[1]
        return sum_t[:, d:] - nk[:, None] * means**2

    def spread(self, nk: Array, delta: Array) -> Array:
        return nk[:, None] * delta**2

    def mass(self, nk: Array, d: int) -> Array:
        return nk

    def prior_mass(self, d: int, n_components: int, mean_prior: bool) -> float:
        return 2 + int(mean_prior)

    wishart_form: ClassVar[str | None] = "diag"

    def wishart_update(
        self, scale: Array, dof: float, nk: Array, scatter: Array, d: int
    ) -> tuple[Array, Array]:
        # a Wishart per component with a diagonal W: the diagonal of the full update
        return np.asarray(dof + nk, dtype=np.float64), scale + scatter

    def divide(self, scatter: Array, mass: Array, reg_covar: float) -> Array:
        return scatter / mass[:, None] + reg_covar

    def shaped_scale(self, scale: Array, d: int) -> Array:
        return np.diag(scale) if scale.ndim == 2 else np.broadcast_to(scale, (d,))

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        out = np.empty((Xc.shape[0], means.shape[0]), dtype=Xc.dtype)
        for k in range(means.shape[0]):
            z = (Xc - means[k].astype(Xc.dtype)) * prec_chol[k].astype(Xc.dtype)
            out[:, k] = np.einsum("ij,ij->i", z, z)
        return out

    def half_log_det(self, prec_chol: Array, d: int) -> Array:
        return np.sum(np.log(prec_chol), axis=1)

    def spectrum(self, cov: Array, mass: Array) -> tuple[Array, Array]:
        return cov, np.broadcast_to(mass[:, None], cov.shape)

    def variance_floor(self, column_scale: Array) -> Array:
        return _FLOOR_EPS * column_scale**2

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        return np.diag(cov[k])

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        return (n_components, d)

    def n_parameters(self, n_components: int, d: int) -> int:
        return n_components * d


class Spherical(_Variances):
    """Each component has its own single variance, the same along every axis."""

    name = "spherical"
    fused_layout = "spherical"
    compiled_layout = SPHERICAL_LAYOUT

    def n_stats(self, d: int) -> int:
        return d + 1

    def statistics(self, Xc: Array, out: Array | None = None) -> Array:
        d = Xc.shape[1]
        XT, TT = _stat_rows(Xc, d + 1, out)
        np.einsum("ij,ij->j", XT, XT, out=TT[d])
        return TT.T

    def moment_statistics(self, first: Array, second: Array) -> tuple[Array, Array]:
        trace = np.trace(second, axis1=1, axis2=2)
        return np.concatenate([first, trace[:, None]], axis=1), np.zeros(0)

    def stat_scale(self, d: int, s: float) -> Array:
        return np.concatenate([np.full(d, s), [d * s * s]])

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        d = means.shape[1]
        prec = prec_chol**2
        eta = np.concatenate([prec[:, None] * means, -0.5 * prec[:, None]], axis=1)
        log_norm = 0.5 * prec * np.sum(means**2, axis=1) - self.half_log_det(prec_chol, d)
        return eta, log_norm + 0.5 * d * LOG_2PI

    def scatter(self, nk: Array, means: Array, sum_t: Array, shared: Array) -> Array:
        d = means.shape[1]
        # trace of the scatter: sum_n r_nk ||x||^2 - N_k ||mu_k||^2
        return sum_t[:, d] - nk * np.sum(means**2, axis=1)

    def spread(self, nk: Array, delta: Array) -> Array:
        return nk * np.sum(delta**2, axis=1)

    def mass(self, nk: Array, d: int) -> Array:
        return d * nk  # one variance shared by the d axes

    def prior_mass(self, d: int, n_components: int, mean_prior: bool) -> float:
        return 2 + d * int(mean_prior)

    wishart_form: ClassVar[str | None] = "spherical"

    def wishart_update(
        self, scale: Array, dof: float, nk: Array, scatter: Array, d: int
    ) -> tuple[Array, Array]:
        # a Wishart per component with W a multiple of the identity: the mean of the full
        # update's diagonal (the scatter here is its trace, d variances)
        return np.asarray(dof + nk, dtype=np.float64), scale + scatter / d

    def divide(self, scatter: Array, mass: Array, reg_covar: float) -> Array:
        return scatter / mass + reg_covar

    def shaped_scale(self, scale: Array, d: int) -> Array:
        if scale.ndim == 2:
            return np.asarray(np.trace(scale) / d)
        return np.asarray(np.mean(np.broadcast_to(scale, (d,))))

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        out = np.empty((Xc.shape[0], means.shape[0]), dtype=Xc.dtype)
        for k in range(means.shape[0]):
            z = Xc - means[k].astype(Xc.dtype)
            out[:, k] = np.einsum("ij,ij->i", z, z) * Xc.dtype.type(prec_chol[k] ** 2)
        return out

    def half_log_det(self, prec_chol: Array, d: int) -> Array:
        return d * np.log(prec_chol)

    def spectrum(self, cov: Array, mass: Array) -> tuple[Array, Array]:
        return cov, mass

    def condition(self, cov: Array) -> Array:
        return np.ones(np.shape(cov))

    def variance_floor(self, column_scale: Array) -> Array:
        # the variance is tr(Sigma) / d: its round-off is that of the mean square
        return np.asarray(_FLOOR_EPS * float(np.mean(column_scale**2)))

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        return np.eye(d) * cov[k]

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        return (n_components,)

    def n_parameters(self, n_components: int, d: int) -> int:
        return n_components


_STRUCTURES: dict[str, type[CovarianceStructure]] = {
    cls.name: cls for cls in (Full, Tied, Diag, Spherical)
}
COVARIANCE_TYPES: tuple[str, ...] = tuple(_STRUCTURES)


def covariance_structure(covariance_type: str) -> CovarianceStructure:
    """The one place a covariance type string becomes a structure object: scikit-learn's
    four names, mclust's fourteen models and its one-dimensional E and V
    (:mod:`emkit.families.covariance`)."""
    from emkit.families.covariance import covariance_types, structure_class

    cls = structure_class(covariance_type) if isinstance(covariance_type, str) else None
    if cls is None:
        raise InputError(
            f"covariance_type must be one of {', '.join(map(repr, covariance_types()))}, "
            f"got {covariance_type!r}."
        )
    return cls()


@functools.cache
def _limits(dtype: np.dtype[Any]) -> tuple[float, float]:
    """(eps, largest finite value) of a float dtype, looked up once (``np.finfo`` costs a
    few microseconds a call, and every E-step asks)."""
    info = np.finfo(dtype)
    return float(info.eps), float(info.max)


@dataclass(frozen=True, eq=False)
class GaussianFamily:
    """Multivariate Gaussian components with a given covariance structure.

    ``shift`` is subtracted from every row before the statistics are formed; ``scale`` is
    the largest absolute centred value seen in training, used to bound the round-off of
    the expanded quadratic form. Both are set by :meth:`bind`. ``prior`` is a
    :class:`~emkit.families.priors.GaussianPrior` (mclust's conjugate prior), ``'auto'``
    (its defaults) or None; MAP-EM adds the prior's pseudo-observations to the
    statistics: ``shrinkage`` rows at the prior mean for the means, and the scale and
    degrees of freedom for the covariances.
    """

    structure: CovarianceStructure
    shift: Array | None = None
    reg_covar: float = 1e-6
    scale: float = 1.0
    prior: Any = None
    # the (weighted) data covariance, from bind(): the default prior scale
    data_covariance: Array | None = None
    # known parameters, from fix()
    fixed: GaussianFixed | None = field(default=None, repr=False)
    # (d,) the median |x_j - shift_j| of the training rows, from bind(): the scale of the
    # degeneracy floor (``scale`` in every column when not bound)
    column_scale: Array | None = field(default=None, repr=False)
    # summarize() gives what a binding pass checks (emkit.estimators._rows.bind_pass):
    # the column sums ``sums`` (unweighted: every value added), ``low`` and ``high``
    summary_columns: ClassVar[bool] = True

    def __post_init__(self) -> None:
        if not (isinstance(self.prior, str) and self.prior == "mclust"):
            check_prior("Gaussian", self.prior, (GaussianPrior,))

    @property
    def n_features(self) -> int:
        if self.shift is None:
            raise InputError("The Gaussian family is not bound to data yet; fit first.")
        return int(self.shift.shape[0])

    @property
    def n_stats(self) -> int:
        return self.structure.n_stats(self.n_features)

    @property
    def n_shared(self) -> int:
        return self.n_features**2 if isinstance(self.structure, Tied) else 0

    def bind(self, X: Array, weights: Array | None) -> GaussianFamily:
        return bind_rows(self, X, weights)

    def _needs_covariance(self) -> bool:
        """Whether binding reads the data covariance: the default scale of a prior."""
        prior = self.prior
        return prior is not None and (isinstance(prior, str) or prior.scale is None)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        # fmax and fmin skip missing values (NaN)
        summary = Summary(
            weight=total_weight(X, weights),
            sums=weighted_sum(X, weights),
            low=Low(column_reduce(np.fmin, X).astype(np.float64)),
            high=High(column_reduce(np.fmax, X).astype(np.float64)),
            # every step-th row of the whole (a copy: a view would keep a block alive)
            spaced=(X[int(-index[0] % _spacing(n_rows)) :: _spacing(n_rows)].copy(),)
            if index.size
            else (),
        )
        if self._needs_covariance():
            summary["moments"] = Moments.of(X, weights)
        return summary

    def bind_summary(self, summary: Summary, n_rows: int) -> GaussianFamily:
        shift = summary["sums"] / summary["weight"]
        d = int(shift.shape[0])
        # max |x - shift| over the rows, from the column extremes (fmax: a column's NaN
        # extreme counts 0, as np.nan_to_num makes it; an infinite one the largest float)
        high, low = summary["high"].value, summary["low"].value
        spread = np.fmax(np.abs(high - shift), np.abs(low - shift))
        if not np.isfinite(spread).all():
            spread = np.nan_to_num(spread)
        scale = float(max(spread.max(initial=0.0), 1e-300))
        check_fit_range(scale, (n_rows, d), "a Gaussian fit")
        self.structure.check_features(d)
        prior, data_cov = self.prior, None
        if prior is not None:
            if isinstance(prior, str):
                prior = GaussianPrior(convention="mclust" if prior == "mclust" else "conjugate")
            if prior.mean is None:
                prior = replace(prior, mean=shift)
            if prior.dof is None:
                prior = replace(prior, dof=d + 2.0)
            _check_prior_shapes(prior, d)
            if prior.scale is None:
                data_cov = _positive_definite(np.atleast_2d(summary["moments"].covariance()))
        return replace(
            self,
            shift=shift,
            scale=scale,
            prior=prior,
            data_covariance=data_cov,
            column_scale=_column_median(summary["spaced"], shift),
        )

    def check(self, X: Array, labels: Sequence[str]) -> None:
        if self.shift is not None and X.shape[1] != self.n_features:
            raise InputError(
                f"The Gaussian family was fitted on {self.n_features} columns, got {X.shape[1]}."
            )

    def prepare(self, X: Array, dtype: Any) -> Array:
        # Centre in the data's precision, round to the working dtype, and lay the result
        # out feature-major in one pass: (d, n) C-order, returned as its (n, d) view, so
        # the statistics are built from contiguous rows.
        assert self.shift is not None
        XT = np.empty((X.shape[1], X.shape[0]), dtype=dtype)
        np.subtract(X.T, self.shift.astype(X.dtype)[:, None], out=XT, casting="same_kind")
        return XT.T

    def natural(self, params: GaussianParams, dtype: Any) -> Natural:
        eta, log_norm = self.structure.natural(params.means, params.precisions_cholesky)
        return self._natural_in(eta, log_norm, params, dtype)

    def natural_from(self, derived: Natural, params: GaussianParams, dtype: Any) -> Natural:
        """:meth:`natural` in ``dtype`` from ``derived``, :meth:`natural` of the same
        parameters in float64 (whose arrays are the float64 values that ``natural``
        rounds): the same result without computing them again."""
        return self._natural_in(derived.eta, derived.log_norm, params, dtype)

    def _natural_in(
        self, eta: Array, log_norm: Array, params: GaussianParams, dtype: Any
    ) -> Natural:
        """The float64 natural parameters ``eta``, ``log_norm`` rounded to ``dtype``, and
        whether the expanded form is exact enough in it."""
        d = self.n_features
        # Round-off of T @ eta_k - log_norm_k: eps times the size of the terms that cancel
        # (their 2-norm: rounding errors add like a random walk), at the largest |x|.
        # (in float64 numbers: rows far beyond the training scale overflow to inf here,
        # which also says "use the exact form")
        scale = np.float64(self.scale)
        dt = np.dtype(dtype)
        eps, largest_value = _limits(dt)
        stat_scale, stat_max = self._stat_scale()
        # (overflow beyond dt: exact, and asked again in float64)
        with np.errstate(over="ignore", invalid="ignore"):
            terms = np.abs(eta)
            terms *= stat_scale
            terms *= terms
            squares = terms.sum(axis=1)
            squares += log_norm * log_norm
            largest = math.sqrt(squares.max())  # the largest size (sqrt is monotone)
            if self.structure.has_row_term:
                largest = largest + d * scale**2 * np.max(
                    np.abs(self.structure.precisions(params.precisions_cholesky))
                )
        exact = bool(
            not math.isfinite(largest)
            or eps * largest > _EXPANDED_FORM_TOLERANCE[dt]
            # statistics (x x^T) beyond the working dtype's range: float64 rows instead
            or not stat_max < _STAT_RANGE * largest_value
        )
        # (eta and log_norm are the structure's new arrays: no copy in float64)
        return Natural(eta.astype(dt, copy=False), log_norm.astype(dt, copy=False), exact)

    def _stat_scale(self) -> tuple[Array, float]:
        """(:meth:`CovarianceStructure.stat_scale` at this family's scale, its largest
        value), computed once per bound family (every E-step asks for them)."""
        cached = self.__dict__.get("_stat_scale_cache")
        if cached is None:
            with np.errstate(over="ignore"):  # beyond float64: the exact form
                stat_scale = self.structure.stat_scale(self.n_features, np.float64(self.scale))
            cached = (stat_scale, float(stat_scale.max()))
            object.__setattr__(self, "_stat_scale_cache", cached)
        return cached

    def log_joint(
        self,
        X: Array,
        T: Array,
        params: GaussianParams,
        natural: Natural,
        offset: Array | None = None,
        reach: float | None = None,
    ) -> tuple[Array, Array | None]:
        """(:meth:`log_prob`, :meth:`row_term`) of the same rows, their far rows found
        once (``reach``: the rows' :meth:`row_reach`, where the caller kept it)."""
        far = self.far_rows(X, params, reach)
        return (
            self._log_prob(X, T, params, natural, offset, far),
            self._row_term(X, params, natural, far),
        )

    def log_prob(
        self,
        X: Array,
        T: Array,
        params: GaussianParams,
        natural: Natural,
        offset: Array | None = None,
    ) -> Array:
        return self._log_prob(X, T, params, natural, offset, self.far_rows(X, params))

    def _log_prob(
        self,
        X: Array,
        T: Array,
        params: GaussianParams,
        natural: Natural,
        offset: Array | None,
        far: NDArray[np.intp],
    ) -> Array:
        d = self.n_features
        if natural.exact_form:
            with np.errstate(over="ignore"):  # far rows' distances are redone below
                maha = self.structure.mahalanobis(X, params.means, params.precisions_cholesky)
            const = self.structure.half_log_det(params.precisions_cholesky, d) - 0.5 * d * LOG_2PI
            if offset is not None:
                const = const + offset
            log_prob = -0.5 * maha + np.asarray(const, dtype=X.dtype)
        else:
            with np.errstate(over="ignore", invalid="ignore"):  # far rows: redone below
                log_prob = expanded_log_prob(T, natural, offset)
        if far.size:
            const = self.normalizer(params) if offset is None else self.normalizer(params) + offset
            rel, _ = _far_log_prob(self.structure, X[far], params)
            log_prob[far] = (rel + const).astype(log_prob.dtype)
        return log_prob

    def fused_natural(self, natural: Natural) -> tuple[str, Array] | None:
        """The layout of the statistics after x (the structure's ``fused_layout``) and
        the (K, 1 + n_stats) natural parameters of (1, T), ``-log_norm`` in column 0, for
        the compiled E-step of a mixture (:mod:`emkit.models._fused_kernels`); None where
        it does not apply: a structure with a row term, or parameters that take the
        whitened form (``exact_form``). Rows that :meth:`far_rows` finds take the
        general route."""
        layout = self.structure.fused_layout
        if layout is None or natural.exact_form:
            return None
        return layout, np.concatenate([-natural.log_norm[:, None], natural.eta], axis=1)

    def row_term(self, X: Array, params: GaussianParams, natural: Natural) -> Array | None:
        return self._row_term(X, params, natural, self.far_rows(X, params))

    def _row_term(
        self, X: Array, params: GaussianParams, natural: Natural, far: NDArray[np.intp]
    ) -> Array | None:
        row = None
        # (the whitened form holds the whole quadratic; only tied has a row term)
        if not natural.exact_form and self.structure.has_row_term:
            with np.errstate(over="ignore"):  # far rows: redone below
                row = self.structure.row_term(X, params.precisions_cholesky)
        if not far.size:
            return row
        # far rows: the nearest component's distance, apart (see far_log_prob)
        row = np.zeros(X.shape[0], dtype=X.dtype) if row is None else row
        row[far] = _far_log_prob(self.structure, X[far], params)[1]
        return row

    def normalizer(self, params: GaussianParams) -> Array:
        """(K,) log N's constant ``1/2 log|P_k| - d/2 log(2 pi)`` (the far rows' share of
        the normalizer, see :func:`far_log_prob`)."""
        d = self.n_features
        const = self.structure.half_log_det(params.precisions_cholesky, d) - 0.5 * d * LOG_2PI
        return np.broadcast_to(const, (params.means.shape[0],))

    def far_limit(self, params: GaussianParams) -> float:
        """The largest ``|x|`` (centred) of a row that :meth:`far_rows` leaves to the
        E-step's forms: ``_OUTSIDE`` times the scale the expanded form's round-off was
        bounded for, and a bound on ``|(x - mu) U|`` within ``_FAR``."""
        u = float(np.abs(params.precisions_cholesky).max())
        mu = float(np.abs(params.means).max(initial=0.0))
        return min(_OUTSIDE * self.scale, _FAR / (self.n_features * u) - mu)

    def far_rows(
        self, Xc: Array, params: GaussianParams, reach: float | None = None
    ) -> NDArray[np.intp]:
        """Centred rows the E-step's forms cannot hold: beyond ``_OUTSIDE`` times the
        scale the expanded form's round-off was bounded for, or with squared distances
        that may overflow (a bound on ``|(x - mu) U|`` beyond ``_FAR``). They take
        :func:`far_log_prob`, exact for any finite row. ``reach`` is :meth:`row_reach`
        of ``Xc`` where the caller has it."""
        limit = self.far_limit(params)
        # the chunk's extremes first: two reductions, no temporary, for the usual chunk
        if reach is None:
            reach = self.row_reach(Xc)
        if reach <= limit:
            return np.zeros(0, dtype=np.intp)
        return np.flatnonzero(~(np.max(np.abs(Xc), axis=1) <= limit))

    def row_reach(self, Xc: Array) -> float:
        """The largest ``|x|`` of centred rows (0 for none; NaN if a row has NaN), which
        no parameter changes: what :meth:`far_rows` compares with :meth:`far_limit`."""
        if Xc.shape[0] == 0:
            return 0.0
        return max(float(Xc.max()), -float(Xc.min()))

    def statistics(self, X: Array, out: Array | None = None) -> Array:
        # rows far beyond the training data may overflow here: _far_rows redoes them
        with np.errstate(over="ignore"):
            return self.structure.statistics(X, out)

    def log_base_measure(self, X: Array) -> None:
        return None  # the constant -d/2 log(2 pi) is in log_norm

    def natural_values(self, params: GaussianParams) -> tuple[Array, Array]:
        """(eta, log_norm) of every component in float64, as :meth:`natural` gives them
        without choosing the E-step's evaluation form (for the bound's Q)."""
        return self.structure.natural(params.means, params.precisions_cholesky)

    def expected_row_term(self, params: GaussianParams, shared: Array) -> float:
        """The expectation of :meth:`row_term` summed over the rows, from the shared
        statistics: -1/2 tr(P sum_n w_n x_n x_n^T) for a tied covariance, else 0."""
        if not self.structure.has_row_term:
            return 0.0
        d = self.n_features
        P = self.structure.precisions(params.precisions_cholesky)
        return -0.5 * float(np.sum(P * shared.reshape(d, d)))

    def shared_statistics(self, X: Array, weights: Array | None) -> Array:
        return self.structure.shared_statistics(X, weights)

    # -- missing values: the exact conditional Gaussian (families._gaussian_missing) ------

    def missing_fill(self) -> Array:
        assert self.shift is not None
        return self.shift  # centred to 0; the values there are never read

    def missing_log_prob(
        self,
        X: Array,
        observed: NDArray[np.bool_],
        params: GaussianParams,
        natural: Natural,
        offset: Array,
    ) -> tuple[Array, MissingState]:
        far = self.far_rows(X, params)  # the fill values at missing coordinates are 0
        # a row with nothing observed here (a product's block all missing) has density 1
        # in this family, which the plain route gives: only rows with a value can be far
        far = far[observed[far].any(axis=1)]
        with np.errstate(over="ignore", invalid="ignore"):  # far rows: redone below
            log_prob, state = missing_log_prob(
                self.structure, X, observed, params.means, params.precisions_cholesky, offset
            )
        if not far.size:
            return log_prob, state
        # far rows by pattern of observed coordinates: their marginal there, a full
        # Gaussian, through the far route
        d = self.n_features
        K = params.means.shape[0]
        row = np.zeros(X.shape[0])
        full = Full()
        patterns, which = np.unique(observed[far], axis=0, return_inverse=True)
        for p, pattern in enumerate(patterns):
            rows = far[which.ravel() == p]
            o = np.flatnonzero(pattern)
            cov = np.stack(
                [
                    self.structure.component_covariance(params.covariances, k, d)[np.ix_(o, o)]
                    for k in range(K)
                ]
            )
            U = _cholesky_upper_of_precision(cov)
            rel, far_row = _far_log_prob(
                full, X[np.ix_(rows, o)], GaussianParams(params.means[:, o], cov, U)
            )
            const = full.half_log_det(U, o.size) - 0.5 * o.size * LOG_2PI + offset
            log_prob[rows] = rel + const
            row[rows] = far_row
        return log_prob, state._replace(row=row)

    def missing_row_term(self, state: MissingState) -> Array | None:
        """The terms of log p(x_obs, k) equal for every k that :meth:`missing_log_prob`
        kept apart (far rows), or None."""
        return state.row

    def missing_statistics(
        self, params: GaussianParams, state: MissingState, resp: Array
    ) -> tuple[Array, Array]:
        return self.structure.moment_statistics(*missing_statistics(state, resp))

    def impute(self, params: GaussianParams, state: MissingState, resp: Array) -> Array:
        assert self.shift is not None
        return conditional_means(state, resp) + self.shift

    # -- M-step --------------------------------------------------------------------------

    def attached_prior(self, n_components: int) -> AttachedGaussianPrior:
        """The prior bound to this family's structure and ``n_components`` components,
        in centred coordinates (the flat prior of maximum likelihood without one): its
        ``posterior(stats).mode()`` is the M-step."""
        prior = self.prior
        # built once (every M-step asks for it): the flat prior for any number of
        # components, a prior bound per number of components
        bound = self.__dict__.setdefault("_bound_priors", {})
        key = None if prior is None else n_components
        if key not in bound:
            if prior is None:
                bound[key] = AttachedGaussianPrior.flat(self.structure, self.n_features)
            else:
                assert isinstance(prior, GaussianPrior) and self.shift is not None
                bound[key] = prior.attach(
                    self.structure, n_components, self.shift, self.data_covariance
                )
        return bound[key]

    def _mass(self, nk: Array) -> Array:
        """Divisor of each covariance's scatter: N_k, plus the prior's share under MAP."""
        return self.attached_prior(nk.shape[0]).divisor(nk)

    def m_step(
        self,
        params: GaussianParams,
        nk: Array,
        sum_t: Array,
        shared: Array,
        total_weight: float,
    ) -> GaussianParams:
        K = nk.shape[0]
        posterior = self.attached_prior(K).posterior((nk, sum_t, shared))
        if self.fixed is not None and self.fixed.means is not None:
            # The best mean is xbar whatever the covariance; the best covariance given
            # known means is the scatter about them: + N_k (xbar_k - mu_k)(...)^T.
            posterior = posterior.with_means(self._with_known_means(posterior.means))
        # A component with no responsibility mass (and no prior): any parameters maximize
        # its (zero) share of Q, so keep the previous ones rather than divide 0 by 0.
        frozen = frozen_components(posterior.counts, total_weight)
        with np.errstate(divide="ignore", invalid="ignore"):
            previous = None if params is None else params.covariances
            means, cov, gap = posterior.mode(self.reg_covar, previous)
        if frozen.any():
            means = self._with_known_means(np.where(frozen[:, None], params.means, means))
            cov = self.structure.keep(cov, params.covariances, frozen)
        cov, prec_chol, floored = self._factor(cov, K)
        if gap is None or (self.fixed is not None and self.fixed.covariances is not None):
            gap = float("nan")  # not measured, or known covariances replaced the maximizer
        elif floored.any():
            gap = float("inf")  # held off the constrained maximizer: no bound
        return GaussianParams(means, cov, prec_chol, floored, gap)

    def _with_known_means(self, means: Array) -> Array:
        """``means`` (centred) with the known ones put in."""
        if self.fixed is None or self.fixed.means is None:
            return means
        assert self.shift is not None
        known = self.fixed.means
        return np.where(known.mask[:, None], known.values - self.shift, means)

    def _floor_scale(self) -> Array:
        """The per-column scale of the degeneracy floor (no column at 0: a constant
        column takes a tiny share of the others', so its variance stays positive)."""
        cached = self.__dict__.get("_floor_scale_cache")  # (every M-step asks for it)
        if cached is None:
            d = self.n_features
            c = self.column_scale if self.column_scale is not None else np.full(d, self.scale)
            c = np.minimum(c, 1e150)  # the floor's c_i c_j stays finite
            cached = np.maximum(c, max(1e-8 * float(np.max(c, initial=0.0)), 1e-150))
            object.__setattr__(self, "_floor_scale_cache", cached)
        return cached

    def objective_roundoff(
        self, params: GaussianParams, nk: Array, sum_t: Array, dtype: Any = np.float64
    ) -> float:
        """Round-off of the log-likelihood at ``params`` (total nats). A log-density
        computed from a factor of Sigma_k carries about eps * d * cond(Sigma_k) (the
        factor's backward error, relative to the smallest eigenvalue): in all
        ``eps * d * sum_k N_k cond(Sigma_k)``, at round-off for well-conditioned
        components and large only near the degeneracy floor, where the objective is known
        no better. The expanded form adds eps times its cancelling terms
        (:func:`~emkit.families._base.expanded_roundoff`; up to 1e-8 nats a row, where
        :meth:`natural` would switch to the whitened form)."""
        eps = float(np.finfo(np.float64).eps)
        d = self.n_features
        expanded = expanded_roundoff(self.natural(params, dtype), nk, sum_t, dtype)
        cond = self.structure.condition(params.covariances)  # () for tied: behind every row
        return expanded + eps * d * float(np.sum(nk * cond))

    def _factor(self, cov: Array, K: int) -> tuple[Array, Array, NDArray[np.bool_]]:
        """The structure's ``factor`` of the free covariances, held above the degeneracy
        floor; known ones as given (no ``reg_covar``), with their precomputed factors.
        Also (K,) which components were held at the floor (a warning names them)."""
        fixed = self.fixed
        scale = self._floor_scale()
        floored = np.zeros(K, dtype=bool)
        raw = cov
        if fixed is None or fixed.covariances is None:
            cov, prec_chol, low = self.structure.factor(cov, scale)
            floored |= low  # (1,) for a tied covariance: every component
        else:
            assert fixed.precisions_cholesky is not None
            known = fixed.covariances
            if self.structure.shared:
                return known.values, fixed.precisions_cholesky, floored
            cov = cov.copy()
            prec_chol = fixed.precisions_cholesky.copy()
            cov[known.mask] = known.values[known.mask]
            free = ~known.mask
            if free.any():
                cov[free], prec_chol[free], floored[free] = self.structure.factor(cov[free], scale)
        if self.reg_covar == 0 and _singular(self.structure, raw, floored, scale):
            which = (
                "the shared covariance"
                if self.structure.shared
                else f"the covariance of component(s) {np.flatnonzero(floored).tolist()}"
            )
            raise DegenerateComponentError(
                f"The fit failed: with reg_covar=0, {which} became singular (the "
                "component collapsed onto fewer samples than dimensions, onto a subspace or "
                "onto equal values, where the likelihood has no maximum). Increase reg_covar "
                "(the default 1e-6 keeps such a component "
                "finite), use a prior, decrease n_components, or scale the input data."
            )
        if floored.any():
            which = np.flatnonzero(floored).tolist()
            warnings.warn(
                f"Component(s) {which}: the covariance is singular to working precision (a "
                "zero variance or eigenvalue: the component collapsed onto fewer samples than "
                "dimensions, or onto a subspace, where the likelihood is unbounded); its "
                "smallest eigenvalues are held at the "
                f"degeneracy floor ({_FLOOR_EPS * self.n_features:.3g} relative to the data's "
                "scale), which keeps EM monotone, and it is reported in trace_.degenerate. "
                "Increase reg_covar, decrease n_components, or scale the input data.",
                DegenerateComponentWarning,
                stacklevel=6,
            )
        return cov, prec_chol, floored

    def degenerate(self, params: GaussianParams) -> NDArray[np.bool_]:
        """(K,) the components the last M-step held at the degeneracy floor."""
        K = params.means.shape[0]
        return np.zeros(K, dtype=bool) if params.floored is None else params.floored.copy()

    def m_step_gap(self, params: GaussianParams, nk: Array, sum_t: Array) -> float:
        """How far short of maximizing Q the regularized M-step fell (total nats, >= 0).

        Without ``reg_covar`` the M-step is the exact maximizer of Q (plus the log prior)
        over the covariances above the degeneracy floor, a set that does not change during
        a fit: the gap is 0. With ``r = reg_covar > 0``, the covariances ``S + r I`` stay in
        the set ``{Sigma >= r I}``, where the maximizer has the eigenvalues ``max(s, r)``
        of S's ``s``; along each eigenvector, with ``lam = s + r`` and ``m = max(s, r)``,
        the expected complete-data log-likelihood lost is

            M/2 (log(lam / m) + s / lam - s / m)     (= log(lam / s) - r / lam for s >= r)

        with M the mass behind the eigenvalue. The previous parameters are in the same set,
        so EM's objective can decrease by at most this sum in the next iteration; it is
        finite even where S is singular (a component on one point). A covariance held at
        the floor although ``reg_covar > 0`` (``reg_covar`` below the data's round-off)
        has no such bound: the gap is infinite, and the driver restarts the monotone trace.
        """
        if not math.isnan(params.gap):
            return params.gap
        r = self.reg_covar
        if r == 0.0:
            return 0.0
        floored = params.floored
        lam, mass = self.structure.spectrum(params.covariances, self._mass(nk))
        if self.fixed is not None and self.fixed.covariances is not None:
            # known covariances are their own maximizer: no reg_covar, no gap
            if self.structure.shared:
                return 0.0
            free = ~self.fixed.covariances.mask
            lam, mass = lam[free], mass[free]
            floored = None if floored is None else floored[free]
        if floored is not None and floored.any():
            return float("inf")
        s = np.maximum(lam - r, 0.0)
        m = np.maximum(s, r)
        loss = np.log(lam / m) + s / lam - s / m
        return 0.5 * float((mass * np.maximum(loss, 0.0)).sum())

    def log_prior(self, params: GaussianParams) -> float:
        """log NIW(means, covariances): normal means given the covariances (if the
        shrinkage is positive) times inverse-Wishart (-Gamma) covariances. Under mclust's
        convention, the log density the M-step maximizes (see
        :func:`~emkit.families.covariance.mclust_prior_shares`), up to a constant."""
        if self.prior is None:
            return 0.0
        prior = self.attached_prior(params.means.shape[0])
        d = self.n_features
        prec_chol = params.precisions_cholesky
        structure = self.structure
        shares = prior.shares
        kappa = prior.shrinkage if shares.shrink_scatter else 0.0
        total = 0.0
        if kappa > 0:
            # log N(mu_k | mean, Sigma_k / kappa) = d/2 log(kappa / 2pi) + 1/2 log|P_k|
            #                                       - kappa/2 (mu_k - mean)^T P_k (...)
            maha = structure.mahalanobis(prior.mean[None, :], params.means, prec_chol)[0]
            half_log_det = structure.half_log_det(prec_chol, d)
            total += float(
                np.sum(0.5 * d * (np.log(kappa) - LOG_2PI) + half_log_det - 0.5 * kappa * maha)
            )
        from emkit.families.covariance import mclust_prior_shares

        if (
            prior.convention == "conjugate"
            or mclust_prior_shares(structure.name, d, params.means.shape[0], prior.dof, kappa > 0)
            is None
        ):
            return total + structure.log_prior_covariance(
                params.covariances, prec_chol, prior.scale, prior.dof, d
            )
        # -1/2 sum_k [a_k log|Sigma_k| + s tr(L Sigma_k^-1)], the means' share of a_k
        # taken by their normal densities above (1 per component; d in a trace layout)
        unit = 1.0 if structure.dense or isinstance(structure, Diag) else float(d)
        K = params.means.shape[0]
        mean_share = (K if structure.shared else 1) * unit * float(kappa > 0)
        log_det = -2.0 * structure.half_log_det(prec_chol, d) / unit
        trace = shares.scale * np.sum(prior.scale * structure.precisions(prec_chol))
        return total - 0.5 * float(np.sum((shares.mass - mean_share) * log_det) + trace)

    def default_params(self, n_components: int) -> GaussianParams:
        K, d = n_components, self.n_features
        shape = self.structure.shape(K, d)
        ones = (
            np.ones(shape) if not self.structure.dense else np.broadcast_to(np.eye(d), shape).copy()
        )
        return GaussianParams(np.zeros((K, d)), ones, ones.copy())

    def n_parameters(self, n_components: int) -> int:
        d, K = self.n_features, n_components
        fixed = self.fixed or GaussianFixed(None, None, None)
        n_means = K - (0 if fixed.means is None else int(fixed.means.mask.sum()))
        if fixed.covariances is None:
            n_cov = self.structure.n_parameters(K, d)
        elif self.structure.shared:
            n_cov = 0
        else:
            n_cov = self.structure.n_parameters(K - int(fixed.covariances.mask.sum()), d)
        return n_means * d + n_cov

    # -- known parameters ----------------------------------------------------------------

    def fix(self, fixed: Mapping[str, Any] | None, n_components: int) -> GaussianFamily:
        """The family with known means (user coordinates) and/or covariances."""
        return self.fix_named(fixed, n_components, "Gaussian", "")

    def fix_named(
        self, fixed: Mapping[str, Any] | None, n_components: int, family: str, prefix: str
    ) -> GaussianFamily:
        """:meth:`fix` with the parameters named ``prefix + 'means'`` etc. (LogNormal)."""
        d = self.n_features
        structure = self.structure
        cov_shape = structure.shape(1 if not structure.shared else n_components, d)
        groups = (
            Group(prefix + "means", (d,), check_finite, dof=d),
            Group(
                prefix + "covariances",
                cov_shape if structure.shared else cov_shape[1:],
                structure.check_covariance,
                dof=structure.n_parameters(1, d),
                shared=structure.shared,
            ),
        )
        parsed = parse_fixed(family, fixed, groups, n_components)
        if not parsed:
            return replace(self, fixed=None)
        means = parsed.get(prefix + "means")
        covariances = parsed.get(prefix + "covariances")
        prec_chol = None
        if covariances is not None and structure.ties:
            name = f"{family} fixed {prefix}covariances"
            if not covariances.mask.all():
                raise InputError(
                    f"{name}: covariance_type {structure.name!r} shares factors of the "
                    "covariances between components, so known covariances for some of them "
                    f"would constrain the others; got {int(covariances.mask.sum())} of "
                    f"{n_components}. Pass every component's covariance, or none."
                )
            problem = structure.infeasible(covariances.values)
            if problem is not None:
                raise InputError(f"{name} {problem}")
        if covariances is not None:
            if structure.shared:
                prec_chol = structure.exact_factor(covariances.values)
            else:
                prec_chol = np.full_like(covariances.values, np.nan)
                mask = covariances.mask
                prec_chol[mask] = structure.exact_factor(covariances.values[mask])
        return replace(self, fixed=GaussianFixed(means, covariances, prec_chol))

    def sample(
        self, params: GaussianParams, component: int, n: int, rng: np.random.Generator
    ) -> Array:
        d = self.n_features
        assert self.shift is not None
        cov = self.structure.component_covariance(params.covariances, component, d)
        L = np.linalg.cholesky(cov)
        z = rng.standard_normal((n, d))
        return params.means[component] + self.shift + z @ L.T

    def fitted_attributes(self, params: GaussianParams) -> dict[str, Array]:
        return {
            "means": self.user_means(params),
            "covariances": params.covariances,
            "precisions": self.structure.precisions(params.precisions_cholesky),
            "precisions_cholesky": params.precisions_cholesky,
        }

    # -- conversions between the user's parameters and the family's -----------------

    def params_from_covariances(self, means: Array, covariances: Array) -> GaussianParams:
        """Parameters from means in the user's coordinates and covariances."""
        assert self.shift is not None
        # a floor relative to the covariances themselves: valid ones are taken as given
        d = self.n_features
        if self.structure.dense:
            diagonal = np.reshape(np.diagonal(covariances, 0, -2, -1), (-1, d))
        else:  # diag (K, d) or spherical (K,)
            diagonal = np.reshape(covariances, (-1, d if np.ndim(covariances) == 2 else 1))
        own = np.broadcast_to(np.sqrt(np.max(np.abs(diagonal), axis=0)), (d,))
        covariances, prec_chol, _ = self.structure.factor(covariances, np.maximum(own, 1e-150))
        return GaussianParams(means - self.shift, covariances, prec_chol)

    def params_from_precisions(
        self, means: Array, precisions: Array, prec_chol: Array | None = None
    ) -> GaussianParams:
        """Parameters from means in the user's coordinates and precision matrices (and
        their factors, ``structure.from_precisions``, where the caller has them)."""
        assert self.shift is not None
        try:
            if prec_chol is None:
                prec_chol = self.structure.from_precisions(precisions)
        except np.linalg.LinAlgError as exc:
            raise InputError(
                "precisions_init is not symmetric positive-definite; pass precision "
                "matrices (inverse covariances) that are."
            ) from exc
        precisions = self.structure.precisions(prec_chol)
        covariances = np.linalg.inv(precisions) if self.structure.dense else 1.0 / precisions
        return GaussianParams(means - self.shift, covariances, prec_chol)

    def centred_means(self, means: Array) -> Array:
        """Means in the user's coordinates, moved to the family's centred ones."""
        assert self.shift is not None
        return means - self.shift

    def user_means(self, params: GaussianParams) -> Array:
        """Means in the user's coordinates (known ones exactly as they were given)."""
        assert self.shift is not None
        means = params.means + self.shift
        if self.fixed is not None and self.fixed.means is not None:
            known = self.fixed.means
            means = np.where(known.mask[:, None], known.values, means)
        return means


def centred_column_scale(X: Array, shift: Array) -> Array:
    """The median |x_j - shift_j| of every column (d,): the scale of the degeneracy floor,
    which no outlier moves. Missing values (NaN) are skipped; a column with none observed
    counts 0. Taken over at most ~65536 evenly spaced rows: a scale, not an estimate."""
    return _column_median((X[:: _spacing(X.shape[0])],), shift)


def _spacing(n_rows: int) -> int:
    """The step between the evenly spaced rows a column scale is the median over."""
    return max(1, n_rows // 65536)


def _column_median(parts: Sequence[Array], shift: Array) -> Array:
    """The median |x_j - shift_j| per column of the rows of ``parts`` (blocks of rows, in
    order), NaN skipped (0 where none)."""
    d = int(shift.shape[0])
    m = sum(int(part.shape[0]) for part in parts)
    if not m:
        return np.zeros(d)
    dtype = np.result_type(*parts)
    # one column a contiguous row (d, m), written block by block: the median partitions
    # each row in place, instead of a strided column of a copy
    deviations = np.empty((d, m), dtype=dtype)
    start = 0
    with np.errstate(invalid="ignore", over="ignore"):
        for part in parts:
            out = deviations[:, start : start + part.shape[0]]
            np.subtract(part.T, shift.astype(dtype)[:, None], out=out)
            start += part.shape[0]
        np.abs(deviations, out=deviations)
    if not np.isnan(deviations).any():  # (nanmedian's masked arrays cost ~0.5 ms a fit)
        med = _row_medians(deviations)
    else:
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column
            med = np.nanmedian(deviations, axis=1, overwrite_input=True)
    med = np.asarray(med, dtype=np.float64)
    if np.isfinite(med).all():
        return med
    return np.nan_to_num(med, nan=0.0, posinf=0.0)


# Rows at least this long take the median through a band (_row_medians), every
# _BAND_STEP-th value a row as its sample.
_BAND_ROWS = 4096
_BAND_STEP = 32


def _row_medians(rows: Array) -> Array:
    """``np.median(rows, axis=1)`` of a (d, m) array without NaN (``rows`` is
    overwritten), exactly, a few times faster on long rows.

    The median's two order statistics (ranks ``(m - 1) // 2`` and ``m // 2``) lie, with
    rare exceptions, between two values of the row's evenly spaced sample a few of its
    standard errors around its own median: one comparison pass counts the values below
    that band and selects the band, and only the band is partitioned. A row whose band
    misses the ranks (counted, so known) is partitioned whole, as ``np.median`` does.
    """
    d, m = rows.shape
    if m < _BAND_ROWS:
        # np.median's order statistics and mean of the middle two, without its checks
        # (which cost as much as the rest on a small fit)
        h = m // 2
        rows.partition([h] if m % 2 else [h - 1, h], axis=1)
        return rows[:, h].copy() if m % 2 else (rows[:, h - 1] + rows[:, h]) / 2.0
    k = ((m - 1) // 2, m // 2)
    sample = rows[:, ::_BAND_STEP].copy()
    s = sample.shape[1]
    # the sample's median is off the row's by ~ sqrt(s) / 2 ranks of the sample: a band
    # of 4 of those each side
    reach = 2 * int(np.sqrt(s)) + 2
    ranks = (max(s // 2 - reach, 0), min(s // 2 + reach, s - 1))
    sample.partition(ranks, axis=1)
    low, high = sample[:, ranks[0], None], sample[:, ranks[1], None]
    below = np.count_nonzero(rows < low, axis=1)
    band = (rows >= low) & (rows <= high)
    inside = np.count_nonzero(band, axis=1)
    out = np.empty(d, dtype=rows.dtype)
    for j in range(d):
        first, last = k[0] - below[j], k[1] - below[j]
        if first >= 0 and last < inside[j]:
            values = rows[j][band[j]]
            values.partition((first, last))
            a, b = values[first], values[last]
        else:  # the band missed: the whole row
            rows[j].partition(k)
            a, b = rows[j][k[0]], rows[j][k[1]]
        # np.median's mean of the middle value(s): a, or (a + b) / 2
        out[j] = a if k[0] == k[1] else (a + b) / 2
    return out


def far_log_prob(
    parts: Sequence[tuple[CovarianceStructure, Array, GaussianParams]],
) -> tuple[Array, Array]:
    """log N(x | mu_k, Sigma_k) of rows so far out that the squared distances overflow, for
    one Gaussian or several over disjoint columns (a product's blocks: their distances
    add), as ``(structure, centred rows, parameters)`` parts over the same rows; in two
    finite-where-possible parts: (n, K) ``-1/2 (D_k - D_m)`` without the normalizers, m
    the nearest component, and (n,) ``-1/2 D_m`` (-inf when D_m itself is beyond
    float64).

    With t a power of two per row (exact), ``a_k = (x/t) U_k``, ``b_k = (mu_k U_k)/t``,
    ``y_k = a_k - b_k`` (the parts' stacked) and ``S = t max|y|``:
    ``D_k = S^2 ||y_k / max|y| ||^2`` and
    ``D_k - D_m = S^2 ((a_k - a_m) - (b_k - b_m)).(y_k + y_m) / max|y|^2``. Taking a_k - a_m
    apart keeps the means' share where it decides (equal U_k: a_k - a_m = 0 exactly),
    and every factor stays representable: the posterior keeps its digits where the
    log-densities are out of range.
    """
    K = parts[0][2].means.shape[0]
    rows = np.arange(parts[0][1].shape[0])
    X64 = [np.asarray(Xc, dtype=np.float64) for _, Xc, _ in parts]
    largest = np.max([np.max(np.abs(X), axis=1) for X in X64], axis=0)
    t = np.exp2(np.floor(np.log2(np.maximum(largest, 1e-300))))
    a_parts, b_parts = [], []
    for (structure, _, params), X in zip(parts, X64, strict=True):
        pc = params.precisions_cholesky
        a_parts.append(structure.whiten(X / t[:, None], pc, K))
        mu_U = structure.whiten(params.means, pc, K)[np.arange(K), np.arange(K)]
        b_parts.append(mu_U[None, :, :] / t[:, None, None])
    a = np.concatenate(a_parts, axis=2)
    b = np.concatenate(b_parts, axis=2)
    y = a - b
    peak = np.maximum(np.max(np.abs(y), axis=(1, 2)), 1e-300)[:, None, None]
    unit = np.einsum("nkj,nkj->nk", y / peak, y / peak)

    def gap(m: NDArray[np.intp]) -> Array:
        """(D_k - D_m) / S^2."""
        diff = (a - a[rows, m][:, None, :]) - (b - b[rows, m][:, None, :])
        return np.asarray(
            np.einsum("nkj,nkj->nk", diff / peak, (y + y[rows, m][:, None, :]) / peak)
        )

    # ||y_k|| alone cannot tell components whose distances differ below its round-off
    # (equal U_k: only the means' share differs): the nearest is the smallest gap
    nearest = np.argmin(gap(np.argmin(unit, axis=1)), axis=1)
    S = t * peak[:, 0, 0]
    with np.errstate(over="ignore"):
        rel = -0.5 * (S[:, None] * (S[:, None] * np.maximum(gap(nearest), 0.0)))
        row = -0.5 * (S * (S * unit[rows, nearest]))
    return rel, row


def _far_log_prob(
    structure: CovarianceStructure, Xc: Array, params: GaussianParams
) -> tuple[Array, Array]:
    """:func:`far_log_prob` of one Gaussian."""
    return far_log_prob([(structure, Xc, params)])


def centred_scale(X: Array, shift: Array) -> float:
    """max |x - shift| over the rows, from the column extremes (no temporary array): the
    ``scale`` that bounds the expanded form's round-off."""
    # fmax and fmin skip missing values (NaN); a column with none observed counts 0, an
    # infinite extreme the largest float (np.nan_to_num's values, without its ~10 us a
    # call: fmax.reduce skips the NaN of such columns, and min caps infinity)
    hi = np.fmax.reduce(X, axis=0).astype(np.float64) - shift
    lo = np.fmin.reduce(X, axis=0).astype(np.float64) - shift
    top = float(np.fmax.reduce(np.abs(np.concatenate([hi, lo]))))
    return max(min(top, _LARGEST) if top == top else 0.0, 1e-300)


def Gaussian(
    covariance_type: str = "full", *, reg_covar: float = 1e-6, prior: Any = None
) -> GaussianFamily:
    """Gaussian components over continuous columns, with a covariance structure.

    Parameters
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance.
    prior : GaussianPrior, 'auto', 'mclust' or None, default=None
        Normal-inverse-Wishart prior for MAP-EM (``'auto'``: mclust's default
        hyper-parameters as each component's own conjugate prior; ``'mclust'``: mclust's
        ``priorControl()`` M-steps, see :class:`~emkit.families.GaussianPrior`).

    Examples
    --------
    >>> import numpy as np
    >>> Gaussian("diag").bind(np.array([[0.0, 1.0], [2.0, 3.0]]), None).n_stats
    4
    """
    if isinstance(reg_covar, bool) or not np.isfinite(reg_covar) or reg_covar < 0:
        raise InputError(f"reg_covar must be a non-negative number, got {reg_covar!r}.")
    return GaussianFamily(
        covariance_structure(covariance_type), reg_covar=float(reg_covar), prior=prior
    )


def check_gaussian_prior(prior: Any) -> None:
    """Raise :class:`~emkit.exceptions.InputError` unless ``prior`` is one a Gaussian
    takes: None, ``'auto'``, ``'mclust'`` or a :class:`GaussianPrior`."""
    if prior is None or isinstance(prior, GaussianPrior):
        return
    if isinstance(prior, str) and prior in ("auto", "mclust"):
        return
    raise InputError(
        "prior must be None, 'mclust', 'auto' or a GaussianPrior, got "
        f"{prior!r} ({type(prior).__name__})."
    )


def _positive_definite(cov: Array) -> Array:
    """The data covariance as the default prior scale: its eigenvalues floored at
    ``_PRIOR_SCALE_FLOOR`` times the largest one.

    Collinear columns (x, 2x + 1) or fewer rows than columns make the data covariance
    singular; an inverse-Wishart with a singular scale has ``log|scale| = -inf`` and lets the
    covariances collapse along the null directions, the very failure the prior is there to
    prevent. The floor keeps every direction's prior variance positive and changes nothing
    for a well-conditioned covariance.
    """
    lam, V = np.linalg.eigh(cov)
    floor = max(_PRIOR_SCALE_FLOOR * float(lam.max(initial=0.0)), 1e-300)
    if lam.min() >= floor:
        return cov
    # S = V diag(max(lam, floor)) V^T, symmetric by construction
    out = (V * np.maximum(lam, floor)) @ V.T
    return np.asarray(0.5 * (out + out.T))


def _check_prior_shapes(prior: GaussianPrior, d: int) -> None:
    mean = np.asarray(prior.mean, dtype=np.float64)
    if mean.shape != (d,):
        raise InputError(
            f"GaussianPrior mean must have shape ({d},) for {d} columns, got {mean.shape}."
        )
    if prior.dof is not None and prior.dof <= d - 1:
        raise InputError(
            f"GaussianPrior dof must be > n_features - 1 = {d - 1} for a proper prior, got "
            f"{prior.dof}."
        )
    if prior.scale is not None:
        scale = np.asarray(prior.scale, dtype=np.float64)
        if scale.shape not in ((), (d,), (d, d)):
            raise InputError(
                f"GaussianPrior scale must be a scalar, shape ({d},) or ({d}, {d}), got "
                f"{scale.shape}."
            )
        full = scale if scale.ndim == 2 else np.diag(np.broadcast_to(scale, (d,)))
        if not np.allclose(full, full.T) or np.linalg.eigvalsh(full).min() <= 0:
            raise InputError("GaussianPrior scale must be symmetric positive-definite.")

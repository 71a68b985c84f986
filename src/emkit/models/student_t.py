"""Mixtures of multivariate Student-t distributions, as pure functions of (params, rows).

Component k is t_nu_k(mu_k, Sigma_k): x | u ~ N(mu_k, Sigma_k / u) with a latent scale
u ~ Gamma(nu_k / 2, rate nu_k / 2). With delta_nk the squared Mahalanobis distance of row n
under component k and d its dimension,

    log t(x) = log Gamma((nu + d)/2) - log Gamma(nu/2) - d/2 log(nu pi) + 1/2 log|P|
               - (nu + d)/2 log(1 + delta / nu)

and given x_n and component k the scale is Gamma((nu + d)/2, rate (nu + delta)/2), so

    E[u_nk] = (nu_k + d) / (nu_k + delta_nk),
    E[log u_nk] = digamma((nu_k + d)/2) - log((nu_k + delta_nk)/2).

EM treats the labels and the scales as missing (Peel & McLachlan, 2000). The statistics
are the responsibility masses N_k = sum r, the scale-weighted sums of the Gaussian
statistics T(x) (the responsibilities multiplied by E[u]) and sum r (E[log u] - E[u]).
Given them the expected complete-data log-likelihood separates: the weights, the means
and scales (a Gaussian covariance M-step whose weights are r E[u], divided by N_k), and
nu_k, the maximizer of the concave

    N_k [nu/2 log(nu/2) - log Gamma(nu/2)] + nu/2 sum_n r_nk (E[log u_nk] - E[u_nk]),

the root of log(nu/2) - digamma(nu/2) + 1 + sum r (E[log u] - E[u]) / N_k = 0 (one 1-D
solve, :func:`scipy.optimize.brentq`). This is the ECM form of the nu update, with the
E-step's E[log u]: every part of the M-step maximizes the same expected complete-data
log-likelihood, so the iteration is exact EM and the log-likelihood never decreases, and it
needs no second pass over the rows (ECME, maximizing the observed log-likelihood in nu
after the new means and scales, converges faster in nu but costs one more pass a
iteration). With ``max_iter`` the solve is bounded: a generalized M-step that keeps the old
nu unless the bounded solve's value raises the objective.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.optimize import brentq
from scipy.special import digamma, gammaln

from emkit.families.gaussian import CovarianceStructure
from emkit.models.mixing import EXACT, NK_FLOOR, NO_PRIOR, Assignment, MixingWeights
from emkit.models.statistics import Statistics

__all__ = [
    "DOF_BOUNDS",
    "DOF_TYPES",
    "DegreesOfFreedom",
    "StudentTMixture",
    "StudentTParams",
    "StudentTStats",
    "t_log_density",
]

Array = NDArray[np.floating[Any]]
LOG_PI = float(np.log(np.pi))

DOF_TYPES = ("per-component", "shared", "fixed")
# nu is searched in this interval (its maximum is taken at a bound when the root is outside)
DOF_BOUNDS = (1e-2, 1e6)


class StudentTParams(NamedTuple):
    """Mixing weights and each component's location, scale and degrees of freedom
    (locations in the shifted coordinates)."""

    weights: Array  # (K,)
    means: Array  # (K, d)  mu_k - shift
    covariances: Array  # scale matrices in the structure's shape
    precisions_cholesky: Array  # same shape; Sigma^-1 = U U^T
    dof: Array  # (K,)  nu_k
    mended: bool = False  # a singular scale matrix was raised: the M-step was not exact


@dataclass(frozen=True)
class StudentTStats(Statistics):
    """Additive statistics of a block of rows."""

    nk: Array  # (K,)  sum_n w_n r_nk
    uk: Array  # (K,)  sum_n w_n r_nk E[u_nk]
    sum_t: Array  # (K, n_stats)  sum_n w_n r_nk E[u_nk] T(x_n), T as the structure lays it out
    shared: Array  # tied: sum_n sum_k w_n r_nk E[u_nk] x_n x_n^T (raveled); else empty
    log_u: Array  # (K,)  sum_n w_n r_nk (E[log u_nk] - E[u_nk])
    loglik: float  # sum_n w_n log p(x_n)
    weight: float  # sum_n w_n


def t_log_density(delta: Array, dof: Array, half_log_det: Array, d: int) -> Array:
    """log t_nu(x; mu, Sigma) from squared Mahalanobis distances ``delta`` (n, K), the
    degrees of freedom (K,) and 1/2 log|Sigma^-1| ((K,) or ())."""
    const = (
        gammaln(0.5 * (dof + d)) - gammaln(0.5 * dof) - 0.5 * d * (np.log(dof) + LOG_PI)
    ) + half_log_det
    return np.asarray(const - 0.5 * (dof + d) * np.log1p(delta / dof))


def _dof_objective(nu: Array, mass: Array, log_u: Array) -> Array:
    """The nu part of the expected complete-data log-likelihood, per component."""
    half = 0.5 * nu
    return np.asarray(mass * (half * np.log(half) - gammaln(half)) + half * log_u)


@dataclass(frozen=True)
class DegreesOfFreedom:
    """How the degrees of freedom are estimated: ``kind`` in :data:`DOF_TYPES`
    (``fixed`` keeps the initial values), the 1-D solve bounded to ``max_iter``
    iterations (None: to convergence)."""

    kind: str = "per-component"
    max_iter: int | None = None

    def m_step(self, dof: Array, nk: Array, log_u: Array) -> Array:
        """New degrees of freedom from the masses N_k and sum r (E[log u] - E[u])."""
        if self.kind == "fixed":
            return dof
        if self.kind == "shared":
            mass, sums = np.array([nk.sum()]), np.array([log_u.sum()])
            new = self._solve(dof[:1], mass, sums)
            return np.full_like(dof, new[0])
        return self._solve(dof, nk, log_u)

    def _solve(self, old: Array, mass: Array, log_u: Array) -> Array:
        lo, hi = DOF_BOUNDS
        new = old.copy()
        for k in range(old.shape[0]):
            if mass[k] <= NK_FLOOR:
                continue  # an empty component: nothing to learn its nu from
            c = 1.0 + log_u[k] / mass[k]  # <= 0 (Jensen), 0 only when every u is 1

            def score(log_nu: float, c: float = c) -> float:
                half = 0.5 * np.exp(log_nu)
                return float(np.log(half) - digamma(half) + c)

            a, b = np.log(lo), np.log(hi)
            # the score decreases in nu: the maximum sits at a bound when no root is inside
            if score(b) >= 0:
                candidate = hi
            elif score(a) <= 0:
                candidate = lo
            else:
                kwargs: dict[str, Any] = {"xtol": 1e-12, "rtol": 4 * np.finfo(float).eps}
                if self.max_iter is not None:
                    kwargs.update(maxiter=self.max_iter, disp=False)
                candidate = float(np.exp(brentq(score, a, b, **kwargs)))
            gain = _dof_objective(np.array([candidate]), mass[k : k + 1], log_u[k : k + 1])
            base = _dof_objective(old[k : k + 1], mass[k : k + 1], log_u[k : k + 1])
            if self.max_iter is None or gain[0] >= base[0]:
                new[k] = candidate
        return new

    def n_parameters(self, n_components: int) -> int:
        return {"per-component": n_components, "shared": 1, "fixed": 0}[self.kind]


@dataclass(frozen=True, eq=False)
class StudentTMixture:
    """A finite mixture of multivariate t components with a Gaussian covariance structure
    for their scale matrices. ``shift`` (d,) is subtracted from every row."""

    structure: CovarianceStructure
    shift: Array
    reg_covar: float
    dof: DegreesOfFreedom = DegreesOfFreedom()
    assign: Assignment = EXACT
    weights: MixingWeights = NO_PRIOR

    def _log_prob(self, params: StudentTParams) -> Callable[[Array], tuple[Array, Array]]:
        """A function of shifted rows giving (log p(x_n, k), delta_nk), both (n, K)."""
        d = params.means.shape[1]
        half_log_det = self.structure.half_log_det(params.precisions_cholesky, d)
        with np.errstate(divide="ignore"):  # a weight of 0 is a log-weight of -inf
            log_w = np.log(params.weights)

        def log_prob(Y: Array) -> tuple[Array, Array]:
            delta = self.structure.mahalanobis(Y, params.means, params.precisions_cholesky)
            return log_w + t_log_density(delta, params.dof, half_log_det, d), delta

        return log_prob

    def expectation(self, params: StudentTParams) -> Callable[[Array, Array | None], StudentTStats]:
        """The E-step for one iteration, as a function of a block of rows and weights."""
        log_prob = self._log_prob(params)
        nu = params.dof
        d = params.means.shape[1]

        def e_step(X: Array, weights: Array | None) -> StudentTStats:
            Y = np.subtract(X, self.shift, dtype=np.float64)
            w = np.ones(Y.shape[0]) if weights is None else weights.astype(np.float64)
            lp, delta = log_prob(Y)
            resp, loglik = self.assign(lp, None, w, None, None)
            Eu = (nu + d) / (nu + delta)
            Elogu = digamma(0.5 * (nu + d)) - np.log(0.5 * (nu + delta))
            return self._statistics(Y, resp, Eu, (resp * (Elogu - Eu)).sum(axis=0), loglik, w)

        return e_step

    def _statistics(
        self, Y: Array, resp: Array, Eu: Array, log_u: Array, loglik: float, w: Array
    ) -> StudentTStats:
        ru = resp * Eu
        sum_t = ru.T @ self.structure.statistics(Y)
        if self.structure.shared:
            v = ru.sum(axis=1)
            shared = ((Y * v[:, None]).T @ Y).ravel()
        else:
            shared = np.zeros(0)
        return StudentTStats(
            resp.sum(axis=0), ru.sum(axis=0), sum_t, shared, log_u, loglik, float(w.sum())
        )

    def statistics_from_resp(self, X: Array, weights: Array | None, resp: Array) -> StudentTStats:
        """Statistics for given responsibilities and every scale u = 1 (initialization)."""
        Y = np.subtract(X, self.shift, dtype=np.float64)
        w = np.ones(Y.shape[0]) if weights is None else weights.astype(np.float64)
        r = resp * w[:, None]
        return self._statistics(Y, r, np.ones_like(r), -r.sum(axis=0), 0.0, w)

    def _locations_scales(self, stats: StudentTStats) -> tuple[Array, Array, Array, Array, bool]:
        """(floored masses, means, scale matrices, their precision Cholesky factors,
        whether a singular one was raised)."""
        d = self.shift.shape[0]
        nk = stats.nk + NK_FLOOR
        uk = stats.uk + NK_FLOOR
        means = stats.sum_t[:, :d] / uk[:, None]
        scatter = self.structure.scatter(uk, means, stats.sum_t, stats.shared)
        cov = self.structure.divide(scatter, self.structure.mass(nk, d), self.reg_covar)
        cov, prec_chol, mended = self.structure.factor(cov, self.reg_covar)
        return nk, means, cov, prec_chol, mended

    def m_step(self, params: StudentTParams, stats: StudentTStats) -> StudentTParams:
        nk, means, cov, prec_chol, mended = self._locations_scales(stats)
        dof = self.dof.m_step(params.dof, stats.nk, stats.log_u)
        return StudentTParams(self.weights.m_step(nk), means, cov, prec_chol, dof, mended)

    def initial_params(self, stats: StudentTStats, dof: Array) -> StudentTParams:
        """Weights, means and scales of the initial responsibilities (statistics from
        :meth:`statistics_from_resp`), with the given degrees of freedom."""
        nk, means, cov, prec_chol, mended = self._locations_scales(stats)
        return StudentTParams(self.weights.m_step(nk), means, cov, prec_chol, dof, mended)

    def m_step_gap(self, params: StudentTParams, stats: StudentTStats) -> float:
        """Per-sample shortfall of the M-step that gave ``params`` from maximizing Q: the
        ``reg_covar`` added to the scale matrices (the weights, means and the degrees of
        freedom, bounded solve included, never lower Q).

        Q's scale part is that of a Gaussian covariance, -N_k/2 (log|Sigma| +
        tr(Sigma^-1 S_k)), so with eigenvalues lam of S_k + r I the loss is
        sum M/2 (log lam - log(lam - r) - r/lam), M the mass behind each eigenvalue.
        """
        if params.mended:
            return float("inf")  # raised off a singular maximizer: no bound
        r = self.reg_covar
        d = self.shift.shape[0]
        mass = self.structure.mass(stats.nk + NK_FLOOR, d)
        lam, behind = self.structure.spectrum(params.covariances, mass)
        if np.any(lam <= r):
            return float("inf")
        x = r / lam
        return 0.5 * float(np.sum(behind * (-np.log1p(-x) - x))) / stats.weight

    def objective(self, params: StudentTParams, stats: StudentTStats) -> float:
        """Per-sample log-likelihood."""
        return stats.loglik / stats.weight

    def weighted_log_prob(self, params: StudentTParams) -> Callable[[Array], Array]:
        """log p(x_n, k) for raw rows, shape (n, K)."""
        log_prob = self._log_prob(params)
        shift = self.shift
        return lambda X: log_prob(np.subtract(X, shift, dtype=np.float64))[0]

    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Free parameters: weights, means, scale matrices and degrees of freedom."""
        K, d = n_components, n_features
        return (
            self.weights.n_parameters(K)
            + K * d
            + self.structure.n_parameters(K, d)
            + self.dof.n_parameters(K)
        )

    @staticmethod
    def row_bytes(n_features: int, n_components: int) -> int:
        """Bytes a row of a chunk needs in the E-step: the shifted row, its statistics,
        and a few (n, K) arrays."""
        d = n_features
        return (2 * d + d * (d + 1) // 2 + 8 * n_components + 4) * 8

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
nu unless the bounded solve's value (Newton from the old nu, pulled back towards it if
needed) raises the objective.

Missing values (NaN): the marginal of a multivariate t over the observed coordinates o is
t_nu(mu_o, Sigma_oo), so a row's likelihood, delta and E[u], E[log u] use its observed
coordinates and their number d_o in place of d. Given x_o, k and u the missing block is
Gaussian about the conditional mean with covariance Sigma_m|o / u, so the u-weighted
statistics take the conditional means in place of the missing values and add
Sigma_m|o to the second moments (E[u x_m x_m^T] = E[u] E[x_m] E[x_m]^T + Sigma_m|o: the
conditional scale is weighted by the responsibility alone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.linalg import solve_triangular
from scipy.optimize import brentq
from scipy.special import digamma, gammaln

from emkit.families.gamma import solve_gamma_shape
from emkit.families.gaussian import LOG_2PI, CovarianceStructure
from emkit.models.mixing import EXACT, NK_FLOOR, NO_PRIOR, Assignment, MixingWeights, for_rows
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
# how many times a bounded solve's value is pulled back towards the old nu (it ends within
# (hi / lo)^(2^-60) of it)
_PULLBACKS = 60


class StudentTParams(NamedTuple):
    """Mixing weights and each component's location, scale and degrees of freedom
    (locations in the shifted coordinates)."""

    weights: Array  # (K,)
    means: Array  # (K, d)  mu_k - shift
    covariances: Array  # scale matrices in the structure's shape
    precisions_cholesky: Array  # same shape; Sigma^-1 = U U^T
    dof: Array  # (K,)  nu_k
    mended: bool = False  # a singular scale matrix was raised: the M-step was not exact
    # how far an iterative (mclust) structure's constrained maximization fell below the
    # previous scale matrices' value of Q (total nats); NaN: the reg_covar bound applies
    gap: float = float("nan")


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


def t_log_density(delta: Array, dof: Array, half_log_det: Array, d: int | Array) -> Array:
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

            # the score decreases in nu and its sign at the old nu says on which side the
            # maximum is: bracket it between the old nu and that side's bound (the maximum
            # sits at the bound when no root is inside)
            start = np.log(old[k])
            at_start = score(start)
            if at_start == 0.0:
                continue
            a, b = (start, np.log(hi)) if at_start > 0 else (np.log(lo), start)
            if at_start > 0 and score(b) >= 0:
                candidate = hi
            elif at_start < 0 and score(a) <= 0:
                candidate = lo
            elif self.max_iter is None:
                kwargs: dict[str, Any] = {"xtol": 1e-12, "rtol": 4 * np.finfo(float).eps}
                new[k] = float(np.exp(brentq(score, a, b, **kwargs)))
                continue
            else:
                # a bounded solve: the score's root is log(nu/2) - digamma(nu/2) = -c, the
                # Gamma shape's equation: its bracketed Newton, from the old nu
                half, _ = solve_gamma_shape(np.array([-c]), self.max_iter, old[k : k + 1] / 2)
                candidate = float(np.clip(2.0 * half[0], lo, hi))

            def q(nu: float, k: int = k) -> float:
                return float(_dof_objective(np.array([nu]), mass[k : k + 1], log_u[k : k + 1])[0])

            # a bounded solve may stop past the maximum; Q is concave in nu, so the points
            # between the old nu and the maximum raise it: pull the value back towards the
            # old one (halving in log nu) until it does, else keep the old nu
            base = q(float(old[k]))
            for _ in range(_PULLBACKS):
                if q(candidate) >= base:
                    new[k] = candidate
                    break
                candidate = float(np.sqrt(candidate * old[k]))
        return new

    def n_parameters(self, n_components: int) -> int:
        return {"per-component": n_components, "shared": 1, "fixed": 0}[self.kind]


class _Marginals(NamedTuple):
    """The observed-coordinate marginals of rows with missing values, per (row, component),
    and the conditional moments of their missing coordinates."""

    delta: Array  # (n, K)  (x_o - mu_o)^T Sigma_oo^-1 (x_o - mu_o)
    half_log_det: Array  # (n, K)  1/2 log|Sigma_oo^-1|
    dims: Array  # (n,)  observed coordinates
    filled: Array  # (n, K, d)  x with E[x_m | x_o, k] at the missing coordinates
    pattern: NDArray[np.intp]  # (n,)  each row's missingness pattern
    cond_cov: Array  # (n_patterns, K, d, d)  Sigma_mm - Sigma_mo Sigma_oo^-1 Sigma_om, padded


class _RowTerms(NamedTuple):
    """What the E-step needs of a block of shifted rows."""

    log_prob: Array  # (n, K)  log p(x_obs, k)
    delta: Array  # (n, K)  squared Mahalanobis distance over the observed coordinates
    dims: Array  # (n, 1)  observed coordinates
    missing: tuple[NDArray[np.bool_], _Marginals] | None  # the incomplete rows, if any


def observed_marginals(Y: Array, means: Array, scales: Array) -> _Marginals:
    """Marginals of rows ``Y`` (n, d) with missing values (NaN) under dense scale matrices
    (K, d, d): x_o is t_nu(mu_o, Sigma_oo), the same nu; given x_o, component k and u,
    x_m is N(mu_m + Sigma_mo Sigma_oo^-1 (x_o - mu_o), (Sigma_mm - Sigma_mo Sigma_oo^-1
    Sigma_om) / u). One Cholesky factor of Sigma_oo per (pattern, component)."""
    n, d = Y.shape
    K = means.shape[0]
    observed = ~np.isnan(Y)
    patterns, pattern = np.unique(observed, axis=0, return_inverse=True)
    pattern = pattern.reshape(-1)
    delta, half_log_det = np.empty((n, K)), np.empty((n, K))
    filled = np.empty((n, K, d))
    cond_cov = np.zeros((patterns.shape[0], K, d, d))
    for p, o in enumerate(patterns):
        rows, m = np.flatnonzero(pattern == p), ~o
        Yo = Y[np.ix_(rows, o)]
        for k in range(K):
            S = scales[k]
            L = np.linalg.cholesky(S[np.ix_(o, o)])
            Z = solve_triangular(L, (Yo - means[k, o]).T, lower=True)  # L^-1 (x_o - mu_o)
            delta[rows, k] = np.einsum("ij,ij->j", Z, Z)
            half_log_det[rows, k] = -np.log(np.diag(L)).sum()
            filled[rows[:, None], k, np.flatnonzero(o)[None, :]] = Yo
            B = solve_triangular(L, S[np.ix_(o, m)], lower=True)  # L^-1 Sigma_om
            filled[rows[:, None], k, np.flatnonzero(m)[None, :]] = means[k, m] + Z.T @ B
            cond_cov[p, k][np.ix_(m, m)] = S[np.ix_(m, m)] - B.T @ B
    return _Marginals(
        delta, half_log_det, observed.sum(axis=1).astype(float), filled, pattern, cond_cov
    )


def expected_moments(found: _Marginals, resp: Array, ru: Array) -> tuple[Array, Array]:
    """sum_n r_nk E[u x] and sum_n r_nk E[u x x^T] over rows with missing values, given
    x_obs and k, for responsibilities ``resp`` and ``ru`` = r E[u], both (n, K): the
    filled rows' moments weighted by E[u], plus the conditional scale of the missing
    block, E[u (Sigma_m|o / u)] = Sigma_m|o, weighted by r alone."""
    first = np.einsum("nk,nkd->kd", ru, found.filled)
    second = np.einsum("nk,nkd,nke->kde", ru, found.filled, found.filled)
    by_pattern = np.zeros((found.cond_cov.shape[0], resp.shape[1]))
    np.add.at(by_pattern, found.pattern, resp)
    second += np.einsum("pk,pkde->kde", by_pattern, found.cond_cov)
    return first, second


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
    missing: bool = False  # rows may have missing values (NaN)
    # each column's scale, the unit of the structures' degeneracy floor (the Gaussian
    # family's column_scale: median |x - shift| of the training rows); None: 1
    column_scale: Array | None = None

    def _log_prob(self, params: StudentTParams) -> Callable[[Array], _RowTerms]:
        """A function of shifted rows giving their :class:`_RowTerms` (rows with missing
        values, NaN, by the t marginal of their observed coordinates)."""
        d = params.means.shape[1]
        half_log_det = self.structure.half_log_det(params.precisions_cholesky, d)
        dense = np.stack(
            [
                self.structure.component_covariance(params.covariances, k, d)
                for k in range(params.means.shape[0])
            ]
        )
        with np.errstate(divide="ignore"):  # a weight of 0 is a log-weight of -inf
            log_w = np.log(params.weights)

        def log_prob(Y: Array) -> _RowTerms:
            incomplete = np.asarray(np.isnan(Y).any(axis=1)) if self.missing else None
            if incomplete is None or not incomplete.any():
                delta = self.structure.mahalanobis(Y, params.means, params.precisions_cholesky)
                lp = log_w + t_log_density(delta, params.dof, half_log_det, d)
                return _RowTerms(lp, delta, np.full((Y.shape[0], 1), float(d)), None)
            K = params.means.shape[0]
            lp, delta = np.empty((Y.shape[0], K)), np.empty((Y.shape[0], K))
            dims = np.full((Y.shape[0], 1), float(d))
            complete = ~incomplete
            delta[complete] = self.structure.mahalanobis(
                Y[complete], params.means, params.precisions_cholesky
            )
            lp[complete] = t_log_density(delta[complete], params.dof, half_log_det, d)
            found = observed_marginals(Y[incomplete], params.means, dense)
            delta[incomplete] = found.delta
            dims[incomplete, 0] = found.dims
            lp[incomplete] = t_log_density(
                found.delta, params.dof, found.half_log_det, found.dims[:, None]
            )
            lp += log_w
            return _RowTerms(lp, delta, dims, (incomplete, found))

        return log_prob

    def expectation(self, params: StudentTParams) -> Callable[..., StudentTStats]:
        """The E-step for one iteration, as a function of a block of rows, their weights
        and their positions in the data (which a Monte-Carlo policy's draws of the labels
        are keyed by; ``None`` otherwise). Given a row's component, the moments of its
        scale u are exact under every policy."""
        log_prob = self._log_prob(params)
        nu = params.dof

        def e_step(
            X: Array, weights: Array | None, index: NDArray[np.intp] | None = None
        ) -> StudentTStats:
            Y = np.subtract(X, self.shift, dtype=np.float64)
            w = np.ones(Y.shape[0]) if weights is None else weights.astype(np.float64)
            terms = log_prob(Y)
            delta, dims = terms.delta, terms.dims
            assign = for_rows(self.assign, index)
            resp, loglik = assign(terms.log_prob, None, w, None, None)
            # u | x_obs, k ~ Gamma((nu + d_obs)/2, rate (nu + delta_obs)/2)
            Eu = (nu + dims) / (nu + delta)
            Elogu = digamma(0.5 * (nu + dims)) - np.log(0.5 * (nu + delta))
            log_u = (resp * (Elogu - Eu)).sum(axis=0)
            if terms.missing is None:
                return self._statistics(Y, resp, Eu, log_u, loglik, w)
            incomplete, found = terms.missing
            complete = ~incomplete
            stats = self._statistics(
                Y[complete], resp[complete], Eu[complete], log_u, loglik, w[complete]
            )
            ru = resp[incomplete] * Eu[incomplete]
            first, second = expected_moments(found, resp[incomplete], ru)
            sum_t, shared = self.structure.moment_statistics(first, second)
            return StudentTStats(
                stats.nk + resp[incomplete].sum(axis=0),
                stats.uk + ru.sum(axis=0),
                stats.sum_t + sum_t,
                stats.shared + shared,
                log_u,
                loglik,
                float(w.sum()),
            )

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
            resp.sum(axis=0),
            ru.sum(axis=0),
            sum_t,
            shared,
            log_u,
            loglik,
            float(w.sum()),
        )

    def statistics_from_resp(self, X: Array, weights: Array | None, resp: Array) -> StudentTStats:
        """Statistics for given responsibilities and every scale u = 1 (initialization;
        rows mean-filled by the estimator when values are missing)."""
        Y = np.subtract(X, self.shift, dtype=np.float64)
        w = np.ones(Y.shape[0]) if weights is None else weights.astype(np.float64)
        r = resp * w[:, None]
        return self._statistics(Y, r, np.ones_like(r), -r.sum(axis=0), 0.0, w)

    def _locations_scales(
        self, stats: StudentTStats, previous: Array | None
    ) -> tuple[Array, Array, Array, Array, bool, float]:
        """(floored masses, means, scale matrices, their precision Cholesky factors,
        whether a singular one was raised, the structure's measured shortfall or NaN).

        Given the scales u, Q's scale part is a Gaussian covariance's with the u-weighted
        scatter and the responsibility masses, so every covariance structure (mclust's
        fourteen included) maximizes it with its own M-step, started from ``previous``."""
        d = self.shift.shape[0]
        nk = stats.nk + NK_FLOOR
        uk = stats.uk + NK_FLOOR
        means = stats.sum_t[:, :d] / uk[:, None]
        scatter = self.structure.scatter(uk, means, stats.sum_t, stats.shared)
        mass = self.structure.mass(nk, d)
        with np.errstate(divide="ignore", invalid="ignore"):
            cov, gap = self.structure.maximize(scatter, mass, self.reg_covar, previous)
        column_scale = np.ones(d) if self.column_scale is None else self.column_scale
        cov, prec_chol, floored = self.structure.factor(cov, column_scale)
        return (
            nk,
            means,
            cov,
            prec_chol,
            bool(np.any(floored)),
            float("nan") if gap is None else gap,
        )

    def m_step(self, params: StudentTParams, stats: StudentTStats) -> StudentTParams:
        nk, means, cov, prec_chol, mended, gap = self._locations_scales(stats, params.covariances)
        dof = self.dof.m_step(params.dof, stats.nk, stats.log_u)
        return StudentTParams(self.weights.m_step(nk), means, cov, prec_chol, dof, mended, gap)

    def initial_params(self, stats: StudentTStats, dof: Array) -> StudentTParams:
        """Weights, means and scales of the initial responsibilities (statistics from
        :meth:`statistics_from_resp`), with the given degrees of freedom."""
        nk, means, cov, prec_chol, mended, _ = self._locations_scales(stats, None)
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
        if not np.isnan(params.gap):
            # an iterative structure measured its shortfall from the previous scales
            return params.gap / stats.weight
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

    def expected_complete(self, params: StudentTParams, stats: StudentTStats) -> float:
        """Q(params): the expected complete-data log-likelihood (labels and scales
        missing) under the q that ``stats`` summarize, up to terms no parameter changes,
        in total nats. With S_k the u-weighted statistics and U_k = sum r E[u],

            Q = sum_k N_k (log pi_k + 1/2 log|P_k|) + <S_k, eta_k> - U_k mu_k^T P_k mu_k / 2
                + N_k (nu_k/2 log(nu_k/2) - log Gamma(nu_k/2)) + nu_k/2 sum r (E log u - E u)

        (+ -1/2 tr(P sum r E[u] x x^T) for a tied scale matrix)."""
        d = self.shift.shape[0]
        structure = self.structure
        eta, log_norm = structure.natural(params.means, params.precisions_cholesky)
        half_log_det = np.broadcast_to(
            structure.half_log_det(params.precisions_cholesky, d), stats.nk.shape
        )
        # log_norm = mu^T P mu / 2 - 1/2 log|P| + d/2 log(2 pi)
        quadratic = log_norm + half_log_det - 0.5 * d * LOG_2PI
        # (a weight of 0 is left out below; log 1 = 0 keeps its entry finite)
        log_w = np.log(np.where(params.weights > 0, params.weights, 1.0))
        per_component = (
            stats.nk * (log_w + half_log_det)
            + np.sum(stats.sum_t * eta, axis=1)
            - stats.uk * quadratic
            + _dof_objective(params.dof, stats.nk, stats.log_u)
        )
        # no mass, or a weight of 0 (its mass is the responsibility floor): nothing
        value = float(np.sum(per_component[(stats.nk > 0) & (params.weights > 0)]))
        if structure.has_row_term:
            P = structure.precisions(params.precisions_cholesky)
            value -= 0.5 * float(np.sum(P * stats.shared.reshape(d, d)))
        return value

    def lower_bound(
        self, params: StudentTParams, new: StudentTParams, stats: StudentTStats
    ) -> float:
        """Per-sample L(q, new) after the M-step: objective(params) + (Q(new) -
        Q(params)) / weight (see :class:`~emkit.inference.steps.EMModel`)."""
        lift = self.expected_complete(new, stats) - self.expected_complete(params, stats)
        return self.objective(params, stats) + lift / stats.weight

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

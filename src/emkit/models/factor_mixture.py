"""Mixtures of probabilistic PCA and of factor analyzers, as pure functions of (params, rows).

Component k is N(mu_k, C_k) with C_k = W_k W_k^T + Psi_k (W_k: d x q). Its log-density
needs no d x d matrix, O(d q) a row (determinant lemma; the quadratic form is the minimum
over z, attained at the posterior mean, a sum of squares with no cancellation):

    M_k = I + W_k^T Psi_k^-1 W_k,   e = x - mu_k,   E[z] = M_k^-1 W_k^T Psi_k^-1 e,
    (M_k diagonal in the principal frame of Psi_k^-1/2 W_k, as in latent_factor.py)
    log N(x; mu_k, C_k) = -1/2 (d log 2 pi + log|Psi_k| + log|M_k|
                                + ||Psi_k^-1/2 (e - W_k E[z])||^2 + ||E[z]||^2)

EM treats the component labels as the missing data (the factors are integrated out), so
the statistics are each component's responsibility mass and weighted scatter about its
current mean, which add across blocks of rows. The M-step, from the weighted covariance
S_k: mixture of PPCA (Tipping & Bishop, 1999) takes the closed-form PPCA maximum (an exact
M-step); mixture of factor analyzers (Ghahramani & Hinton, 1996) takes one Rubin-Thayer
update (a generalized M-step, which raises the objective without maximizing it). Both
keep the objective monotone.

Monte-Carlo EM draws both kinds of missing data: a label from p(k | x), then the factor
scores from their Gaussian posterior p(z | x, k); the M-step maximizes the drawn
complete-data statistics (x z~^T and z~ z~^T, z~ = [z, 1]).

Cost of an iteration: O(n K d q) for the log-densities and O(n K d^2) for the scatter
matrices (K d^2 numbers of statistics), then O(K d^3) for the M-step's eigendecompositions
(MPPCA) or O(K d^2 q) (MFA).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import numpy as np
from numpy.typing import NDArray

from emkit.models.latent_factor import (
    NoiseStructure,
    ppca_maximum_likelihood,
    principal_frame,
    row_scales,
)
from emkit.models.mixing import (
    EXACT,
    NK_FLOOR,
    NO_PRIOR,
    Assignment,
    Labels,
    MixingWeights,
    Posterior,
    Sampled,
    draw_labels,
    for_rows,
    mass,
    posterior,
)
from emkit.models.statistics import Statistics

__all__ = ["FactorMixture", "FactorMixtureParams", "FactorMixtureStats", "SampledFactorStats"]

Array = NDArray[np.floating[Any]]
LOG_2PI = float(np.log(2.0 * np.pi))


class FactorMixtureParams(NamedTuple):
    """Mixing weights and each component's loadings, mean and noise (shifted coordinates)."""

    weights: Array  # (K,)
    components: Array  # (K, d, q)  W_k
    means: Array  # (K, d)  mu_k - shift
    noise: Array  # (K, d)  diagonal of Psi_k


@dataclass(frozen=True)
class FactorMixtureStats(Statistics):
    """Additive statistics of a block of rows, about the means of the E-step's parameters."""

    nk: Array  # (K,)  sum_n w_n resp_nk
    sum_e: Array  # (K, d)  sum_n w_n resp_nk (x_n - mu_k)
    sum_eeT: Array  # (K, d, d)  sum_n w_n resp_nk (x_n - mu_k)(x_n - mu_k)^T
    loglik: float  # sum_n w_n log p(x_n)
    weight: float  # sum_n w_n


@dataclass(frozen=True)
class SampledFactorStats(Statistics):
    """Additive complete-data statistics of Monte-Carlo EM, averaged over the draws of
    each row's label and, given it, factor scores z (z~ = [z, 1], in the principal frame
    of each component's loadings at the E-step)."""

    nk: Array  # (K,)  sum_n w_n (share of row n's draws on k)
    sum_xz: Array  # (K, d, q+1)  sum_n w_n / M sum_{m: k_nm = k} x_n z~_nm^T
    sum_zz: Array  # (K, q+1, q+1)  sum_n w_n / M sum_{m: k_nm = k} z~_nm z~_nm^T
    sum_xx: Array  # (K, d)  sum_n w_n (share on k) x_n^2
    loglik: float  # sum_n w_n log p(x_n), exact
    weight: float  # sum_n w_n


def _scatter(E: Array, r: Array) -> tuple[Array, Array]:
    """sum_n r_n e_n and sum_n r_n e_n e_n^T for rows E (n, d) and weights r >= 0."""
    Es = E * np.sqrt(r)[:, None]  # Es^T Es is one symmetric product
    return r @ E, Es.T @ Es


@dataclass(frozen=True, eq=False)
class FactorMixture:
    """A finite mixture of PPCA or factor-analysis components.

    Rows are read as X / ``scale`` - ``shift`` (d,) (``scale``: a power of two, 1 unless
    the data's magnitude is extreme, see
    :func:`~emkit.models.latent_factor.power_of_two_scale`); densities are of the rows as
    given. Noise variances stay >= ``noise_floor``.
    """

    noise: NoiseStructure
    shift: Array
    noise_floor: float
    # SQUAREM extrapolates the parameters: the statistics are taken about the current
    # means and in the current loadings' frame, coordinates that move every iteration
    extrapolate: ClassVar[str] = "parameters"
    # the E-step's posterior policy (exact or classification EM) and the weights' M-step
    assign: Assignment = EXACT
    weights: MixingWeights = NO_PRIOR
    scale: float = 1.0

    def rows(self, X: Array) -> Array:
        """X / scale - shift in float64 (exact: the scale is a power of two)."""
        if self.scale == 1.0:
            return np.subtract(X, self.shift, dtype=np.float64)
        Y = np.multiply(X, 1.0 / self.scale, dtype=np.float64)
        Y -= self.shift
        return Y

    def _log_joint(self, params: FactorMixtureParams) -> Callable[[Array], tuple[Array, Array]]:
        """A function of rows in the model's coordinates (n, d) giving log p(x_n, k) - o_n,
        shape (n, K), and o_n, shape (n,).

        o_n is 0 but for a row so far from every component that log p(x_n, k) is below
        float64's range for each k (an outlier of magnitude 1e155, say): there o_n is -inf
        and the first part keeps the differences between the components, which the
        responsibilities need (exactly: the quadratic forms are computed on the row
        divided by a power of two c_n and their differences multiplied back by c_n^2).
        """
        means, noise = params.means, params.noise
        W, s2, _ = principal_frame(params.components, noise)  # M_k = I + diag(s2_k)
        K, d, _ = W.shape
        g = 1.0 / (1.0 + s2)
        inv_psi = 1.0 / noise
        Wp = W * inv_psi[:, :, None]  # Psi_k^-1 W_k
        # log|C_k| = log|scale^2 Psi_k| + log|M_k|: densities are of x = scale * y
        logdet = np.log(noise).sum(axis=1) + 2.0 * d * np.log(self.scale) + np.log1p(s2).sum(axis=1)
        # the weights' E-step offsets, as every mixture's (a weight of 0: -inf)
        const = self.weights.expected_log(params.weights) - 0.5 * (d * LOG_2PI + logdet)

        def log_joint(Y: Array) -> tuple[Array, Array]:
            n = Y.shape[0]
            quad = np.empty((n, K))
            c = np.max([row_scales(Y - means[k]) for k in range(K)], axis=0)
            scaled = bool(c.max() > 2.0**64)  # squares of entries could overflow
            for k in range(K):
                E = Y - means[k]
                if scaled:
                    E /= c[:, None]
                Ez = (E @ Wp[k]) * g[k]
                resid = E - Ez @ W[k].T
                quad[:, k] = (resid * resid) @ inv_psi[k] + (Ez * Ez).sum(axis=1)
            offset = np.zeros(n)
            if scaled:
                with np.errstate(over="ignore"):
                    low = quad.min(axis=1)
                    o = np.flatnonzero(~np.isfinite((low * c) * c))
                    # quad_k c^2 = (quad_k - min_j quad_j) c^2 + min_j quad_j c^2, where the
                    # last term, common to every k, is beyond range in rows o
                    relative = ((quad[o] - low[o, None]) * c[o, None]) * c[o, None]
                    quad = (quad * c[:, None]) * c[:, None]
                quad[o] = relative
                offset[o] = -np.inf
            return const - 0.5 * quad, offset

        return log_joint

    def expectation(
        self, params: FactorMixtureParams
    ) -> Callable[..., FactorMixtureStats | SampledFactorStats]:
        """The E-step for one iteration, as a function of a block of rows, their weights
        and their positions in the data (which a Monte-Carlo policy's draws are keyed by;
        ``None`` otherwise). Under exact and classification EM the factors are integrated
        out in closed form (the statistics given the labels are exact); Monte-Carlo and
        stochastic EM draw the labels and the factors (:meth:`_sampled_expectation`)."""
        log_joint = self._log_joint(params)
        means = params.means
        if isinstance(self.assign, Sampled):
            return self._sampled_expectation(params, log_joint)

        def e_step(
            X: Array, weights: Array | None, index: NDArray[np.intp] | None = None
        ) -> FactorMixtureStats:
            Y = self.rows(X)
            w = np.ones(Y.shape[0]) if weights is None else weights.astype(np.float64)
            log_prob, offset = log_joint(Y)
            row = offset if np.any(offset) else None
            q, loglik = posterior(for_rows(self.assign, index), log_prob, row, w, None, None)
            return self._statistics(Y, q, means, loglik, float(w.sum()))

        return e_step

    def _sampled_expectation(
        self, params: FactorMixtureParams, log_joint: Callable[[Array], tuple[Array, Array]]
    ) -> Callable[..., SampledFactorStats]:
        """Monte-Carlo EM's E-step: the labels and the factor scores are both the missing
        data. Draw m of row n takes a label k ~ p(k | x_n) (inverse CDF of a uniform), then
        z ~ p(z | x_n, k) = N(E[z | x_n, k], G_k) (in the principal frame G_k is diagonal,
        ``g_k``: z = E[z] + sqrt(g_k) * e, e ~ N(0, I)); the statistics are the draws'
        averages of the complete-data ones, and the log-likelihood stays exact. A row's
        label and factors come from one generator keyed by its position (any chunking
        gives the same draws)."""
        assert isinstance(self.assign, Sampled)
        means = params.means
        W, s2, _ = principal_frame(params.components, params.noise)
        K, d, q = W.shape
        g = 1.0 / (1.0 + s2)  # (K, q) posterior variances of z given k
        root = np.sqrt(g)
        Wp = W / params.noise[:, :, None]  # Psi_k^-1 W_k
        sampled = self.assign

        def e_step(
            X: Array, weights: Array | None, index: NDArray[np.intp] | None = None
        ) -> SampledFactorStats:
            # (unbound to rows, the draws refuse, naming the Monte-Carlo step)
            draws = sampled.draws if index is None else sampled.draws.for_rows(index)
            Y = self.rows(X)
            n = Y.shape[0]
            w = np.ones(n) if weights is None else weights.astype(np.float64)
            log_prob, offset = log_joint(Y)
            row = offset if np.any(offset) else None
            resp, loglik = EXACT(log_prob, row, w, None, None)
            p = np.divide(resp, w[:, None], out=np.zeros(resp.shape), where=w[:, None] > 0)
            M = draws.n_draws
            nk, sum_xx = np.zeros(K), np.zeros((K, d))
            sum_xz, sum_zz = np.zeros((K, d, q + 1)), np.zeros((K, q + 1, q + 1))
            YY = Y * Y
            for rows, block in draws.by_block():
                u, eps = block.uniform_normal(q)  # (r, M), (r, M, q)
                labels = draw_labels(p[rows], u)
                Yr, b = Y[rows], w[rows] / M  # each draw's share of the row's weight
                for k in range(K):
                    on = labels == k  # (r, M)
                    c = on.sum(axis=1)
                    if not c.any():
                        continue
                    a = b * c  # the row's weight on k
                    Ez = ((Yr - means[k]) @ Wp[k]) * g[k]  # (r, q) E[z | x, k]
                    e_on = eps * on[:, :, None]
                    s_eps = e_on.sum(axis=1) * root[k]  # (r, q) sum of the draws' deviations
                    S1 = Ez * c[:, None] + s_eps  # (r, q) sum over the draws on k of z
                    bS1 = S1 * b[:, None]
                    nk[k] += a.sum()
                    sum_xx[k] += a @ YY[rows]
                    sum_xz[k, :, :q] += Yr.T @ bS1
                    sum_xz[k, :, q] += a @ Yr
                    # sum b [c Ez Ez^T + Ez s^T + s Ez^T] + r (sum b e e^T) r, z = Ez + r e
                    cross = Ez.T @ (s_eps * b[:, None])
                    spread = np.einsum("nm,nmi,nmj->ij", on * b[:, None], eps, eps)
                    zz = Ez.T @ (Ez * a[:, None]) + cross + cross.T
                    zz += spread * np.outer(root[k], root[k])
                    sum_zz[k, :q, :q] += zz
                    sum_zz[k, :q, q] += bS1.sum(axis=0)
                    sum_zz[k, q, :q] += bS1.sum(axis=0)
                    sum_zz[k, q, q] += a.sum()
            return SampledFactorStats(nk, sum_xz, sum_zz, sum_xx, loglik, float(w.sum()))

        return e_step

    def _statistics(
        self, Y: Array, q: Posterior, means: Array, loglik: float, weight: float
    ) -> FactorMixtureStats:
        K, d = means.shape
        sum_e = np.empty((K, d))
        sum_eeT = np.empty((K, d, d))
        for k in range(K):
            if isinstance(q, Labels):  # hard EM: the rows on k alone
                on = np.flatnonzero(q.labels == k)
                r = np.ones(on.shape[0]) if q.weights is None else q.weights[on]
                sum_e[k], sum_eeT[k] = _scatter(Y[on] - means[k], r)
            else:
                sum_e[k], sum_eeT[k] = _scatter(Y - means[k], q[:, k])
        return FactorMixtureStats(mass(q), sum_e, sum_eeT, loglik, weight)

    def statistics_from_resp(
        self, X: Array, weights: Array | None, resp: Array
    ) -> FactorMixtureStats:
        """Statistics for given responsibilities (initialization), about the shift."""
        Y = self.rows(X)
        r = resp if weights is None else resp * weights[:, None]
        weight = float(X.shape[0]) if weights is None else float(weights.sum(dtype=np.float64))
        return self._statistics(Y, r, np.zeros((resp.shape[1], Y.shape[1])), 0.0, weight)

    def _moments(
        self, params_means: Array, stats: FactorMixtureStats
    ) -> tuple[Array, Array, Array]:
        """Mixing masses, new means and weighted covariances S_k from the statistics."""
        nk = stats.nk + NK_FLOOR
        delta = stats.sum_e / nk[:, None]
        S = stats.sum_eeT / nk[:, None, None] - delta[:, :, None] * delta[:, None, :]
        S = 0.5 * (S + np.swapaxes(S, 1, 2))
        return nk, params_means + delta, S

    def m_step(
        self, params: FactorMixtureParams, stats: FactorMixtureStats | SampledFactorStats
    ) -> FactorMixtureParams:
        if isinstance(stats, SampledFactorStats):
            return self._sampled_m_step(params, stats)
        nk, means, S = self._moments(params.means, stats)
        W, noise = self.noise.component_m_step(S, params.components, params.noise, self.noise_floor)
        return FactorMixtureParams(self.weights.m_step(nk), W, means, noise)

    def _sampled_m_step(
        self, params: FactorMixtureParams, stats: SampledFactorStats
    ) -> FactorMixtureParams:
        """The complete-data maximum of each component given the drawn labels and factors
        (Ghahramani & Hinton, 1996): [W_k, mu_k] = (sum x z~^T)(sum z~ z~^T)^-1 and the
        noise from the expected squared residuals, per feature or pooled (PPCA), with the
        factors' own mean and covariance folded into W_k and mu_k (parameter expansion,
        as in :meth:`~emkit.models.latent_factor.LatentFactor.m_step`). A component the
        draws left (nearly) empty keeps its parameters."""
        K, d, q1 = stats.sum_xz.shape
        q = q1 - 1
        W, means, noise = params.components.copy(), params.means.copy(), params.noise.copy()
        for k in range(K):
            try:
                Wt = np.linalg.solve(stats.sum_zz[k], stats.sum_xz[k].T).T  # (d, q + 1)
            except np.linalg.LinAlgError:
                continue
            if not np.isfinite(Wt).all() or stats.nk[k] <= 0:
                continue
            residual = stats.sum_xx[k] - (Wt * stats.sum_xz[k]).sum(axis=1)
            count = np.full(d, stats.nk[k])
            # PX-EM (Liu, Rubin & Wu, 1998): z ~ N(eta, Sigma = L L^T) in the expanded
            # model, folded back as W L and mu + W eta (the same distribution of x)
            Ezz = stats.sum_zz[k] / stats.nk[k]
            eta = Ezz[:q, q]
            try:
                L = np.linalg.cholesky(Ezz[:q, :q] - np.outer(eta, eta))
            except np.linalg.LinAlgError:
                continue
            W[k], means[k] = Wt[:, :q] @ L, Wt[:, q] + Wt[:, :q] @ eta
            noise[k] = self.noise.pool(residual, count, self.noise_floor)
        return FactorMixtureParams(self.weights.m_step(stats.nk + NK_FLOOR), W, means, noise)

    def initial_params(self, stats: FactorMixtureStats, n_factors: int) -> FactorMixtureParams:
        """Each component's closed-form PPCA maximum on its initial weighted covariance
        (statistics from :meth:`statistics_from_resp`)."""
        K, d = stats.sum_e.shape
        nk, means, S = self._moments(np.zeros((K, d)), stats)
        W, noise = ppca_maximum_likelihood(S, n_factors, self.noise_floor)
        return FactorMixtureParams(self.weights.m_step(nk), W, means, noise)

    def m_step_gap(self, params: FactorMixtureParams, stats: Any) -> float:
        """Zero: exact (PPCA) and generalized (factor analysis) M-steps never lower Q."""
        return 0.0

    def degenerate(self, params: FactorMixtureParams) -> NDArray[np.bool_]:
        """(K,) components with a noise variance held at ``noise_floor``: they collapsed
        onto (nearly) a q-dimensional subspace, e.g. onto q + 1 rows, where the
        likelihood without the floor is unbounded. The floor is the same at every
        iteration, so the M-step is the maximizer over the noises above it and EM stays
        monotone; the driver reports these components in ``trace.degenerate``."""
        at_floor = params.noise <= self.noise_floor * (1.0 + 1e-9)
        return np.asarray(at_floor.any(axis=1))

    def objective(self, params: FactorMixtureParams, stats: FactorMixtureStats) -> float:
        """Per-sample log-likelihood."""
        return stats.loglik / stats.weight

    def expected_complete(
        self, params: FactorMixtureParams, stats: FactorMixtureStats, centres: Array
    ) -> float:
        """Q(params) under the q that ``stats`` summarize (scatter about ``centres``, the
        E-step's means), up to terms no parameter changes, total nats:

            sum_k N_k (log pi_k - 1/2 log|C_k|) - 1/2 tr(C_k^-1 B_k),
            B_k = sum_n r_nk (x_n - mu_k)(x_n - mu_k)^T,  C_k = W_k W_k^T + Psi_k
        """
        nk = stats.nk
        delta = params.means - centres
        # B_k about mu_k from the scatter about the centres: B - e d^T - d e^T + N d d^T
        cross = stats.sum_e[:, :, None] * delta[:, None, :]
        B = (
            stats.sum_eeT
            - cross
            - np.swapaxes(cross, 1, 2)
            + nk[:, None, None] * delta[:, :, None] * delta[:, None, :]
        )
        W = params.components
        C = W @ np.swapaxes(W, 1, 2)
        d = C.shape[1]
        C[:, range(d), range(d)] += params.noise
        L = np.linalg.cholesky(C)
        half_log_det = np.sum(np.log(np.diagonal(L, axis1=1, axis2=2)), axis=1)
        # tr(C^-1 B) = tr(L^-1 B L^-T)
        half = np.linalg.solve(L, B)
        trace = np.trace(np.linalg.solve(L, np.swapaxes(half, 1, 2)), axis1=1, axis2=2)
        # (a weight of 0 is left out below; log 1 = 0 keeps its entry finite)
        log_w = np.log(np.where(params.weights > 0, params.weights, 1.0))
        per_component = nk * (log_w - half_log_det) - 0.5 * trace
        # no mass, or a weight of 0 (its mass is the responsibility floor): nothing
        return float(np.sum(per_component[(nk > 0) & (params.weights > 0)]))

    def lower_bound(
        self, params: FactorMixtureParams, new: FactorMixtureParams, stats: FactorMixtureStats
    ) -> float:
        """Per-sample L(q, new) after the M-step (the labels are the missing data):
        objective(params) + (Q(new) - Q(params)) / weight (see
        :class:`~emkit.inference.steps.EMModel`)."""
        centres = params.means
        lift = self.expected_complete(new, stats, centres) - self.expected_complete(
            params, stats, centres
        )
        return self.objective(params, stats) + lift / stats.weight

    def weighted_log_prob(self, params: FactorMixtureParams) -> Callable[[Array], Array]:
        """log p(x_n, k) for raw rows, shape (n, K) (-inf where below float64's range)."""
        parts = self.log_prob_parts(params)

        def weighted_log_prob(X: Array) -> Array:
            log_prob, offset = parts(X)
            return log_prob + offset[:, None]

        return weighted_log_prob

    def log_prob_parts(self, params: FactorMixtureParams) -> Callable[[Array], tuple[Array, Array]]:
        """log p(x_n, k) - o_n and o_n for raw rows (see :meth:`_log_joint`): the first
        part gives the responsibilities of every row, outliers included."""
        log_joint = self._log_joint(params)
        return lambda X: log_joint(self.rows(X))

    def n_parameters(self, n_components: int, n_features: int, n_factors: int) -> int:
        """Free parameters: weights, and per component W up to rotation, mean and noise."""
        K, d, q = n_components, n_features, n_factors
        per_component = d * q - q * (q - 1) // 2 + d + self.noise.n_parameters(d)
        return self.weights.n_parameters(K) + K * per_component

    @staticmethod
    def row_bytes(n_features: int, n_components: int, n_factors: int) -> int:
        """Bytes a row of a chunk needs in the E-step: the shifted row, a residual and its
        scaled copy, projections, and the K log-probabilities."""
        return (4 * n_features + 2 * n_factors + 2 * n_components + 4) * 8

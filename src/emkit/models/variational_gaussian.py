"""Variational Bayesian Gaussian mixtures over emkit's Gaussian statistics.

The model (Bishop 2006, 10.2; Blei & Jordan 2006 for the stick-breaking weights):
Normal-Wishart priors on each component's mean and precision and a Dirichlet
(``dirichlet_distribution``) or truncated stick-breaking (``dirichlet_process``) prior on
the weights; the mean-field posterior q(z) q(pi) prod_k q(mu_k, Lambda_k) is fitted by
coordinate ascent on the ELBO, which never decreases.

The E-step's log rho_nk = E[log pi_k] + E[log N(x_n | mu_k, Lambda_k)] is a Gaussian
log-density with mean m_k and precision nu_k W_k plus a constant per component
(:meth:`~emkit.families.normal_wishart.NormalWishart.log_density_offset`), so it is the
mixture E-step of :class:`~emkit.models.mixture.Mixture` on those effective parameters:
one matrix product over the statistics for log rho, one for the expected statistics
(N_k, sum_n r_nk x_n, sum_n r_nk x_n x_n^T), with chunks, threads, sample weights and
the far-row route unchanged. The M-step is the Normal-Wishart's conjugate
:meth:`~emkit.families.normal_wishart.NormalWishart.posterior` from those statistics.

The objective is scikit-learn's ``lower_bound_`` of a BayesianGaussianMixture: the ELBO
after the M-step (responsibilities of the E-step, posteriors of the M-step) without the
terms that stay constant during a fit,

    -sum_n w_n sum_k r_nk log r_nk - sum_k log B(W_k, nu_k) - log C(weights' q)
    - d/2 sum_k log beta_k

with B the Wishart's normalizer (of E[Lambda]-normalized precisions, as scikit-learn
writes it) and C the Dirichlet's (product of Betas for the sticks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import betaln, digamma, gammaln

from emkit.families.gaussian import GaussianFamily, GaussianParams
from emkit.families.normal_wishart import GaussianMoments, NormalWishart
from emkit.models.mixing import NK_FLOOR, Variational
from emkit.models.mixture import Mixture, MixtureParams, MixtureStats

__all__ = [
    "WEIGHT_PRIOR_TYPES",
    "VariationalGaussianMixture",
    "VariationalParams",
    "expected_log_weights",
    "mean_weights",
]

Array = NDArray[np.floating[Any]]
WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")


class VariationalParams(NamedTuple):
    """The variational posteriors: of the weights, and of the components (centred)."""

    concentration: Array  # 'dirichlet_process': (2, K) Beta sticks; else (K,) Dirichlet
    components: NormalWishart


def expected_log_weights(concentration: Array, weight_prior_type: str) -> Array:
    """E_q[log pi_k], (K,).

    Dirichlet: psi(alpha_k) - psi(sum alpha). Sticks pi_k = v_k prod_{j<k} (1 - v_j),
    v_k ~ Beta(a_k, b_k): E[log v_k] + sum_{j<k} E[log(1 - v_j)].
    """
    if weight_prior_type == "dirichlet_distribution":
        return np.asarray(digamma(concentration) - digamma(concentration.sum()))
    a, b = concentration
    psi_sum = digamma(a + b)
    log_rest = np.cumsum(digamma(b) - psi_sum)
    return np.asarray(digamma(a) - psi_sum + np.concatenate([[0.0], log_rest[:-1]]))


def mean_weights(concentration: Array, weight_prior_type: str) -> Array:
    """E_q[pi] (renormalized over the K sticks for the Dirichlet process), (K,)."""
    if weight_prior_type == "dirichlet_distribution":
        return np.asarray(concentration / concentration.sum())
    a, b = concentration
    stick = a / (a + b)
    rest = np.concatenate([[1.0], np.cumprod(b / (a + b))[:-1]])
    weights = stick * rest
    return np.asarray(weights / weights.sum())


# q(z) with the negative entropy sum_n w_n sum_k r log r as the block's output
VARIATIONAL = Variational(entropy=True)


@dataclass(frozen=True, eq=False)
class VariationalGaussianMixture:
    """A variational Bayesian Gaussian mixture as pure steps for the EM driver.

    ``family`` is the bound :class:`GaussianFamily` (its centre, structure and
    ``reg_covar``); ``prior`` the components' Normal-Wishart prior (one component,
    centred coordinates); ``weight_prior_type`` and ``weight_concentration`` the weights'.
    """

    family: GaussianFamily
    prior: NormalWishart
    weight_prior_type: str
    weight_concentration: float
    n_components: int
    dtype: Any = np.float64
    mixture: Mixture = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mixture", Mixture(self.family, self.dtype, assign=VARIATIONAL))

    @property
    def covariance_type(self) -> str:
        return self.prior.covariance_type

    # -- E-step ---------------------------------------------------------------------

    def effective(self, params: VariationalParams, normalize: bool = True) -> MixtureParams:
        """Gaussian-mixture parameters whose joint log-probabilities are log rho: means
        m_k, covariances (nu_k W_k)^-1, and weights exp(E[log pi_k] + offset_k)
        (divided by their largest when ``normalize``, which changes no responsibility)."""
        post = params.components
        log_w = expected_log_weights(params.concentration, self.weight_prior_type)
        log_w = log_w + post.log_density_offset()
        if normalize:
            log_w = log_w - log_w.max()
        comp = GaussianParams(post.mean, post.covariances, post.precisions_cholesky)
        return MixtureParams(np.exp(log_w), comp)

    def expectation(self, params: VariationalParams) -> Callable[..., MixtureStats]:
        return self.mixture.expectation(self.effective(params))

    # -- M-step ---------------------------------------------------------------------

    def moments(self, stats: MixtureStats) -> GaussianMoments:
        """Each component's weighted count, mean and covariance (+ ``reg_covar``) from the
        expected statistics (the counts floored as scikit-learn does)."""
        structure = self.family.structure
        d = self.family.n_features
        nk = stats.nk + NK_FLOOR
        means = stats.sum_t[:, :d] / nk[:, None]
        scatter = structure.scatter(nk, means, stats.sum_t, stats.shared)
        reg = float(self.family.reg_covar)
        kind = self.covariance_type
        if kind == "full":
            cov = scatter / nk[:, None, None] + reg * np.eye(d)
        elif kind == "tied":
            cov = scatter / nk.sum() + reg * np.eye(d)
        elif kind == "diag":
            cov = scatter / nk[:, None] + reg
        else:
            cov = scatter / (d * nk) + reg  # the mean variance over the features
        return GaussianMoments(nk, means, cov)

    def weight_posterior(self, nk: Array) -> Array:
        """q(pi)'s parameters: alpha_0 + N_k, or the sticks' (1 + N_k, alpha_0 + sum_{j>k} N_j)."""
        alpha = self.weight_concentration
        if self.weight_prior_type == "dirichlet_distribution":
            return np.asarray(alpha + nk)
        later = np.concatenate([np.cumsum(nk[::-1])[-2::-1], [0.0]])
        return np.stack([1.0 + nk, alpha + later])

    def m_step(self, params: VariationalParams, stats: MixtureStats) -> VariationalParams:
        moments = self.moments(stats)
        return VariationalParams(
            self.weight_posterior(moments.counts), self.prior.posterior(moments)
        )

    def m_step_gap(self, params: VariationalParams, stats: MixtureStats) -> float:
        return 0.0  # the coordinate updates are exact

    # -- objective ------------------------------------------------------------------

    def bound(self, params: VariationalParams, entropy: float) -> float:
        """scikit-learn's lower bound (total nats) of posteriors ``params`` after an
        E-step whose sum_n w_n sum_k r log r is ``entropy``."""
        post = params.components
        d = post.n_features
        structure = self.family.structure
        # log|nu W|^(1/2) - d/2 log nu = 1/2 log|W|
        half_log_det = structure.half_log_det(post.precisions_cholesky, d) - 0.5 * d * np.log(
            post.dof
        )
        nu = post.dof
        log_wishart_norm = -(
            nu * half_log_det
            + 0.5 * nu * d * np.log(2.0)
            + np.sum(gammaln(0.5 * (np.asarray(nu)[..., None] - np.arange(d))), axis=-1)
        )
        if self.covariance_type == "tied":
            log_wishart = self.n_components * float(log_wishart_norm)
        else:
            log_wishart = float(np.sum(log_wishart_norm))
        alpha = params.concentration
        if self.weight_prior_type == "dirichlet_process":
            log_norm_weight = -float(np.sum(betaln(alpha[0], alpha[1])))
        else:
            log_norm_weight = float(gammaln(alpha.sum()) - np.sum(gammaln(alpha)))
        return (
            -entropy
            - log_wishart
            - log_norm_weight
            - 0.5 * d * float(np.sum(np.log(post.shrinkage)))
        )

    def objective(self, params: VariationalParams, stats: MixtureStats) -> float:
        """Per unit of sample weight: the bound of the posteriors the M-step makes from
        ``stats`` (so that the objective of iteration t is scikit-learn's lower bound of
        its iteration t)."""
        return self.bound(self.m_step(params, stats), stats.loglik) / stats.weight

    # -- predictions ------------------------------------------------------------------

    def weighted_log_prob(self, params: VariationalParams) -> Callable[[Array], Array]:
        """log rho_nk of raw rows, (n, K) float64 (scikit-learn's weighted log prob)."""
        return self.mixture.weighted_log_prob(self.effective(params, normalize=False))

    def log_resp(self, params: VariationalParams) -> Callable[[Array], Array]:
        """log r_nk of raw rows, (n, K) float64."""
        return self.mixture.log_resp(self.effective(params))

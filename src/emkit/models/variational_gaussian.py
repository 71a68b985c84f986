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
the far-row route unchanged. The M-step is the bound prior's conjugate update from those
statistics, ``prior.posterior(stats)`` (:class:`~emkit.families.priors.AttachedGaussianPrior`,
the same object whose ``.mode()`` is MAP-EM's M-step), read as a Normal-Wishart.

The objective is scikit-learn's ``lower_bound_`` of a BayesianGaussianMixture: the ELBO
after the M-step (responsibilities of the E-step, posteriors of the M-step) without the
terms that stay constant during a fit,

    -sum_n w_n sum_k r_nk log r_nk - sum_k log B(W_k, nu_k) - log C(weights' q)
    - d/2 sum_k log beta_k

with B the Wishart's normalizer (of E[Lambda]-normalized precisions, as scikit-learn
writes it) and C the Dirichlet's (product of Betas for the sticks).

Missing values (NaN)
--------------------
A row with observed block o and missing block m (s = |m| coordinates) keeps its missing
values as latent variables with the labels: the variational family is the structured
q(z, x_m) q(pi) prod_k q(mu_k, Lambda_k) with q(z, x_m) = q(z) q(x_m | z), in which
q(x_m | z) is free. Given q(theta), the ELBO's optimal q(z = k, x_m) is proportional to

    exp(E[log pi_k] + E_q(theta_k)[log N(x_o, x_m | mu_k, Lambda_k)])
      = exp(E[log pi_k] + offset_k) N(x_o, x_m | m_k, (nu_k W_k)^-1)

since, as a function of x, E_q(theta_k)[log N(x | mu_k, Lambda_k)] is the log-density of
N(m_k, (nu_k W_k)^-1) plus offset_k = 1/2 (E[log|Lambda_k|] - log|nu_k W_k|) - d / (2 beta_k)
(the complete rows' E-step above). Factorizing that Gaussian over (x_o, x_m):

* q(x_m | z = k) = N(x_m | m_k,m - P_mm^-1 P_mo (x_o - m_k,o), P_mm^-1), with P = nu_k W_k =
  E[Lambda_k]: the conditional of the effective Gaussian, the one exact EM's missing-value
  E-step computes (:mod:`emkit.families._gaussian_missing`);
* log rho_nk = E[log pi_k] + offset_k + log N(x_o | m_k,o, [(nu_k W_k)^-1]_oo), the
  marginal of the effective Gaussian on the observed block: exact EM's missing-value
  log-probability on the same effective parameters. It equals
  E[log pi_k] + log int exp(E_q(theta_k)[log p(x_o, x_m | theta_k)]) dx_m, the same
  E_q[log p] + H(q(x_m | z)) that a row's term of the ELBO takes.

So rows with missing values go through the exact-EM missing-value E-step on the effective
parameters, grouped by missingness pattern per chunk as there: log rho from the marginal
of the observed block, and the expected statistics sum_n r_nk E_k[x_n],
sum_n r_nk E_k[x_n x_n^T] = sum_n r_nk (E_k[x_n] E_k[x_n]^T + pad(P_mm^-1)) (x_n filled in
by its conditional means). The M-step is the same conjugate update of those statistics,
the exact maximizer of the ELBO over q(theta) given q(z, x_m) (the likelihood of the
filled-in statistics is an exponential-family one). The ELBO gains the entropy of
q(x_m | z),

    sum_n w_n sum_k r_nk H[N(P_mm^-1)] = sum_n w_n sum_k r_nk (s/2 log(2 pi e) - 1/2 log|P_k,mm|)

and the rest of scikit-learn's bound is unchanged (the posteriors' normalizers take the
filled-in statistics as they take complete ones). Coordinate ascent on this ELBO never
decreases it. Rows without a missing value take the complete path untouched.

Why not E_q(theta)[log p(x_o | theta_k)], the expected marginal density of the observed
block? Under the Normal-Wishart, Sigma = Lambda^-1 is inverse-Wishart(W^-1, nu), so the
observed block's precision (Sigma_oo)^-1 is Wishart((W^-1)_oo^-1, nu - s) and
mu_o | Sigma_oo ~ N(m_o, Sigma_oo / beta): a Normal-Wishart on the block, whose expected
log-density is a Gaussian one with precision (nu - s) (W^-1)_oo^-1. That term is larger
(by Jensen's inequality, E log int >= log int exp E), but the q(theta) that maximizes
an ELBO built on it is not Normal-Wishart: x_o's likelihood is not conjugate in Lambda.
With q(x_m | z) in the variational family, every update stays in closed form and the ELBO
stays the objective that each of them increases. The tests check the per-row term
log int exp(E_q(theta)[log p(x_o, x_m | theta)]) dx_m against Monte-Carlo draws of (mu,
Lambda) and quadrature over x_m, and that it stays below the expected marginal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import betaln, digamma, gammaln

from emkit.families._base import pattern_ids
from emkit.families._gaussian_missing import dense_precisions, spd_inverse
from emkit.families.gaussian import CovarianceStructure, GaussianFamily, GaussianParams
from emkit.families.normal_wishart import NormalWishart
from emkit.families.priors import AttachedGaussianPrior
from emkit.models.mixing import NK_FLOOR, Variational
from emkit.models.mixture import Mixture, MixtureParams, MixtureStats, _split_rows

__all__ = [
    "WEIGHT_PRIOR_TYPES",
    "VariationalGaussianMixture",
    "VariationalParams",
    "conditional_entropy",
    "expected_log_weights",
    "mean_weights",
]

Array = NDArray[np.floating[Any]]
WEIGHT_PRIOR_TYPES = ("dirichlet_process", "dirichlet_distribution")
LOG_2PI_E = float(np.log(2.0 * np.pi) + 1.0)


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


def conditional_entropy(
    structure: CovarianceStructure, prec_chol: Array, n_components: int, missing: NDArray[np.bool_]
) -> Array:
    """H[N(P_k,mm^-1)] = s/2 log(2 pi e) - 1/2 log|P_k,mm| of every row and component,
    (n, K), for precisions P_k = U_k U_k^T (``prec_chol``, in the structure's shape) and
    the rows' ``missing`` masks (n, d); s is a row's number of missing coordinates (0 for
    a complete row). The log-determinants are taken once per missingness pattern.

    Examples
    --------
    >>> from emkit.families.gaussian import covariance_structure
    >>> U = np.array([[[2.0, 0.0], [0.0, 1.0]]])  # precision diag(4, 1)
    >>> h = conditional_entropy(covariance_structure("full"), U, 1, np.array([[True, False]]))
    >>> bool(np.isclose(h[0, 0], 0.5 * np.log(2 * np.pi * np.e / 4.0)))
    True
    """
    n, d = missing.shape
    K = n_components
    s = np.count_nonzero(missing, axis=1)
    if not structure.dense:
        # diagonal precisions: log|P_mm| = sum over the missing coordinates of log P_jj
        log_p = np.broadcast_to(2.0 * np.log(np.asarray(prec_chol)).reshape(K, -1), (K, d))
        log_det = missing @ log_p.T
    else:
        P = dense_precisions(structure, prec_chol, K, d)
        log_det = np.zeros((n, K))
        for count in np.unique(s[s > 0]):
            rows = np.flatnonzero(s == count)
            first, pattern = pattern_ids(missing[rows])
            coords = np.nonzero(missing[rows[first]])[1].reshape(-1, int(count))
            # P_mm of every (component, pattern), batch last for spd_inverse (vectorized
            # over the batch: LAPACK's per-matrix call costs more than a small block)
            blocks = P[:, coords.T[:, None, :], coords.T[None, :, :]].transpose(1, 2, 0, 3)
            log_det[rows] = spd_inverse(blocks)[1][:, pattern].T
    return np.asarray(0.5 * (s[:, None] * LOG_2PI_E - log_det))


# q(z) with the negative entropy sum_n w_n sum_k r log r as the block's output
VARIATIONAL = Variational(entropy=True)


@dataclass(frozen=True, eq=False)
class VariationalGaussianMixture:
    """A variational Bayesian Gaussian mixture as pure steps for the EM driver.

    ``family`` is the bound :class:`GaussianFamily` (its centre, structure and
    ``reg_covar``); ``prior`` the components' conjugate prior bound to its structure
    (:meth:`~emkit.families.priors.GaussianPrior.attach`, centred coordinates), whose
    ``posterior(stats)`` is the M-step; ``weight_prior_type`` and
    ``weight_concentration`` the weights'.
    """

    family: GaussianFamily
    prior: AttachedGaussianPrior
    weight_prior_type: str
    weight_concentration: float
    n_components: int
    dtype: Any = np.float64
    # the rows may have missing values (NaN): such rows take the structured E-step of
    # the module's docstring
    missing: bool = False
    mixture: Mixture = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "mixture", Mixture(self.family, self.dtype, assign=VARIATIONAL))

    @property
    def covariance_type(self) -> str:
        return str(self.family.structure.name)

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
        """The E-step of one iteration as a function of a block of rows and their
        weights (the engine's extra columns, none here, are accepted and unused)."""
        effective = self.effective(params)
        complete = self.mixture.expectation(effective)
        if not self.missing:
            return complete
        incomplete = self._incomplete(effective)

        def e_step(X: Array, weights: Array | None, *columns: Any, **named: Any) -> MixtureStats:
            return _split_rows(X, (weights,), complete, incomplete, _add)

        return e_step

    def _incomplete(self, effective: MixtureParams) -> Callable[..., MixtureStats]:
        """The E-step of rows with missing values: exact EM's on the effective parameters
        (q(z) and q(x_m | z), the filled-in statistics), with the entropy of q(x_m | z)
        taken from the block's output sum_n w_n sum_k r_nk log r_nk."""
        family = self.family
        comp = effective.components
        natural = family.natural(comp, np.float64)
        with np.errstate(divide="ignore"):  # a weight of 0 (E[log pi] = -inf)
            log_weights = np.log(effective.weights)
        fill = np.asarray(family.missing_fill(), dtype=np.float64)
        K = effective.weights.shape[0]

        def step(X: Array, weights: Array | None, observed: NDArray[np.bool_]) -> MixtureStats:
            Xp = family.prepare(np.where(observed, X, fill), np.float64)
            log_prob, state = family.missing_log_prob(Xp, observed, comp, natural, log_weights)
            entropy = conditional_entropy(family.structure, comp.precisions_cholesky, K, ~observed)
            resp, neg_entropy = VARIATIONAL(log_prob, None, weights, None, None)
            # resp holds w_n r_nk: sum r log r - sum r H[q(x_m | z)]
            neg_entropy -= float(np.einsum("nk,nk->", resp, entropy))
            sum_t, shared = family.missing_statistics(comp, state, resp)
            total = float(X.shape[0]) if weights is None else float(weights.sum(dtype=np.float64))
            return MixtureStats(resp.sum(axis=0), sum_t, shared, neg_entropy, total)

        return step

    # -- M-step ---------------------------------------------------------------------

    def weight_posterior(self, nk: Array) -> Array:
        """q(pi)'s parameters: alpha_0 + N_k, or the sticks' (1 + N_k, alpha_0 + sum_{j>k} N_j)."""
        alpha = self.weight_concentration
        if self.weight_prior_type == "dirichlet_distribution":
            return np.asarray(alpha + nk)
        later = np.concatenate([np.cumsum(nk[::-1])[-2::-1], [0.0]])
        return np.stack([1.0 + nk, alpha + later])

    def m_step(self, params: VariationalParams, stats: MixtureStats) -> VariationalParams:
        """q(pi) and q(mu, Lambda) from the expected statistics: the bound prior's
        conjugate ``posterior(stats)`` as a Normal-Wishart, with the counts floored and
        ``reg_covar`` added to each component's covariance estimate as scikit-learn does
        (``reg_covar N_k`` more scatter on the diagonal)."""
        structure = self.family.structure
        nk = stats.nk + NK_FLOOR
        sum_t, shared = stats.sum_t, stats.shared
        reg = float(self.family.reg_covar)
        if reg > 0:
            K, d = stats.sum_t.shape[0], self.family.n_features
            # reg_covar N_k I as second moments, in the structure's layout
            extra = structure.moment_statistics(
                np.zeros((K, d)), reg * nk[:, None, None] * np.eye(d)
            )
            sum_t, shared = sum_t + extra[0], shared + extra[1]
        posterior = self.prior.posterior((nk, sum_t, shared))
        return VariationalParams(self.weight_posterior(nk), posterior.normal_wishart())

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
        if structure.shared:  # one Wishart, counted once per component as scikit-learn does
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

    def _predicting(self) -> Mixture:
        """The mixture whose row functions give log rho: with missing values, the
        observed block's marginal on the effective parameters (the module's docstring)."""
        return replace(self.mixture, missing=True) if self.missing else self.mixture

    def weighted_log_prob(self, params: VariationalParams) -> Callable[[Array], Array]:
        """log rho_nk of raw rows, (n, K) float64 (scikit-learn's weighted log prob; for a
        row with missing values, E[log pi_k] + log int exp(E[log p(x_o, x_m | theta_k)]) dx_m)."""
        return self._predicting().weighted_log_prob(self.effective(params, normalize=False))

    def log_resp(self, params: VariationalParams) -> Callable[[Array], Array]:
        """log r_nk of raw rows, (n, K) float64."""
        return self._predicting().log_resp(self.effective(params))


def _add(parts: tuple[MixtureStats, MixtureStats], rows: Any) -> MixtureStats:
    return parts[0] + parts[1]

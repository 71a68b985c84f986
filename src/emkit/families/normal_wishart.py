"""Normal-Wishart distributions over the means and precisions of K Gaussian components.

The conjugate prior of a Gaussian with unknown mean and precision (Bishop 2006, 2.3.6 and
10.2), with the mean's precision proportional to the component's:

    mu_k | Lambda_k ~ N(m_k, (beta_k Lambda_k)^-1),   Lambda_k ~ Wishart(W_k, nu_k)

stored by its scale matrix ``scale = W^-1`` (the inverse-Wishart scale of the covariance),
so that :class:`~emkit.families.priors.GaussianPrior` (mean, shrinkage = beta, dof = nu,
scale) is its one-component case. The covariance structures read it as scikit-learn's
BayesianGaussianMixture does: ``tied`` has one Lambda for every component (one Wishart,
with ``nu = nu_0 + N / K``); ``diag`` and ``spherical`` take the Wishart's formulas on a
diagonal (resp. scalar times identity) scale, with d degrees of freedom terms in
E[log|Lambda|].

What variational EM needs of it: :meth:`~NormalWishart.mode`,
:meth:`~NormalWishart.expected_natural` (E[eta], E[A(eta)] of the Gaussian's natural
parameters, which make the variational E-step a Gaussian E-step) and
:meth:`~NormalWishart.kl`. The conjugate update that makes one is the bound prior's
(:meth:`emkit.families.priors.AttachedGaussianPrior.posterior`), each structure's
Wishart update written once, in the structure
(:meth:`~emkit.families.gaussian.CovarianceStructure.wishart_update`).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import digamma, gammaln

from emkit.exceptions import InputError

__all__ = ["NormalWishart", "along_components", "precision_cholesky"]

Array = NDArray[np.floating[Any]]
LOG_2PI = float(np.log(2.0 * np.pi))

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)


def along_components(values: Array, like: Array) -> Array:
    """Per-component ``values`` ((K,), or () for tied) shaped to broadcast along the first
    axis of ``like`` (an array in the structure's shape)."""
    values = np.asarray(values)
    return np.reshape(values, values.shape + (1,) * (np.ndim(like) - values.ndim))


def precision_cholesky(covariances: Array, covariance_type: str) -> Array:
    """U with U U^T = Sigma^-1 (U upper triangular) for every covariance, in its shape."""
    if covariance_type in ("diag", "spherical"):
        if np.any(covariances <= 0.0) or not np.all(np.isfinite(covariances)):
            raise InputError(_ILL_DEFINED)
        return np.asarray(1.0 / np.sqrt(covariances))
    try:
        L = np.linalg.cholesky(covariances)
    except np.linalg.LinAlgError as exc:
        raise InputError(_ILL_DEFINED) from exc
    # Sigma = L L^T  =>  Sigma^-1 = L^-T L^-1 = U U^T with U = L^-T (a batched solve:
    # scipy's triangular solve, one call per component, costs more than the rest of a
    # small fit's iteration)
    eye = np.broadcast_to(np.eye(covariances.shape[-1]), covariances.shape)
    U = np.swapaxes(np.linalg.solve(L, eye), -1, -2)
    return np.asarray(np.triu(U))


def _log_det(scale: Array, covariance_type: str) -> Array:
    """log|scale| per component ((K,), or () for tied)."""
    if covariance_type == "diag":
        return np.sum(np.log(scale), axis=-1)
    if covariance_type == "spherical":
        return np.log(scale)  # times d by the caller
    return np.linalg.slogdet(scale)[1]


@dataclass(frozen=True, eq=False)
class NormalWishart:
    """Normal-Wishart distributions over K components' means and precisions.

    Parameters
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}
    mean : ndarray of shape (K, d)
        m_k.
    shrinkage : ndarray of shape (K,)
        beta_k > 0, the mean's pseudo-count.
    dof : ndarray of shape (K,), or () for 'tied'
        nu_k > d - 1.
    scale : ndarray
        W_k^-1 in the structure's shape: (K, d, d), (d, d), (K, d) or (K,).

    Examples
    --------
    >>> nw = NormalWishart("spherical", np.zeros((1, 2)), np.ones(1), np.array([3.0]), np.ones(1))
    >>> nw.covariances
    array([0.33333333])
    >>> nw.kl(nw)
    0.0
    """

    covariance_type: str
    mean: Array
    shrinkage: Array
    dof: Array
    scale: Array

    @property
    def n_features(self) -> int:
        return int(self.mean.shape[1])

    @property
    def n_components(self) -> int:
        return int(self.mean.shape[0])

    # -- derived quantities ----------------------------------------------------------

    def _per_component(self, value: Array) -> Array:
        """A tied value (shape ()) repeated for each component, others as they are."""
        return np.broadcast_to(value, (self.n_components,))

    @cached_property
    def covariances(self) -> Array:
        """E[Lambda_k]^-1 = W_k^-1 / nu_k, in the structure's shape (scikit-learn's
        ``covariances_`` of a BayesianGaussianMixture)."""
        return np.asarray(self.scale / along_components(self.dof, self.scale))

    @cached_property
    def precisions_cholesky(self) -> Array:
        """U U^T = E[Lambda_k] = nu_k W_k, U upper triangular, in the structure's shape."""
        return precision_cholesky(self.covariances, self.covariance_type)

    def log_det_scale(self) -> Array:
        """log|W_k^-1| per component, (K,) (or () for tied)."""
        out = _log_det(self.scale, self.covariance_type)
        return self.n_features * out if self.covariance_type == "spherical" else out

    def expected_log_det(self) -> Array:
        """E[log|Lambda_k|] = sum_i psi((nu_k - i) / 2) + d log 2 - log|W_k^-1|, (K,)."""
        d = self.n_features
        nu = self._per_component(self.dof)
        psi = digamma(0.5 * (nu[:, None] - np.arange(d)[None, :])).sum(axis=1)
        return psi + d * np.log(2.0) - self._per_component(self.log_det_scale())

    def quadratic(self, points: Array) -> Array:
        """(p_k - m_k)^T W_k (p_k - m_k) for one point per component, (K,)."""
        delta = points - self.mean
        U = self.precisions_cholesky  # of nu W
        nu = self._per_component(self.dof)
        if self.covariance_type == "full":
            y = np.einsum("ki,kij->kj", delta, U)
            return np.asarray(np.sum(y * y, axis=1) / nu)
        if self.covariance_type == "tied":
            y = delta @ U
            return np.asarray(np.sum(y * y, axis=1) / nu)
        if self.covariance_type == "diag":
            return np.asarray(np.sum((delta * U) ** 2, axis=1) / nu)
        return np.asarray(np.sum(delta**2, axis=1) * U**2 / nu)

    # -- the four operations ------------------------------------------------------------

    def mode(self) -> tuple[Array, Array]:
        """(means, covariances) at the joint mode of the density of (mu_k, Sigma_k):
        m_k and W_k^-1 / (nu_k + d + 2), the MAP estimate of MAP-EM (mclust's)."""
        d = self.n_features
        factor = np.asarray(self.dof / (self.dof + d + 2.0))
        cov = self.covariances
        return self.mean, cov * along_components(factor, cov)

    def expected_natural(self) -> tuple[tuple[Array, Array], Array]:
        """((E[Lambda_k mu_k], E[Lambda_k]), E[A(eta_k)]) for the Gaussian's natural
        parameters eta = (Lambda mu, -Lambda / 2), E[Lambda] in the structure's shape and

            E[A(eta_k)] = 1/2 (d / beta_k + nu_k m_k^T W_k m_k - E[log|Lambda_k|] + d log 2 pi)

        so that E[log N(x | mu_k, Lambda_k)] = <t(x), E[eta_k]> - E[A(eta_k)]: a Gaussian
        log-density with mean m_k and precision nu_k W_k, plus the constant
        :meth:`log_density_offset`.
        """
        d = self.n_features
        U = self.precisions_cholesky
        kind = self.covariance_type
        precision: Array
        if kind in ("full", "tied"):
            precision = U @ np.swapaxes(U, -1, -2)
            if kind == "full":
                lam_mu = np.einsum("kij,kj->ki", precision, self.mean)
            else:
                lam_mu = self.mean @ precision
        elif kind == "diag":
            precision = U**2
            lam_mu = precision * self.mean
        else:
            precision = U**2
            lam_mu = precision[:, None] * self.mean
        beta = self.shrinkage
        quad = self.quadratic(np.zeros_like(self.mean))  # m^T W m
        nu = self._per_component(self.dof)
        expected_a = 0.5 * (d / beta + nu * quad - self.expected_log_det() + d * LOG_2PI)
        return (lam_mu, precision), expected_a

    def log_density_offset(self) -> Array:
        """E[log N(x | mu_k, Lambda_k)] - log N(x | m_k, (nu_k W_k)^-1), the same for
        every x, (K,):

            1/2 (E[log|Lambda_k|] - log|nu_k W_k|) - d / (2 beta_k)
        """
        d = self.n_features
        nu = self._per_component(self.dof)
        # E[log|Lambda|] - log|nu W| = sum_i psi((nu - i)/2) + d log 2 - d log nu
        psi = digamma(0.5 * (nu[:, None] - np.arange(d)[None, :])).sum(axis=1)
        return 0.5 * (psi + d * np.log(2.0) - d * np.log(nu)) - 0.5 * d / self.shrinkage

    def kl(self, other: NormalWishart) -> float:
        """KL(self || other), summed over the components (a tied precision counted
        once), for two Normal-Wisharts of the same structure and size:

            KL(Wishart_q || Wishart_p)
            + 1/2 sum_k [d (beta_p/beta_q - 1 - log(beta_p/beta_q))
                          + beta_p nu_q (m_q - m_p)^T W_q (m_q - m_p)]
        """
        if other.covariance_type != self.covariance_type:
            raise InputError(
                "kl needs two Normal-Wisharts of the same covariance_type, got "
                f"{self.covariance_type!r} and {other.covariance_type!r}."
            )
        d = self.n_features
        K = self.n_components
        kind = self.covariance_type
        nu_q, nu_p = self.dof, np.broadcast_to(other.dof, np.shape(self.dof))
        # tr(W_p^-1 W_q) = tr(scale_p scale_q^-1)
        if kind in ("full", "tied"):
            scale_p = np.broadcast_to(other.scale, self.scale.shape)
            trace = np.trace(np.linalg.solve(self.scale, scale_p), axis1=-2, axis2=-1)
        elif kind == "diag":
            trace = np.sum(np.broadcast_to(other.scale, self.scale.shape) / self.scale, axis=-1)
        else:
            trace = d * np.broadcast_to(other.scale, self.scale.shape) / self.scale
        log_det_q = self.log_det_scale()
        log_det_p = np.broadcast_to(other.log_det_scale(), np.shape(log_det_q))
        i = np.arange(d)
        half_q = 0.5 * (np.asarray(nu_q)[..., None] - i)
        half_p = 0.5 * (np.asarray(nu_p)[..., None] - i)
        e_log_det = np.sum(digamma(half_q), axis=-1) + d * np.log(2.0) - log_det_q
        # E_q[log W(Lambda | q) - log W(Lambda | p)], with log|W| = -log|scale|
        wishart = (
            0.5 * (nu_q * log_det_q - nu_p * log_det_p)
            + 0.5 * (nu_q - nu_p) * (e_log_det - d * np.log(2.0))
            + 0.5 * nu_q * (trace - d)
            + np.sum(gammaln(half_p) - gammaln(half_q), axis=-1)
        )
        beta_p = np.broadcast_to(other.shrinkage, (K,))
        ratio = beta_p / self.shrinkage
        quad = self.quadratic(np.broadcast_to(other.mean, self.mean.shape))
        normal = 0.5 * (
            d * (ratio - 1.0 - np.log(ratio)) + beta_p * self._per_component(nu_q) * quad
        )
        return float(np.sum(wishart) + np.sum(normal))

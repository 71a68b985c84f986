"""Conjugate priors for MAP-EM, with their usual hyper-parameters.

Every prior here is conjugate: as a function of the component's natural parameters it is
``exp(<phi, eta> - nu A(eta))``, so the MAP M-step is the ML one with ``phi``
pseudo-observations of the statistics and ``nu`` pseudo-counts added (seed 004):

    E_k[t(x)] = (phi + sum_n r_nk t(x_n)) / (nu + sum_n r_nk)

The priors are written in the parameters users know (a Gamma on a Poisson rate, a Beta on
a probability, a Normal-inverse-Wishart on a mean and covariance), and the MAP estimate is
the mode of the posterior density in those parameters: ``(a - 1 + S) / (b + N)`` for a
Poisson rate, ``(a - 1 + S) / (a + b - 2 + N)`` for a probability, mclust's formulas for
Gaussians. Each family documents its ``phi`` and ``nu``. The objective of MAP-EM is
log-likelihood + log prior density (normalized where the prior is proper), which EM never
decreases.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

from emkit.exceptions import InputError
from emkit.families.normal_wishart import GaussianMoments, NormalWishart

__all__ = [
    "BetaPrior",
    "ConjugatePrior",
    "DirichletPrior",
    "GammaPrior",
    "GaussianPrior",
    "check_prior",
    "check_prior_sizes",
]

Array = NDArray[np.floating[Any]]


def _positive(name: str, value: Any, minimum: float, strict: bool, what: str) -> Array:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a number or an array of numbers, got {value!r}.") from exc
    ok = arr > minimum if strict else arr >= minimum
    if arr.ndim > 1 or not np.all(np.isfinite(arr)) or not np.all(ok):
        sign = ">" if strict else ">="
        raise InputError(f"{name} must be finite and {sign} {minimum:g} ({what}), got {value!r}.")
    return arr


@dataclass(frozen=True, eq=False)
class GammaPrior:
    """Gamma(shape, rate) prior on a positive rate (Poisson or Exponential components).

    Parameters
    ----------
    shape : float or array-like of shape (n_features,)
        ``a >= 1``; ``a > 1`` keeps every fitted rate positive (an all-zero column fits).
    rate : float or array-like of shape (n_features,)
        ``b > 0``: how many pseudo-observations the prior is worth.

    Examples
    --------
    >>> GammaPrior(shape=2.0, rate=0.5).log_density(np.array([1.0]))
    array([-1.88629436])
    """

    shape: Any = 1.0
    rate: Any = 1.0

    def __post_init__(self) -> None:
        _positive("GammaPrior shape", self.shape, 1.0, False, "the mode must exist")
        _positive("GammaPrior rate", self.rate, 0.0, True, "a proper prior")

    @property
    def a(self) -> Array:
        return np.asarray(self.shape, dtype=np.float64)

    @property
    def b(self) -> Array:
        return np.asarray(self.rate, dtype=np.float64)

    def log_density(self, rates: Array) -> Array:
        """Element-wise log Gamma(rates | shape, rate)."""
        a, b = self.a, self.b
        return a * np.log(b) - gammaln(a) + (a - 1.0) * np.log(rates) - b * rates


@dataclass(frozen=True, eq=False)
class BetaPrior:
    """Beta(a, b) prior on a probability (Bernoulli components).

    ``a, b >= 1``; ``a, b > 1`` keep every fitted probability inside (0, 1), so a column
    that is all zeros (or all ones) in a component fits without error. ``BetaPrior(2, 2)``
    is Laplace's add-one smoothing.

    Examples
    --------
    >>> round(float(BetaPrior(2.0, 2.0).log_density(np.array([0.5]))[0]), 12)  # log 1.5
    0.405465108108
    """

    a: Any = 1.0
    b: Any = 1.0

    def __post_init__(self) -> None:
        _positive("BetaPrior a", self.a, 1.0, False, "the mode must exist")
        _positive("BetaPrior b", self.b, 1.0, False, "the mode must exist")

    def log_density(self, p: Array) -> Array:
        a = np.asarray(self.a, dtype=np.float64)
        b = np.asarray(self.b, dtype=np.float64)
        log_beta = gammaln(a) + gammaln(b) - gammaln(a + b)
        return (a - 1.0) * np.log(p) + (b - 1.0) * np.log1p(-p) - log_beta


@dataclass(frozen=True, eq=False)
class DirichletPrior:
    """Symmetric (or given) Dirichlet prior on probability vectors.

    Used on mixing weights, on Categorical columns and on Multinomial components.
    ``concentration >= 1``; ``> 1`` keeps every probability positive (add-(alpha - 1)
    smoothing). A scalar applies to every category.

    Examples
    --------
    >>> round(float(DirichletPrior(2.0).log_density(np.array([[0.5, 0.5]]))[0]), 12)
    0.405465108108
    """

    concentration: Any = 1.0

    def __post_init__(self) -> None:
        _positive(
            "DirichletPrior concentration", self.concentration, 1.0, False, "the mode must exist"
        )

    def alpha(self, n_categories: int) -> Array:
        alpha = np.broadcast_to(np.asarray(self.concentration, dtype=np.float64), (n_categories,))
        return np.array(alpha)

    def log_density(self, p: Array) -> Array:
        """log Dir(p_k | alpha) for each row of ``p`` (shape (..., C)), shape (...)."""
        alpha = self.alpha(p.shape[-1])
        log_norm = gammaln(alpha.sum()) - gammaln(alpha).sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(alpha > 1.0, (alpha - 1.0) * np.log(p), 0.0)
        return log_norm + terms.sum(axis=-1)


@dataclass(frozen=True, eq=False)
class GaussianPrior:
    """Normal-inverse-Wishart prior on a Gaussian's mean and covariance (mclust's prior).

    ``mu | Sigma ~ N(mean, Sigma / shrinkage)`` and ``Sigma ~ inverse-Wishart(scale, dof)``;
    for ``diag`` and ``spherical`` structures the inverse-Wishart becomes inverse-Gamma
    priors on the variances, for ``tied`` it is on the one shared covariance. The MAP
    covariance of a full component is, as in mclust,

        (scale + scatter_k + shrinkage N_k / (shrinkage + N_k) (xbar_k - mean)(...)^T)
            / (dof + N_k + d + 2)

    Parameters
    ----------
    mean : array-like of shape (n_features,), default=None
        Prior mean; ``None`` uses the (weighted) data mean.
    shrinkage : float, default=0.01
        ``kappa >= 0``: pseudo-count of the mean (0 leaves the means unregularized).
    dof : float, default=None
        Degrees of freedom ``> d - 1``; ``None`` uses ``d + 2`` (mclust's default).
    scale : float or array-like, default=None
        Inverse-Wishart scale: a (d, d) matrix, a (d,) diagonal or a scalar times the
        identity; ``None`` uses the data covariance / K^(2/d) (mclust's default), taking
        its diagonal or mean variance for ``diag`` and ``spherical``.

    Examples
    --------
    >>> GaussianPrior(shrinkage=0.01).dof is None
    True
    """

    mean: Any = None
    shrinkage: float = 0.01
    dof: float | None = None
    scale: Any = None

    def __post_init__(self) -> None:
        _positive("GaussianPrior shrinkage", self.shrinkage, 0.0, False, "a pseudo-count")
        if self.dof is not None:
            _positive("GaussianPrior dof", self.dof, 0.0, True, "degrees of freedom")
        if self.mean is not None:
            mean = np.asarray(self.mean, dtype=np.float64)
            if mean.ndim != 1 or not np.isfinite(mean).all():
                raise InputError(
                    f"GaussianPrior mean must be a finite 1-D array, got shape {mean.shape}."
                )
        if self.scale is not None:
            scale = np.asarray(self.scale, dtype=np.float64)
            if scale.ndim > 2 or not np.isfinite(scale).all():
                raise InputError(
                    "GaussianPrior scale must be a finite scalar, (d,) diagonal or (d, d) "
                    f"matrix, got shape {scale.shape}."
                )

    # -- as an updating prior (variational EM and MAP-EM use the same object) ----------

    def normal_wishart(self, covariance_type: str = "full", shift: Any = None) -> NormalWishart:
        """This prior as a one-component :class:`NormalWishart` (precision Lambda =
        Sigma^-1 ~ Wishart(scale^-1, dof)), in coordinates centred on ``shift``.

        ``mean``, ``dof`` and ``scale`` must be given (a fit fills in their data-based
        defaults); ``scale`` is read in the structure's shape: a (d, d) matrix for 'full'
        and 'tied' (a (d,) diagonal or a scalar times the identity also), (d,) variances
        for 'diag', one variance for 'spherical'.
        """
        if self.mean is None or self.dof is None or self.scale is None:
            missing = [f for f in ("mean", "dof", "scale") if getattr(self, f) is None]
            raise InputError(
                f"GaussianPrior {', '.join(missing)} must be given to use it as a "
                "Normal-Wishart (a fit fills in the data-based defaults); pass them."
            )
        if self.shrinkage <= 0:
            raise InputError(
                "GaussianPrior shrinkage must be > 0 for a Normal-Wishart (the mean's "
                f"precision is shrinkage * Lambda), got {self.shrinkage!r}."
            )
        mean = np.asarray(self.mean, dtype=np.float64)
        d = mean.shape[0]
        if shift is not None:
            mean = mean - np.asarray(shift, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        if covariance_type in ("full", "tied"):
            scale = np.diag(np.broadcast_to(scale, (d,))) if scale.ndim < 2 else scale
            if scale.shape != (d, d):
                raise InputError(
                    f"GaussianPrior scale must be ({d}, {d}) for {d} features, got {scale.shape}."
                )
            scale = scale if covariance_type == "tied" else scale[None]
        elif covariance_type == "diag":
            scale = np.diag(scale) if scale.ndim == 2 else np.broadcast_to(scale, (d,))
            scale = np.array(scale)[None]
        elif covariance_type == "spherical":
            if scale.ndim == 2:
                scale = np.trace(scale) / d
            scale = np.reshape(np.mean(scale), (1,))
        else:
            raise InputError(
                "covariance_type must be one of 'full', 'tied', 'diag', 'spherical', got "
                f"{covariance_type!r}."
            )
        dof = float(self.dof)
        return NormalWishart(
            covariance_type,
            mean[None, :],
            np.array([float(self.shrinkage)]),
            np.asarray(dof) if covariance_type == "tied" else np.array([dof]),
            scale,
        )

    def posterior(self, stats: GaussianMoments, covariance_type: str = "full") -> NormalWishart:
        """The posterior given each component's weighted moments (one
        :meth:`NormalWishart.posterior` update)."""
        return self.normal_wishart(covariance_type).posterior(stats)

    def mode(self, covariance_type: str = "full") -> tuple[Array, Array]:
        """(mean, covariance) at the mode of the prior density of (mu, Sigma)."""
        return self.normal_wishart(covariance_type).mode()

    def expected_natural(self, covariance_type: str = "full") -> tuple[tuple[Array, Array], Array]:
        """((E[Lambda mu], E[Lambda]), E[A(eta)]) under the prior
        (:meth:`NormalWishart.expected_natural`)."""
        return self.normal_wishart(covariance_type).expected_natural()

    def kl(self, other: Any, covariance_type: str = "full") -> float:
        """KL(self || other) for another GaussianPrior or a one-component Normal-Wishart."""
        if isinstance(other, GaussianPrior):
            other = other.normal_wishart(covariance_type)
        return self.normal_wishart(covariance_type).kl(other)


@dataclass(frozen=True, eq=False)
class ConjugatePrior:
    """The generic conjugate prior ``exp(<phi, eta> - nu A(eta))`` in natural form.

    ``pseudo_observations`` (phi, one value per sufficient statistic of a component, as
    the sum over ``pseudo_count`` imagined rows) and ``pseudo_count`` (nu > 0). Its MAP
    update is exactly ``grad A(eta) = (phi + S_k) / (nu + N_k)``. Used by families whose
    parameters have no textbook conjugate prior (e.g. :class:`~emkit.families.Gamma`);
    its normalizing constant is not computed (the objective is then known up to a
    constant, which does not affect EM).

    Examples
    --------
    >>> ConjugatePrior([2.0, 0.5], 2.0).pseudo_count
    2.0
    """

    pseudo_observations: Any
    pseudo_count: float = 1.0

    def __post_init__(self) -> None:
        _positive("ConjugatePrior pseudo_count", self.pseudo_count, 0.0, True, "a pseudo-count")
        phi = np.asarray(self.pseudo_observations, dtype=np.float64)
        if phi.ndim != 1 or not np.isfinite(phi).all():
            raise InputError(
                "ConjugatePrior pseudo_observations must be a finite 1-D array (one value per "
                f"sufficient statistic), got shape {phi.shape}."
            )

    @property
    def phi(self) -> Array:
        return np.asarray(self.pseudo_observations, dtype=np.float64)


def check_prior(family: str, prior: Any, allowed: tuple[type, ...]) -> None:
    """Raise a clear error when a family is given a prior it cannot use."""
    if prior is None or (isinstance(prior, str) and prior == "auto") or isinstance(prior, allowed):
        return
    names = " or ".join(cls.__name__ for cls in allowed)
    raise InputError(
        f"The {family} family takes a prior of type {names} (or None, or 'auto'), got "
        f"{type(prior).__name__}."
    )


def check_prior_sizes(prior: Any, fields: tuple[str, ...], n_columns: int) -> None:
    """Raise a clear error when a prior's per-column ``fields`` are neither a scalar nor
    one value per column."""
    for what in fields:
        size = np.size(getattr(prior, what))
        if size not in (1, n_columns):
            raise InputError(
                f"{type(prior).__name__} {what} has {size} values but the data has "
                f"{n_columns} columns; pass a scalar or one value per column."
            )

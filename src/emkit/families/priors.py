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

Priors are objects that update (:class:`UpdatingPrior`): ``posterior(stats)`` is the
conjugate update with a component's weighted statistics (vectorised: the result holds one
distribution per component), ``mode()`` its MAP point, ``mean()`` its posterior mean,
``expected_natural()`` the expectations variational EM needs and ``kl(other)`` the
divergence that enters the ELBO. The MAP M-step of every family with one of these priors is
``prior.posterior(stats).mode()``; variational EM uses the same objects
(:mod:`emkit.families.variational`). A posterior keeps its pseudo-counts in "excess" form
(``a - 1`` for a Gamma shape), so that its mode ``(a - 1 + S) / (b + N)`` is computed
without the cancellation of ``(1 + S) - 1``, exactly as the M-step always computed it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import digamma, gammaln

from emkit.exceptions import InputError
from emkit.families.normal_wishart import NormalWishart

__all__ = [
    "AttachedGaussianPrior",
    "BetaPrior",
    "ConjugatePrior",
    "DirichletPrior",
    "GammaPrior",
    "GaussianPosterior",
    "GaussianPrior",
    "UpdatingPrior",
    "check_prior",
    "check_prior_sizes",
    "segment_sums",
]

Array = NDArray[np.floating[Any]]

_P = TypeVar("_P")


class UpdatingPrior(Protocol):
    """A conjugate prior (or posterior) that updates with sufficient statistics.

    Every array held is broadcast against the statistics it is updated with, so a
    posterior of ``K`` components holds ``(K, ...)`` arrays; :meth:`kl` sums over every
    axis after the first.
    """

    def posterior(self: _P, stats: Any) -> _P:
        """The conjugate update with a component's weighted statistics (same type)."""
        ...

    def mode(self) -> Any:
        """The MAP point of the distribution (the M-step of MAP-EM)."""
        ...

    def mean(self) -> Any:
        """The mean of the distribution (variational EM's point estimate)."""
        ...

    def expected_natural(self) -> tuple[Array, Array]:
        """(E[eta], E[A(eta)]) of the likelihood it is conjugate to, under this
        distribution: what the variational E-step uses in place of (eta, A(eta))."""
        ...

    def kl(self, other: Any) -> Array:
        """KL(self || other), one value per component (summed over the other axes)."""
        ...


def _build(cls: type[_P], **values: Any) -> _P:
    """An instance of a frozen prior class holding ``values``, without the argument checks
    of its constructor: posteriors hold (K, ...) arrays, and the flat (improper) prior of
    maximum likelihood has zero pseudo-counts."""
    obj = object.__new__(cls)
    for name, value in values.items():
        object.__setattr__(obj, name, value)
    return obj


def _stored(obj: Any, name: str, default: Any) -> Array:
    """A value a posterior stores (see :func:`_build`), or ``default()`` for a prior built
    by its constructor (whose dataclass fields are only the user's arguments)."""
    value = obj.__dict__.get(name)
    return np.asarray(default() if value is None else value)


def _per_component(terms: Array) -> Array:
    """Sum over every axis after the first (one value per component)."""
    terms = np.asarray(terms, dtype=np.float64)
    return terms.sum(axis=tuple(range(1, terms.ndim))) if terms.ndim > 1 else terms


def _gamma_kl(a: Array, b: Array, a0: Array, b0: Array) -> Array:
    """KL(Gamma(a, b) || Gamma(a0, b0)) element-wise (shape-rate parameters)."""
    return (
        (a - a0) * digamma(a)
        - gammaln(a)
        + gammaln(a0)
        + a0 * (np.log(b) - np.log(b0))
        + a * (b0 - b) / b
    )


def _segments(offsets: NDArray[np.intp] | None, size: int) -> NDArray[np.intp]:
    """Where each Dirichlet starts along the last axis (one segment without offsets)."""
    return np.array([0], dtype=np.intp) if offsets is None else offsets[:-1]


def segment_sums(values: Array, offsets: NDArray[np.intp] | None) -> Array:
    """Each segment's sum along the last axis, repeated over its entries."""
    values = np.asarray(values, dtype=np.float64)
    if offsets is None:
        return np.broadcast_to(values.sum(axis=-1, keepdims=True), values.shape)
    sums = np.add.reduceat(values, offsets[:-1], axis=-1)
    return np.repeat(sums, np.diff(offsets), axis=-1)


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

    @classmethod
    def flat(cls) -> GammaPrior:
        """The improper prior ``Gamma(1, 0)`` (density 1): its posterior's mode is the
        maximum-likelihood rate ``S / N``."""
        return _build(cls, shape=1.0, rate=0.0, _excess=np.float64(0.0))

    @property
    def excess(self) -> Array:
        """``shape - 1``, kept exact through updates (a posterior's ``a - 1 + S``)."""
        return _stored(self, "_excess", lambda: np.asarray(self.shape, dtype=np.float64) - 1.0)

    @property
    def a(self) -> Array:
        return np.asarray(self.shape, dtype=np.float64)

    @property
    def b(self) -> Array:
        return np.asarray(self.rate, dtype=np.float64)

    def posterior(self, stats: tuple[Any, Any]) -> GammaPrior:
        """``Gamma(a + s, b + r)`` for ``stats = (s, r)``, the likelihood's coefficients of
        ``log lambda`` and ``-lambda``: ``(S_k, N_k)`` for Poisson counts, ``(N_k, S_k)``
        for Exponential values.

        Examples
        --------
        >>> post = GammaPrior(2.0, 1.0).posterior((np.array([[3.0]]), np.array([[4.0]])))
        >>> post.shape, post.rate, post.mode()
        (array([[5.]]), array([[5.]]), array([[0.8]]))
        """
        excess = self.excess + np.asarray(stats[0], dtype=np.float64)
        rate = self.b + np.asarray(stats[1], dtype=np.float64)
        return _build(GammaPrior, shape=1.0 + excess, rate=rate, _excess=excess)

    def mode(self) -> Array:
        """``(a - 1) / b`` (NaN where ``b = 0`` and ``a = 1``: no information)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.excess / self.b)

    def mean(self) -> Array:
        """``a / b``."""
        return np.asarray(self.a / self.b)

    def expected_natural(self) -> tuple[Array, Array]:
        """``(E[log lambda], E[lambda]) = (digamma(a) - log b, a / b)``: a Poisson's
        ``(E[eta], E[A])``; an Exponential's are ``(-E[lambda], -E[log lambda])``."""
        a, b = self.a, self.b
        return np.asarray(digamma(a) - np.log(b)), np.asarray(a / b)

    def kl(self, other: GammaPrior) -> Array:
        """KL(self || other) per component."""
        return _per_component(_gamma_kl(self.a, self.b, other.a, other.b))

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

    @classmethod
    def flat(cls) -> BetaPrior:
        """``Beta(1, 1)`` (uniform): its posterior's mode is the maximum-likelihood
        probability."""
        return BetaPrior(1.0, 1.0)

    @property
    def excess_a(self) -> Array:
        """``a - 1``, kept exact through updates."""
        return _stored(self, "_excess_a", lambda: np.asarray(self.a, dtype=np.float64) - 1.0)

    @property
    def excess_b(self) -> Array:
        """``b - 1``, kept exact through updates."""
        return _stored(self, "_excess_b", lambda: np.asarray(self.b, dtype=np.float64) - 1.0)

    def posterior(self, stats: tuple[Any, Any]) -> BetaPrior:
        """``Beta(a + s, b + f)`` for ``stats = (s, f)``: successes and failures.

        Examples
        --------
        >>> BetaPrior(2.0, 2.0).posterior((np.array([3.0]), np.array([1.0]))).mode()
        array([0.66666667])
        """
        ea = self.excess_a + np.asarray(stats[0], dtype=np.float64)
        eb = self.excess_b + np.asarray(stats[1], dtype=np.float64)
        return _build(BetaPrior, a=1.0 + ea, b=1.0 + eb, _excess_a=ea, _excess_b=eb)

    def mode(self) -> Array:
        """``(a - 1) / (a + b - 2)`` (NaN where ``a = b = 1``: no information)."""
        return self.mode_and_complement()[0]

    def mode_and_complement(self) -> tuple[Array, Array]:
        """(mode, 1 - mode), the complement from its own pseudo-counts (exact near 1)."""
        count = self.excess_a + self.excess_b
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.excess_a / count), np.asarray(self.excess_b / count)

    def mean(self) -> Array:
        """``a / (a + b)``."""
        a = np.asarray(self.a, dtype=np.float64)
        return np.asarray(a / (a + np.asarray(self.b, dtype=np.float64)))

    def expected_natural(self) -> tuple[Array, Array]:
        """A Bernoulli's ``(E[logit p], E[-log(1 - p)])`` =
        ``(digamma(a) - digamma(b), digamma(a + b) - digamma(b))``."""
        a = np.asarray(self.a, dtype=np.float64)
        b = np.asarray(self.b, dtype=np.float64)
        psi_b = digamma(b)
        return np.asarray(digamma(a) - psi_b), np.asarray(digamma(a + b) - psi_b)

    def kl(self, other: BetaPrior) -> Array:
        """KL(self || other) per component."""
        a, b = np.asarray(self.a, dtype=np.float64), np.asarray(self.b, dtype=np.float64)
        a0, b0 = np.asarray(other.a, dtype=np.float64), np.asarray(other.b, dtype=np.float64)
        log_beta = gammaln(a) + gammaln(b) - gammaln(a + b)
        log_beta0 = gammaln(a0) + gammaln(b0) - gammaln(a0 + b0)
        terms = (
            log_beta0
            - log_beta
            + (a - a0) * digamma(a)
            + (b - b0) * digamma(b)
            + (a0 - a + b0 - b) * digamma(a + b)
        )
        return _per_component(terms)

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

    @classmethod
    def packed(
        cls, concentration: Any, offsets: NDArray[np.intp] | None = None, check: bool = True
    ) -> DirichletPrior:
        """Independent Dirichlets over segments of the last axis, ``offsets[j]`` to
        ``offsets[j + 1]`` (one Categorical column each); ``None`` is one segment.
        ``check=False`` allows concentrations in (0, 1) (no mode, but a proper prior:
        variational EM's weights)."""
        alpha = np.asarray(concentration, dtype=np.float64)
        if check:
            DirichletPrior(alpha.ravel())
        elif not (np.all(np.isfinite(alpha)) and np.all(alpha > 0)):
            raise InputError(
                f"A Dirichlet concentration must be finite and > 0, got {concentration!r}."
            )
        return _build(cls, concentration=alpha, _excess=alpha - 1.0, _offsets=offsets)

    @property
    def excess(self) -> Array:
        """``alpha - 1``, kept exact through updates."""
        return _stored(
            self, "_excess", lambda: np.asarray(self.concentration, dtype=np.float64) - 1.0
        )

    @property
    def offsets(self) -> NDArray[np.intp] | None:
        """Segments of the last axis, each its own Dirichlet (None: one)."""
        return self.__dict__.get("_offsets")

    def posterior(self, stats: Any) -> DirichletPrior:
        """``Dirichlet(alpha + counts)`` for ``stats = counts`` (``(K, C)``: each
        component's weighted count of every category).

        Examples
        --------
        >>> DirichletPrior(2.0).posterior(np.array([[1.0, 3.0]])).mode()
        array([[0.33333333, 0.66666667]])
        """
        excess = self.excess + np.asarray(stats, dtype=np.float64)
        return _build(
            DirichletPrior, concentration=1.0 + excess, _excess=excess, _offsets=self.offsets
        )

    def mode(self) -> Array:
        """``(alpha - 1) / sum(alpha - 1)`` per segment."""
        excess = np.asarray(self.excess, dtype=np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(excess / segment_sums(excess, self.offsets))

    def mean(self) -> Array:
        """``alpha / sum(alpha)`` per segment."""
        alpha = np.asarray(self.concentration, dtype=np.float64)
        return np.asarray(alpha / segment_sums(alpha, self.offsets))

    def expected_natural(self) -> tuple[Array, Array]:
        """A Categorical's ``(E[log p], E[A] = 0)``:
        ``E[log p_c] = digamma(alpha_c) - digamma(sum alpha)``."""
        alpha = np.asarray(self.concentration, dtype=np.float64)
        e_log = digamma(alpha) - digamma(segment_sums(alpha, self.offsets))
        return np.asarray(e_log), np.zeros(alpha.shape[:-1])

    def kl(self, other: DirichletPrior) -> Array:
        """KL(self || other) per component (summed over the segments)."""
        alpha = np.asarray(self.concentration, dtype=np.float64)
        alpha0 = np.broadcast_to(np.asarray(other.concentration, dtype=np.float64), alpha.shape)
        total, total0 = segment_sums(alpha, self.offsets), segment_sums(alpha0, self.offsets)
        starts = _segments(self.offsets, alpha.shape[-1])
        # per segment: log G(sum a) - log G(sum a0); per entry: the rest
        head = gammaln(np.take(total, starts, axis=-1)) - gammaln(np.take(total0, starts, axis=-1))
        terms = (
            gammaln(alpha0) - gammaln(alpha) + (alpha - alpha0) * (digamma(alpha) - digamma(total))
        )
        if alpha.ndim == 1:
            return np.asarray(head.sum() + terms.sum())
        return _per_component(head) + _per_component(terms)

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
    convention : {'conjugate', 'mclust'}, default='conjugate'
        How the prior enters a covariance model's M-step. ``'conjugate'``: each
        component's own inverse-Wishart (-Gamma) prior, evaluated at the constrained
        covariance. ``'mclust'``: R mclust 6's ``priorControl()`` M-steps, model by model
        (:func:`~emkit.families.covariance.mclust_prior_shares`): the scale of the
        spherical and diagonal models is one variance (the mean of the diagonal), the
        shares of the shared factors are mclust's; VEE, EVE, VVE and EVV, which have no
        prior in mclust, take the conjugate one. ``prior='mclust'`` is this with every
        other field at its default.

    The prior becomes a component's when its family is fitted: :meth:`attach` binds it to
    the covariance structure, and the bound prior's ``posterior(stats).mode()`` is the
    MAP M-step (:class:`AttachedGaussianPrior`).

    Examples
    --------
    >>> GaussianPrior(shrinkage=0.01).dof is None
    True
    """

    mean: Any = None
    shrinkage: float = 0.01
    dof: float | None = None
    scale: Any = None
    convention: str = "conjugate"

    def __post_init__(self) -> None:
        _positive("GaussianPrior shrinkage", self.shrinkage, 0.0, False, "a pseudo-count")
        if self.convention not in ("conjugate", "mclust"):
            raise InputError(
                "GaussianPrior convention must be 'conjugate' or 'mclust', got "
                f"{self.convention!r}."
            )
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

    # -- as a component's prior ------------------------------------------------------------

    def attach(
        self, structure: Any, n_components: int, shift: Any, data_covariance: Any = None
    ) -> AttachedGaussianPrior:
        """This prior bound to a covariance structure (a
        :class:`~emkit.families.gaussian.CovarianceStructure`) for ``n_components``
        components, in coordinates centred on ``shift``; ``data_covariance`` is the
        default scale's base when ``scale`` is None (mclust's: divided by K^(2/d))."""
        from emkit.families.covariance import PriorShares, mclust_prior_shares

        mean = np.asarray(self.mean, dtype=np.float64)
        d, K = int(mean.shape[0]), int(n_components)
        dof = float(self.dof) if self.dof is not None else d + 2.0
        if self.scale is None:
            if data_covariance is None:
                raise InputError(
                    "GaussianPrior scale must be given, or a data covariance to derive it from."
                )
            scale = np.asarray(data_covariance, dtype=np.float64) / K ** (2.0 / d)
        else:
            scale = np.asarray(self.scale, dtype=np.float64)
        kappa = float(self.shrinkage)
        shares = None
        if self.convention == "mclust":
            if not structure.dense:
                # mclust's spherical and diagonal models: one variance, the mean one
                full = scale if scale.ndim == 2 else np.diag(np.broadcast_to(scale, (d,)))
                scale = np.asarray(np.trace(full) / d)
            shares = mclust_prior_shares(structure.name, d, K, dof, kappa > 0)
        if shares is None:  # each component's own conjugate prior
            shares = PriorShares(dof + structure.prior_mass(d, K, kappa > 0), 1.0)
        return AttachedGaussianPrior(
            structure=structure,
            mean=mean - np.asarray(shift, dtype=np.float64),
            shrinkage=kappa,
            dof=dof,
            scale=structure.shaped_scale(scale, d),
            shares=shares,
            convention=self.convention,
        )


_CONJUGATE_STRUCTURES = (
    "'full', 'tied', 'diag' and 'spherical' (mclust's VVV, EEE, VVI and VII; V in one dimension)"
)


def _not_conjugate(why: str) -> InputError:
    return InputError(
        "mean(), expected_natural() and kl() of a Gaussian posterior need a conjugate one: "
        "a GaussianPrior with convention='conjugate' and shrinkage > 0 on one of the "
        f"structures {_CONJUGATE_STRUCTURES}; got {why}. mode() (the MAP M-step) works for "
        "every structure."
    )


class GaussianPosterior(NamedTuple):
    """A Gaussian component's posterior given its weighted statistics, for a bound
    structure. The means are final; the covariances' mode maximizes

        -1/2 sum_k [ mass_k log|Sigma_k| + tr(scatter_k Sigma_k^-1) ]

    over the structure's covariances (closed form where the structure has one, the
    strategy's constrained ascent otherwise): :meth:`mode`, the MAP M-step, for every
    structure.

    Where the posterior is conjugate (a ``'conjugate'`` prior with shrinkage > 0 on a
    structure with a Wishart form) it is also a distribution, ``variational``, a
    :class:`NormalWishart` in scikit-learn's BayesianGaussianMixture reading (see
    :meth:`~emkit.families.gaussian.CovarianceStructure.wishart_update`), and
    :meth:`mean`, :meth:`expected_natural` and :meth:`kl` are its; elsewhere they raise,
    saying why (``why_not``).
    """

    structure: Any
    means: Array  # (K, d), centred
    counts: Array  # (K,) N_k plus the means' pseudo-count (what the scatter is about)
    scatter: Array  # in the structure's layout, prior scale and shrinkage term included
    mass: Array  # the scatter's divisor, prior share included
    variational: NormalWishart | None = None
    why_not: str = "no prior"

    def normal_wishart(self) -> NormalWishart:
        """This posterior as the :class:`NormalWishart` variational EM updates."""
        if self.variational is None:
            raise _not_conjugate(self.why_not)
        return self.variational

    def mean(self) -> tuple[Array, Array]:
        """(E[mu_k], E[Lambda_k]^-1), the latter in the structure's shape."""
        nw = self.normal_wishart()
        return nw.mean, nw.covariances

    def expected_natural(self) -> tuple[tuple[Array, Array], Array]:
        """((E[Lambda_k mu_k], E[Lambda_k]), E[A(eta_k)]): what the variational E-step
        uses in place of a Gaussian's natural parameters and log-normalizer
        (:meth:`NormalWishart.expected_natural`)."""
        return self.normal_wishart().expected_natural()

    def kl(self, other: Any) -> float:
        """KL(this posterior || ``other``), summed over the components (a shared
        precision counted once); ``other`` is the bound prior it came from (an
        :class:`AttachedGaussianPrior`), another posterior, or a :class:`NormalWishart`."""
        if isinstance(other, (AttachedGaussianPrior, GaussianPosterior)):
            other = other.normal_wishart()
        return self.normal_wishart().kl(other)

    def mode(self, reg_covar: float = 0.0, previous: Any = None) -> tuple[Array, Array, Any]:
        """(means, covariances, gap): the MAP point, started from ``previous``
        covariances where the structure iterates, and how far below ``previous`` the
        constrained maximization left its objective (None when not measured; see
        :meth:`~emkit.families.gaussian.CovarianceStructure.maximize`)."""
        cov, gap = self.structure.maximize(self.scatter, self.mass, reg_covar, previous)
        return self.means, cov, gap

    def with_means(self, means: Array) -> GaussianPosterior:
        """The posterior conditional on known means: their scatter is the one about
        them, ``+ N_k (mu_hat_k - mu_k)(...)^T`` (a point, no longer a distribution over
        the means)."""
        spread = self.structure.spread(self.counts, self.means - means)
        return self._replace(
            means=means,
            scatter=self.scatter + spread,
            variational=None,
            why_not="known means (a point, not a Normal-Wishart over them)",
        )


@dataclass(frozen=True, eq=False)
class AttachedGaussianPrior:
    """A :class:`GaussianPrior` bound to a covariance structure and a number of
    components (:meth:`GaussianPrior.attach`), in centred coordinates; ``None`` of it (the
    flat prior, :meth:`flat`) is maximum likelihood.

    ``posterior((nk, sum_t, shared))`` takes the family's statistics (the structure's
    layout); ``.mode()`` of the result is the MAP M-step, and where the posterior is
    conjugate its ``.expected_natural()`` and ``.kl(prior)`` are variational EM's
    (:class:`~emkit.BayesianGaussianMixture`). ``scale`` is in the structure's layout for
    one component, ``shares`` how the prior enters this structure
    (:class:`~emkit.families.covariance.PriorShares`).

    Examples
    --------
    >>> from emkit.families.gaussian import covariance_structure
    >>> prior = GaussianPrior(mean=[0.0], shrinkage=1.0, dof=2.0, scale=1.0)
    >>> bound = prior.attach(covariance_structure("spherical"), 1, np.zeros(1))
    >>> post = bound.posterior((np.array([2.0]), np.array([[2.0, 4.0]]), np.zeros(0)))
    >>> post.mode()[:2]  # the MAP point: means, variances (8/3 + 1) / 7
    (array([[0.66666667]]), array([0.52380952]))
    >>> post.mean()  # E[mu], E[Lambda]^-1 = W^-1 / nu = (1 + 8/3) / 4
    (array([[0.66666667]]), array([0.91666667]))
    >>> round(post.kl(bound), 6)
    0.725919
    """

    structure: Any
    mean: Array
    shrinkage: float
    dof: float
    scale: Array
    shares: Any
    convention: str = "conjugate"

    @classmethod
    def flat(cls, structure: Any, d: int) -> AttachedGaussianPrior:
        """The improper flat prior: its posterior mode is the maximum-likelihood M-step."""
        from emkit.families.covariance import PriorShares

        return cls(structure, np.zeros(d), 0.0, 0.0, np.zeros(()), PriorShares(0.0, 0.0))

    @property
    def is_flat(self) -> bool:
        return self.shrinkage == 0.0 and self.shares.mass == 0.0 and self.shares.scale == 0.0

    @property
    def why_not_conjugate(self) -> str:
        """Why this prior's posteriors are not Normal-Wisharts ("" where they are)."""
        if self.is_flat:
            return "no prior (maximum likelihood)"
        if self.structure.wishart_form is None:
            return f"the {self.structure.name!r} structure"
        if self.convention != "conjugate":
            return f"convention={self.convention!r}"
        if not self.shrinkage > 0:
            return f"shrinkage={self.shrinkage!r}"
        return ""

    def normal_wishart(self) -> NormalWishart:
        """This prior as a one-component :class:`NormalWishart` (the precision Lambda =
        Sigma^-1 ~ Wishart(scale^-1, dof)), in centred coordinates: what a posterior's
        :meth:`~GaussianPosterior.kl` is taken to."""
        why = self.why_not_conjugate
        if why:
            raise _not_conjugate(why)
        form = self.structure.wishart_form
        dof = np.asarray(self.dof, dtype=np.float64)
        scale = np.asarray(self.scale, dtype=np.float64)
        shared = self.structure.shared
        return NormalWishart(
            form,
            self.mean[None, :],
            np.array([self.shrinkage]),
            dof if shared else dof[None],
            scale if shared else scale[None],
        )

    def posterior(self, stats: tuple[Array, Array, Array]) -> GaussianPosterior:
        """The conjugate update by each component's weighted statistics ``(nk, sum_t,
        shared)`` (centred, in the structure's layout): the prior's ``shrinkage`` rows at
        its mean added to the statistics (the scatter about the shrunk means is then the
        scatter about xbar_k plus the shrinkage term), its scale and mass share added to
        the covariances' scatter and divisor. Where the prior is conjugate
        (:attr:`why_not_conjugate` is empty) the posterior also holds the Normal-Wishart of
        the structure's :meth:`~emkit.families.gaussian.CovarianceStructure.wishart_update`.

        The two readings agree for ``full`` covariances (the Normal-Wishart's mode is the
        MAP point); for the others MAP-EM's prior is mclust's (an inverse-Gamma per
        variance for ``diag``, one covariance for ``tied``) and the Normal-Wishart is
        scikit-learn's (a Wishart with a diagonal or isotropic W; each component's 1/K
        share of one Wishart for ``tied``), so their modes differ."""
        nk, sum_t, shared = stats
        structure, shares = self.structure, self.shares
        d = self.mean.shape[0]
        K = nk.shape[0]
        kappa = self.shrinkage if shares.shrink_scatter else 0.0
        counts, sums, shared_sums = nk, sum_t, shared
        if kappa > 0:
            row_stats, row_shared = self._mean_row_statistics
            counts = nk + kappa
            sums = sum_t + kappa * row_stats
            shared_sums = shared + K * kappa * row_shared
        with np.errstate(divide="ignore", invalid="ignore"):
            means = sums[:, :d] / counts[:, None]
        scatter = structure.scatter(counts, means, sums, shared_sums)
        variational, why = None, self.why_not_conjugate
        if not why:
            dof, scale = structure.wishart_update(self.scale, self.dof, nk, scatter, d)
            variational = NormalWishart(structure.wishart_form, means, counts, dof, scale)
        if kappa > 0 and not shares.shrink_means:
            # mclust's EEI: the scatter has the shrinkage term, the means are xbar_k
            with np.errstate(divide="ignore", invalid="ignore"):
                means = sum_t[:, :d] / nk[:, None]
        if shares.scale != 0.0:
            scatter = scatter + shares.scale * self.scale
        mass = structure.mass(nk, d)
        if shares.mass != 0.0:
            mass = mass + shares.mass
        return GaussianPosterior(structure, means, counts, scatter, mass, variational, why)

    @functools.cached_property
    def _mean_row_statistics(self) -> tuple[Array, Array]:
        """The statistics and shared statistics of one row at the prior mean (the
        shrinkage's pseudo-rows), made once."""
        row = self.mean[None, :]
        return self.structure.statistics(row.copy())[0], self.structure.shared_statistics(row, None)

    def divisor(self, nk: Array) -> Array:
        """The covariances' divisor at counts ``nk``: the structure's mass plus the
        prior's share."""
        return np.asarray(self.structure.mass(nk, self.mean.shape[0]) + self.shares.mass)


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

    @classmethod
    def flat(cls) -> ConjugatePrior:
        """No prior (phi = 0, nu = 0): its posterior's mode is the maximum-likelihood one."""
        return _build(cls, pseudo_observations=np.float64(0.0), pseudo_count=np.float64(0.0))

    def posterior(self, stats: tuple[Any, Any]) -> ConjugatePrior:
        """``(phi + S_k, nu + N_k)`` for ``stats = (N_k, S_k)`` (``N_k`` broadcast against
        ``S_k``, e.g. ``(K, 1)``)."""
        counts = np.asarray(stats[0], dtype=np.float64)
        sums = np.asarray(stats[1], dtype=np.float64)
        return _build(
            ConjugatePrior,
            pseudo_observations=self.phi + sums,
            pseudo_count=np.asarray(self.pseudo_count, dtype=np.float64) + counts,
        )

    def mode(self) -> Array:
        """The mean parameters at the mode, ``E[t(x)] = phi / nu``: the family maps them
        back through the inverse of grad A (by Newton's method for Gamma and Beta)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.asarray(self.phi / np.asarray(self.pseudo_count, dtype=np.float64))

    def mean(self) -> Array:
        raise NotImplementedError(
            "ConjugatePrior has no closed-form mean for a general family (its normalizer is "
            "not known in closed form)."
        )

    def expected_natural(self) -> tuple[Array, Array]:
        raise NotImplementedError(
            "ConjugatePrior has no closed-form E[eta] or E[A(eta)]: for the Gamma and Beta "
            "families the normalizer of exp(<phi, eta> - nu A(eta)) (over a shape parameter) "
            "is not known in closed form, so variational EM cannot use it."
        )

    def kl(self, other: ConjugatePrior) -> Array:
        raise NotImplementedError(
            "ConjugatePrior has no closed-form KL divergence (its normalizer is not known in "
            "closed form)."
        )


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

"""Exponential components over non-negative columns (independent given the component).

    log p(x | lambda) = -lambda x + log(lambda),    x >= 0

so the statistics are the values, ``eta = -lambda``, ``A = -log(lambda)`` and there is no
base measure; the mean parameter is ``E[x] = 1 / lambda``. With a Gamma(a, b) prior on
each rate (density ~ ``lambda^(a-1) exp(-b lambda)``), ``phi = b`` and ``nu = a - 1``: the
MAP rate is ``(a - 1 + N_k) / (b + S_k)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError
from emkit.families._base import Group, Natural, check_positive
from emkit.families._simple import SimpleFamily, cast_natural, first_bad
from emkit.families._summary import Low, Summary, bind_rows, statistic_summary
from emkit.families.priors import GammaPrior, check_prior, check_prior_sizes

__all__ = ["Exponential", "ExponentialParams"]

Array = NDArray[np.floating[Any]]

# Rates are kept in [floor, ceiling]; the floor keeps log(lambda) finite. A component
# whose rows are all 0 in a column (S_k = 0, no prior) has an unbounded likelihood
# (lambda -> inf, a spike at 0). Its mean 1 / lambda stops at this fraction of the
# column's smallest positive value, which no component with a positive row in a million
# reaches: the spike's density stays far from overflow (and from the E-step's
# responsibility floor, below which the E-step is no longer exact), and the Q lost is
# reported as the M-step's gap (infinite when S_k = 0 exactly).
_RATE_FLOOR = 1e-300
_RATE_CEILING = 1e300
_MEAN_FLOOR_FRACTION = 1e-6
# 'auto' prior: this many pseudo-rows at the column means (as for Poisson).
_AUTO_PSEUDO_ROWS = 0.01


class ExponentialParams(NamedTuple):
    rates: Array  # (K, d)  lambda = 1 / E[x]


@dataclass(frozen=True, eq=False)
class Exponential(SimpleFamily):
    """Independent exponential columns (x >= 0), one rate per component and column.

    Parameters
    ----------
    prior : GammaPrior, 'auto' or None, default=None
        Gamma prior on every rate (MAP-EM). ``'auto'`` is worth 0.01 pseudo-rows at the
        column means ``m``: ``GammaPrior(1.01, 0.01 m)`` (``0.01`` for an all-zero
        column). It keeps a component whose rows are all 0 in a column at a finite rate.

    Notes
    -----
    Without a prior, a component whose rows are all zero in a column has an unbounded
    likelihood (a spike at 0). Its rate is held at ``1e6 / s``, ``s`` the column's
    smallest positive training value (1 for an all-zero column), and the expected
    log-likelihood this gives up is reported as the M-step's gap (infinite when no row
    of the component is positive), so the driver does not hold the next iteration to
    monotonicity. Use a prior for such data.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.5, 2.0], [1.5, 4.0]])
    >>> family = Exponential().bind(X, None)
    >>> params = family.m_step(
    ...     family.default_params(1), np.array([2.0]), X.sum(0, keepdims=True), np.zeros(0), 2.0
    ... )
    >>> params.rates  # 1 / column means
    array([[1.        , 0.33333333]])
    """

    name = "Exponential"
    prior: Any = None
    # per column, 1 / (1e-6 * the smallest positive value), from bind()
    rate_ceiling: Array | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        check_prior(self.name, self.prior, (GammaPrior,))

    def bind(self, X: Array, weights: Array | None) -> Exponential:
        return bind_rows(self, X, weights)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        return statistic_summary(
            X, weights, smallest=Low(np.where(X > 0, X, np.inf).min(axis=0, initial=np.inf))
        )

    def bind_summary(self, summary: Summary, n_rows: int) -> Exponential:
        # values are checked by check(), which names the columns
        d = int(summary["sums"].shape[0])
        prior = self.prior
        if isinstance(prior, str):  # 'auto'
            mean = summary["sums"] / summary["weight"]
            c = _AUTO_PSEUDO_ROWS
            prior = GammaPrior(shape=1.0 + c, rate=c * np.where(mean > 0, mean, 1.0))
        if isinstance(prior, GammaPrior):
            check_prior_sizes(prior, ("shape", "rate"), d)
        positive = summary["smallest"].value
        smallest = np.where(np.isfinite(positive), positive, 1.0)
        with np.errstate(divide="ignore", over="ignore"):
            ceiling = np.minimum(1.0 / (_MEAN_FLOOR_FRACTION * smallest), _RATE_CEILING)
        # the statistics are the values: their largest size bounds the float32 round-off
        stat_scale = summary["size"].value
        return replace(self, n_columns=d, prior=prior, rate_ceiling=ceiling, stat_scale=stat_scale)

    def _check_values(self, X: Array, labels: Sequence[str]) -> None:
        bad = ~(X >= 0)
        if bad.any():
            col, row, value = first_bad(X, bad, labels)
            raise InputError(
                f"{col} has the value {value:g} in row {row}; Exponential columns must be "
                "non-negative numbers. Shift the column, or model it with another family "
                "(e.g. Gaussian)."
            )

    def _natural(self, params: ExponentialParams) -> tuple[Array, Array]:
        return -params.rates, self._column_log_norm(params).sum(axis=1)

    def _column_log_norm(self, params: ExponentialParams) -> Array:
        return -np.log(params.rates)

    def _expected_statistics(self, params: ExponentialParams) -> Array:
        return 1.0 / params.rates

    def _column_means(self, params: ExponentialParams) -> Array:
        return 1.0 / params.rates

    def natural(self, params: ExponentialParams, dtype: Any) -> Natural:
        eta, log_norm = self._natural(params)
        dt = np.dtype(dtype)
        # a rate at the ceiling overflows float32: -inf * 0 would be NaN in the E-step
        eta = np.maximum(eta, -float(np.finfo(dt).max))
        return cast_natural(eta, log_norm, dt, self._needs_float64(eta, log_norm, dt))

    def _pseudo(self) -> tuple[Array | float, Array | float]:
        """(phi, nu) of the prior: Gamma(a, b) on the rate is phi = b, nu = a - 1."""
        if isinstance(self.prior, GammaPrior):
            return self.prior.b, self.prior.a - 1.0
        return 0.0, 0.0

    def _conjugate(self) -> GammaPrior:
        """The Gamma prior on the rates (the flat Gamma(1, 0) without one)."""
        return self.prior if isinstance(self.prior, GammaPrior) else GammaPrior.flat()

    def _posterior(self, counts: Array, sum_t: Array) -> GammaPrior:
        """Gamma(a + N_k, b + S_k) on every rate; ``counts`` (K, 1) or (K, d)."""
        return self._conjugate().posterior((counts, sum_t))

    def _maximize(self, nk: Array, sum_t: Array) -> ExponentialParams:
        rates = np.nan_to_num(self._posterior(nk[:, None], sum_t).mode(), nan=1.0)
        ceiling = _RATE_CEILING if self.rate_ceiling is None else self.rate_ceiling
        return ExponentialParams(np.clip(rates, _RATE_FLOOR, ceiling))

    def _divergence(self, params: ExponentialParams, nk: Array, sum_t: Array) -> Array:
        # Q = count (log lambda - lambda m), maximal at 1 / m:
        # Q(1/m) - Q(lambda) = count (v - 1 - log v), v = lambda m (inf when m = 0)
        post = self._posterior(nk[:, None], sum_t)
        with np.errstate(divide="ignore"):
            mean = 1.0 / post.mode()  # E[x] at the mode
        count = np.broadcast_to(post.excess, mean.shape)
        rates = params.rates
        v = rates * mean
        with np.errstate(divide="ignore", invalid="ignore"):
            near = np.abs(v - 1.0) < 0.5  # log1p keeps the digits of a small loss
            loss = np.where(
                near, (v - 1.0) - np.log1p(v - 1.0), v - 1.0 - np.log(rates) - np.log(mean)
            )
            loss = count * np.maximum(loss, 0.0)
        return np.nan_to_num(loss, nan=0.0, posinf=np.inf).sum(axis=1)

    # -- variational EM: q(rates) = Gamma ------------------------------------------------

    def _proper_prior(self) -> GammaPrior | None:
        return self.prior if isinstance(self.prior, GammaPrior) else None

    def _expected_natural(self, post: GammaPrior) -> tuple[Array, Array]:
        """(E[eta] = -E[lambda], each column's E[A] = -E[log lambda]), each (K, d)."""
        e_log, e_rate = post.expected_natural()
        return -e_rate, -e_log

    def _point(self, post: GammaPrior) -> ExponentialParams:
        return ExponentialParams(post.mean())

    def _log_prior(self, params: ExponentialParams) -> float:
        if not isinstance(self.prior, GammaPrior):
            return 0.0
        return float(np.sum(self.prior.log_density(params.rates)))

    def default_params(self, n_components: int) -> ExponentialParams:
        return ExponentialParams(np.ones((n_components, self.n_features)))

    def _groups(self) -> tuple[Group, ...]:
        d = self.n_features
        return (Group("rates", (d,), check_positive, dof=d),)

    def sample(
        self, params: ExponentialParams, component: int, n: int, rng: np.random.Generator
    ) -> Array:
        return rng.exponential(1.0 / params.rates[component], size=(n, self.n_features))

    def fitted_attributes(self, params: ExponentialParams) -> dict[str, Array]:
        return {"rates": params.rates}

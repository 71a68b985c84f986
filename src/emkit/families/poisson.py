"""Poisson components over count columns (independent given the component).

    log p(x | lambda) = x log(lambda) - lambda - log(x!)

so the statistics are the counts, ``eta = log(lambda)``, ``A = lambda`` and the base
measure is ``-log(x!)``. With a Gamma(a, b) prior on each rate, ``phi = a - 1`` and
``nu = b``: the MAP rate is ``(a - 1 + S_k) / (b + N_k)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import xlogy

from emkit.exceptions import InputError
from emkit.families._base import Group, check_positive
from emkit.families._simple import SimpleFamily, first_bad, log_factorial, log_factorial_table
from emkit.families._summary import High, Summary, bind_rows, statistic_summary
from emkit.families.priors import GammaPrior, check_prior, check_prior_sizes

__all__ = ["Poisson", "PoissonParams"]

Array = NDArray[np.floating[Any]]

# Rates are kept at least this far from 0, where log(rate) = -inf would make 0 * log(0)
# a NaN in the E-step; the Q this costs is reported as the M-step's gap.
_RATE_FLOOR = 1e-300


class PoissonParams(NamedTuple):
    rates: Array  # (K, d)


@dataclass(frozen=True, eq=False)
class Poisson(SimpleFamily):
    """Independent Poisson counts per column, one rate per component and column.

    Values must be non-negative; non-integer values are allowed and use the continuous
    extension ``log(x!) = gammaln(x + 1)`` (as scikit-learn's Poisson losses do).

    Parameters
    ----------
    prior : GammaPrior, 'auto' or None, default=None
        Gamma prior on every rate (MAP-EM). ``'auto'`` is worth 0.01 pseudo-rows at the
        column means: ``GammaPrior(1 + 0.01 * mean, 0.01)``.

    Examples
    --------
    >>> import numpy as np
    >>> family = Poisson().bind(np.array([[0.0, 3.0], [2.0, 1.0]]), None)
    >>> family.n_stats
    2
    """

    name = "Poisson"
    prior: Any = None
    log_factorial: Array | None = None  # table of log(x!) for integer counts, from bind()

    def __post_init__(self) -> None:
        check_prior(self.name, self.prior, (GammaPrior,))

    def bind(self, X: Array, weights: Array | None) -> Poisson:
        return bind_rows(self, X, weights)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        return statistic_summary(X, weights, high=High(np.max(X, axis=0, initial=0.0)))

    def bind_summary(self, summary: Summary, n_rows: int) -> Poisson:
        prior = self.prior
        d = int(summary["sums"].shape[0])
        if isinstance(prior, str):  # 'auto'
            # (negative counts are check()'s to reject; bind on them still gives a valid prior)
            mean = np.maximum(summary["sums"] / summary["weight"], 0.0)
            prior = GammaPrior(shape=1.0 + 0.01 * mean, rate=0.01)
        if isinstance(prior, GammaPrior):
            check_prior_sizes(prior, ("shape", "rate"), d)
        return replace(
            self,
            n_columns=d,
            prior=prior,
            log_factorial=log_factorial_table(summary["high"].value),
            stat_scale=summary["size"].value,  # the statistics are the counts
        )

    def _check_values(self, X: Array, labels: Sequence[str]) -> None:
        bad = X < 0
        if bad.any():
            col, row, value = first_bad(X, bad, labels)
            raise InputError(
                f"Negative values in data: {col} has a negative count ({value:g}) in row {row}; "
                "Poisson columns must be non-negative counts. Model this column with another "
                "family (e.g. Gaussian)."
            )

    def _natural(self, params: PoissonParams) -> tuple[Array, Array]:
        return np.log(params.rates), self._column_log_norm(params).sum(axis=1)

    def _column_log_norm(self, params: PoissonParams) -> Array:
        return params.rates

    def _expected_statistics(self, params: PoissonParams) -> Array:
        return params.rates

    def _column_means(self, params: PoissonParams) -> Array:
        return params.rates

    def log_base_measure(self, Xp: Array) -> Array:
        # log h(x) = -sum_j log(x_j!)
        return -log_factorial(Xp, self.log_factorial).sum(axis=1)

    def _pseudo(self) -> tuple[Array | float, Array | float]:
        """(phi, nu) of the prior: Gamma(a, b) on the rate is phi = a - 1, nu = b."""
        if isinstance(self.prior, GammaPrior):
            return self.prior.a - 1.0, self.prior.b
        return 0.0, 0.0

    def _conjugate(self) -> GammaPrior:
        """The Gamma prior on the rates (the flat Gamma(1, 0) without one)."""
        return self.prior if isinstance(self.prior, GammaPrior) else GammaPrior.flat()

    def _posterior(self, counts: Array, sum_t: Array) -> GammaPrior:
        """Gamma(a + S_k, b + N_k) on every rate; ``counts`` (K, 1) or (K, d)."""
        return self._conjugate().posterior((sum_t, counts))

    def _maximize(self, nk: Array, sum_t: Array) -> PoissonParams:
        mean = self._posterior(nk[:, None], sum_t).mode()
        return PoissonParams(np.maximum(np.nan_to_num(mean, nan=1.0), _RATE_FLOOR))

    def _divergence(self, params: PoissonParams, nk: Array, sum_t: Array) -> Array:
        # Q(m) - Q(lambda) = count (m log(m / lambda) - m + lambda), Q = count (m log l - l)
        post = self._posterior(nk[:, None], sum_t)
        mean = post.mode()
        count = np.broadcast_to(post.rate, mean.shape)
        lam = params.rates
        with np.errstate(divide="ignore", invalid="ignore"):
            loss = count * (xlogy(mean, mean) - xlogy(mean, lam) - mean + lam)
        return np.nan_to_num(loss, nan=0.0).sum(axis=1)

    # -- variational EM: q(rates) = Gamma ------------------------------------------------

    def _proper_prior(self) -> GammaPrior | None:
        return self.prior if isinstance(self.prior, GammaPrior) else None

    def _expected_natural(self, post: GammaPrior) -> tuple[Array, Array]:
        """(E[log lambda] (K, d), E[lambda] (K, d): each column's E[A])."""
        return post.expected_natural()

    def _point(self, post: GammaPrior) -> PoissonParams:
        return PoissonParams(post.mean())

    def _log_prior(self, params: PoissonParams) -> float:
        if not isinstance(self.prior, GammaPrior):
            return 0.0
        return float(np.sum(self.prior.log_density(params.rates)))

    def default_params(self, n_components: int) -> PoissonParams:
        return PoissonParams(np.ones((n_components, self.n_features)))

    def _groups(self) -> tuple[Group, ...]:
        d = self.n_features
        return (Group("rates", (d,), check_positive, dof=d),)

    def sample(
        self, params: PoissonParams, component: int, n: int, rng: np.random.Generator
    ) -> Array:
        return rng.poisson(params.rates[component], size=(n, self.n_features)).astype(np.float64)

    def fitted_attributes(self, params: PoissonParams) -> dict[str, Array]:
        return {"rates": params.rates}

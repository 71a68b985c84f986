"""Bernoulli components over binary columns (independent given the component).

    log p(x | p) = x log(p / (1 - p)) + log(1 - p),    x in {0, 1}

so the statistics are the values, ``eta = logit(p)``, ``A = -log(1 - p)`` and there is no
base measure. With a Beta(a, b) prior on each probability, ``phi = a - 1`` and
``nu = a + b - 2``: the MAP probability is ``(a - 1 + S_k) / (a + b - 2 + N_k)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import xlogy

from emkit.exceptions import InputError
from emkit.families._base import Group, show
from emkit.families._simple import SimpleFamily, first_bad
from emkit.families._summary import Summary, bind_rows, total_weight, weighted_sum
from emkit.families.priors import BetaPrior, check_prior, check_prior_sizes

__all__ = ["Bernoulli", "BernoulliParams"]

Array = NDArray[np.floating[Any]]

# Probabilities are kept in [eps, 1 - eps], where 1 - p is exact, so logit(p) and log(1 - p)
# stay finite. The bound is symmetric so that swapping the coding of 0 and 1 fits the same
# model; the Q this costs (at most N_k eps per column) is reported as the M-step's gap.
_EPS = float(np.finfo(np.float64).eps)
# 'auto' prior: this many pseudo-rows at the column means (as for Poisson).
_AUTO_PSEUDO_ROWS = 0.01


def _check_open_unit(p: Array) -> str | None:
    """A known probability in (0, 1): 0 or 1 makes log p or log(1 - p) -inf in the E-step."""
    if np.all(np.isfinite(p)) and np.all((p > 0) & (p < 1)):
        return None
    return (
        "must be probabilities strictly between 0 and 1 (0 and 1 make the log-densities "
        f"infinite; use e.g. 1e-12 or 1 - 1e-12), got {show(p)}."
    )


class BernoulliParams(NamedTuple):
    probabilities: Array  # (K, d)  P(x_j = 1 | component k)


@dataclass(frozen=True, eq=False)
class Bernoulli(SimpleFamily):
    """Independent binary (0/1) columns, one success probability per component and column.

    Parameters
    ----------
    prior : BetaPrior, 'auto' or None, default=None
        Beta prior on every probability (MAP-EM). ``'auto'`` is worth 0.01 pseudo-rows at
        the column means, ``BetaPrior(1 + 0.01 m, 1 + 0.01 (1 - m))``: it keeps the
        probabilities of a component that saw only zeros (or only ones) in a column
        inside (0, 1) when the column has both values, and is too weak to move any
        component with more than a few rows. (``BetaPrior(2, 2)``, Laplace's add-one
        smoothing, is two pseudo-rows per component: strong for small components.)

    Notes
    -----
    Fitted probabilities are kept in ``[eps, 1 - eps]`` (eps the float64 machine epsilon)
    so the natural parameters stay finite; the expected log-likelihood this gives up is
    reported as the M-step's gap, so the EM driver's monotonicity check still holds.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0]])
    >>> family = Bernoulli().bind(X, None)
    >>> params = family.m_step(
    ...     family.default_params(1), np.array([3.0]), X.sum(0, keepdims=True), np.zeros(0), 3.0
    ... )
    >>> params.probabilities.round(3)
    array([[0.333, 0.667]])
    """

    name = "Bernoulli"
    prior: Any = None

    def __post_init__(self) -> None:
        check_prior(self.name, self.prior, (BetaPrior,))

    def bind(self, X: Array, weights: Array | None) -> Bernoulli:
        return bind_rows(self, X, weights)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        return Summary(weight=total_weight(X, weights), sums=weighted_sum(X, weights))

    def bind_summary(self, summary: Summary, n_rows: int) -> Bernoulli:
        # values are checked by check(), which names the columns
        d = int(summary["sums"].shape[0])
        prior = self.prior
        if isinstance(prior, str):  # 'auto'
            mean = np.clip(summary["sums"] / summary["weight"], 0.0, 1.0)
            c = _AUTO_PSEUDO_ROWS
            prior = BetaPrior(a=1.0 + c * mean, b=1.0 + c * (1.0 - mean))
        if isinstance(prior, BetaPrior):
            check_prior_sizes(prior, ("a", "b"), d)
        return replace(self, n_columns=d, prior=prior)

    def _check_values(self, X: Array, labels: Sequence[str]) -> None:
        bad = (X != 0) & (X != 1)
        if bad.any():
            col, row, value = first_bad(X, bad, labels)
            raise InputError(
                f"{col} has the value {value:g} in row {row}; Bernoulli columns must be "
                "exactly 0 or 1. Threshold the column first (e.g. X > 0.5), or model it "
                "with another family."
            )

    def _natural(self, params: BernoulliParams) -> tuple[Array, Array]:
        p = params.probabilities
        return np.log(p) - np.log1p(-p), self._column_log_norm(params).sum(axis=1)

    def _column_log_norm(self, params: BernoulliParams) -> Array:
        return -np.log1p(-params.probabilities)

    def _expected_statistics(self, params: BernoulliParams) -> Array:
        return params.probabilities

    def _column_means(self, params: BernoulliParams) -> Array:
        return params.probabilities

    def _pseudo(self) -> tuple[Array | float, Array | float]:
        """(phi, nu) of the prior: Beta(a, b) is phi = a - 1, nu = a + b - 2."""
        if isinstance(self.prior, BetaPrior):
            a = np.asarray(self.prior.a, dtype=np.float64)
            b = np.asarray(self.prior.b, dtype=np.float64)
            return a - 1.0, a + b - 2.0
        return 0.0, 0.0

    def _conjugate(self) -> BetaPrior:
        """The Beta prior on the probabilities (the uniform Beta(1, 1) without one)."""
        return self.prior if isinstance(self.prior, BetaPrior) else BetaPrior.flat()

    def _posterior(self, counts: Array, sum_t: Array) -> BetaPrior:
        """Beta(a + S_k, b + N_k - S_k) on every probability; ``counts`` (K, 1) or (K, d)."""
        return self._conjugate().posterior((sum_t, counts - sum_t))

    def _mean_and_complement(self, nk: Array, sum_t: Array) -> tuple[Array, Array, Array]:
        """(the posterior's mode E_k[x], E_k[1 - x], its pseudo-count a + b - 2), each
        (K, d), the mean clipped into [0, 1]."""
        post = self._posterior(nk[:, None], sum_t)
        mean, other = post.mode_and_complement()
        count = post.excess_a + post.excess_b
        return np.clip(mean, 0.0, 1.0), np.clip(other, 0.0, 1.0), count

    def _maximize(self, nk: Array, sum_t: Array) -> BernoulliParams:
        mean, _, _ = self._mean_and_complement(nk, sum_t)
        return BernoulliParams(np.clip(np.nan_to_num(mean, nan=0.5), _EPS, 1.0 - _EPS))

    def _divergence(self, params: BernoulliParams, nk: Array, sum_t: Array) -> Array:
        # Q(m) - Q(p) = count KL(Bernoulli(m) || Bernoulli(p)), Q = count (m log p + (1-m) log(1-p))
        mean, other, count = self._mean_and_complement(nk, sum_t)
        p = params.probabilities
        with np.errstate(invalid="ignore"):
            kl = xlogy(mean, mean) - mean * np.log(p) + xlogy(other, other) - other * np.log1p(-p)
            loss = count * np.maximum(kl, 0.0)
        return np.nan_to_num(loss, nan=0.0).sum(axis=1)

    # -- variational EM: q(probabilities) = Beta -------------------------------------------

    def _proper_prior(self) -> BetaPrior:
        return self._conjugate()

    def _expected_natural(self, post: BetaPrior) -> tuple[Array, Array]:
        """(E[logit p], each column's E[A] = E[-log(1 - p)]), each (K, d)."""
        return post.expected_natural()

    def _point(self, post: BetaPrior) -> BernoulliParams:
        return BernoulliParams(post.mean())

    def _log_prior(self, params: BernoulliParams) -> float:
        if not isinstance(self.prior, BetaPrior):
            return 0.0
        return float(np.sum(self.prior.log_density(params.probabilities)))

    def default_params(self, n_components: int) -> BernoulliParams:
        return BernoulliParams(np.full((n_components, self.n_features), 0.5))

    def _groups(self) -> tuple[Group, ...]:
        d = self.n_features
        return (Group("probabilities", (d,), _check_open_unit, dof=d),)

    def sample(
        self, params: BernoulliParams, component: int, n: int, rng: np.random.Generator
    ) -> Array:
        p = params.probabilities[component]
        return (rng.random((n, self.n_features)) < p).astype(np.float64)

    def fitted_attributes(self, params: BernoulliParams) -> dict[str, Array]:
        return {"probabilities": params.probabilities}

"""Multinomial components over rows of counts (bags of words, species counts, ...).

Each row is a count vector over C categories; rows may have different totals
``n = sum_c x_c``, which the family takes as given. Then

    log p(x | p) = sum_c x_c log(p_c) + log(n!) - sum_c log(x_c!)

so the statistics are the counts, ``eta = log(p)``, ``A = 0`` and the base measure is the
multinomial coefficient. The mean parameters are the probabilities, ``p_c = S_kc / M_k``
with ``M_k = sum_c S_kc`` the component's total count (not its number of rows). With a
Dirichlet(alpha) prior on each component's probabilities, ``phi = alpha - 1`` and
``nu = sum_c (alpha_c - 1)``: the MAP probabilities are proportional to ``alpha - 1 + S_k``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import xlogy

from emkit.exceptions import InputError
from emkit.families._base import Group, check_distributions
from emkit.families._simple import SimpleFamily, first_bad, log_factorial, log_factorial_table
from emkit.families._summary import Summary, Tally, bind_rows, statistic_summary
from emkit.families.priors import DirichletPrior, check_prior

__all__ = ["Multinomial", "MultinomialParams"]

Array = NDArray[np.floating[Any]]

# Probabilities are kept at least this far from 0, where log(p) = -inf would make
# 0 * log(0) a NaN in the E-step; the Q this costs is reported as the M-step's gap.
_PROB_FLOOR = 1e-300
# 'auto' prior: this many pseudo-rows at the column means (as for Poisson).
_AUTO_PSEUDO_ROWS = 0.01


class MultinomialParams(NamedTuple):
    probabilities: Array  # (K, C), rows sum to one


@dataclass(frozen=True, eq=False)
class Multinomial(SimpleFamily):
    """Rows of counts over C categories, one probability vector per component.

    Parameters
    ----------
    prior : DirichletPrior, 'auto' or None, default=None
        Dirichlet prior on each component's probabilities (MAP-EM); its concentration is
        a scalar or one value per category. ``'auto'`` is worth 0.01 pseudo-rows at the
        column means ``m``, ``concentration = 1 + 0.01 m``: a category that occurs in the
        data keeps a positive probability in every component.

    Notes
    -----
    The row totals are taken as given (the likelihood is conditional on them), so
    :meth:`sample` draws each row's total from the totals of the training rows.
    Probabilities are kept at least 1e-300 (a category a component never saw, without a
    prior); the expected log-likelihood this gives up is reported as the M-step's gap.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[3.0, 1.0, 0.0], [1.0, 1.0, 2.0]])
    >>> family = Multinomial().bind(X, None)
    >>> params = family.m_step(
    ...     family.default_params(1), np.array([2.0]), X.sum(0, keepdims=True), np.zeros(0), 2.0
    ... )
    >>> params.probabilities
    array([[0.5 , 0.25, 0.25]])
    """

    name = "Multinomial"
    missing_value = None  # a row's total is part of the model: no entry can drop out
    prior: Any = None
    log_factorial: Array | None = field(default=None, kw_only=True)  # log(x!) table, bind()
    # the distinct row totals of the training rows and their (weighted) frequencies
    totals: tuple[Array, Array] | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        check_prior(self.name, self.prior, (DirichletPrior,))

    def bind(self, X: Array, weights: Array | None) -> Multinomial:
        return bind_rows(self, X, weights)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        return statistic_summary(X, weights, totals=Tally.of(X.sum(axis=1), weights))

    def bind_summary(self, summary: Summary, n_rows: int) -> Multinomial:
        # values are checked by check(), which names the columns
        C = int(summary["sums"].shape[0])
        prior = self.prior
        if isinstance(prior, str):  # 'auto'
            mean = np.maximum(summary["sums"] / summary["weight"], 0.0)
            prior = DirichletPrior(1.0 + _AUTO_PSEUDO_ROWS * mean)
        if isinstance(prior, DirichletPrior):
            size = np.size(prior.concentration)
            if size not in (1, C):
                raise InputError(
                    f"DirichletPrior concentration has {size} values but the data has {C} "
                    "categories (columns); pass a scalar or one value per category."
                )
        # the distinct row totals and their (weighted) frequencies
        values, freq = summary["totals"].values, summary["totals"].weights
        return replace(
            self,
            n_columns=C,
            prior=prior,
            log_factorial=log_factorial_table(values),
            totals=(values, freq / freq.sum()) if values.size else None,
            # the largest count of each category, and the largest row total
            stat_scale=np.append(summary["size"].value, np.max(values, initial=0)),
        )

    def _check_values(self, X: Array, labels: Sequence[str]) -> None:
        with np.errstate(invalid="ignore"):
            bad = ~(X >= 0) | ~np.isfinite(X) | (np.floor(X) != X)
        if bad.any():
            col, row, value = first_bad(X, bad, labels)
            raise InputError(
                f"{col} has the value {value:g} in row {row}; Multinomial columns must be "
                "non-negative integer counts (each row a vector of counts over the "
                "categories). Round or rescale the counts, or model the columns with another "
                "family (e.g. Poisson for non-integer rates, Gaussian for measurements)."
            )

    def _natural(self, params: MultinomialParams) -> tuple[Array, Array]:
        p = params.probabilities
        return np.log(p), np.zeros(p.shape[0])

    def _term_size(self, eta: Array, log_norm: Array) -> Array:
        # sum_c x_c log p_c and the row term log(n!) - sum log(x_c!) are large and cancel
        assert self.stat_scale is not None
        counts, total = self.stat_scale[:-1], self.stat_scale[-1]
        return np.sqrt(np.sum((eta * counts) ** 2, axis=1)) + total * np.log1p(total)

    def log_base_measure(self, Xp: Array) -> Array:
        # log h(x) = log(n!) - sum_c log(x_c!), n = sum_c x_c
        table = self.log_factorial
        return log_factorial(Xp.sum(axis=1), table) - log_factorial(Xp, table).sum(axis=1)

    # -- M-step --------------------------------------------------------------------------

    def _pseudo(self) -> tuple[Array | float, float]:
        """(phi, nu) of the prior: Dirichlet(alpha) is phi = alpha - 1, nu = sum(phi)."""
        if isinstance(self.prior, DirichletPrior):
            phi = self.prior.alpha(self.n_features) - 1.0
            return phi, float(phi.sum())
        return 0.0, 0.0

    def _conjugate(self) -> DirichletPrior:
        """The Dirichlet prior on the probabilities (Dirichlet(1): uniform, without one)."""
        if isinstance(self.prior, DirichletPrior):
            return DirichletPrior.packed(self.prior.alpha(self.n_features))
        return DirichletPrior.packed(np.ones(self.n_features))

    def _posterior(self, counts: Array, sum_t: Array) -> DirichletPrior:
        """Dirichlet(alpha + S_k) (``counts`` unused: the category counts are S_k)."""
        return self._conjugate().posterior(sum_t)

    def _probabilities(self, sum_t: Array) -> tuple[Array, Array]:
        """(the posterior's mode E_k[p] = (alpha - 1 + S_k) / sum(...), its pseudo-count)."""
        post = self._posterior(np.zeros((sum_t.shape[0], 1)), sum_t)
        mass = np.sum(post.excess, axis=1, keepdims=True)
        return post.mode(), mass

    def _maximize(self, nk: Array, sum_t: Array) -> MultinomialParams:
        mean, _ = self._probabilities(sum_t)
        return MultinomialParams(np.maximum(mean, _PROB_FLOOR))  # NaN: no counts at all

    def m_step(
        self,
        params: MultinomialParams,
        nk: Array,
        sum_t: Array,
        shared: Array,
        total_weight: float,
    ) -> MultinomialParams:
        new = super().m_step(params, nk, sum_t, shared, total_weight)
        # A component whose rows are all empty (total 0) has no counts to estimate p
        # from, and any p maximizes its Q: keep the previous one.
        empty = np.isnan(new.probabilities).any(axis=1)
        if empty.any():
            new = MultinomialParams(np.where(empty[:, None], params.probabilities, new[0]))
        return new

    def _divergence(self, params: MultinomialParams, nk: Array, sum_t: Array) -> Array:
        # Q(m) - Q(p) = mass KL(m || p), Q = mass sum_c m_c log p_c
        mean, mass = self._probabilities(sum_t)
        kl = np.sum(xlogy(mean, mean) - xlogy(mean, params.probabilities), axis=1)
        loss = mass[:, 0] * np.maximum(kl, 0.0)
        return np.nan_to_num(loss, nan=0.0)

    # -- variational EM: q(probabilities) = Dirichlet --------------------------------------

    def _proper_prior(self) -> DirichletPrior:
        return self._conjugate()

    def _expected_natural(self, post: DirichletPrior) -> tuple[Array, Array]:
        """(E[log p] (K, C), E[A] = 0 (K, C): the log-normalizer is 0)."""
        e_log, _ = post.expected_natural()
        return e_log, np.zeros_like(e_log)

    def _point(self, post: DirichletPrior) -> MultinomialParams:
        return MultinomialParams(post.mean())

    def _log_prior(self, params: MultinomialParams) -> float:
        if not isinstance(self.prior, DirichletPrior):
            return 0.0
        return float(np.sum(self.prior.log_density(params.probabilities)))

    # -- the rest ------------------------------------------------------------------------

    def default_params(self, n_components: int) -> MultinomialParams:
        C = self.n_features
        return MultinomialParams(np.full((n_components, C), 1.0 / C))

    def _groups(self) -> tuple[Group, ...]:
        C = self.n_features
        return (Group("probabilities", (C,), check_distributions([0, C]), dof=C - 1),)

    def sample(
        self, params: MultinomialParams, component: int, n: int, rng: np.random.Generator
    ) -> Array:
        """``n`` count vectors, with totals drawn from the training rows' totals."""
        if self.totals is None:
            raise InputError(f"The {self.name} family is not bound to data yet; fit first.")
        values, freq = self.totals
        row_totals = rng.choice(values, size=n, p=freq).astype(np.int64)
        p = params.probabilities[component]
        return rng.multinomial(row_totals, p / p.sum()).astype(np.float64)

    def fitted_attributes(self, params: MultinomialParams) -> dict[str, Array]:
        return {"probabilities": params.probabilities}

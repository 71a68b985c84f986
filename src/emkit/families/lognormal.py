"""Log-normal components over positive columns: Gaussian components on ``log x``.

With ``y = log x`` and any Gaussian covariance structure,

    log p(x | mu, Sigma) = log N(y | mu, Sigma) - sum_j y_j

so the statistics, natural parameters, M-step and priors are the Gaussian family's on
``log x``; the Jacobian ``-sum_j log x_j`` is the base measure. Every
parameter (means, covariances, prior) lives on the log scale.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError
from emkit.families._base import Natural
from emkit.families._gaussian_missing import MissingState, conditional_means
from emkit.families._simple import first_bad
from emkit.families.gaussian import Gaussian, GaussianFamily, GaussianParams
from emkit.families.priors import GaussianPrior, check_prior

__all__ = ["LogNormal", "LogNormalFamily"]

Array = NDArray[np.floating[Any]]


@dataclass(frozen=True, eq=False)
class LogNormalFamily:
    """Log-normal components: a :class:`~emkit.families.GaussianFamily` on ``log x``.

    Build it with :func:`LogNormal`. Parameters are :class:`GaussianParams` of ``log x``;
    the fitted attributes are the Gaussian's with a ``log_`` prefix (``log_means``,
    ``log_covariances``, ``log_precisions``, ``log_precisions_cholesky``).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.exp(np.array([[0.0], [1.0], [2.0]]))
    >>> family = LogNormal().bind(X, None)
    >>> params = family.gaussian.params_from_covariances(np.array([[1.0]]), np.array([[1.0]]))
    >>> family.fitted_attributes(params)["log_means"]
    array([[1.]])
    """

    gaussian: GaussianFamily

    @property
    def n_features(self) -> int:
        return self.gaussian.n_features

    @property
    def n_stats(self) -> int:
        return self.gaussian.n_stats

    @property
    def n_shared(self) -> int:
        return self.gaussian.n_shared

    def bind(self, X: Array, weights: Array | None) -> LogNormalFamily:
        return replace(self, gaussian=self.gaussian.bind(_log(X), weights))

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Any:
        # values are checked by check(), which names the columns
        return self.gaussian.summarize(_log(X), weights, index, n_rows)

    def bind_summary(self, summary: Any, n_rows: int) -> LogNormalFamily:
        return replace(self, gaussian=self.gaussian.bind_summary(summary, n_rows))

    def check(self, X: Array, labels: Sequence[str]) -> None:
        if self.gaussian.shift is not None and X.shape[1] != self.n_features:
            raise InputError(
                f"The LogNormal family was fitted on {self.n_features} columns, got {X.shape[1]}."
            )
        _check_positive(X, labels)

    # -- E-step: the Gaussian's, on log x -------------------------------

    def prepare(self, X: Array, dtype: Any) -> Array:
        return self.gaussian.prepare(np.log(X), dtype)

    def statistics(self, Xp: Array, out: Array | None = None) -> Array:
        return self.gaussian.statistics(Xp, out)

    def natural(self, params: GaussianParams, dtype: Any) -> Natural:
        return self.gaussian.natural(params, dtype)

    def log_prob(
        self,
        Xp: Array,
        T: Array,
        params: GaussianParams,
        natural: Natural,
        offset: Array | None = None,
    ) -> Array:
        return self.gaussian.log_prob(Xp, T, params, natural, offset)

    def row_term(self, Xp: Array, params: GaussianParams, natural: Natural) -> Array | None:
        return self.gaussian.row_term(Xp, params, natural)

    def log_base_measure(self, Xp: Array) -> Array:
        # the Jacobian -sum_j log x_j, with log x = the prepared (centred) rows + shift
        shift = self.gaussian.shift
        assert shift is not None
        return -(Xp.sum(axis=1, dtype=np.float64) + shift.sum())

    def shared_statistics(self, Xp: Array, weights: Array | None) -> Array:
        return self.gaussian.shared_statistics(Xp, weights)

    # -- missing values: the Gaussian's, on log x ---------------------------------------

    def missing_fill(self) -> Array:
        return np.ones(self.n_features)  # log 1 = 0: no share of the Jacobian

    def missing_log_prob(
        self,
        Xp: Array,
        observed: NDArray[np.bool_],
        params: GaussianParams,
        natural: Natural,
        offset: Array,
    ) -> tuple[Array, MissingState]:
        return self.gaussian.missing_log_prob(Xp, observed, params, natural, offset)

    def missing_row_term(self, state: MissingState) -> Array | None:
        return self.gaussian.missing_row_term(state)

    def missing_statistics(
        self, params: GaussianParams, state: MissingState, resp: Array
    ) -> tuple[Array, Array]:
        return self.gaussian.missing_statistics(params, state, resp)

    def impute(self, params: GaussianParams, state: MissingState, resp: Array) -> Array:
        """E[x | x_obs] in the user's scale: e^(mean + variance / 2) of the conditional
        normal of log x, mixed over the components."""
        shift = self.gaussian.shift
        assert shift is not None
        return conditional_means(state, resp, log_scale=True) * np.exp(shift)

    # -- M-step and the rest: the Gaussian's ---------------------------------------------

    def m_step(
        self,
        params: GaussianParams,
        nk: Array,
        sum_t: Array,
        shared: Array,
        total_weight: float,
    ) -> GaussianParams:
        return self.gaussian.m_step(params, nk, sum_t, shared, total_weight)

    def m_step_gap(self, params: GaussianParams, nk: Array, sum_t: Array) -> float:
        return self.gaussian.m_step_gap(params, nk, sum_t)

    def natural_values(self, params: GaussianParams) -> tuple[Array, Array]:
        return self.gaussian.natural_values(params)

    def expected_row_term(self, params: GaussianParams, shared: Array) -> float:
        return self.gaussian.expected_row_term(params, shared)

    def degenerate(self, params: GaussianParams) -> NDArray[np.bool_]:
        return self.gaussian.degenerate(params)

    def objective_roundoff(
        self, params: GaussianParams, nk: Array, sum_t: Array, dtype: Any = np.float64
    ) -> float:
        return self.gaussian.objective_roundoff(params, nk, sum_t, dtype)

    def log_prior(self, params: GaussianParams) -> float:
        return self.gaussian.log_prior(params)

    def default_params(self, n_components: int) -> GaussianParams:
        return self.gaussian.default_params(n_components)

    def n_parameters(self, n_components: int) -> int:
        return self.gaussian.n_parameters(n_components)

    def sample(
        self, params: GaussianParams, component: int, n: int, rng: np.random.Generator
    ) -> Array:
        return np.exp(self.gaussian.sample(params, component, n, rng))

    def fitted_attributes(self, params: GaussianParams) -> dict[str, Array]:
        attributes = self.gaussian.fitted_attributes(params)
        return {f"log_{key}": value for key, value in attributes.items()}

    def fix(self, fixed: Mapping[str, Any] | None, n_components: int) -> LogNormalFamily:
        """Known ``log_means`` and/or ``log_covariances`` (of ``log x``)."""
        return replace(
            self, gaussian=self.gaussian.fix_named(fixed, n_components, "LogNormal", "log_")
        )


def LogNormal(
    covariance_type: str = "diag", *, reg_covar: float = 1e-6, prior: Any = None
) -> LogNormalFamily:
    """Log-normal components over positive columns (a Gaussian on ``log x``).

    Parameters
    ----------
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='diag'
        Covariance structure of ``log x`` (``'diag'``: independent columns).
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance of ``log x``.
    prior : GaussianPrior, 'auto' or None, default=None
        Normal-inverse-Wishart prior on the mean and covariance of ``log x`` (MAP-EM;
        ``'auto'``: mclust's defaults, from the data's ``log x``).

    Examples
    --------
    >>> import numpy as np
    >>> family = LogNormal().bind(np.array([[1.0, 10.0], [np.e, 100.0]]), None)
    >>> family.n_stats
    4
    >>> family.gaussian.shift.round(4)  # the mean of log x
    array([0.5   , 3.4539])
    """
    check_prior("LogNormal", prior, (GaussianPrior,))
    return LogNormalFamily(Gaussian(covariance_type, reg_covar=reg_covar, prior=prior))


def _check_positive(X: Array, labels: Sequence[str]) -> None:
    bad = ~(X > 0) & ~np.isnan(X)  # NaN: a missing value
    if bad.any():
        col, row, value = first_bad(X, bad, labels)
        raise InputError(
            f"{col} has the value {value:g} in row {row}; LogNormal columns must be positive "
            "(x > 0: the family models log x). Add a small offset to zeros, or model the "
            "column with another family (e.g. Gamma or Exponential)."
        )


def _log(X: Array) -> Array:
    """log x where x > 0 (0 elsewhere: such values are check()'s to reject)."""
    return np.log(np.where(X > 0, X, 1.0))

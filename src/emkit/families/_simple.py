"""Shared code of the families whose parameters are plain per-component arrays.

A subclass says how its natural parameters, log base measure, MAP M-step, prior and
sampling look; this base turns that into the :class:`~emkit.families.ComponentFamily`
interface (feature-major working rows, statistics buffers, the expanded E-step, kept
parameters for components that lost all their mass).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray
from scipy.special import gammaln

from emkit.exceptions import InputError
from emkit.families._base import (
    Fixed,
    Group,
    Natural,
    column_label,
    count_free,
    expanded_log_prob,
    frozen_components,
    known,
    parse_fixed,
    statistic_rows,
)
from emkit.families._summary import Summary, bind_rows, total_weight, weighted_sum
from emkit.families.priors import ConjugatePrior, check_prior

__all__ = [
    "NewtonFamily",
    "SimpleFamily",
    "cast_natural",
    "feature_major",
    "first_bad",
    "log_factorial",
    "log_factorial_table",
    "solve_increasing",
]

Array = NDArray[np.floating[Any]]

# Absolute round-off (nats) of a float32 log-density beyond which an iteration runs in float64.
_ROUND_OFF = 1e-5
# Statistics beyond this fraction of a dtype's largest number are worked on in float64.
_STAT_RANGE = 1e-6
# Counts from here on are not cast to integers (float64 integers are exact below 2^53).
_EXACT_INTEGERS = 2.0**53
# log(x!) tables reach this far; larger counts use gammaln.
_TABLE_SIZE = 1 << 16


def feature_major(X: Array, dtype: Any) -> Array:
    """``X`` cast to ``dtype`` and laid out feature-major ((d, n) C-order), as its (n, d)
    view: every column is one contiguous row, as the statistics want it."""
    XT = np.empty((X.shape[1], X.shape[0]), dtype=dtype)
    XT[...] = X.T
    return XT.T


def log_factorial_table(X: Array) -> Array:
    """log(x!) for x = 0 .. min(max X, 2^16): the lookup table of :func:`log_factorial`."""
    size = int(min(max(float(np.max(X, initial=0.0)), 0.0), _TABLE_SIZE)) + 1
    return np.asarray(gammaln(np.arange(size, dtype=np.float64) + 1.0))


def log_factorial(x: Array, table: Array | None) -> Array:
    """log(x!) = gammaln(x + 1) in float64: from ``table`` for the integers it covers
    (gammaln is 10x slower), gammaln elsewhere (larger or non-integer values)."""
    if table is None or not float(np.max(x, initial=0.0)) < _EXACT_INTEGERS:
        return np.asarray(gammaln(np.asarray(x, dtype=np.float64) + 1.0))
    counts = np.asarray(x).astype(np.intp)
    if not np.array_equal(counts, x):
        return np.asarray(gammaln(np.asarray(x, dtype=np.float64) + 1.0))
    out = table[np.minimum(counts, table.shape[0] - 1)]
    big = counts >= table.shape[0]
    if big.any():
        out[big] = gammaln(counts[big] + 1.0)
    return np.asarray(out)


def first_bad(X: Array, bad: NDArray[np.bool_], labels: Sequence[str]) -> tuple[str, int, float]:
    """(column label, row, value) of the first entry flagged in ``bad``."""
    row, col = (int(i) for i in np.argwhere(bad)[0])
    return column_label(labels, col), row, float(X[row, col])


def cast_natural(eta: Array, log_norm: Array, dt: np.dtype[Any], needs_float64: bool) -> Natural:
    """Natural parameters in the working dtype. When the iteration must run in float64
    they may overflow ``dt`` (rates around 1e39 in float32): the mixture asks again in
    float64 and never uses these."""
    with np.errstate(over="ignore"):
        return Natural(eta.astype(dt), log_norm.astype(dt), needs_float64)


@dataclass(frozen=True, eq=False)
class SimpleFamily:
    """Base of families with array parameters (a NamedTuple of (K, ...) arrays).

    Subclasses set ``name`` and implement ``_natural``, ``_maximize``, ``_divergence``,
    ``_log_prior``, ``_groups`` (the parameters a user may fix, named like the fields of
    the parameters' NamedTuple), ``default_params``, ``sample`` and
    ``fitted_attributes``; most statistics are the columns themselves (override
    ``n_stats`` and ``statistics`` otherwise), most families have no base measure
    (override ``log_base_measure`` otherwise), and values are checked by
    ``_check_values``.

    A family with an updating conjugate prior (:mod:`emkit.families.priors`) also has
    ``_posterior(counts, sum_t)`` (the prior updated with the statistics, one
    distribution per component; its ``mode()`` is the MAP M-step) and, for variational EM
    (:mod:`emkit.families.variational`), ``_proper_prior()``, ``_expected_natural(q)``
    (E[eta] and each column's E[A]) and ``_point(q)`` (the posterior means as
    parameters).
    """

    name: ClassVar[str] = "simple"
    # a value in the support with log h = 0 that stands in for a missing entry (its
    # statistics are masked out): see missing_log_prob
    missing_value: ClassVar[float | None] = 0.0
    n_columns: int | None = field(default=None, kw_only=True)  # fixed by bind()
    # largest |statistic| in training, per statistic (from bind): bounds the round-off of
    # the expanded form in float32
    stat_scale: Array | None = field(default=None, kw_only=True)
    # known parameters by group name, from fix()
    fixed: Mapping[str, Fixed] | None = field(default=None, kw_only=True, repr=False)

    # -- shapes ------------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        if self.n_columns is None:
            raise InputError(f"The {self.name} family is not bound to data yet; fit first.")
        return int(self.n_columns)

    @property
    def n_stats(self) -> int:
        return self.n_features

    @property
    def n_shared(self) -> int:
        return 0

    def bind(self, X: Array, weights: Array | None) -> Any:
        return bind_rows(self, X, weights)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        """The additive summary of a chunk of training rows that :meth:`bind_summary`
        binds the family from (:mod:`emkit.families._summary`)."""
        return Summary(weight=total_weight(X, weights), sums=weighted_sum(X, weights))

    def bind_summary(self, summary: Summary, n_rows: int) -> Any:
        """The family bound to the rows ``summary`` sums up."""
        return replace(self, n_columns=int(summary["sums"].shape[0]))

    def check(self, X: Array, labels: Sequence[str]) -> None:
        """The column count once bound, then the family's own value checks."""
        if self.n_columns is not None and X.shape[1] != self.n_columns:
            raise InputError(
                f"The {self.name} family was fitted on {self.n_columns} columns, got {X.shape[1]}."
            )
        missing = np.isnan(X)
        if missing.any():
            if self.missing_value is None:
                row, col = (int(i) for i in np.argwhere(missing)[0])
                raise InputError(
                    f"{column_label(labels, col)} is missing (NaN) in row {row}, but the "
                    f"{self.name} family cannot leave out an entry of a row. Drop or fill "
                    "those rows, or model the columns with a family that can (e.g. Poisson)."
                )
            X = np.where(missing, self.missing_value, X)
        self._check_values(X, labels)

    def _check_values(self, X: Array, labels: Sequence[str]) -> None:
        """Raise :class:`InputError` for a value outside the family's support."""

    # -- E-step --------------------------------------------------------------------------

    def prepare(self, X: Array, dtype: Any) -> Array:
        return feature_major(X, dtype)

    def statistics(self, Xp: Array, out: Array | None = None) -> Array:
        if out is None:
            return Xp  # the columns are the statistics, already statistic-major
        buf = statistic_rows(out, self.n_stats, Xp.shape[0], Xp.dtype)
        buf[...] = Xp.T
        return buf.T

    def natural(self, params: Any, dtype: Any) -> Natural:
        eta, log_norm = self._natural(params)
        dt = np.dtype(dtype)
        return cast_natural(eta, log_norm, dt, self._needs_float64(eta, log_norm, dt))

    def _needs_float64(self, eta: Array, log_norm: Array, dt: np.dtype[Any]) -> bool:
        """Whether an iteration in ``dt`` would lose the log-densities: T @ eta - A adds
        terms that cancel, and their round-off (eps times their 2-norm at the largest
        training statistics) must stay within the tolerance; statistics beyond ``dt``'s
        range (values around 1e39 in float32) would be inf. Either makes the mixture
        evaluate the iteration in float64."""
        if dt == np.float64 or self.stat_scale is None:
            return False
        info = np.finfo(dt)
        if not float(np.max(self.stat_scale, initial=0.0)) < _STAT_RANGE * float(info.max):
            return True
        with np.errstate(over="ignore", invalid="ignore"):
            size = float(np.max(self._term_size(eta, log_norm)))
        return bool(not np.isfinite(size) or info.eps * size > _ROUND_OFF)

    def _term_size(self, eta: Array, log_norm: Array) -> Array:
        """Per component, the 2-norm of the terms of T @ eta - A at the largest statistics."""
        assert self.stat_scale is not None
        return np.sqrt(np.sum((eta * self.stat_scale) ** 2, axis=1) + log_norm**2)

    def log_prob(
        self, Xp: Array, T: Array, params: Any, natural: Natural, offset: Array | None = None
    ) -> Array:
        return expanded_log_prob(T, natural, offset)

    def row_term(self, Xp: Array, params: Any, natural: Natural) -> Array | None:
        return None

    def log_base_measure(self, Xp: Array) -> Array | None:
        return None

    def shared_statistics(self, Xp: Array, weights: Array | None) -> Array:
        return np.zeros(0)

    # -- missing values: the columns are independent given the component --------------
    # A missing column drops out of log p(x_obs | k) (its statistics and its share of the
    # log-normalizer), and the M-step receives its expected statistics E_k[t(x_j)].

    @property
    def stat_columns(self) -> NDArray[np.intp]:
        """The column each statistic belongs to, shape (n_stats,)."""
        return np.arange(self.n_stats) % self.n_features

    def missing_fill(self) -> Array:
        assert self.missing_value is not None
        return np.full(self.n_features, self.missing_value)

    def missing_log_prob(
        self, Xp: Array, observed: NDArray[np.bool_], params: Any, natural: Natural, offset: Array
    ) -> tuple[Array, Any]:
        T = self.statistics(Xp) * observed[:, self.stat_columns]
        log_prob = T @ natural.eta.T  # float64: the mixture asks for it
        log_prob -= observed @ self._column_log_norm(params).T
        log_prob += offset
        return log_prob, (T, observed)

    def missing_statistics(self, params: Any, state: Any, resp: Array) -> tuple[Array, Array]:
        T, observed = state
        sum_t = (T.T @ resp).T
        missing_mass = resp.T @ ~observed  # (K, d): the responsibility of absent entries
        sum_t += missing_mass[:, self.stat_columns] * self._expected_statistics(params)
        return sum_t, np.zeros(0)

    def impute(self, params: Any, state: Any, resp: Array) -> Array:
        """E[x | x_obs] for every column, (n, d): the posterior-weighted component means
        (the mixture keeps the observed entries)."""
        return resp @ self._column_means(params)

    def _column_log_norm(self, params: Any) -> Array:
        """Each column's share of the log-normalizer, (K, d)."""
        raise NotImplementedError

    def _expected_statistics(self, params: Any) -> Array:
        """E_k[t(x)] under every component, (K, n_stats)."""
        raise NotImplementedError

    def _column_means(self, params: Any) -> Array:
        """E_k[x_j] in the user's coordinates, (K, d)."""
        raise NotImplementedError

    # -- M-step --------------------------------------------------------------------------

    def m_step(
        self, params: Any, nk: Array, sum_t: Array, shared: Array, total_weight: float
    ) -> Any:
        # Components are independent and each has one parameter group, so the maximizer
        # given the fixed components is the free one for the others.
        new = self._maximize(nk, sum_t)
        frozen = frozen_components(nk, total_weight, self._pseudo_count())
        if frozen.any():
            new = type(new)(
                *(
                    np.where(_along(frozen, old), old, fresh)
                    for fresh, old in zip(new, params, strict=True)
                )
            )
        return self._with_fixed(new)

    def m_step_gap(self, params: Any, nk: Array, sum_t: Array) -> float:
        """Q lost by clipping parameters away from the boundary (log 0), in total nats
        (0 for components whose parameters are all fixed: they are their own maximizer)."""
        loss = self._divergence(params, nk, sum_t)
        if self.fixed:
            loss = np.where(self._all_known(nk.shape[0]), 0.0, loss)
        return float(np.sum(loss))

    # -- known parameters ----------------------------------------------------------------

    def fix(self, fixed: Mapping[str, Any] | None, n_components: int) -> Any:
        groups = parse_fixed(self.name, fixed, self._groups(), n_components)
        return replace(self, fixed=groups or None)

    def n_parameters(self, n_components: int) -> int:
        return count_free(self._groups(), self.fixed, n_components)

    def _with_fixed(self, params: Any) -> Any:
        """``params`` with the known values put in."""
        if not self.fixed:
            return params
        out = []
        for name, value in zip(params._fields, params, strict=True):
            group = self.fixed.get(name)
            out.append(
                value if group is None else np.where(_along(group.mask, value), group.values, value)
            )
        return type(params)(*out)

    def _all_known(self, n_components: int) -> NDArray[np.bool_]:
        """(K,) components whose every parameter group is fixed."""
        out = np.ones(n_components, dtype=bool)
        for group in self._groups():
            out &= known(self.fixed, group.name, n_components)
        return out

    def log_prior(self, params: Any) -> float:
        return float(self._log_prior(params))

    # -- what subclasses provide ---------------------------------------------------------

    def _natural(self, params: Any) -> tuple[Array, Array]:
        """(eta (K, n_stats), log_norm (K,)) in float64."""
        raise NotImplementedError

    def _maximize(self, nk: Array, sum_t: Array) -> Any:
        """MAP parameters of every component from the statistics (prior included)."""
        raise NotImplementedError

    def _divergence(self, params: Any, nk: Array, sum_t: Array) -> Array:
        """Per-component Q(maximizer) - Q(params) (>= 0; 0 unless parameters were clipped)."""
        raise NotImplementedError

    def _log_prior(self, params: Any) -> float:
        raise NotImplementedError

    def _groups(self) -> tuple[Group, ...]:
        """The parameter groups a user may fix (bound family)."""
        raise NotImplementedError

    def _pseudo(self) -> tuple[Any, Any]:
        """(phi, nu): the prior's pseudo-observations and pseudo-counts per statistic
        (broadcast to (n_stats,)); (0, 0) without a prior."""
        return 0.0, 0.0

    def _pseudo_count(self) -> float:
        """The prior's smallest pseudo-count (0 without a prior)."""
        return float(np.min(self._pseudo()[1]))


def solve_increasing(
    f: Callable[[Array, NDArray[np.bool_]], Array],
    slope: Callable[[Array, NDArray[np.bool_]], Array],
    target: Array,
    x0: Array,
    max_iter: int,
    tol: float = 1e-12,
) -> tuple[Array, NDArray[np.bool_]]:
    """``x > 0`` with ``f(x) = target`` elementwise, for ``f`` increasing on (0, inf), and
    where it converged (a relative step below ``tol``).

    Newton's method from ``x0``, safeguarded by the bracket of the points seen so far: a
    step that leaves it (or is not finite) is replaced by doubling (no upper end yet),
    halving (no lower end) or the geometric mean of the ends. ``f(x, active)`` and
    ``slope(x, active)`` get the elements still iterating and the mask that selects them.

    Examples
    --------
    >>> x, ok = solve_increasing(
    ...     lambda x, a: np.log(x), lambda x, a: 1 / x, np.array([0.0, 5.0]), np.ones(2), 50
    ... )
    >>> bool(ok.all()), np.allclose(x, [1.0, np.exp(5.0)])
    (True, True)
    """
    x = np.array(x0, dtype=np.float64)
    target = np.asarray(target, dtype=np.float64)
    lo, hi = np.zeros_like(x), np.full_like(x, np.inf)
    converged = np.zeros(x.shape, dtype=bool)
    for _ in range(max_iter):
        act = ~converged
        if not act.any():
            break
        xa = x[act]
        residual = f(xa, act) - target[act]
        lo_a = np.where(residual < 0, xa, lo[act])
        hi_a = np.where(residual > 0, xa, hi[act])
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            step = xa - residual / slope(xa, act)
            inside = np.isfinite(step) & (step > lo_a) & (step < hi_a)
            fallback = np.where(
                np.isinf(hi_a), 2.0 * xa, np.where(lo_a > 0, np.sqrt(lo_a * hi_a), 0.5 * hi_a)
            )
        new = np.where(residual == 0, xa, np.where(inside, step, fallback))
        lo[act], hi[act], x[act] = lo_a, hi_a, new
        converged[act] = np.abs(new - xa) <= tol * xa
    return x, converged


# Newton iterations of an unbounded M-step: it converges to a relative change of 1e-12 in
# about 5 from the families' closed-form starts.
_NEWTON_ITER = 50


def _along(frozen: NDArray[np.bool_], like: Array) -> NDArray[np.bool_]:
    """``frozen`` (K,) broadcast along the trailing axes of a (K, ...) parameter array."""
    return frozen.reshape((-1,) + (1,) * (np.ndim(like) - 1))


@dataclass(frozen=True, eq=False)
class NewtonFamily(SimpleFamily):
    """Base of the families with two statistics per column, whose M-step has no closed
    form and is solved by Newton's method (Gamma, Beta). Their prior is the generic
    :class:`~emkit.families.priors.ConjugatePrior` over the 2 d statistics."""

    prior: Any = None
    max_m_step_iter: int | None = None

    def __post_init__(self) -> None:
        check_prior(self.name, self.prior, (ConjugatePrior,))
        bound = self.max_m_step_iter
        if bound is not None and (
            not isinstance(bound, int | np.integer) or isinstance(bound, bool) or bound < 1
        ):
            raise InputError(
                f"max_m_step_iter must be a positive integer or None, got {bound!r}. None "
                "solves the M-step to convergence; n bounds it to n Newton iterations from "
                "the previous parameters (a generalized EM step)."
            )

    @property
    def _newton_iter(self) -> int:
        """Newton iterations per M-step: ``max_m_step_iter``, or enough to converge."""
        return _NEWTON_ITER if self.max_m_step_iter is None else int(self.max_m_step_iter)

    @property
    def _warm(self) -> bool:
        """Whether Newton starts from the previous parameters (a bounded, GEM M-step)."""
        return self.max_m_step_iter is not None

    @property
    def n_stats(self) -> int:
        return 2 * self.n_features

    def _pseudo(self) -> tuple[Any, Any]:
        if isinstance(self.prior, ConjugatePrior):
            return self.prior.phi, float(self.prior.pseudo_count)
        return 0.0, 0.0

    def _posterior(self, counts: Array, sum_t: Array) -> ConjugatePrior:
        """The conjugate update (phi + S_k, nu + N_k) (the flat prior without one)."""
        prior = self.prior if isinstance(self.prior, ConjugatePrior) else ConjugatePrior.flat()
        return prior.posterior((counts, sum_t))

    def _split_means(self, nk: Array, sum_t: Array) -> tuple[Array, Array, Array]:
        """(mean of the first statistic, of the second, nu + N_k) at the posterior's mode,
        each (K, d)."""
        post = self._posterior(nk[:, None], sum_t)
        mean = post.mode()
        count = np.broadcast_to(post.pseudo_count, mean.shape)
        d = self.n_features
        return mean[:, :d], mean[:, d:], count[:, :d]

"""Gamma components over positive columns (independent given the component).

    log p(x | alpha, beta) = -beta x + (alpha - 1) log(x) - (log Gamma(alpha) - alpha log(beta))

so the statistics are ``(x, log x)`` of every column (laid out statistic-major: the d
values of x, then the d values of log x), ``eta = (-beta, alpha - 1)`` and
``A = log Gamma(alpha) - alpha log(beta)``; there is no base measure. The mean parameters
are ``E[x] = alpha / beta`` and ``E[log x] = digamma(alpha) - log(beta)``, so the M-step
sets ``beta = alpha / m`` and solves

    log(alpha) - digamma(alpha) = log(m) - l,    m = E_k[x], l = E_k[log x]

for the shape by Newton's method in ``1 / alpha`` (Minka 2002, "Estimating a Gamma
distribution"), safeguarded by the bracket ``1 / (2 s) < alpha < 1 / s`` that the
bounds ``1 / (2 a) < log(a) - digamma(a) < 1 / a`` give. With a
:class:`~emkit.families.priors.ConjugatePrior` (phi, nu) the means are
``m, l = (phi + S_k) / (nu + N_k)``.

With the shape known, the best rate is ``alpha / m``; with the rate known, the best
shape solves ``digamma(alpha) = log(beta) + l`` (Newton from Minka's inverse-digamma
start).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import digamma, gammaln, polygamma

from emkit.exceptions import InputError
from emkit.families._base import Group, check_positive, frozen_components, known, statistic_rows
from emkit.families._simple import NewtonFamily, first_bad, solve_increasing
from emkit.families._summary import High, Summary, bind_rows, total_weight, weighted_sum
from emkit.families.priors import ConjugatePrior

__all__ = ["Gamma", "GammaParams", "solve_gamma_shape"]

Array = NDArray[np.floating[Any]]

# Newton stops when the shape changes by less than this, relative to it.
_NEWTON_TOL = 1e-12
# A component whose rows are all equal in a column (log m - l = 0) has an unbounded
# likelihood (alpha -> inf, a spike): its shape stops here (a constrained maximum, so the
# M-step's gap stays 0), and the component is reported as degenerate.
_SHAPE_CEILING = 1e10
_SHAPE_FLOOR = 1e-300
# 'auto' prior: this many pseudo-rows at the column means of (x, log x).
_AUTO_PSEUDO_ROWS = 0.01
# Absolute round-off (nats) of T @ eta - A allowed in a working dtype below float64, about


class GammaParams(NamedTuple):
    shapes: Array  # (K, d)  alpha
    rates: Array  # (K, d)  beta


def _log_minus_digamma(a: Array) -> Array:
    """log(a) - digamma(a), by its asymptotic series where the difference cancels."""
    out = np.asarray(np.log(a) - digamma(a), dtype=np.float64)
    big = a >= 12.0
    if np.any(big):
        # 1/(2a) + 1/(12a^2) - 1/(120a^4) + 1/(252a^6) - 1/(240a^8) + 1/(132a^10) - ...
        x = 1.0 / a[big]
        x2 = x * x
        tail = -1 / 240 + x2 * (1 / 132 - x2 * 691 / 32760)
        out[big] = x * (0.5 + x * (1 / 12 + x2 * (-1 / 120 + x2 * (1 / 252 + x2 * tail))))
    return out


def _log_minus_digamma_slope(a: Array) -> Array:
    """d/da (log(a) - digamma(a)) = 1/a - trigamma(a) (< 0), by series for large a."""
    out = np.asarray(1.0 / a - polygamma(1, a), dtype=np.float64)
    big = a >= 12.0
    if np.any(big):
        # -1/(2a^2) - 1/(6a^3) + 1/(30a^5) - 1/(42a^7) + 1/(30a^9) - 5/(66a^11)
        x = 1.0 / a[big]
        x2 = x * x
        tail = 1 / 42 + x2 * (-1 / 30 + x2 * 5 / 66)
        out[big] = -x2 * (0.5 + x * (1 / 6 + x2 * (-1 / 30 + x2 * tail)))
    return out


def solve_gamma_shape(
    s: Array, max_iter: int, start: Array | None = None
) -> tuple[Array, NDArray[np.bool_]]:
    """Shapes ``a`` with ``log(a) - digamma(a) = s`` (elementwise, ``s > 0``) and where
    Newton converged.

    Newton's method in ``y = 1 / a`` (Minka's generalized Newton), started from ``start``
    (the previous shapes, for a bounded M-step) or from Minka's closed-form approximation,
    and kept inside the bracket ``s < y < 2 s``; a step that leaves the bracket is
    replaced by bisection.

    Examples
    --------
    >>> a, ok = solve_gamma_shape(np.array([0.1, 2.0]), 50)
    >>> bool(ok.all()), np.allclose(np.log(a) - digamma(a), [0.1, 2.0], rtol=1e-13)
    (True, True)
    """
    s = np.asarray(s, dtype=np.float64)
    lo, hi = s.copy(), 2.0 * s  # bracket of y = 1 / a
    # Minka's starting point: a0 = (3 - s + sqrt((s - 3)^2 + 24 s)) / (12 s)
    a0 = (3.0 - s + np.sqrt((s - 3.0) ** 2 + 24.0 * s)) / (12.0 * s)
    y = np.clip(1.0 / (a0 if start is None else start), lo, hi)
    converged = np.zeros(s.shape, dtype=bool)
    for _ in range(max_iter):
        active = ~converged
        if not active.any():
            break
        ya, sa = y[active], s[active]
        a = 1.0 / ya
        residual = _log_minus_digamma(a) - sa  # decreasing in a: > 0 means a is too small
        # d residual / dy = -a^2 * d residual / da
        step = residual / (a * a * _log_minus_digamma_slope(a))
        lo_a = np.where(residual > 0, lo[active], ya)
        hi_a = np.where(residual > 0, ya, hi[active])
        lo_a = np.where(residual == 0, ya, lo_a)
        hi_a = np.where(residual == 0, ya, hi_a)
        y_new = ya + step
        outside = ~((y_new >= lo_a) & (y_new <= hi_a)) | ~np.isfinite(y_new)
        y_new = np.where(outside, 0.5 * (lo_a + hi_a), y_new)
        done = np.abs(y_new - ya) <= _NEWTON_TOL * ya
        lo[active], hi[active], y[active] = lo_a, hi_a, y_new
        converged[active] = done
    return 1.0 / y, converged


def _inverse_digamma_start(y: Array) -> Array:
    """Minka's starting point for digamma(a) = y: exp(y) + 1/2, or -1 / (y - digamma(1))."""
    with np.errstate(over="ignore"):
        return np.where(y >= -2.22, np.exp(np.minimum(y, 700.0)) + 0.5, -1.0 / (y - digamma(1.0)))


def _expected_log_lik(shape: Array, mean: Array, mean_log: Array) -> Array:
    """Q per unit count at ``shape`` with the best rate ``shape / mean``."""
    return (shape - 1.0) * mean_log - shape + shape * np.log(shape / mean) - gammaln(shape)


@dataclass(frozen=True, eq=False)
class Gamma(NewtonFamily):
    """Independent Gamma columns (x > 0), one shape and rate per component and column.

    Parameters
    ----------
    prior : ConjugatePrior, 'auto' or None, default=None
        The conjugate prior ``exp(<phi, eta> - nu A(eta))`` in natural form (MAP-EM).
        ``pseudo_observations`` are the sums of ``(x, log x)`` over ``pseudo_count``
        imagined rows, ``2 * n_features`` values laid out like the statistics (the sums
        of x of every column, then the sums of log x), with ``log(mean x) > mean(log x)``
        per column. ``'auto'`` is worth 0.01 pseudo-rows at the data's means of
        ``(x, log x)``. The log prior is ``<phi, eta> - nu A(eta)`` without its
        normalizing constant (unknown in closed form), which does not change EM.
    max_m_step_iter : int or None, default=None
        Newton iterations for the shape per M-step. None solves to convergence (a
        relative change of 1e-12, in about 5 iterations from Minka's start); an integer
        n makes the M-step a generalized EM step: at most n iterations from the previous
        shape, the same option as :class:`~emkit.StudentTMixture`'s.

    Notes
    -----
    The M-step solves for the shape to convergence, so it maximizes Q exactly and its
    reported gap is 0. Should Newton stop before it converges (``max_m_step_iter``), a
    shape is kept only if it does not lower Q below the previous shape's (with the best
    rate for each): a generalized EM step, so the objective still never decreases, and
    its fixed points are EM's (Newton from the maximizer stays there). A
    component whose rows are all equal in a column has an unbounded likelihood; its
    shape stops at 1e10 and the gap is reported as infinite.

    Log-densities are evaluated in the expanded form ``T @ eta - A``, whose terms grow
    like ``alpha |log x|``: components with very large shapes (nearly constant columns)
    lose about ``eps * alpha * |log x|`` of absolute precision. In float32 an iteration
    whose round-off would exceed 1e-5 nats runs in float64 instead.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).gamma(3.0, 0.5, size=(5000, 1))
    >>> family = Gamma().bind(X, None)
    >>> T = family.statistics(family.prepare(X, np.float64))
    >>> params = family.m_step(
    ...     family.default_params(1), np.array([5000.0]), T.sum(0, keepdims=True),
    ...     np.zeros(0), 5000.0,
    ... )
    >>> params.shapes.round(1), (params.shapes / params.rates).round(2)  # ~3.0, mean ~1.5
    (array([[3.]]), array([[1.52]]))
    """

    name = "Gamma"
    missing_value = 1.0

    # -- shapes and data -------------------------------------------------------------------

    def bind(self, X: Array, weights: Array | None) -> Gamma:
        return bind_rows(self, X, weights)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        positive = np.where(X > 0, X, 1.0)
        stats = np.hstack([positive, np.log(positive)])
        return Summary(
            weight=total_weight(X, weights),
            sums=weighted_sum(stats, weights),
            size=High(np.abs(stats).max(axis=0, initial=0.0)),
        )

    def bind_summary(self, summary: Summary, n_rows: int) -> Gamma:
        # values are checked by check(), which names the columns
        d = int(summary["sums"].shape[0]) // 2
        prior = self.prior
        if isinstance(prior, ConjugatePrior):
            _check_prior(prior, d)
        elif isinstance(prior, str):  # 'auto': the data's own means, feasible by Jensen
            means = summary["sums"] / summary["weight"]
            prior = ConjugatePrior(_AUTO_PSEUDO_ROWS * means, _AUTO_PSEUDO_ROWS)
        # the largest x (at least 1) and |log x| per column
        size = summary["size"].value
        scale = np.concatenate([np.maximum(size[:d], 1.0), size[d:]])
        return replace(self, n_columns=d, prior=prior, stat_scale=scale)

    def _check_values(self, X: Array, labels: Sequence[str]) -> None:
        bad = ~(X > 0)
        if bad.any():
            col, row, value = first_bad(X, bad, labels)
            raise InputError(
                f"{col} has the value {value:g} in row {row}; Gamma columns must be positive "
                "(x > 0: log x is a statistic). Add a small offset to zeros, or model the "
                "column with another family (e.g. Exponential, which allows 0)."
            )

    def statistics(self, Xp: Array, out: Array | None = None) -> Array:
        d = Xp.shape[1]
        buf = statistic_rows(out, 2 * d, Xp.shape[0], Xp.dtype)
        XT = Xp.T  # contiguous: prepare lays the rows out feature-major
        buf[:d] = XT
        np.log(XT, out=buf[d:])
        return buf.T

    def _natural(self, params: GammaParams) -> tuple[Array, Array]:
        alpha, beta = params.shapes, params.rates
        eta = np.concatenate([-beta, alpha - 1.0], axis=1)
        return eta, self._column_log_norm(params).sum(axis=1)

    def _column_log_norm(self, params: GammaParams) -> Array:
        return np.asarray(gammaln(params.shapes) - params.shapes * np.log(params.rates))

    def _expected_statistics(self, params: GammaParams) -> Array:
        # E[x] = a / b, E[log x] = psi(a) - log b
        alpha, beta = params.shapes, params.rates
        return np.concatenate([alpha / beta, digamma(alpha) - np.log(beta)], axis=1)

    def _column_means(self, params: GammaParams) -> Array:
        return params.shapes / params.rates

    # -- M-step --------------------------------------------------------------------------

    def m_step(
        self, params: GammaParams, nk: Array, sum_t: Array, shared: Array, total_weight: float
    ) -> GammaParams:
        mean, mean_log, _ = self._split_means(nk, sum_t)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = np.log(mean) - mean_log
        ok = np.isfinite(s) & (s > 0)
        # s <= 0: all rows equal (or round-off); the shape goes to its ceiling
        shape = np.full(s.shape, _SHAPE_CEILING)
        start = params.shapes[ok] if self._warm else None
        solved, converged = solve_gamma_shape(s[ok], self._newton_iter, start)
        if not converged.all():
            # generalized EM: keep the previous shape where it gives a larger Q
            previous = params.shapes[ok]
            with np.errstate(divide="ignore", invalid="ignore"):
                q_new = _expected_log_lik(solved, mean[ok], mean_log[ok])
                q_old = _expected_log_lik(previous, mean[ok], mean_log[ok])
            solved = np.where(~converged & (q_old > q_new), previous, solved)
        shape[ok] = solved
        shape = np.clip(shape, _SHAPE_FLOOR, _SHAPE_CEILING)
        if self.fixed:
            # the maximizer over the free parameter given the known one
            # (known shapes: the rate below is their closed-form best)
            shape = self._with_fixed(GammaParams(shape, params.rates)).shapes
            rates = self.fixed.get("rates")
            if rates is not None:
                free_shape = ~known(self.fixed, "shapes", nk.shape[0])
                rate_only = np.broadcast_to((rates.mask & free_shape)[:, None], shape.shape)
                shape[rate_only] = self._shape_given_rate(
                    rates.values[rate_only], mean_log[rate_only], params.shapes[rate_only]
                )
        with np.errstate(divide="ignore", invalid="ignore"):
            rate = shape / mean
        frozen = frozen_components(nk, total_weight, self._pseudo_count())
        if frozen.any():
            shape = np.where(frozen[:, None], params.shapes, shape)
            rate = np.where(frozen[:, None], params.rates, rate)
        return self._with_fixed(GammaParams(shape, rate))

    def _shape_given_rate(self, rate: Array, mean_log: Array, previous: Array) -> Array:
        """argmax_a of Q per unit count, a (l + log b) - log Gamma(a): digamma(a) = l + log b."""
        target = mean_log + np.log(rate)
        ok = np.isfinite(target)
        shape = np.where(ok, 1.0, previous)  # no mass and no prior: kept (frozen)
        solved, converged = solve_increasing(
            lambda a, act: digamma(a),
            lambda a, act: polygamma(1, a),
            target[ok],
            previous[ok] if self._warm else _inverse_digamma_start(target[ok]),
            self._newton_iter,
            _NEWTON_TOL,
        )
        if not converged.all():
            # generalized EM: keep the previous shape where it gives a larger Q
            old = previous[ok]
            worse = solved * target[ok] - gammaln(solved) < old * target[ok] - gammaln(old)
            solved = np.where(~converged & worse, old, solved)
        shape[ok] = np.clip(solved, _SHAPE_FLOOR, _SHAPE_CEILING)
        return shape

    def _divergence(self, params: GammaParams, nk: Array, sum_t: Array) -> Array:
        # Newton solves to convergence, or keeps the previous shape where that gives a
        # larger Q (generalized EM): no gap. A shape held at the ceiling (a column whose
        # rows are all equal: log m - l <= 0, an unbounded likelihood) is the maximizer
        # of Q over the shapes <= ceiling, a set the same at every iteration that holds
        # the previous shapes too (Q is concave in the shape, with the rate at its best
        # given the shape, and in the shape alone given a known rate): EM stays monotone
        # there with no gap, and such components are reported by degenerate().
        return np.zeros(nk.shape[0])

    def degenerate(self, params: GammaParams) -> NDArray[np.bool_]:
        """(K,) components with a shape held at the ceiling (they collapsed onto equal
        values in a column)."""
        return np.asarray((params.shapes >= _SHAPE_CEILING).any(axis=1))

    def _log_prior(self, params: GammaParams) -> float:
        if not isinstance(self.prior, ConjugatePrior):
            return 0.0
        # <phi, eta_k> - nu A(eta_k), without the (unknown) normalizing constant
        eta, log_norm = self._natural(params)
        return float(np.sum(eta @ self.prior.phi - self.prior.pseudo_count * log_norm))

    # -- the rest ------------------------------------------------------------------------

    def default_params(self, n_components: int) -> GammaParams:
        ones = np.ones((n_components, self.n_features))
        return GammaParams(ones, ones.copy())

    def _groups(self) -> tuple[Group, ...]:
        d = self.n_features
        return (
            Group("shapes", (d,), check_positive, dof=d),
            Group("rates", (d,), check_positive, dof=d),
        )

    def sample(
        self, params: GammaParams, component: int, n: int, rng: np.random.Generator
    ) -> Array:
        shape, rate = params.shapes[component], params.rates[component]
        return rng.gamma(shape, 1.0 / rate, size=(n, self.n_features))

    def fitted_attributes(self, params: GammaParams) -> dict[str, Array]:
        return {"shapes": params.shapes, "rates": params.rates}


def _check_prior(prior: ConjugatePrior, d: int) -> None:
    phi, nu = prior.phi, float(prior.pseudo_count)
    if phi.shape != (2 * d,):
        raise InputError(
            f"The Gamma family's ConjugatePrior needs 2 * n_features = {2 * d} "
            f"pseudo_observations (the sums of x of every column, then of log x), got "
            f"{phi.size}."
        )
    mean, mean_log = phi[:d] / nu, phi[d:] / nu
    with np.errstate(divide="ignore", invalid="ignore"):
        ok = (mean > 0) & (np.log(mean) > mean_log)
    if not ok.all():
        j = int(np.argmin(ok))
        raise InputError(
            f"The Gamma family's ConjugatePrior is not proper for column {j}: its pseudo-rows "
            f"have mean x = {mean[j]:g} and mean log x = {mean_log[j]:g}, but they need "
            "mean x > 0 and log(mean x) > mean(log x), as positive data always have. Take "
            "the pseudo_observations from real or imagined positive rows."
        )

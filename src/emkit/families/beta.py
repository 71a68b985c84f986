"""Beta components over columns of proportions in (0, 1) (independent given the component).

    log p(x | a, b) = (a - 1) log(x) + (b - 1) log(1 - x) - log B(a, b)

so the statistics are ``(log x, log(1 - x))`` of every column (laid out statistic-major:
the d values of log x, then the d values of log(1 - x)), ``eta = (a - 1, b - 1)`` and
``A = log B(a, b) = log Gamma(a) + log Gamma(b) - log Gamma(a + b)``; there is no base
measure. The mean parameters are ``E[log x] = digamma(a) - digamma(a + b)`` and
``E[log(1 - x)] = digamma(b) - digamma(a + b)``, which have no closed-form inverse: the
M-step minimizes the convex ``A(a, b) - (a - 1) l_1 - (b - 1) l_2`` by Newton's method
with backtracking, started from the closed form that ``digamma(a) ~ log(a - 1/2)``
gives. With a :class:`~emkit.families.priors.ConjugatePrior` (phi, nu) the means are
``l_1, l_2 = (phi + S_k) / (nu + N_k)``.

With ``b`` known, the best ``a`` solves ``digamma(a) - digamma(a + b) = l_1`` (increasing
and concave in ``a``: a safeguarded 1-D Newton), and likewise for ``b`` given ``a``.
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

__all__ = ["Beta", "BetaParams"]

Array = NDArray[np.floating[Any]]

# Newton stops when both parameters change by less than this, relative to them.
_NEWTON_TOL = 1e-12
# A component whose rows are all equal in a column (exp(l_1) + exp(l_2) = 1) has an
# unbounded likelihood (a, b -> inf, a spike): a + b stops here, and the M-step's gap is
# reported as infinite, as for a collapsed Gaussian.
_CONCENTRATION_CEILING = 1e10
# 'auto' prior: this many pseudo-rows at the column means of (log x, log(1 - x)).
_AUTO_PSEUDO_ROWS = 0.01
# Absolute round-off (nats) of T @ eta - A allowed in a working dtype below float64, about


class BetaParams(NamedTuple):
    a: Array  # (K, d)  shape of x
    b: Array  # (K, d)  shape of 1 - x


def _objective(a: Array, b: Array, l1: Array, l2: Array) -> Array:
    """Minus the expected log-likelihood per unit count: log B(a, b) - (a-1) l1 - (b-1) l2."""
    return gammaln(a) + gammaln(b) - gammaln(a + b) - (a - 1.0) * l1 - (b - 1.0) * l2


def _solve_beta(
    l1: Array, l2: Array, max_iter: int, start: tuple[Array, Array] | None = None
) -> tuple[Array, Array, NDArray[np.bool_]]:
    """(a, b) with ``digamma(a) - digamma(a + b) = l1`` and
    ``digamma(b) - digamma(a + b) = l2`` (elementwise; ``exp(l1) + exp(l2) < 1``), and
    where Newton converged: damped Newton on the convex objective, from ``start`` (the
    previous shapes, for a bounded M-step) or a closed-form approximation.

    Examples
    --------
    >>> l1 = digamma(np.array([2.0])) - digamma(np.array([7.0]))
    >>> l2 = digamma(np.array([5.0])) - digamma(np.array([7.0]))
    >>> a, b, ok = _solve_beta(l1, l2, 50)
    >>> bool(ok[0]), a.round(10), b.round(10)
    (True, array([2.]), array([5.]))
    """
    e1, e2 = np.exp(l1), np.exp(l2)
    # digamma(a) ~ log(a - 1/2): a - 1/2 = s e1, b - 1/2 = s e2 with s = a + b - 1/2
    s = 0.5 / (1.0 - e1 - e2)
    a, b = (0.5 + s * e1, 0.5 + s * e2) if start is None else (start[0].copy(), start[1].copy())
    converged = np.zeros(a.shape, dtype=bool)
    for _ in range(max_iter):
        act = ~converged
        if not act.any():
            break
        A, B, L1, L2 = a[act], b[act], l1[act], l2[act]
        F = _objective(A, B, L1, L2)
        # its round-off: the terms cancel for large a and b
        noise = (
            1e3
            * np.finfo(np.float64).eps
            * (
                np.abs(gammaln(A))
                + np.abs(gammaln(B))
                + np.abs(gammaln(A + B))
                + np.abs(A * L1)
                + np.abs(B * L2)
                + 1.0
            )
        )
        psi_ab, tri_ab = digamma(A + B), polygamma(1, A + B)
        g1 = digamma(A) - psi_ab - L1
        g2 = digamma(B) - psi_ab - L2
        h11, h22, h12 = polygamma(1, A) - tri_ab, polygamma(1, B) - tri_ab, -tri_ab
        det = h11 * h22 - h12 * h12
        da = -(h22 * g1 - h12 * g2) / det
        db = -(h11 * g2 - h12 * g1) / det
        # backtrack until the step stays positive and does not increase the objective
        t = np.ones_like(A)
        good = np.zeros(A.shape, dtype=bool)
        for _ in range(60):
            An, Bn = A + t * da, B + t * db
            with np.errstate(invalid="ignore"):
                ok = (An > 0) & (Bn > 0)
                Fn = np.where(
                    ok, _objective(np.where(ok, An, 1.0), np.where(ok, Bn, 1.0), L1, L2), np.inf
                )
                good = ok & (Fn <= F + noise)
            if good.all():
                break
            t = np.where(good, t, 0.5 * t)
        An, Bn = np.where(good, A + t * da, A), np.where(good, B + t * db, B)
        # converged: a tiny step, or no step that the round-off can tell apart
        done = ~good | ((np.abs(An - A) <= _NEWTON_TOL * A) & (np.abs(Bn - B) <= _NEWTON_TOL * B))
        a[act], b[act] = An, Bn
        converged[act] = done
    return a, b, converged


@dataclass(frozen=True, eq=False)
class Beta(NewtonFamily):
    """Independent Beta columns (0 < x < 1), two shapes per component and column.

    Parameters
    ----------
    prior : ConjugatePrior, 'auto' or None, default=None
        The conjugate prior ``exp(<phi, eta> - nu A(eta))`` in natural form (MAP-EM).
        ``pseudo_observations`` are the sums of ``(log x, log(1 - x))`` over
        ``pseudo_count`` imagined rows, ``2 * n_features`` values laid out like the
        statistics, with ``exp(mean log x) + exp(mean log(1 - x)) < 1`` per column.
        ``'auto'`` is worth 0.01 pseudo-rows at the data's means of the statistics. The
        log prior is ``<phi, eta> - nu A(eta)`` without its normalizing constant.
    max_m_step_iter : int or None, default=None
        Newton iterations per M-step. None solves to convergence (a relative change of
        1e-12, in about 10 iterations); an integer n makes the M-step a generalized EM
        step: at most n damped Newton iterations from the previous shapes, the same
        option as :class:`~emkit.StudentTMixture`'s.

    Notes
    -----
    The M-step solves to convergence, so it maximizes Q exactly and its reported gap is
    0. Should Newton stop before it converges (``max_m_step_iter``), the new shapes are
    kept only if they do not lower Q below the previous ones': a generalized EM step
    (from the previous shapes, each damped Newton iteration lowers -Q, so its fixed
    points are EM's). A
    component whose rows are all equal in a column has an unbounded likelihood; its
    ``a + b`` stops at 1e10 and the gap is reported as infinite. In float32, an
    iteration whose round-off would exceed 1e-5 nats runs in float64 instead.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).beta(2.0, 5.0, size=(5000, 1))
    >>> family = Beta().bind(X, None)
    >>> T = family.statistics(family.prepare(X, np.float64))
    >>> params = family.m_step(
    ...     family.default_params(1), np.array([5000.0]), T.sum(0, keepdims=True),
    ...     np.zeros(0), 5000.0,
    ... )
    >>> params.a.round(1), params.b.round(1)
    (array([[2.1]]), array([[5.1]]))
    """

    name = "Beta"
    missing_value = 0.5

    # -- shapes and data -------------------------------------------------------------------

    def bind(self, X: Array, weights: Array | None) -> Beta:
        return bind_rows(self, X, weights)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        inside = np.where((X > 0) & (X < 1), X, 0.5)
        logs = np.hstack([np.log(inside), np.log1p(-inside)])
        return Summary(
            weight=total_weight(X, weights),
            sums=weighted_sum(logs, weights),
            size=High(np.abs(logs).max(axis=0, initial=0.0)),
        )

    def bind_summary(self, summary: Summary, n_rows: int) -> Beta:
        # values are checked by check(), which names the columns
        d = int(summary["sums"].shape[0]) // 2
        prior = self.prior
        if isinstance(prior, ConjugatePrior):
            _check_prior(prior, d)
        elif isinstance(prior, str):  # 'auto': the data's own means, feasible by Jensen
            means = summary["sums"] / summary["weight"]
            prior = ConjugatePrior(_AUTO_PSEUDO_ROWS * means, _AUTO_PSEUDO_ROWS)
        return replace(self, n_columns=d, prior=prior, stat_scale=summary["size"].value)

    def _check_values(self, X: Array, labels: Sequence[str]) -> None:
        bad = ~((X > 0) & (X < 1))
        if bad.any():
            col, row, value = first_bad(X, bad, labels)
            raise InputError(
                f"{col} has the value {value:g} in row {row}; Beta columns must be strictly "
                "between 0 and 1 (log x and log(1 - x) are statistics). Squeeze the values "
                "into (0, 1) first, e.g. (x * (n - 1) + 0.5) / n for n rows."
            )

    def statistics(self, Xp: Array, out: Array | None = None) -> Array:
        d = Xp.shape[1]
        buf = statistic_rows(out, 2 * d, Xp.shape[0], Xp.dtype)
        XT = Xp.T  # contiguous: prepare lays the rows out feature-major
        np.log(XT, out=buf[:d])
        np.log1p(-XT, out=buf[d:])
        return buf.T

    def _needs_float64(self, eta: Array, log_norm: Array, dt: np.dtype[Any]) -> bool:
        # a value nearer to 1 than a few units of dt's round-off is 1 in dt, where
        # log(1 - x) = -inf, and one below dt's smallest normal number loses its digits or
        # is 0: the largest |log x| and |log(1 - x)| in training say whether dt holds them
        if dt != np.float64 and self.stat_scale is not None:
            d = self.n_features
            info = np.finfo(dt)
            near_one = float(np.max(self.stat_scale[d:], initial=0.0))
            near_zero = float(np.max(self.stat_scale[:d], initial=0.0))
            if near_one > -np.log(4.0 * info.eps) or near_zero > -np.log(info.smallest_normal):
                return True
        return super()._needs_float64(eta, log_norm, dt)

    def _natural(self, params: BetaParams) -> tuple[Array, Array]:
        a, b = params.a, params.b
        eta = np.concatenate([a - 1.0, b - 1.0], axis=1)
        return eta, self._column_log_norm(params).sum(axis=1)

    def _column_log_norm(self, params: BetaParams) -> Array:
        a, b = params.a, params.b
        return np.asarray(gammaln(a) + gammaln(b) - gammaln(a + b))

    def _expected_statistics(self, params: BetaParams) -> Array:
        # E[log x] = psi(a) - psi(a + b), E[log(1 - x)] = psi(b) - psi(a + b)
        a, b = params.a, params.b
        total = digamma(a + b)
        return np.concatenate([digamma(a) - total, digamma(b) - total], axis=1)

    def _column_means(self, params: BetaParams) -> Array:
        return params.a / (params.a + params.b)

    # -- M-step --------------------------------------------------------------------------

    def m_step(
        self, params: BetaParams, nk: Array, sum_t: Array, shared: Array, total_weight: float
    ) -> BetaParams:
        l1, l2, _ = self._split_means(nk, sum_t)
        e1, e2 = np.exp(l1), np.exp(l2)
        # exp(l1) + exp(l2) < 1 (Jensen) unless the rows are all equal: a, b -> inf there
        ok = np.isfinite(l1) & np.isfinite(l2) & (e1 + e2 < 1.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            a = _CONCENTRATION_CEILING * e1 / (e1 + e2)
            b = _CONCENTRATION_CEILING * e2 / (e1 + e2)
        start = (params.a[ok], params.b[ok]) if self._warm else None
        a_new, b_new, converged = _solve_beta(l1[ok], l2[ok], self._newton_iter, start)
        if not converged.all():
            # generalized EM: keep the previous shapes where they give a larger Q
            a_old, b_old = params.a[ok], params.b[ok]
            worse = _objective(a_new, b_new, l1[ok], l2[ok]) > _objective(
                a_old, b_old, l1[ok], l2[ok]
            )
            keep = ~converged & worse
            a_new, b_new = np.where(keep, a_old, a_new), np.where(keep, b_old, b_new)
        a[ok], b[ok] = a_new, b_new
        # a concentration beyond the ceiling is a spike: scale it back onto the ceiling
        over = np.maximum((a + b) / _CONCENTRATION_CEILING, 1.0)
        a, b = a / over, b / over
        if self.fixed:
            # the maximizer over the free shape given the known one
            K = nk.shape[0]
            a_known, b_known = known(self.fixed, "a", K), known(self.fixed, "b", K)
            for free, given, mean_log, previous, itself_known in (
                (a, self.fixed.get("b"), l1, params.a, a_known),
                (b, self.fixed.get("a"), l2, params.b, b_known),
            ):
                if given is None:
                    continue
                rows = np.broadcast_to((given.mask & ~itself_known)[:, None], free.shape)
                free[rows] = self._one_given_other(
                    given.values[rows], mean_log[rows], previous[rows]
                )
        frozen = frozen_components(nk, total_weight, self._pseudo_count())
        if frozen.any():
            a = np.where(frozen[:, None], params.a, a)
            b = np.where(frozen[:, None], params.b, b)
        return self._with_fixed(BetaParams(a, b))

    def _one_given_other(self, other: Array, mean_log: Array, previous: Array) -> Array:
        """argmax_x of Q per unit count, (x - 1) l - log Gamma(x) + log Gamma(x + other):
        digamma(x) - digamma(x + other) = l (the shape of x given that of 1 - x, or the
        other way round with l = E[log(1 - x)])."""
        ok = np.isfinite(mean_log) & (mean_log < 0)
        out = previous.copy()  # no mass and no prior: kept (frozen)
        o, target = other[ok], mean_log[ok]
        e = np.exp(target)
        # digamma(x) ~ log(x - 1/2): x - 1/2 = e (x + o - 1/2)
        start = (0.5 + e * (o - 0.5)) / (1.0 - e)
        solved, converged = solve_increasing(
            lambda x, act: digamma(x) - digamma(x + o[act]),
            lambda x, act: polygamma(1, x) - polygamma(1, x + o[act]),
            target,
            previous[ok] if self._warm else np.maximum(start, 1e-300),
            self._newton_iter,
            _NEWTON_TOL,
        )
        if not converged.all():
            # generalized EM: keep the previous value where it gives a larger Q
            def q(x: Array) -> Array:
                return (x - 1.0) * target - gammaln(x) + gammaln(x + o)

            old = previous[ok]
            solved = np.where(~converged & (q(old) > q(solved)), old, solved)
        out[ok] = np.minimum(solved, _CONCENTRATION_CEILING)
        return out

    def _divergence(self, params: BetaParams, nk: Array, sum_t: Array) -> Array:
        # Newton solves to convergence (gap 0); only shapes held at the ceiling lose Q
        _, _, count = self._split_means(nk, sum_t)
        clipped = (params.a + params.b >= _CONCENTRATION_CEILING * (1 - 1e-9)) & (count > 0)
        if self.fixed:
            # with one shape known, only the other one can have stopped at the ceiling
            K = nk.shape[0]
            a_known = known(self.fixed, "a", K)[:, None]
            b_known = known(self.fixed, "b", K)[:, None]
            top = _CONCENTRATION_CEILING * (1 - 1e-9)
            clipped = np.where(a_known, (params.b >= top) & (count > 0), clipped)
            clipped = np.where(b_known, (params.a >= top) & (count > 0), clipped)
        return np.where(clipped, np.inf, 0.0).sum(axis=1)

    def _log_prior(self, params: BetaParams) -> float:
        if not isinstance(self.prior, ConjugatePrior):
            return 0.0
        # <phi, eta_k> - nu A(eta_k), without the (unknown) normalizing constant
        eta, log_norm = self._natural(params)
        return float(np.sum(eta @ self.prior.phi - self.prior.pseudo_count * log_norm))

    # -- the rest ------------------------------------------------------------------------

    def default_params(self, n_components: int) -> BetaParams:
        ones = np.ones((n_components, self.n_features))
        return BetaParams(ones, ones.copy())

    def _groups(self) -> tuple[Group, ...]:
        d = self.n_features
        return (
            Group("a", (d,), check_positive, dof=d),
            Group("b", (d,), check_positive, dof=d),
        )

    def sample(self, params: BetaParams, component: int, n: int, rng: np.random.Generator) -> Array:
        return rng.beta(params.a[component], params.b[component], size=(n, self.n_features))

    def fitted_attributes(self, params: BetaParams) -> dict[str, Array]:
        return {"a": params.a, "b": params.b}


def _check_prior(prior: ConjugatePrior, d: int) -> None:
    phi, nu = prior.phi, float(prior.pseudo_count)
    if phi.shape != (2 * d,):
        raise InputError(
            f"The Beta family's ConjugatePrior needs 2 * n_features = {2 * d} "
            "pseudo_observations (the sums of log x of every column, then of log(1 - x)), "
            f"got {phi.size}."
        )
    e1, e2 = np.exp(phi[:d] / nu), np.exp(phi[d:] / nu)
    ok = e1 + e2 < 1.0
    if not ok.all():
        j = int(np.argmin(ok))
        raise InputError(
            f"The Beta family's ConjugatePrior is not proper for column {j}: its pseudo-rows "
            f"have exp(mean log x) + exp(mean log(1 - x)) = {e1[j] + e2[j]:g}, but values in "
            "(0, 1) always give less than 1. Take the pseudo_observations from real or "
            "imagined rows in (0, 1)."
        )

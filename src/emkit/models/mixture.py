"""Finite mixtures of any component family, as pure functions of (params, rows).

E-step over a block of rows, with T the family's statistics:

    log_prob = T @ eta.T - log_norm + log(weights)     (one matrix product)
    resp     = softmax(log_prob)                         (log space)
    S = resp.T @ T ;  N_k = sum_n resp_nk                (one matrix product)

The M-step sees only the summed statistics :class:`MixtureStats`, which add across
blocks, so chunks, threads, sample weights and (later) streams all share this code.
"""

from __future__ import annotations

import importlib.util
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import cache
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError
from emkit.families._base import (
    ComponentFamily,
    Fixed,
    Group,
    Natural,
    expanded_roundoff,
    parse_fixed,
)
from emkit.models._fused_kernels import gaussian_e_step
from emkit.models._fused_kernels import kernels as fused_kernels
from emkit.models.mixing import (
    EXACT,
    NK_FLOOR,
    NO_PRIOR,
    Assignment,
    Exact,
    MixingWeights,
    VariationalWeights,
    as_dense,
    for_rows,
    mass,
    posterior,
    resp_floor,
    weighted_sums,
)
from emkit.models.statistics import Statistics

__all__ = ["Mixture", "MixtureParams", "MixtureStats", "fixed_weights"]

Array = NDArray[np.floating[Any]]

# Whether exact EM may take the compiled one-pass E-step (Numba; the tests switch it off
# to compare) on blocks of at least this many log-densities (rows x components): below
# it the gain is microseconds, less than importing Numba costs a small fit.
_FUSED = True
_FUSED_MIN_VALUES = 1 << 15
# the raw rows' dtypes it reads (others take the general route, which converts them)
_FUSED_INPUT = (np.dtype(np.float64), np.dtype(np.float32))
# A fit's row cache keeps the prepared rows and statistics of blocks below this many rows
# (the in-memory engine maps such data as one block, the same array every iteration) and
# of at most this many bytes (a few of the engine's cache-sized chunks).
_CACHE_ROWS = 4096
_CACHE_BYTES = 16 << 20


class MixtureParams(NamedTuple):
    """Mixing weights and the family's component parameters."""

    weights: Array  # (K,)
    components: Any


@dataclass(frozen=True)
class MixtureStats(Statistics):
    """Additive expected statistics of a block of rows (float64 whatever the data dtype)."""

    nk: Array  # (K,)  sum_n w_n resp_nk
    sum_t: Array  # (K, n_stats)  sum_n w_n resp_nk T_n
    shared: Array  # resp-independent statistics of the family (may be empty)
    loglik: float  # sum_n w_n log p(x_n)
    weight: float  # sum_n w_n


@dataclass(frozen=True, eq=False)
class Mixture:
    """A finite mixture of components from one family.

    The mixing weights are a component of their own (:class:`MixingWeights`: maximum
    likelihood, a Dirichlet prior, known weights), and ``assign`` is the E-step's
    posterior policy (:mod:`emkit.models.mixing`: exact or classification EM).
    """

    family: ComponentFamily
    dtype: Any = np.float64
    weights: MixingWeights | VariationalWeights = NO_PRIOR
    assign: Assignment = EXACT
    # the rows may have missing values (NaN): such rows take the family's exact
    # missing-data E-step (log p(x_obs, k) and E[T(x) | x_obs, k])
    missing: bool = False
    # one fit's memo of what its E-steps compute from the rows alone (small data in
    # memory: see RowCache); None: every E-step prepares its rows
    row_cache: RowCache | None = field(default=None, repr=False)

    def with_row_cache(self) -> Mixture:
        """This model with a new, empty :class:`RowCache`, for one fit: the E-steps of
        small blocks of complete rows then prepare each block once, not every
        iteration (clear it when the fit ends)."""
        return replace(self, row_cache=RowCache())

    def block(self, engine: Any, data: Any) -> Callable[..., Any] | None:
        """A runner of whole blocks of EM iterations on ``data`` by one compiled loop
        (:func:`emkit.models._small_block.gaussian_block`: a small Gaussian mixture in
        memory, exact EM, Numba installed), for :func:`~emkit.inference.steps.em_step`;
        None where the Python step must run every iteration."""
        from emkit.models._small_block import gaussian_block

        return gaussian_block(self, engine, data)

    def derive(self, params: MixtureParams) -> Natural:
        """The family's natural parameters at ``params`` in float64: what the E-step
        (in float64) and the bound's Q both compute from them, so that a step computes
        them once (:func:`~emkit.inference.steps.em_step`)."""
        return self.family.natural(params.components, np.float64)

    def _working(
        self, params: MixtureParams, derived: Natural | None = None
    ) -> Callable[[], tuple[np.dtype[Any], Natural, Array]]:
        """The E-step's working dtype, the family's natural parameters in it at
        ``params`` and the log-weights in it (``derived``: :meth:`derive` of ``params``,
        when the caller has it), computed at the first call and kept: the E-step's routes
        (the one-pass kernel's and the general one) share them, and compute them only
        where they run. Where float32 would lose the digits that matter (the statistics
        themselves, e.g. x x^T far from the centre: ``exact_form``), float64 for these
        parameters."""
        kept: list[tuple[np.dtype[Any], Natural, Array]] = []

        def working() -> tuple[np.dtype[Any], Natural, Array]:
            if kept:
                return kept[0]
            family = self.family
            dtype = np.dtype(self.dtype)
            natural_from = getattr(family, "natural_from", None)
            if dtype == np.float64 and derived is not None:
                natural = derived
            elif derived is not None and natural_from is not None:
                natural = natural_from(derived, params.components, dtype)
            else:
                natural = family.natural(params.components, dtype)
            if natural.exact_form and dtype != np.float64:
                dtype = np.dtype(np.float64)
                natural = family.natural(params.components, dtype) if derived is None else derived
            # a weight of 0 is a log-weight of -inf (E[log pi] under variational EM)
            log_weights = self.weights.expected_log(params.weights)
            kept.append((dtype, natural, log_weights.astype(dtype)))
            return kept[0]

        return working

    def _log_joint(
        self, params: MixtureParams, derived: Natural | None = None, working: Any = None
    ) -> Callable[[Array], _Joint]:
        """A function of raw rows giving their statistics and log p(x, k) in two parts
        (``derived``: :meth:`derive` of ``params``, when the caller has it; ``working``:
        :meth:`_working`'s function, when the caller shares it)."""
        family = self.family
        working = self._working(params, derived) if working is None else working
        # one call for both parts where the family has it (the Gaussian's far rows are
        # found once a chunk)
        both = getattr(family, "log_joint", None)
        cache = None if self.missing else self.row_cache

        def log_joint(X: Array) -> _Joint:
            dtype, natural, log_weights = working()
            rows = None if cache is None else cache.rows(family, X, dtype)
            if rows is None:
                Xp = family.prepare(X, dtype)
                T = family.statistics(Xp)
                reach = None
            else:
                Xp, T, reach = rows.Xp, rows.T, rows.reach
            if both is not None:
                parts = (
                    both(Xp, T, params.components, natural, log_weights)
                    if reach is None
                    else both(Xp, T, params.components, natural, log_weights, reach=reach)
                )
                return _Joint(Xp, T, *parts)
            log_prob = family.log_prob(Xp, T, params.components, natural, log_weights)
            return _Joint(Xp, T, log_prob, family.row_term(Xp, params.components, natural))

        return log_joint

    def base_measure(self, X: Array) -> Array | None:
        """log h(x) of raw rows, (n,) float64, or None for families without one.

        No parameter changes it: a fit computes it once (``engine.map_rows``) and passes it
        to every E-step as a column of data, like the sample weights.
        """
        if self.missing:
            X = np.where(np.isnan(X), np.asarray(self.family.missing_fill()), X)
        return self.family.log_base_measure(self.family.prepare(X, np.float64))

    def expectation(
        self, params: MixtureParams, derived: Natural | None = None
    ) -> Callable[..., MixtureStats]:
        """The E-step for one iteration, as a function of a block of rows, their weights,
        their :meth:`base_measure` (computed here when not given), their positions in the
        data (which a Monte-Carlo policy's draws are keyed by; ``None`` otherwise) and
        their known component labels (``labels=``; ``-1``: unknown; ``None``: all
        unknown), as a :class:`~emkit.engines.RowSource` passes them. ``derived`` is
        :meth:`derive` of ``params`` when the caller has it."""
        working = self._working(params, derived)
        log_joint = self._log_joint(params, derived, working)
        family = self.family
        missing = self._missing_joint(params) if self.missing else None
        fused = self._fused_step(params, derived, working)
        cache = None if self.missing else self.row_cache

        def row_sums(X: Array, Xp: Array, weights: Array | None) -> tuple[Array, float]:
            """The family's shared statistics and the total weight of the rows (the
            row cache's, for a block it holds)."""
            if cache is not None:
                return cache.sums(family, X, Xp, weights)
            return family.shared_statistics(Xp, weights), _total_weight(X, weights)

        def complete_step(
            X: Array, weights: Array | None, log_h: Array | None, labels: Any, index: Any
        ) -> MixtureStats:
            if fused is not None and (labels is None or not np.any(labels >= 0)):
                stats = fused(X, weights, log_h)
                if stats is not None:
                    return stats
            Xp, T, log_prob, row = log_joint(X)
            if log_h is None:
                log_h = family.log_base_measure(Xp)
            assign = for_rows(self.assign, index)
            q, loglik = posterior(assign, log_prob, row, weights, log_h, labels)
            # Sums within a chunk stay in the working dtype (pairwise: exact enough);
            # across chunks they add in float64. Hard EM's q is sparse (labels), its
            # masses a bincount; its sums may reuse log_prob's block, read already.
            shared, total = row_sums(X, Xp, weights)
            return MixtureStats(
                mass(q), weighted_sums(q, T, buffer=log_prob), shared, loglik, total
            )

        def incomplete_step(
            X: Array,
            weights: Array | None,
            log_h: Array | None,
            labels: Any,
            index: Any,
            observed: NDArray[np.bool_],
        ) -> MixtureStats:
            assert missing is not None
            Xp, log_prob, state = missing(X, observed)
            if log_h is None:
                log_h = family.log_base_measure(Xp)
            row = _missing_row_term(family, state)
            assign = for_rows(self.assign, index)
            q, loglik = posterior(assign, log_prob, row, weights, log_h, labels)
            # the statistics of rows with missing values are per pattern: a dense q
            resp = as_dense(q, log_prob.dtype)
            sum_t, shared = family.missing_statistics(params.components, state, resp)
            return MixtureStats(mass(q), sum_t, shared, loglik, _total_weight(X, weights))

        def e_step(
            X: Array,
            weights: Array | None,
            log_h: Array | None = None,
            index: NDArray[np.intp] | None = None,
            labels: NDArray[np.intp] | None = None,
        ) -> MixtureStats:
            columns = (weights, log_h, labels, index)
            if missing is None:
                return complete_step(X, *columns)
            return _split_rows(X, columns, complete_step, incomplete_step, _add)

        return e_step

    def _fused_step(
        self, params: MixtureParams, derived: Natural | None = None, working: Any = None
    ) -> Callable[[Array, Array | None, Array | None], MixtureStats | None] | None:
        """Exact EM's E-step of a block of complete rows without known labels in one
        compiled pass (:func:`emkit.models._fused_kernels.gaussian_e_step`: the statistics,
        both products and the softmax on tiles of rows in cache), for families that give
        its natural parameters (``fused_natural``); None where it does not apply. The
        step returns None for a block it leaves to the general route: too small (below
        ``_FUSED_MIN_VALUES`` log-densities), no Numba, parameters that need the whitened
        form, rows the family's ``far_rows`` would find (centred values beyond its
        ``far_limit``; the pass centres the raw rows by the family's ``shift`` itself), or
        a log-likelihood that is not finite. ``working``: :meth:`_working`'s function
        when the general route shares it."""
        family = self.family
        fused_natural = getattr(family, "fused_natural", None)
        far_limit = getattr(family, "far_limit", None)
        shift = getattr(family, "shift", None)
        if not _FUSED or fused_natural is None or far_limit is None or shift is None:
            return None
        if not isinstance(self.assign, Exact):
            return None
        K = params.weights.shape[0]
        # (dtype, layout, eta, far limit), made at the first block
        ready: list[tuple[Any, str, Array | None, float]] = []
        # the threads' first blocks wait for one of them to load Numba's kernels (each
        # would load its own copy of the cached kernel: ~16 ms of CPU in a first fit)
        first = _ProcessLock()

        shared = self._working(params, derived) if working is None else working

        def prepare() -> tuple[Any, str, Array | None, float]:
            dtype, natural, _ = shared()
            form = fused_natural(natural)
            if form is None:
                return dtype, "", None, 0.0
            layout, eta = form[0], np.asarray(form[1], dtype=np.float64)
            with np.errstate(divide="ignore"):  # a weight of 0: -inf
                eta[:, 0] += self.weights.expected_log(params.weights)
            return dtype, layout, eta.astype(dtype), far_limit(params.components)

        def step(X: Array, weights: Array | None, log_h: Array | None) -> MixtureStats | None:
            if X.shape[0] * K < _FUSED_MIN_VALUES:
                return None
            if X.dtype not in _FUSED_INPUT:
                return None
            if not ready:
                with first.lock:
                    if not ready:
                        loaded = fused_kernels() is not None
                        ready.append(prepare() if loaded else (None, "", None, 0.0))
            dtype, layout, eta, limit = ready[0]
            if eta is None:
                return None
            sums, m, total, reach = gaussian_e_step(
                X, shift, eta, layout, resp_floor(dtype), weights
            )
            if not reach <= limit:  # rows far out: the general route's far_rows
                return None
            # log p(x_n) = m_n + log sum_k exp(log p(x_n, k) - m_n)
            row_loglik = np.log(total) + m
            loglik = row_loglik.sum(dtype=np.float64) if weights is None else weights @ row_loglik
            if log_h is not None:
                loglik += log_h.sum() if weights is None else weights @ log_h
            if not np.isfinite(loglik):  # NaN or infinite rows: the general route's
                return None
            return MixtureStats(
                sums[:, 0].copy(),
                sums[:, 1:],
                # none for the layouts the pass takes (shared statistics come with a row
                # term, which fused_natural refuses)
                family.shared_statistics(X[:0], None),
                float(loglik),
                _total_weight(X, weights),
            )

        return step

    def _missing_joint(self, params: MixtureParams) -> Callable[[Array, NDArray[np.bool_]], Any]:
        """A function of raw rows with missing values (NaN) and their observed mask giving
        (prepared rows with the family's fill values, log p(x_obs, k) without log h, the
        family's state for :meth:`ComponentFamily.missing_statistics`), in float64."""
        family = self.family
        natural = family.natural(params.components, np.float64)
        log_weights = np.asarray(self.weights.expected_log(params.weights), dtype=np.float64)
        fill = np.asarray(family.missing_fill(), dtype=np.float64)

        def joint(X: Array, observed: NDArray[np.bool_]) -> Any:
            Xp = family.prepare(np.where(observed, X, fill), np.float64)
            log_prob, state = family.missing_log_prob(
                Xp, observed, params.components, natural, log_weights
            )
            return Xp, log_prob, state

        return joint

    def statistics_from_resp(self, X: Array, weights: Array | None, resp: Array) -> MixtureStats:
        """Statistics for given responsibilities (initialization, known labels).

        Computed in float64 whatever ``dtype``: there are no parameters yet to tell whether
        the working precision is enough, and this pass runs once.
        """
        Xp = self.family.prepare(X, np.float64)
        T = self.family.statistics(Xp)
        r = resp if weights is None else resp * weights[:, None]
        weight = float(X.shape[0]) if weights is None else float(weights.sum(dtype=np.float64))
        return MixtureStats(
            r.sum(axis=0, dtype=np.float64),
            (T.T @ r).T,
            self.family.shared_statistics(Xp, weights),
            0.0,
            weight,
        )

    def m_step(self, params: MixtureParams, stats: MixtureStats) -> MixtureParams:
        nk = stats.nk + NK_FLOOR
        components = self.family.m_step(
            params.components, nk, stats.sum_t, stats.shared, stats.weight
        )
        return MixtureParams(self.weights.m_step(nk), components)

    def m_step_gap(self, params: MixtureParams, stats: MixtureStats) -> float:
        """Per-sample shortfall of the M-step that gave ``params`` from maximizing Q.

        The next objective may fall below the current one by at most this (regularization
        such as ``reg_covar`` makes the M-step inexact); zero for an exact M-step.
        """
        nk = stats.nk + NK_FLOOR
        return self.family.m_step_gap(params.components, nk, stats.sum_t) / stats.weight

    def objective_roundoff(self, params: MixtureParams, stats: MixtureStats) -> float:
        """Round-off of the per-sample objective at ``params``, in nats, for the driver to
        add to its own tolerance. Where the E-step evaluates ``T @ eta_k - A(eta_k)`` as a
        matrix product each row's log-density carries about eps times the size of the
        terms that cancel (:func:`~emkit.families._base.expanded_roundoff`), which grows
        with the parameters: a Gamma shape of 1e4 has log Gamma(alpha) ~ 8e4, and EM near
        convergence moves the objective by less than eps times that. A family may give its
        own estimate (``objective_roundoff(params, nk, sum_t, dtype)``, total nats: the
        Gaussian's also grows with the condition numbers of the covariances); the log
        prior adds a few eps of its own size."""
        family = self.family
        own = getattr(family, "objective_roundoff", None)
        if own is not None:
            total = float(own(params.components, stats.nk, stats.sum_t, self.dtype))
        else:
            natural = family.natural(params.components, self.dtype)
            total = expanded_roundoff(natural, stats.nk, stats.sum_t, self.dtype)
        total += 4.0 * float(np.finfo(np.float64).eps) * abs(self.log_prior(params))
        return total / stats.weight

    def degenerate(self, params: MixtureParams) -> NDArray[np.bool_]:
        """(K,) the components the family reports as collapsed in ``params`` (held at
        its degeneracy floor by the last M-step; see the family's ``degenerate``), all
        False for a family without such a report."""
        report = getattr(self.family, "degenerate", None)
        out = None if report is None else report(params.components)
        K = params.weights.shape[0]
        return np.zeros(K, dtype=bool) if out is None else np.asarray(out, dtype=bool)

    def log_prior(self, params: MixtureParams) -> float:
        """log p(weights) + log p(components): 0 for maximum likelihood."""
        return self.family.log_prior(params.components) + self.weights.log_prior(params.weights)

    def objective(self, params: MixtureParams, stats: MixtureStats) -> float:
        """Per-sample objective: (log-likelihood + log prior) / total weight."""
        return (stats.loglik + self.log_prior(params)) / stats.weight

    def expected_complete(
        self, params: MixtureParams, stats: MixtureStats, derived: Natural | None = None
    ) -> float:
        """Q(params) + log prior: the expected complete-data log-likelihood under the q
        that ``stats`` summarize, up to terms no parameter changes (log h(x), the family's
        constants, which :meth:`lower_bound` cancels), in total nats (``derived``:
        :meth:`derive` of ``params`` when the caller has it).

        Q = sum_k N_k log pi_k + sum_k (<S_k, eta_k> - N_k A(eta_k)) (+ the family's
        expected row term, e.g. -1/2 tr(P sum x x^T) of a tied Gaussian); a component
        with no mass adds nothing (0 log 0 = 0), nor one of weight 0 (whose mass is the
        E-step's responsibility floor, not the posterior's).
        """
        mass = (stats.nk > 0) & (params.weights > 0)
        nk, weights = stats.nk, params.weights
        every = bool(mass.all())
        if not every:  # (no copies when every component counts)
            nk, weights = nk[mass], weights[mass]
        value = float(nk @ np.log(weights))
        family = _expected_family(
            self.family, params.components, stats, None if every else mass, derived
        )
        return value + family + self.log_prior(params)

    @property
    def objective_is_bound(self) -> bool:
        """Variational EM's objective is the ELBO itself: the driver records it as the
        bound (:class:`~emkit.inference.steps.EMModel`)."""
        return self.assign.name == "variational"

    def lower_bound(
        self,
        params: MixtureParams,
        new: MixtureParams,
        stats: MixtureStats,
        derived: tuple[Natural | None, Natural | None] = (None, None),
    ) -> float:
        """Per-sample L(q, new) after the M-step, q the E-step's posterior at ``params``
        (``stats``): objective(params) + (Q(new) - Q(params)) / weight, see
        :class:`~emkit.inference.steps.EMModel`. For hard EM, q is the point mass on
        the assignments and L their complete-data log-likelihood under ``new``.

        NaN for sampled E-steps (Monte-Carlo, stochastic EM: q, the draws' empirical
        distribution, does not touch the log-likelihood they report) and for variational
        EM (whose objective is the bound, :attr:`objective_is_bound`). ``derived``:
        :meth:`derive` of ``params`` and of ``new`` where the caller has them."""
        if self.assign.name not in ("exact", "hard"):
            return float("nan")
        return self.objective(params, stats) + self._lift(params, new, stats, derived) / (
            stats.weight
        )

    def _lift(
        self,
        params: MixtureParams,
        new: MixtureParams,
        stats: MixtureStats,
        derived: tuple[Natural | None, Natural | None],
    ) -> float:
        """Q(new) - Q(params) (+ the log priors') under the q of ``stats``, total nats,
        in one pass where every component counts in both (as differences of the
        parameters, which the two Q, each the size of the log-likelihood, would lose to
        cancellation); else as the difference of the two :meth:`expected_complete`."""
        nk = stats.nk
        if not (nk > 0).all() or not (params.weights > 0).all() or not (new.weights > 0).all():
            return self.expected_complete(new, stats, derived[1]) - self.expected_complete(
                params, stats, derived[0]
            )
        family = self.family
        eta_new, norm_new = _natural_values(family, new.components, derived[1])
        eta_old, norm_old = _natural_values(family, params.components, derived[0])
        # sum_k N_k log(pi'_k / pi_k) + <S_k, eta'_k - eta_k> - N_k (A'_k - A_k)
        value = float(nk @ (np.log(new.weights) - np.log(params.weights)))
        value += float((stats.sum_t * (eta_new - eta_old)).sum() - nk @ (norm_new - norm_old))
        row = getattr(family, "expected_row_term", None)
        if row is not None:
            value += float(row(new.components, stats.shared)) - float(
                row(params.components, stats.shared)
            )
        return value + self.log_prior(new) - self.log_prior(params)

    def weighted_log_prob(self, params: MixtureParams) -> Callable[[Array], Array]:
        """log p(x_n, k) for raw rows, shape (n, K), in float64 (log p(x_obs, k) for rows
        with missing values)."""
        log_joint = self._log_joint(params)
        missing = self._missing_joint(params) if self.missing else None
        family = self.family

        def complete(X: Array) -> Array:
            joint = log_joint(X)
            log_prob = joint.log_prob.astype(np.float64, copy=False)
            for row in (joint.row, family.log_base_measure(joint.Xp)):
                if row is not None:
                    log_prob += row[:, None]
            return log_prob

        def incomplete(X: Array, observed: NDArray[np.bool_]) -> Array:
            assert missing is not None
            Xp, log_prob, state = missing(X, observed)
            for row in (_missing_row_term(family, state), family.log_base_measure(Xp)):
                if row is not None:
                    log_prob += row[:, None]
            return log_prob

        def fn(X: Array) -> Array:
            if missing is None:
                return complete(X)
            return _split_rows(X, (), complete, incomplete, _stack)

        return fn

    def log_resp(self, params: MixtureParams) -> Callable[[Array], Array]:
        """log p(k | x_n) for raw rows, shape (n, K), in float64.

        Terms equal for every component (the family's row term, log h) are left out
        before normalizing, so a row whose density is below float64's range (a value far
        beyond the training data) keeps its posterior.
        """
        log_joint = self._log_joint(params)
        missing = self._missing_joint(params) if self.missing else None

        def complete(X: Array) -> Array:
            return _normalized(log_joint(X).log_prob.astype(np.float64))

        def incomplete(X: Array, observed: NDArray[np.bool_]) -> Array:
            assert missing is not None
            return _normalized(np.asarray(missing(X, observed)[1], dtype=np.float64))

        def fn(X: Array) -> Array:
            if missing is None:
                return complete(X)
            return _split_rows(X, (), complete, incomplete, _stack)

        return fn

    def impute(self, params: MixtureParams) -> Callable[[Array], Array]:
        """Rows with their missing values replaced by E[x_mis | x_obs] under the model
        (the posterior-weighted conditional means of the components)."""
        missing = self._missing_joint(params)
        family = self.family

        def incomplete(X: Array, observed: NDArray[np.bool_]) -> Array:
            _, log_prob, state = missing(X, observed)
            resp, _ = EXACT(log_prob, None, None, None, None)
            filled = np.asarray(family.impute(params.components, state, resp), dtype=X.dtype)
            return np.where(observed, X, filled)

        def fn(X: Array) -> Array:
            return _split_rows(X, (), lambda Xc: Xc, incomplete, _stack)

        return fn

    def n_parameters(self, n_components: int) -> int:
        """Free parameters: the weights' and the family's free ones."""
        return self.weights.n_parameters(n_components) + self.family.n_parameters(n_components)

    def row_bytes(self, n_features: int, n_stats: int, n_components: int) -> int:
        """Bytes of working memory a row of a chunk needs in the E-step: the prepared
        row, its statistics, its K log-probabilities and a few per-row scalars (the base
        measure among them). Where the one-pass E-step will run, only the two it writes
        (each row's largest log-density and its sum of exps): its tiles stay in cache
        whatever the chunk's size, and larger chunks save calls (the caller adds the row
        itself, read once)."""
        if self._one_pass():
            return 2 * np.dtype(self.dtype).itemsize
        return self.pass_row_bytes(n_features, n_stats, n_components)

    def pass_row_bytes(self, n_features: int, n_stats: int, n_components: int) -> int:
        """Bytes of working memory a row of a chunk needs in a pass of the general
        route (prediction, scores): the prepared row, its statistics, its
        ``n_components`` log-probabilities and a few per-row scalars. Such a pass holds
        them for the whole chunk, so its chunks stay cache-sized where the one-pass
        E-step's (:meth:`row_bytes`) need not."""
        return (n_features + n_stats + n_components + 5) * np.dtype(self.dtype).itemsize

    def _one_pass(self) -> bool:
        """Whether exact EM's E-step will take the one-pass route (:meth:`_fused_step`)
        on complete rows: a family whose layout it takes, Numba installed."""
        structure = getattr(self.family, "structure", None)
        return (
            _FUSED
            and not self.missing
            and isinstance(self.assign, Exact)
            and getattr(structure, "fused_layout", None) is not None
            and _numba_installed()
        )


@cache
def _numba_installed() -> bool:
    """Whether Numba can be imported, without importing it (looked up once: the search
    costs ~60 us, a third of predicting one row)."""
    return importlib.util.find_spec("numba") is not None


class _CachedRows(NamedTuple):
    """A block's prepared rows, their statistics and largest centred value (read-only)."""

    X: Any  # the raw rows they were prepared from (held: its id stays theirs)
    dtype: Any
    Xp: Array
    T: Array
    reach: float | None  # the family's row_reach of Xp (None: the family has none)


class RowCache:
    """What a fit's E-steps compute from the rows alone, kept once per fit: the prepared
    rows, their statistics and (Gaussian) their largest centred value, and for the block's
    sample weights the family's shared statistics and the total weight.

    Only for blocks of complete rows below ``_CACHE_ROWS`` rows and ``_CACHE_BYTES``: the
    in-memory engine maps such data as one block, the very array every iteration, so a
    block is known by its identity (the cache holds it, so that its id is not reused).
    The arrays are made read-only. A cache lives for one fit (the estimators clear it when
    it ends): rows changed in place between two fits are prepared again.
    """

    _SLOTS = 4  # blocks held at most (the oldest goes first)

    def __init__(self) -> None:
        self._rows: list[_CachedRows] = []
        self._sums: list[tuple[Any, Any, tuple[Array, float]]] = []
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {}  # a copy in another process holds none of these blocks

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__()  # type: ignore[misc]

    def clear(self) -> None:
        with self._lock:
            self._rows.clear()
            self._sums.clear()

    def rows(self, family: Any, X: Array, dtype: Any) -> _CachedRows | None:
        """The block's cached preparation in ``dtype`` (made at the first call), or None
        for a block too large to keep."""
        if X.shape[0] >= _CACHE_ROWS:
            return None
        for entry in self._rows:
            if entry.X is X and entry.dtype == dtype:
                return entry
        Xp = family.prepare(X, dtype)
        T = family.statistics(Xp)
        arrays = _leaves((Xp, T))  # (a product family's parts are tuples of arrays)
        if arrays is None or sum(a.nbytes for a in arrays) > _CACHE_BYTES:
            return None
        reach = getattr(family, "row_reach", None)
        for a in arrays:
            a.flags.writeable = False
        entry = _CachedRows(X, dtype, Xp, T, None if reach is None else reach(Xp))
        with self._lock:
            self._rows = [entry, *self._rows[: self._SLOTS - 1]]
        return entry

    def sums(self, family: Any, X: Array, Xp: Array, weights: Array | None) -> tuple[Array, float]:
        """(the family's shared statistics, the total weight) of the rows ``Xp`` prepared
        from ``X``, with ``weights``: kept for a block whose rows are cached."""
        for X_, w_, value in self._sums:
            if X_ is X and w_ is weights:
                return value
        value = (family.shared_statistics(Xp, weights), _total_weight(X, weights))
        if any(entry.X is X for entry in self._rows):
            for a in _leaves(value[0]) or ():
                a.flags.writeable = False
            with self._lock:
                self._sums = [(X, weights, value), *self._sums[: self._SLOTS - 1]]
        return value


def _leaves(value: Any) -> list[NDArray[Any]] | None:
    """The arrays of nested tuples of arrays (None among them skipped), or None where a
    leaf is something else (a sparse matrix)."""
    if value is None:
        return []
    if isinstance(value, np.ndarray):
        return [value]
    if isinstance(value, tuple | list):
        out: list[NDArray[Any]] = []
        for part in value:
            leaves = _leaves(part)
            if leaves is None:
                return None
            out.extend(leaves)
        return out
    return None


class _ProcessLock:
    """A lock for the threads of one process: a step pickled for another process (Dask's
    workers) takes a new one there."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        return {}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lock = threading.Lock()


def _expected_family(
    family: Any,
    components: Any,
    stats: MixtureStats,
    mass: NDArray[np.bool_] | None,
    derived: Natural | None = None,
) -> float:
    """sum_k <S_k, eta_k> - N_k A(eta_k) over the components with ``mass`` (None: all; + the
    family's ``expected_row_term(params, shared)``, the expectation of its
    component-independent term), total nats. The natural parameters are ``derived`` (the
    E-step's :meth:`~ComponentFamily.natural` in float64) when given, else the family's
    ``natural_values(params)`` where it has that shortcut (the same values, with no
    choice of evaluation form to make), else its ``natural`` in float64."""
    eta, log_norm = _natural_values(family, components, derived)
    sum_t, nk = stats.sum_t, stats.nk
    if mass is not None:
        eta, log_norm, sum_t, nk = eta[mass], log_norm[mass], sum_t[mass], nk[mass]
    value = float((sum_t * eta).sum() - nk @ log_norm)
    row = getattr(family, "expected_row_term", None)
    return value if row is None else value + float(row(components, stats.shared))


def _natural_values(family: Any, components: Any, derived: Natural | None) -> tuple[Array, Array]:
    """(eta, log_norm) in float64 for the bound's Q: ``derived`` when given, else the
    family's ``natural_values`` shortcut, else its ``natural`` in float64."""
    shortcut = getattr(family, "natural_values", None)
    if derived is not None:
        eta, log_norm = derived.eta, derived.log_norm
    elif shortcut is not None:
        eta, log_norm = shortcut(components)
    else:
        natural = family.natural(components, np.float64)
        eta, log_norm = natural.eta, natural.log_norm
    return np.asarray(eta, dtype=np.float64), np.asarray(log_norm, dtype=np.float64)


def _missing_row_term(family: Any, state: Any) -> Array | None:
    """The terms of log p(x_obs, k) equal for every k that a family's missing-data
    E-step kept apart from its log-probabilities (Gaussian rows far beyond float64's
    range), or None; families without such terms need not say so."""
    term = getattr(family, "missing_row_term", None)
    return None if term is None else term(state)


def _normalized(log_prob: Array) -> Array:
    """Rows of log p(x, k) minus their log-sum-exp: log p(k | x)."""
    # by hand: scipy's logsumexp dispatches on array APIs at a cost larger than the rest
    # of a one-row predict. Each row is shifted by its largest finite term.
    top = np.max(log_prob, axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        total = np.log(np.sum(np.exp(log_prob - top), axis=1, keepdims=True))
    return np.asarray(log_prob - (total + top))


def _total_weight(X: Array, weights: Array | None) -> float:
    return float(X.shape[0]) if weights is None else float(weights.sum(dtype=np.float64))


def _stack(parts: tuple[Array, Array], rows: tuple[NDArray[np.intp], NDArray[np.intp]]) -> Array:
    """Rows computed in two groups, back in their original order."""
    first, second = parts
    out = np.empty((first.shape[0] + second.shape[0], *first.shape[1:]), dtype=first.dtype)
    out[rows[0]] = first
    out[rows[1]] = second
    return out


def _add(parts: tuple[Any, Any], rows: Any) -> Any:
    return parts[0] + parts[1]


def _split_rows(
    X: Array,
    columns: tuple[Any, ...],
    complete: Callable[..., Any],
    incomplete: Callable[..., Any],
    combine: Callable[[tuple[Any, Any], Any], Any],
) -> Any:
    """``complete`` on the rows without NaN, ``incomplete`` on the others (each with
    its share of the row ``columns``; ``incomplete`` also with their observed mask), and
    ``combine`` of the two results."""
    observed = ~np.isnan(X)
    has_nan = ~observed.all(axis=1)
    if not has_nan.any():
        return complete(X, *columns)
    if has_nan.all():
        return incomplete(X, *columns, observed=observed)
    groups = (np.flatnonzero(~has_nan), np.flatnonzero(has_nan))

    def part(c: Any, rows: NDArray[np.intp]) -> Any:
        return None if c is None else c[rows]

    first = complete(X[groups[0]], *(part(c, groups[0]) for c in columns))
    rows = groups[1]
    second = incomplete(X[rows], *(part(c, rows) for c in columns), observed=observed[rows])
    return combine((first, second), groups)


def fixed_weights(value: Any, n_components: int, weight_concentration: float = 1.0) -> Fixed | None:
    """Known mixing weights, checked: the whole (K,) vector (summing to 1) or a dict
    ``{component: weight}``; the known weights are >= 0 and leave mass for the free ones.

    Examples
    --------
    >>> fixed_weights({0: 0.6}, 2).mask
    array([ True, False])
    """

    if value is None:
        return None

    def check(w: Any) -> str | None:
        if np.isfinite(w) and w >= 0:
            if w == 0 and weight_concentration > 1:
                return (
                    "is 0, where the Dirichlet prior (weight_concentration > 1) has density 0; "
                    "use weight_concentration=1 or a positive weight."
                )
            return None
        return f"must be a finite number >= 0, got {float(w)!r}."

    parsed = parse_fixed(
        "mixture", {"weights": value}, [Group("weights", (), check, dof=1)], n_components
    )
    known = parsed.get("weights")
    if known is None:
        return None
    total = float(known.values[known.mask].sum())
    if known.mask.all():
        if abs(total - 1.0) > 1e-9:
            raise InputError(
                f"fixed 'weights' for all {n_components} components must sum to 1, got "
                f"{total!r}; normalize them, or leave some components' weights free."
            )
    elif total >= 1.0:
        raise InputError(
            f"fixed 'weights' sum to {total!r}, which leaves no mass for the free components "
            f"{np.flatnonzero(~known.mask).tolist()}; known weights must sum to less than 1 "
            "unless all of them are given."
        )
    return known


class _Joint(NamedTuple):
    """A chunk's prepared rows, statistics, and log p(x, k) = log_prob[:, k] + row."""

    Xp: Any
    T: Array
    log_prob: Array
    row: Array | None

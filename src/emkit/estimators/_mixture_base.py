"""What every mixture estimator shares once fitted: predictions, scores, sampling, BIC.

An estimator provides ``_map_rows(X, fn)`` (``fn`` applied chunk by chunk to the rows'
joint log-probabilities log p(x, k)), ``_n_parameters()`` and ``_sampling_family()``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp
from sklearn.utils.validation import check_is_fitted

from emkit._validation import (
    check_choice,
    check_flag,
    check_number,
    check_positive_int,
    check_random_state,
    is_dask_collection,
    resolve_dtype,
)
from emkit.engines._base import Engine, resolve_engine
from emkit.engines._source import RowSource
from emkit.exceptions import InputError
from emkit.inference.accelerate import check_acceleration
from emkit.inference.em import MONOTONICITY_POLICIES, EMTrace
from emkit.inference.init import INIT_METHODS, one_hot
from emkit.inference.online import OnlineState
from emkit.models.mixing import E_STEPS, Sampled, assignment

__all__ = [
    "FamilyMixture",
    "FitPlan",
    "FittedMixture",
    "align_to_labels",
    "check_em_parameters",
    "check_labels",
    "check_n_samples",
    "fit_engine",
    "initial_statistics",
    "logger",
    "progress_callback",
    "rows_output",
    "verbose_logging",
]

logger = logging.getLogger("emkit")

Array = NDArray[np.floating[Any]]


@dataclass(frozen=True)
class FitPlan:
    """What EM on a data set starts from: the bound model, the rows its E-step maps over
    (a :class:`~emkit.engines.RowSource`), and the initialization ``initialize(rng) ->
    params`` with the random source its draws come from (``fit`` runs ``n_init`` of
    them; ``partial_fit`` one, on its first batch)."""

    model: Any
    data: RowSource
    initialize: Callable[[Any], Any]
    rng: Any
    dtype: Any  # the working precision of the per-row work
    row_bytes: int
    # the bound family as the user's parameters describe it, where the model's wraps it
    # (variational EM fits posteriors over its parameters); None: the model's
    family: Any = None


class FittedMixture:
    """Methods of a fitted mixture estimator, written once over its hooks."""

    random_state: Any
    weights_: Array

    def _map_rows(self, X: Any, fn: Callable[[Array], Array]) -> Any:
        raise NotImplementedError

    def _n_parameters(self) -> int:
        raise NotImplementedError

    def _sampling_family(self) -> tuple[Any, Any]:
        """(bound family, its component parameters) to draw samples from."""
        raise NotImplementedError

    def _draw(self, component: int, n: int, rng: np.random.Generator) -> Array:
        """``n`` samples of one component, shape (n, n_features)."""
        family, params = self._sampling_family()
        return np.asarray(family.sample(params, component, n, rng))

    def fit(self, X: Any, y: Any = None, sample_weight: ArrayLike | None = None) -> Any:
        raise NotImplementedError

    def _set_trace(self, trace: EMTrace, converged: bool) -> None:
        self._online: OnlineState[Any] | None = None  # a fit ends any online run
        self.converged_ = bool(converged)
        self.n_iter_ = int(trace.objective.shape[0])
        self.lower_bounds_ = trace.objective.copy()
        self.lower_bound_ = float(trace.objective[-1]) if self.n_iter_ else -np.inf
        self.trace_ = trace

    def fit_predict(
        self, X: Any, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> NDArray[np.intp]:
        """Fit the model and return the component each sample most likely belongs to."""
        return rows_output(self.fit(X, y, sample_weight=sample_weight).predict(X))

    def score_samples(self, X: Any) -> Array:
        """Log-density of each sample, shape (n_samples,)."""
        return rows_output(self._map_rows(X, lambda lp: logsumexp(lp, axis=1)))

    def score(self, X: Any, y: Any = None) -> float:
        """Mean log-density of the samples."""
        return float(self.score_samples(X).mean())

    def predict(self, X: Any) -> NDArray[np.intp]:
        """The most likely component of each sample, shape (n_samples,)."""
        return rows_output(self._map_rows(X, lambda lp: lp.argmax(axis=1)))

    def predict_proba(self, X: Any) -> Array:
        """Posterior probability of each component for each sample, shape (n_samples, K)."""
        return rows_output(
            self._map_rows(X, lambda lp: np.exp(lp - logsumexp(lp, axis=1)[:, None]))
        )

    def sample(self, n_samples: int = 1) -> tuple[Array, NDArray[np.intp]]:
        """Draw samples from the fitted model.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
            The component each sample was drawn from (sorted, as in scikit-learn).
        """
        check_is_fitted(self)
        check_n_samples(n_samples)
        rng = check_random_state(self.random_state)
        weights = np.asarray(self.weights_, dtype=np.float64)
        counts = rng.multinomial(int(n_samples), weights / weights.sum())
        X = np.vstack([self._draw(k, int(c), rng) for k, c in enumerate(counts)])
        return X, np.repeat(np.arange(len(self.weights_)), counts)

    def bic(self, X: Any) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        n, score = self._n_and_score(X)
        return -2.0 * score * n + self._n_parameters() * np.log(n)

    def aic(self, X: Any) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        n, score = self._n_and_score(X)
        return -2.0 * score * n + 2.0 * self._n_parameters()

    def _n_and_score(self, X: Any) -> tuple[int, float]:
        """(number of rows, :meth:`score`) of ``X``; for a Dask ``X`` (whose DataFrames
        do not know their length) from one pass of :meth:`score_samples`."""
        if is_dask_collection(X):
            log_density = self.score_samples(X)
            return int(log_density.shape[0]), float(log_density.mean())
        return np.shape(X)[0], self.score(X)


class FamilyMixture(FittedMixture):
    """A fitted mixture of an exponential family (GaussianMixture, MixtureModel): its
    predictions and :meth:`impute` run the :class:`~emkit.models.mixture.Mixture`'s
    row functions, which take rows with missing values (NaN) as they are."""

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()  # type: ignore[misc]
        tags.input_tags.allow_nan = True  # a missing value
        return tags

    def _map_model(self, X: Any, make: Callable[[Any, Any], Callable[[Array], Any]]) -> Any:
        """``make(model, params)`` (a function of a chunk of rows) over the rows of ``X``."""
        raise NotImplementedError

    def _map_rows(self, X: Any, fn: Callable[[Array], Array]) -> Any:
        def make(model: Any, params: Any) -> Callable[[Array], Any]:
            log_prob = model.weighted_log_prob(params)
            return lambda chunk: fn(log_prob(chunk))

        return self._map_model(X, make)

    def predict(self, X: Any) -> NDArray[np.intp]:
        """The most likely component of each sample, shape (n_samples,)."""
        return rows_output(self._map_log_resp(X, lambda lr: lr.argmax(axis=1)))

    def predict_proba(self, X: Any) -> Array:
        """Posterior probability of each component for each sample, shape (n_samples, K)."""
        return rows_output(self._map_log_resp(X, np.exp))

    def _map_log_resp(self, X: Any, fn: Callable[[Array], Array]) -> Any:
        # from log p(k | x) without the terms every component shares, which may be out of
        # float64's range for a row far beyond the training data while its posterior is not
        def make(model: Any, params: Any) -> Callable[[Array], Any]:
            log_resp = model.log_resp(params)
            return lambda chunk: fn(log_resp(chunk))

        return self._map_model(X, make)

    # -- online EM ----------------------------------------------------------------------

    def _plan(self, X: Any, y: Any, sample_weight: Any, engine: Engine, *, warm: bool) -> FitPlan:
        """The checked data, the bound model and the initialization (``warm``: the fitted
        parameters) of a fit on ``X``: ``fit``'s start, and ``partial_fit``'s on its first
        batch."""
        raise NotImplementedError

    def _check_parameters(self) -> None:
        raise NotImplementedError

    def _run_plan(
        self,
        X: Any,
        y: Any,
        sample_weight: Any,
        *,
        warm: bool,
        start_objective: float = -np.inf,
        checkpoint: Any = None,
    ) -> tuple[FitPlan, Any]:
        """``fit``'s work: plan the fit (:meth:`_plan`) and run EM on it, the plain step or
        the Monte-Carlo one its ``e_step`` asks for; (the plan, the EM result).
        ``start_objective`` and ``checkpoint`` are :func:`fit_em_restarts`'s."""
        from emkit.estimators._rows import fit_checkpoint
        from emkit.inference.em import fit_em_restarts
        from emkit.inference.monte_carlo import monte_carlo_plan

        est: Any = self
        with (
            fit_engine(est, X) as engine,
            verbose_logging(est.verbose),
        ):
            plan = self._plan(X, y, sample_weight, engine, warm=warm)
            # small rows in memory, mapped as one block (the same arrays every
            # iteration), are prepared once for the fit, not every iteration
            cached = getattr(plan.model, "with_row_cache", None)
            one_chunk = getattr(engine, "one_chunk", None)
            if cached is not None and one_chunk is not None and one_chunk(plan.data):
                plan = replace(plan, model=cached())
            else:
                cached = None
            # (the warm start's E-step in plan.initialize reads the rows without their
            # positions, which only the Monte-Carlo E-step needs)
            data, step = monte_carlo_plan(
                plan.model,
                plan.data,
                engine,
                random_state=est.random_state,
                tol=float(est.tol),
                accelerate=est.accelerate,
                monotonicity=est.monotonicity,
            )
            result = fit_em_restarts(
                plan.model,
                engine,
                data,
                plan.initialize,
                n_init=1 if warm else est.n_init,
                rng=plan.rng,
                tol=float(est.tol),
                max_iter=int(est.max_iter),
                monotonicity=est.monotonicity,
                accelerate=est.accelerate,
                dtype=plan.dtype,
                callback=progress_callback(est),
                on_start=(lambda i: logger.info("Initialization %d", i)) if est.verbose else None,
                start_objective=start_objective,
                step=step,
                relative_to=_relative_to(est, plan.data),
                checkpoint=(
                    None
                    if checkpoint is None
                    else fit_checkpoint(
                        est, checkpoint, plan.data.rows, plan.data.weights, plan.data.labels
                    )
                ),
            )
        if cached is not None:  # (the rows may change once the fit is over)
            plan.model.row_cache.clear()
        return plan, result

    def _online_start(self) -> tuple[Any, Any]:
        """(model, parameters) to continue from the fitted attributes, rows with missing
        values accepted (a later batch may have them)."""
        raise NotImplementedError

    def _online_rows(self, X: Any, sample_weight: Any, model: Any) -> tuple[Array, Array | None]:
        """The batch's rows (checked against the fitted features and ``model``'s family)
        and weights."""
        raise NotImplementedError

    def _set_online(self, model: Any, params: Any, trace: EMTrace, dtype: Any) -> None:
        """The fitted attributes from an online run's parameters (``dtype``: that of the
        first batch's rows when the run started unfitted, else None)."""
        raise NotImplementedError

    def partial_fit(self, X: Any, y: Any = None, sample_weight: ArrayLike | None = None) -> Any:
        """One step of online EM on a mini-batch (stepwise EM, Cappé & Moulines 2009).

        The batch's E-step statistics, per unit of sample weight, are blended into running
        statistics with step size ``(learning_offset + t) ** -learning_decay`` for the
        t-th batch (the first with step 1), and the M-step maps them to parameters. The
        first call on an unfitted estimator initializes from its batch as ``fit`` does
        (``init_params``, ``random_state``); on a fitted one, online EM continues from the
        fitted parameters. ``fit`` starts afresh. The objective of online EM need not
        increase; ``lower_bounds_`` records each batch's per-sample objective under the
        parameters before its step.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or ChunkedTable
            A mini-batch; NaN marks a missing value. A table opened with
            :func:`emkit.io.open_table` is read a block at a time, each block a mini-batch.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the batch's rows.

        Returns
        -------
        self
        """
        if isinstance(assignment(self.e_step), Sampled):  # type: ignore[attr-defined]
            raise InputError(
                f"partial_fit takes e_step='exact' or 'hard', got {self.e_step!r}: "  # type: ignore[attr-defined]
                "online EM blends each batch's statistics with a decreasing step size, "
                "which already averages out noise; fit Monte-Carlo EM with fit(X)."
            )
        from emkit.estimators._rows import partial_fit_rows

        def start(engine: Engine, X: Any, sample_weight: Any) -> tuple[OnlineState[Any], bool]:
            if hasattr(self, "weights_"):  # online EM from the fitted parameters
                return OnlineState(*self._online_start()), False
            # fit's initialization on the first batch (its first draw), no EM step
            self._check_parameters()
            plan = self._plan(X, None, sample_weight, engine, warm=False)
            model = replace(plan.model, missing=True)  # a later batch may have NaN
            return OnlineState(model, plan.initialize(plan.rng)), True

        def batch(X: Any, sample_weight: Any, state: OnlineState[Any]) -> RowSource:
            return RowSource(*self._online_rows(X, sample_weight, state.model))

        def finish(state: OnlineState[Any], trace: EMTrace, dtype: Any, seen: float) -> None:
            self._set_online(state.model, state.params, trace, dtype)

        return partial_fit_rows(self, X, sample_weight, start=start, batch=batch, finish=finish)

    def impute(self, X: Any) -> Array:
        """``X`` with every missing value (NaN) replaced by its conditional mean given the
        row's observed values under the fitted mixture, E[x_mis | x_obs] =
        sum_k p(k | x_obs) E[x_mis | x_obs, k] (for categorical columns: the most
        probable category).

        Returns
        -------
        X_imputed : ndarray of shape (n_samples, n_features)
        """
        return rows_output(self._map_model(X, lambda model, params: model.impute(params)))


def check_labels(y: Any, n_samples: int, n_components: int) -> NDArray[np.intp] | None:
    """Known components for semi-supervised fitting: ``y[i]`` in 0..K-1 for a labelled
    row, -1 for an unlabelled one (scikit-learn's convention); None if none is known."""
    if y is None:
        return None
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.shape[0] != n_samples:
        raise InputError(
            f"y must have shape ({n_samples},): one component index per row of X (-1 where "
            f"unknown), got shape {arr.shape}."
        )
    if arr.dtype.kind not in "iuf" or (
        arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr))
    ):
        raise InputError(
            f"y must hold integer component indices (-1 where unknown), got dtype {arr.dtype}"
            f"{' with non-integer values' if arr.dtype.kind == 'f' else ''}. Encode the "
            "known classes as 0..n_components-1, e.g. with sklearn.preprocessing.LabelEncoder."
        )
    bad = (arr < -1) | (arr >= n_components)
    if bad.any():
        row = int(np.argmax(bad))
        raise InputError(
            f"y[{row}] = {arr[row].item()!r} is not a component index: labelled rows need 0.."
            f"{n_components - 1} (n_components={n_components}) and unlabelled ones -1. "
            "Increase n_components or recode y."
        )
    labels = arr.astype(np.intp)
    return labels if (labels >= 0).any() else None


def align_to_labels(
    resp: NDArray[Any], labels: NDArray[np.intp], n_components: int
) -> NDArray[Any]:
    """Initial responsibilities with their components renamed to agree best with the
    known labels (an assignment on the labelled rows), and the labelled rows set."""
    from scipy.optimize import linear_sum_assignment

    known = np.flatnonzero(labels >= 0)
    hard = resp.ndim == 1
    soft = one_hot(resp[known], n_components) if hard else resp[known]
    agreement = soft.T @ one_hot(labels[known], n_components)  # (initial, label)
    initial, target = linear_sum_assignment(agreement, maximize=True)
    rename = np.empty(n_components, dtype=np.intp)
    rename[initial] = target
    if hard:
        out = np.where(resp >= 0, rename[np.maximum(resp, 0)], -1)
        out[known] = labels[known]
        return out
    out = np.empty_like(resp)
    out[:, rename] = resp
    out[known] = one_hot(labels[known], n_components)
    return out


@contextmanager
def verbose_logging(verbose: int, stream: Any = None) -> Iterator[None]:
    """Show emkit's INFO messages on ``stream`` (default stderr; KMeans prints where
    scikit-learn's does, on stdout) during a fit when ``verbose`` asks for it, unless the
    logger ``"emkit"`` has handlers of its own."""
    if not verbose or logger.handlers:
        yield
        return
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(message)s"))
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def check_em_parameters(estimator: Any) -> None:
    """The constructor arguments every EM estimator shares, checked at fit time
    (``n_init``, ``init_params``, ``dtype`` and ``warm_start`` where the estimator has them)."""
    check_positive_int("n_components", estimator.n_components)
    check_number("tol", estimator.tol)
    check_positive_int("max_iter", estimator.max_iter, minimum=0)
    # verbose=True is 1, as in scikit-learn
    check_positive_int(
        "verbose",
        int(estimator.verbose) if isinstance(estimator.verbose, bool) else estimator.verbose,
        minimum=0,
    )
    check_positive_int("verbose_interval", estimator.verbose_interval)
    check_choice("monotonicity", estimator.monotonicity, MONOTONICITY_POLICIES)
    if not _plain_random_state(estimator.random_state):
        check_random_state(estimator.random_state)  # raises, with the reason
    if hasattr(estimator, "n_init"):
        check_positive_int("n_init", estimator.n_init)
    if hasattr(estimator, "init_params"):
        methods = getattr(estimator, "_init_methods", INIT_METHODS)
        check_choice("init_params", estimator.init_params, methods)
    if hasattr(estimator, "dtype"):
        resolve_dtype(estimator.dtype)
    check_flag("warm_start", getattr(estimator, "warm_start", False))
    check_acceleration(getattr(estimator, "accelerate", None))
    if hasattr(estimator, "e_step"):
        assignment(estimator.e_step, getattr(estimator, "_e_steps", tuple(E_STEPS)))
    check_flag("semi_supervised", getattr(estimator, "semi_supervised", False))


def _plain_random_state(random_state: Any) -> bool:
    """Whether ``random_state`` is valid at a glance: None, a seed in NumPy's range, a
    Generator or a RandomState (checked without building a generator, which costs as much
    as a small fit's iteration, and without drawing from a RandomState)."""
    if random_state is None or isinstance(
        random_state, np.random.Generator | np.random.RandomState
    ):
        return True
    return bool(
        isinstance(random_state, int | np.integer)
        and not isinstance(random_state, bool)
        and 0 <= random_state < 2**32
    )


def progress_callback(estimator: Any) -> Callable[[int, float, float], None]:
    """The driver's per-iteration callback: log every ``verbose_interval`` iterations."""

    def callback(iteration: int, objective: float, change: float) -> None:
        if estimator.verbose and iteration % estimator.verbose_interval == 0:
            logger.info(
                "  Iteration %d\t objective %.8g\t change %.3g", iteration, objective, change
            )

    return callback


def fit_engine(estimator: Any, X: Any = None) -> Any:
    """The engine of an estimator's ``engine``, ``chunk_size`` and ``n_threads`` arguments,
    as a context manager (:func:`emkit.engines.resolve_engine`; the Dask engine by default
    for a Dask ``X``)."""
    return resolve_engine(
        getattr(estimator, "engine", None), estimator.chunk_size, estimator.n_threads, X
    )


def rows_output(values: Any) -> Any:
    """A per-row result as the caller gets it: a Dask array stays one (computed when the
    caller computes it), anything else becomes a NumPy array."""
    return values if is_dask_collection(values) else np.asarray(values)


def check_n_samples(n_samples: Any) -> None:
    """The ``n_samples`` argument of ``sample``: an integer >= 1."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
        raise InputError(
            f"Invalid value for 'n_samples': n_samples must be an integer >= 1, got "
            f"{n_samples!r}. The sampling requires "
            "at least one sample."
        )


def initial_statistics(
    model: Any,
    engine: Engine,
    X: Array,
    w: Array | None,
    resp: NDArray[Any],
    n_components: int,
    row_bytes: int = 0,
) -> Any:
    """``model.statistics_from_resp`` summed over chunks, for initial responsibilities:
    hard labels (expanded a chunk at a time, so memory stays one integer a row) or a
    soft matrix."""
    if resp.ndim == 1:

        def chunk_stats(Xc: Array, wc: Array | None, labels: NDArray[np.intp]) -> Any:
            return model.statistics_from_resp(Xc, wc, one_hot(labels, n_components))

        return engine.map_reduce(
            chunk_stats, RowSource(X, w, columns=(resp,), work_bytes=row_bytes)
        )
    return engine.map_reduce(
        model.statistics_from_resp, RowSource(X, w, columns=(resp,), work_bytes=row_bytes)
    )


def _relative_to(est: Any, data: Any) -> float | None:
    """The total weight a relative ``tol`` scales with (mclust's rule), where the
    estimator asks for one (``ModelBasedClustering(tol_rule='relative')`` sets its cells'
    ``_relative_tol``), else None: ``tol`` is absolute, per sample."""
    if not getattr(est, "_relative_tol", False):
        return None
    weights = data.weights
    if isinstance(weights, np.ndarray):
        return float(weights.sum(dtype=np.float64))
    return float(data.n_rows)

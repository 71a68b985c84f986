"""``emkit.ModelBasedClustering``: mclust's ``Mclust()`` as an estimator.

Gaussian mixtures are fitted over a grid of numbers of components and covariance
structures, every one from the same model-based hierarchical start (mclust's), and the
model with the best BIC (or ICL) is kept. A cell that cannot be fitted, or whose fit
collapsed a component, is missing from the comparison (NaN, with the reason), as mclust's
NA is; it never stops the sweep and is never chosen.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClusterMixin, DensityMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from emkit._validation import (
    as_float_matrix,
    check_choice,
    check_positive_int,
    check_random_state,
    is_dask_collection,
)
from emkit.estimators._rows import INIT_ROWS, check_streamed, hc_start_tree, is_streamed
from emkit.estimators.gaussian_mixture import GaussianMixture
from emkit.exceptions import EmkitError, InputError
from emkit.families.covariance import MCLUST_MODELS, ONE_DIMENSIONAL_MODELS, covariance_types
from emkit.families.gaussian import covariance_structure
from emkit.inference.em import EMTrace
from emkit.inference.hierarchical import HierarchicalTree
from emkit.inference.init import init_random_source

__all__ = ["CRITERIA", "ModelBasedClustering", "all_covariance_types"]

CRITERIA = ("bic", "icl")
TOL_RULES = ("absolute", "relative")

# the keys of results_, in order (emkit.plot reads them)
RESULT_KEYS = (
    "n_components",
    "covariance_type",
    "bic",
    "icl",
    "log_likelihood",
    "n_parameters",
    "converged",
    "reason",
    "n_iter",
    "warnings",
)

Array = NDArray[np.floating[Any]]


def all_covariance_types(n_features: int | None = None) -> tuple[str, ...]:
    """What ``covariance_types='all'`` means: mclust's fourteen models (volume, shape and
    orientation each equal or variable; VII, VVI, EEE and VVV are scikit-learn's
    spherical, diag, tied and full), or, for one column, mclust's E and V.

    Examples
    --------
    >>> all_covariance_types(1)
    ('E', 'V')
    >>> len(all_covariance_types(4))
    14
    """
    return ONE_DIMENSIONAL_MODELS if n_features == 1 else MCLUST_MODELS


class ModelBasedClustering(ClusterMixin, DensityMixin, BaseEstimator):
    """Gaussian mixtures over a grid of sizes and covariance structures, the best kept.

    Every cell (number of components, covariance type) is a :class:`GaussianMixture`
    fitted from one shared start, mclust's model-based hierarchical clustering of the
    data (``init_params='hc'``; the tree is built once and cut at each size). The kept
    model maximizes ``criterion`` among the cells that fitted without a collapsed
    component.

    **Sign conventions.** ``results_['bic']`` is mclust's BIC,
    ``2 log L - n_parameters log n``: *higher is better*. scikit-learn's
    :meth:`bic`, which this estimator delegates to the kept model, is its negative,
    ``-2 log L + n_parameters log n``: *lower is better*. ``results_['icl']`` is mclust's
    ICL, the BIC plus twice the log of each row's largest posterior probability,
    ``BIC + 2 sum_i log max_k p(k | x_i)`` (higher is better), which penalizes overlapping
    components.

    Parameters
    ----------
    n_components : int or iterable of int, default=range(1, 10)
        The numbers of components to try (mclust's ``G``).
    covariance_types : str or iterable of str, default='all'
        The covariance structures to try: names :class:`GaussianMixture` accepts, or
        ``'all'`` for every structure it has (:func:`all_covariance_types`).
    criterion : {'bic', 'icl'}, default='bic'
        What the kept model maximizes.
    init_params : str, default='hc'
        The start of every cell (:class:`GaussianMixture`'s ``init_params``).
    n_init : int, default=1
        Starts per cell; with ``'hc'`` on fewer than 2000 rows, every start is the same.
    tol : float, default=1e-5
        Convergence threshold on the log-likelihood, as ``tol_rule`` says.
    tol_rule : {'absolute', 'relative'}, default='absolute'
        ``'absolute'``: a cell stops when its per-sample log-likelihood gains less than
        ``tol`` (:class:`GaussianMixture`'s rule). ``'relative'``: mclust's rule, a gain
        of the total log-likelihood ``L`` below ``tol * (1 + |L|)``; on data whose
        per-sample log-likelihood is far from 0 it stops earlier (faithful: about 4x
        the absolute threshold), in as many iterations as mclust's ``me()``. The
        default stays absolute because what it costs buys the log-likelihoods: on
        faithful the relative rule runs a third fewer EM iterations over the whole sweep
        (10,243 against 15,079, shared starts included), but on wreath three cells then
        end below mclust's log-likelihood (VII,3 by 0.06 nats, EEE,3 by 16.4, VEE,3 by
        25.7) and the kept model changes.
    reg_covar : float, default=1e-6
        Added to the diagonal of every covariance.
    prior : None, 'mclust', 'auto' or GaussianPrior, default=None
        Passed to every cell (:class:`GaussianMixture`'s ``prior``), as mclust's
        ``Mclust(prior = priorControl())``: ``'mclust'`` is that prior; the BIC then uses
        the log-likelihood at the posterior mode, as mclust's does.
    max_iter : int, default=1000
        EM iterations per cell at most.
    random_state : int, Generator, RandomState or None, default=None
        Seeds the starts (the subset of rows the hierarchy is built on beyond 2000 rows);
        every cell gets the same seed, an int as given.
    dtype : {'float64', 'float32'}, default='float64'
        :class:`GaussianMixture`'s ``dtype`` for every cell.
    verbose : int, default=0
        Log every cell's iterations (logger ``"emkit"``), as :class:`GaussianMixture`.
    n_jobs : int or None, default=None
        Cells fitted at once (joblib); ``None`` or 1 fits them one after the other. A
        cell on small data is mostly Python (it holds the GIL), so the cells run in
        worker processes, which pays where cores are idle; they run on threads for a
        streamed table or an engine object (which a process may not be able to open or
        copy). (Python's warning filters are global: with threads, a cell's ``warnings``
        entry may miss a warning or show a neighbour's.)
    e_step : str, default='exact'
        :class:`GaussianMixture`'s ``e_step`` for every cell (``'hard'``,
        ``'monte-carlo'``, ``'stochastic'``...).
    accelerate : {None, 'squarem'}, default=None
        :class:`GaussianMixture`'s ``accelerate`` for every cell.
    engine : None, 'memory', 'streaming' or an engine object, default=None
        Where every cell's rows are processed (:class:`GaussianMixture`'s ``engine``);
        ``X`` may then be a table streamed from a file (:func:`emkit.io.open_table`).
    share_starts : bool, default=True
        Best of starts within each number of components. After every cell has been
        fitted from its own start, each cell is also started from the partitions (each
        row's most likely component) that its nested covariance structures (EII, VEE...
        in VVE) reached with the same number of components: every distinct partition
        (other than the cell's own start and end) gets a short run of ``SHORT_RUN`` EM
        iterations, the best of them is run to convergence when it is ahead of the cell's
        own run after as many iterations (and, where it then ends no higher than the
        cell's own run, the next best, up to ``CONTINUED`` of them), and the cell keeps
        the highest log-likelihood. Two structures from one start often end in different
        optima (an iterative M-step such as VVE's takes its own path), and the partition
        of one is a better start for the other: on mclust's six bundled data sets, all
        756 cells then reach mclust's log-likelihood (744 with one start per cell, 755
        with the best short run alone continued). A continued short run resumes where
        it stopped (a warm start; ``n_iter`` counts both parts). Deterministic; it
        needs the rows in memory (or a streamed table of at most 2000 rows) and is
        skipped otherwise. ``False`` keeps one start per cell.

    Attributes
    ----------
    results_ : dict of str to list or ndarray
        One entry per cell: ``n_components``, ``covariance_type``, ``bic``, ``icl``,
        ``log_likelihood``, ``n_parameters``, ``converged``, ``reason`` (``''`` for a
        cell that fitted; otherwise why it is missing, its BIC and ICL NaN, and its
        log-likelihood too if it could not be fitted), ``n_iter`` and ``warnings`` (the
        messages of the warnings its fit raised, each once).
        ``pandas.DataFrame(results_)`` gives the table.
    best_estimator_ : GaussianMixture
        The kept model, fitted on the whole data.
    best_index_ : int
        Its position in ``results_``.
    n_components_ : int
    covariance_type_ : str
    labels_ : ndarray of shape (n_samples,)
        The kept model's most likely component of each training row.
    uncertainty_ : ndarray of shape (n_samples,)
        One minus the largest posterior probability of each training row (mclust's
        uncertainty).

    Examples
    --------
    >>> from emkit import ModelBasedClustering
    >>> from emkit.io import load_faithful
    >>> X, _ = load_faithful()
    >>> mbc = ModelBasedClustering(n_components=range(1, 5)).fit(X)
    >>> mbc.n_components_, mbc.covariance_type_
    (3, 'EEE')
    """

    def __init__(
        self,
        n_components: int | Iterable[int] = range(1, 10),
        *,
        covariance_types: str | Iterable[str] = "all",
        criterion: str = "bic",
        init_params: str = "hc",
        n_init: int = 1,
        tol: float = 1e-5,
        tol_rule: str = "absolute",
        reg_covar: float = 1e-6,
        prior: Any = None,
        max_iter: int = 1000,
        random_state: Any = None,
        dtype: str = "float64",
        verbose: int = 0,
        n_jobs: int | None = None,
        e_step: str = "exact",
        accelerate: str | None = None,
        engine: Any = None,
        share_starts: bool = True,
    ) -> None:
        self.n_components = n_components
        self.covariance_types = covariance_types
        self.criterion = criterion
        self.init_params = init_params
        self.n_init = n_init
        self.tol = tol
        self.tol_rule = tol_rule
        self.reg_covar = reg_covar
        self.prior = prior
        self.max_iter = max_iter
        self.random_state = random_state
        self.dtype = dtype
        self.verbose = verbose
        self.n_jobs = n_jobs
        self.e_step = e_step
        self.accelerate = accelerate
        self.engine = engine
        self.share_starts = share_starts

    # -- the grid -------------------------------------------------------------------

    def _sizes(self) -> list[int]:
        values = [self.n_components] if isinstance(self.n_components, int) else None
        try:
            sizes = values if values is not None else list(self.n_components)  # type: ignore[arg-type]
        except TypeError:
            sizes = [self.n_components]  # type: ignore[list-item]
        if not sizes:
            raise InputError(
                "n_components is empty; pass numbers of components, e.g. range(1, 10)."
            )
        for k in sizes:
            check_positive_int("n_components", k)
        return sorted(set(int(k) for k in sizes))

    def _structures(self, n_features: int | None = None) -> list[str]:
        allowed = all_covariance_types(n_features)
        known = covariance_types()
        given = self.covariance_types
        names = [given] if isinstance(given, str) else list(given)
        chosen: list[str] = []
        for name in names:
            for item in allowed if name == "all" else [name]:
                if not isinstance(item, str) or item not in known:
                    raise InputError(
                        f"covariance_types has {item!r}, which is not a covariance type: "
                        f"choose from {', '.join(map(repr, known))}, or 'all'."
                    )
                if item not in chosen:
                    chosen.append(item)
        if not chosen:
            raise InputError("covariance_types is empty; pass names, or 'all'.")
        return chosen

    def _cell(self, k: int, covariance_type: str, seed: Any) -> GaussianMixture:
        model = GaussianMixture(
            k,
            covariance_type=covariance_type,
            init_params=self.init_params,
            n_init=self.n_init,
            tol=self.tol,
            reg_covar=self.reg_covar,
            prior=self.prior,
            max_iter=self.max_iter,
            random_state=seed,
            dtype=self.dtype,
            verbose=self.verbose,
            verbose_interval=1,
            e_step=self.e_step,
            accelerate=self.accelerate,
            engine=self.engine,
        )
        # mclust's relative tol (the driver's relative_to, see _mixture_base._relative_to)
        model._relative_tol = self.tol_rule == "relative"
        return model

    # -- fitting --------------------------------------------------------------------

    def fit(
        self, X: ArrayLike, y: Any = None, checkpoint: str | os.PathLike[str] | None = None
    ) -> ModelBasedClustering:
        """Fit every cell of the grid on ``X`` and keep the best.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a streamed table
            NaN marks a missing value (the hierarchy is built on the rows with missing
            values filled by their column's mean; EM handles them exactly). A table
            opened with :func:`emkit.io.open_table` is read a block at a time by every
            cell.
        y : None
            Ignored.
        checkpoint : str or os.PathLike, default=None
            A directory holding one checkpoint per cell, ``k{n_components}-{covariance
            type}`` (:meth:`GaussianMixture.fit`'s ``checkpoint``): a sweep that was
            stopped continues every cell where it was, and a finished cell is read back.
            Needs ``n_init=1`` and no ``accelerate``.

        Returns
        -------
        self
        """
        check_choice("criterion", self.criterion, CRITERIA)
        check_choice("tol_rule", self.tol_rule, TOL_RULES)
        sizes = self._sizes()
        if self.n_jobs is not None:
            check_positive_int("n_jobs", self.n_jobs)
        streamed = is_streamed(X)  # a table from a file, or Dask rows
        Xa: Any = X if streamed else as_float_matrix(X, dtype=None, allow_nan=True)
        if streamed:
            Xa = check_streamed(self, X, reset=True)
        structures = self._structures(Xa.shape[1])
        if not streamed:
            validate_data(self, X, reset=True, skip_check_array=True)  # feature names
        n = Xa.shape[0]
        # every cell starts from the same seed: an int (or None) as given, else one drawn
        seed = self.random_state
        if not (seed is None or isinstance(seed, int | np.integer)):
            seed = int(check_random_state(seed).integers(np.iinfo(np.int32).max))
        # the constructor arguments, checked once (a bad one fails every cell alike)
        for name in structures:
            self._cell(sizes[0], name, seed)._check_parameters()
        if checkpoint is not None and (self.n_init != 1 or self.accelerate is not None):
            raise InputError(
                f"checkpoint resumes one plain EM run per cell; n_init={self.n_init} and "
                f"accelerate={self.accelerate!r} were given. Use n_init=1 and "
                "accelerate=None with a checkpoint (or fit without one)."
            )
        if min(sizes) > n:
            raise InputError(
                f"X has {n} rows, fewer than every n_components asked for "
                f"({', '.join(map(str, sizes))}); a mixture needs at least as many rows as "
                "components. Pass smaller n_components or more data."
            )
        rows = Xa.read() if streamed and n <= INIT_ROWS else (None if streamed else Xa)
        tree = None
        if self.init_params == "hc" and 2 <= n <= INIT_ROWS and rows is not None:
            # (beyond INIT_ROWS every cell starts from a sample of its own); the rows the
            # tree is built on alone, their missing values at their column's mean
            tree = hc_start_tree(rows, init_random_source(seed))
        scale = _column_scale(Xa if rows is None else rows)
        grid = [(k, name) for name in structures for k in sizes]
        # every fit of a structure binds the same rows alike: once (_bind_shared)
        bindings: dict[str, Any] = {}

        def run(cell: tuple[int, str]) -> tuple[dict[str, Any], GaussianMixture | None]:
            where = None if checkpoint is None else Path(checkpoint) / f"k{cell[0]}-{cell[1]}"
            model = self._cell(cell[0], cell[1], seed)
            return _fit_cell(model, X, n, scale, tree, where, bindings)

        def short_run(start: _Start) -> tuple[float, GaussianMixture | None]:
            model = self._cell(start.n_components, start.covariance_type, seed)
            model.max_iter = min(start.max_iter, self.max_iter)
            return _short_run(model, X, scale, start, bindings)

        def continued(model: GaussianMixture) -> tuple[dict[str, Any], GaussianMixture | None]:
            return _continue_cell(model, X, n, scale, self.max_iter, bindings)

        def fit_all(fn: Any, cells: list[Any]) -> list[Any]:
            if self.n_jobs is None or self.n_jobs == 1:
                return [fn(cell) for cell in cells]
            from joblib import Parallel, delayed

            # a cell on small data is Python-bound (the GIL): processes, when the rows
            # and the engine can be sent to them; threads for a streamed table or an
            # engine object, which a process may not be able to open or copy
            local = streamed or not (self.engine is None or isinstance(self.engine, str))
            return list(
                Parallel(n_jobs=self.n_jobs, backend="threading" if local else "loky")(
                    delayed(fn)(cell) for cell in cells
                )
            )

        outcomes = fit_all(run, grid)
        # (fits, EM iterations) of each phase of the sweep (bench/bench_mclust.py)
        self._phases = {"cells": (len(outcomes), sum(row["n_iter"] for row, _ in outcomes))}
        if self.share_starts and rows is not None and len(structures) > 1:
            outcomes = _share_starts(
                outcomes,
                tree,
                lambda starts: fit_all(short_run, starts),
                lambda models: fit_all(continued, models),
                self._phases,
            )
        rows = [row for row, _ in outcomes]
        self.results_: dict[str, Any] = {
            "n_components": np.array([row["n_components"] for row in rows], dtype=np.intp),
            "covariance_type": [row["covariance_type"] for row in rows],
            **{
                key: np.array([row[key] for row in rows], dtype=np.float64)
                for key in ("bic", "icl", "log_likelihood", "n_parameters")
            },
            "converged": np.array([row["converged"] for row in rows], dtype=bool),
            "reason": [row["reason"] for row in rows],
            "n_iter": np.array([row["n_iter"] for row in rows], dtype=np.intp),
            "warnings": [row["warnings"] for row in rows],
        }
        scores = self.results_[self.criterion]
        if not np.isfinite(scores).any():
            reasons = "; ".join(
                f"{row['n_components']} {row['covariance_type']}: {row['reason']}"
                for row in rows[:5]
            )
            raise InputError(
                f"Every candidate model failed to fit or collapsed ({reasons}"
                f"{'; ...' if len(rows) > 5 else ''}). Scale the data, increase reg_covar, "
                "or try fewer components."
            )
        best = int(np.nanargmax(np.where(np.isfinite(scores), scores, np.nan)))
        model = outcomes[best][1]
        assert model is not None
        self.best_index_ = best
        self.best_estimator_ = model
        self.n_components_ = int(self.results_["n_components"][best])
        self.covariance_type_ = str(self.results_["covariance_type"][best])
        proba = model.predict_proba(X)
        labels, uncertainty = proba.argmax(axis=1), 1.0 - proba.max(axis=1)
        if is_dask_collection(proba):  # Dask rows: fitted values in memory, one pass
            import dask

            labels, uncertainty = dask.compute(labels, uncertainty)
        self.labels_, self.uncertainty_ = np.asarray(labels), np.asarray(uncertainty)
        return self

    # -- delegation -----------------------------------------------------------------

    def _best(self) -> GaussianMixture:
        check_is_fitted(self, "best_estimator_")
        return self.best_estimator_

    def predict(self, X: ArrayLike) -> NDArray[np.intp]:
        """The kept model's most likely component of each sample."""
        return self._best().predict(X)

    def predict_proba(self, X: ArrayLike) -> Array:
        """The kept model's posterior probabilities, shape (n_samples, ``n_components_``)."""
        return self._best().predict_proba(X)

    def score_samples(self, X: ArrayLike) -> Array:
        """Log-density of each sample under the kept model."""
        return self._best().score_samples(X)

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log-density of the samples under the kept model."""
        return self._best().score(X)

    def sample(self, n_samples: int = 1) -> tuple[Array, NDArray[np.intp]]:
        """Samples drawn from the kept model (``X``, component of each)."""
        return self._best().sample(n_samples)

    def bic(self, X: ArrayLike) -> float:
        """scikit-learn's BIC of the kept model on ``X`` (lower is better; the negative
        of mclust's, which ``results_['bic']`` holds)."""
        return self._best().bic(X)

    def aic(self, X: ArrayLike) -> float:
        """scikit-learn's AIC of the kept model on ``X`` (lower is better)."""
        return self._best().aic(X)


# EM iterations of each shared start before the best ones are run to convergence
SHORT_RUN = 5
# the shared starts of a cell run to convergence at most (the best after SHORT_RUN)
CONTINUED = 2


@dataclass(frozen=True)
class _Start:
    """A cell started from a given partition of the rows (``labels``, 0..k-1 for every
    row), run ``max_iter`` EM iterations at most; it stands where a cell's hierarchical
    tree does (:meth:`labels` is the tree's cut)."""

    n_components: int
    covariance_type: str
    partition: NDArray[np.intp]
    max_iter: int

    def labels(self, n_components: int) -> NDArray[np.intp]:
        assert n_components == self.n_components
        return self.partition


def _share_starts(
    outcomes: list[tuple[dict[str, Any], GaussianMixture | None]],
    tree: HierarchicalTree | None,
    short: Any,
    full: Any,
    phases: dict[str, tuple[int, int]] | None = None,
) -> list[tuple[dict[str, Any], GaussianMixture | None]]:
    """ModelBasedClustering's ``share_starts``: every cell also started from the
    partitions of the rows that the cells of its nested structures (:func:`_nested`) with
    its number of components reached (a short run each; the best ``CONTINUED`` of them
    that are ahead of the cell's own run after as many iterations are run to
    convergence), the better fit kept. A partition the cell reached itself, or the cut of
    ``tree`` it started from, is not run again. ``short(starts)`` gives, for each
    :class:`_Start`, the per-sample objective after its iterations (-inf for a missing
    cell) and the short run's model (None for a missing cell); ``full(models)`` continues
    each such model to convergence (:func:`_continue_cell`, the outcome as
    :func:`_fit_cell`'s). ``phases``, if given, gets each phase's fits and EM iterations
    (``'short'``, ``'continued'``)."""
    outcomes = list(outcomes)
    by_size: dict[int, list[int]] = {}
    for i, (row, _) in enumerate(outcomes):
        by_size.setdefault(int(row["n_components"]), []).append(i)
    reached: dict[int, NDArray[np.intp]] = {}
    for k, cells in by_size.items():
        for i in cells:
            model = outcomes[i][1]
            if model is not None and k > 1:  # (the labels _fit_cell's pass found)
                reached[i] = _canonical(outcomes[i][0]["labels"])
    # short runs from every partition of a nested structure a cell did not reach itself
    # (a partition is compared by its bytes: equal labels, equal runs)
    runs: list[tuple[int, _Start]] = []
    for k, cells in by_size.items():
        own = set() if tree is None or k == 1 else {_canonical(tree.labels(k)).tobytes()}
        for i in cells:
            name = outcomes[i][0]["covariance_type"]
            seen = own | ({reached[i].tobytes()} if i in reached else set())
            for j in cells:
                if j in reached and reached[j].tobytes() not in seen:
                    if _nested(outcomes[j][0]["covariance_type"], name):
                        seen.add(reached[j].tobytes())
                        runs.append((i, _Start(k, name, reached[j], SHORT_RUN)))
    ranked: dict[int, list[tuple[float, int, GaussianMixture]]] = {}
    steps = 0
    for order, ((i, _), (value, model)) in enumerate(
        zip(runs, short([s for _, s in runs]), strict=True)
    ):
        steps += 0 if model is None else int(model.n_iter_)
        # ahead of the cell's own run (a short run that failed or collapsed is -inf)
        if model is not None and value > _objective_after(outcomes[i][1], SHORT_RUN):
            ranked.setdefault(i, []).append((-value, order, model))
    counts = {"short": (len(runs), steps), "continued": (0, 0)}
    # the best short run of a cell ahead of its own run, continued to convergence; where
    # it ends no higher than the cell's own run, the next best, up to CONTINUED of them
    # (a run that leads after a few iterations may converge lower than the next one)
    queues = {
        i: [m for _, _, m in sorted(models, key=lambda item: item[:2])]
        for i, models in ranked.items()
    }
    for wave in range(CONTINUED):
        chosen = [(i, models[wave]) for i, models in sorted(queues.items()) if len(models) > wave]
        before = [int(m.n_iter_) for _, m in chosen]  # (full may continue them in place)
        ends = full([m for _, m in chosen])
        for (i, _), done, (row, model) in zip(chosen, before, ends, strict=True):
            # (the iterations past the short run's, which the short runs counted)
            fits, steps = counts["continued"]
            counts["continued"] = (fits + 1, steps + max(row["n_iter"] - done, 0))
            if model is not None and row["log_likelihood"] > _fitted_log_likelihood(outcomes[i]):
                outcomes[i] = (row, model)
                del queues[i]  # improved: its next short runs are not continued
    if phases is not None:
        phases.update(counts)
    return outcomes


# each letter's constraint (volume, shape, orientation): identity < equal < variable
_RANK = {"I": 0, "E": 1, "V": 2}


def _nested(inner: str, outer: str) -> bool:
    """Whether covariance structure ``inner`` is a special case of ``outer`` (every one of
    its volume, shape and orientation at least as constrained), ``inner != outer``."""
    a, b = _MCLUST_NAMES.get(inner, inner), _MCLUST_NAMES.get(outer, outer)
    if a == b or len(a) != len(b) or not set(a + b) <= set(_RANK):
        return False
    return all(_RANK[x] <= _RANK[y] for x, y in zip(a, b, strict=True))


# mclust's names of scikit-learn's four structures
_MCLUST_NAMES = {"spherical": "VII", "diag": "VVI", "tied": "EEE", "full": "VVV"}


def _objective_after(model: GaussianMixture | None, n_iter: int) -> float:
    """A fit's per-sample objective after ``n_iter`` iterations (its last if it stopped
    before; -inf for a missing cell)."""
    if model is None or model.lower_bounds_.size == 0:
        return -np.inf
    return float(model.lower_bounds_[min(n_iter, model.lower_bounds_.size) - 1])


def _fitted_log_likelihood(outcome: tuple[dict[str, Any], GaussianMixture | None]) -> float:
    """A cell's log-likelihood, -inf for a missing cell."""
    row, model = outcome
    return float(row["log_likelihood"]) if model is not None else -np.inf


def _canonical(labels: NDArray[np.intp]) -> NDArray[np.intp]:
    """``labels`` renumbered in the order of their first row (equal partitions give equal
    arrays)."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.asarray(np.argsort(np.argsort(first))[inverse], dtype=np.intp)


def _fit_cell(
    model: GaussianMixture,
    X: Any,
    n: int,
    scale: Array,
    tree: HierarchicalTree | _Start | None,
    checkpoint: Path | None = None,
    bindings: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], GaussianMixture | None]:
    """One cell's row of ``results_`` and its fitted model (None if it is missing):
    fitted on ``X`` as given (its feature names kept; ``n`` rows, ``scale`` the
    columns' standard deviations), from ``tree`` (or a given partition) and with
    ``checkpoint`` if given; ``bindings``, the sweep's bindings of ``X`` a structure
    (:func:`_bind_shared`)."""
    k, name = int(model.n_components), str(model.covariance_type)
    row: dict[str, Any] = {
        "n_components": k,
        "covariance_type": name,
        "bic": np.nan,
        "icl": np.nan,
        "log_likelihood": np.nan,
        "n_parameters": np.nan,
        "converged": False,
        "reason": "",
        "n_iter": 0,
        "warnings": [],
    }
    if k > n:
        row["reason"] = f"more components than the {n} rows"
        return row, None
    model._hc_tree = tree  # the shared start, cut at k
    _bind_shared(model, bindings)
    try:
        with warnings.catch_warnings(record=True) as caught:
            # a collapsed component or a slow cell is reported in the table
            warnings.simplefilter("always")
            model.fit(X) if checkpoint is None else model.fit(X, checkpoint=checkpoint)
            # each row's log-density, log of its largest posterior and component, one pass
            values = _final_values(model, X)
            log_likelihood = float(values[:, 0].mean()) * n
        row["warnings"] = list(dict.fromkeys(str(w.message) for w in caught))
    except InputError:
        raise  # the arguments or the data are wrong for every cell alike
    except _NOT_FITTED as exc:
        row["reason"] = f"not fitted: {exc}"
        return row, None
    finally:
        del model._hc_tree, model._bindings
    n_parameters = int(model._n_parameters())
    row["log_likelihood"] = log_likelihood
    row["n_parameters"] = n_parameters
    row["converged"] = bool(model.converged_)
    row["n_iter"] = int(model.n_iter_)
    collapsed = _collapsed(model, scale)
    if collapsed.size:
        row["reason"] = (
            f"component{'s' if collapsed.size > 1 else ''} "
            f"{', '.join(map(str, collapsed.tolist()))} collapsed (a covariance "
            "singular without reg_covar)"
        )
        return row, None
    if not np.isfinite(log_likelihood):
        row["reason"] = "the log-likelihood is not finite"
        return row, None
    bic = 2.0 * log_likelihood - n_parameters * np.log(n)
    row["bic"] = bic
    row["icl"] = bic + 2.0 * float(values[:, 1].sum())
    row["labels"] = values[:, 2].astype(np.intp)  # (for the shared starts; not in results_)
    return row, model


# GaussianMixture.fit as written, each warning raised as it comes (not grouped once a
# fit by warnings_once)
_FIT_EVERY_WARNING: Callable[..., Any] = GaussianMixture.fit.__wrapped__  # type: ignore[attr-defined]

# what makes a cell missing ("not fitted") rather than stop the sweep
_NOT_FITTED = (EmkitError, np.linalg.LinAlgError, ValueError, FloatingPointError)


def _short_run(
    model: GaussianMixture,
    X: Any,
    scale: Array,
    start: _Start,
    bindings: dict[str, Any] | None = None,
) -> tuple[float, GaussianMixture | None]:
    """The per-sample objective of ``model`` (its ``max_iter`` a few iterations) fitted on
    ``X`` from ``start`` after its last iteration, and the fitted model (which
    :func:`_continue_cell` may run on); -inf and None where the cell could not be fitted
    or a component collapsed: :func:`_fit_cell` without the table's row (no pass over the
    rows after the fit)."""
    model._hc_tree = start
    _bind_shared(model, bindings)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a short run does not converge, by design
            # (fit without warnings_once: its warnings are ignored here, so recording,
            # grouping and re-raising them, ~5 us a run, would be thrown away)
            _FIT_EVERY_WARNING(model, X)
    except InputError:
        raise
    except _NOT_FITTED:
        return -np.inf, None
    finally:
        del model._hc_tree, model._bindings
    if _collapsed(model, scale).size:
        return -np.inf, None
    return float(model.lower_bounds_[-1]), model


def _continue_cell(
    model: GaussianMixture,
    X: Any,
    n: int,
    scale: Array,
    max_iter: int,
    bindings: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], GaussianMixture | None]:
    """A short run (:func:`_short_run`'s fitted ``model``) continued to convergence, as
    :func:`_fit_cell` reports a cell: EM resumes from the short run's parameters (a warm
    start, the same iterations as a run from its start without the first ones again),
    ``max_iter`` iterations in all, and the model's trace is the two runs' joined."""
    first = model.trace_
    # (none left where max_iter is the short run's: the short run is the cell's fit)
    model.max_iter = max(max_iter - int(first.objective.shape[0]), 0)
    model.warm_start = True
    try:
        row, fitted = _fit_cell(model, X, n, scale, None, bindings=bindings)
    finally:
        model.warm_start = False  # the kept model refits from scratch, as a cell's
        model.max_iter = max_iter
    if model.trace_ is not first:  # (fitted: the continuation's trace)
        model._set_trace(_joined(first, model.trace_), bool(model.converged_))
        row["n_iter"] = int(model.n_iter_)
    return row, fitted


def _bind_shared(model: GaussianMixture, bindings: dict[str, Any] | None) -> None:
    """Let ``model``'s fit read and fill ``bindings``, the sweep's bound families of its
    rows a covariance structure (:meth:`GaussianMixture._plan`'s ``_bindings``): the
    sweep's fits share the rows, weights (none), ``reg_covar`` and ``prior``, so their
    statistics pass and binding are made once a structure, not once a fit (663 on
    faithful). Only for the fit: the kept model refits on other data as any estimator."""
    model._bindings = {} if bindings is None else bindings


def _joined(first: EMTrace, then: EMTrace) -> EMTrace:
    """The trace of one EM run made of ``first`` and its warm-started continuation
    ``then`` (iteration numbers of ``then`` shifted; the components' collapse as ``then``
    ends)."""
    shift = int(first.objective.shape[0])

    def both(a: NDArray[Any], b: NDArray[Any]) -> NDArray[Any]:
        # a field one of them did not record is not recorded for the whole run
        return np.concatenate([a, b]) if a.shape[0] and b.shape[0] else b[:0]

    return EMTrace(
        objective=np.concatenate([first.objective, then.objective]),
        seconds=np.concatenate([first.seconds, then.seconds]),
        restarts=np.concatenate([first.restarts, then.restarts + shift]).astype(np.intp),
        degenerate=then.degenerate,
        bound=both(first.bound, then.bound),
        draws=both(first.draws, then.draws),
    )


def _final_values(model: GaussianMixture, X: Any) -> Array:
    """(n, 3) :func:`_cell_values` of a fitted cell on its rows ``X``: by the compiled
    pass where it applies (:meth:`GaussianMixture._compiled_values`, as the model's
    ``score_samples`` then takes it: the cell's log-likelihood is ``score(X) * n``, bit
    for bit), else by the model's own pass."""
    if isinstance(X, np.ndarray) and not hasattr(model, "feature_names_in_"):
        values = model._compiled_values(X)
        if values is not None:
            return values
    values = model._map_rows(X, _cell_values)
    if is_dask_collection(values):
        values = values.compute()
    return np.asarray(values, dtype=np.float64)


def _cell_values(log_prob: Array) -> Array:
    """(n, 3): each row's log-density ``log sum_k p(x, k)``, the log of its largest
    posterior probability ``max_k log p(x, k) - log p(x)`` (mclust's ICL term) and its
    most likely component (``predict``)."""
    out = np.empty((log_prob.shape[0], 3))
    top = log_prob.max(axis=1, keepdims=True)  # (the entry argmax points at)
    total = _log_sum_exp_rows(log_prob, top)
    out[:, 0] = total
    out[:, 1] = top[:, 0] - total
    out[:, 2] = log_prob.argmax(axis=1)
    return out


def _log_sum_exp_rows(a: Array, top: Array | None = None) -> Array:
    """``log sum_k exp(a[:, k])`` of each row, as scipy's ``logsumexp(a, axis=1)`` gives
    it to the last bit, without its per-call cost (~50 us, a quarter of a sweep cell's
    final pass): with ``M`` a row's largest value, reached ``m`` times, and ``s`` the sum
    of ``exp(a - M)`` over the other entries, ``M + log(m) + log1p(s / m)``; a row whose
    value that leaves infinite or NaN (no finite entry) is ``log sum exp(a)``. ``top``:
    ``a.max(axis=1, keepdims=True)``, where the caller has it."""
    if top is None:
        top = a.max(axis=1, keepdims=True)
    at_top = a == top
    m = at_top.sum(axis=1, keepdims=True, dtype=a.dtype)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = np.exp(np.where(at_top, -np.inf, a) - top).sum(axis=1, keepdims=True)
        s = np.where(s == 0, s, s / m)
        out = (np.log1p(s) + np.log(m) + top)[:, 0]
        bad = ~np.isfinite(out)
        if bad.any():
            out[bad] = np.log(np.exp(a[bad]).sum(axis=1))
    return out


def _collapsed(model: GaussianMixture, scale: Array) -> NDArray[np.intp]:
    """The components of a fitted cell that collapsed (reported degenerate by the fit,
    or singular but for ``reg_covar``)."""
    return np.flatnonzero(model.trace_.degenerate | _held_by_reg_covar(model, scale))


# A covariance less reg_covar with an eigenvalue below this, relative to the data's
# variances, is singular: mclust's threshold on its Cholesky factors, sqrt(eps)
_SINGULAR = float(np.sqrt(np.finfo(np.float64).eps))


_STD_ROWS = 1 << 16  # rows of a block of _column_scale's rows in memory


def _column_scale(X: Any) -> Array:
    """The standard deviation of each column of ``X`` (rows in memory or a streamed
    table), its missing values left out; 1 for a constant column."""
    # blocks merged as Chan et al.'s pairwise variance: a block's temporaries at a time
    # (nanstd of rows in memory would hold several copies of them)
    if is_streamed(X) or X.shape[0] > _STD_ROWS:
        count = mean = m2 = np.zeros(int(X.shape[1]))
        blocks = (
            X.iter_chunks()
            if is_streamed(X)
            else ((s, X[s : s + _STD_ROWS]) for s in range(0, X.shape[0], _STD_ROWS))
        )
        for _, block in blocks:
            block = np.asarray(block, dtype=np.float64)
            seen = ~np.isnan(block)
            c = seen.sum(axis=0)
            m = np.where(seen, block, 0.0).sum(axis=0) / np.maximum(c, 1)
            s2 = np.where(seen, (block - m) ** 2, 0.0).sum(axis=0)
            both = np.maximum(count + c, 1)
            delta = m - mean
            m2 = m2 + s2 + delta**2 * count * c / both
            mean = mean + delta * c / both
            count = count + c
        scale = np.sqrt(m2 / np.maximum(count, 1))
    else:
        scale = np.nanstd(np.asarray(X, dtype=np.float64), axis=0)
    return np.asarray(np.where(scale > 0, scale, 1.0), dtype=np.float64)


def _held_by_reg_covar(model: GaussianMixture, scale: Array) -> NDArray[np.bool_]:
    """(K,) the components whose covariance is singular but for ``reg_covar``: a
    component on fewer distinct rows than columns (or on a subspace), whose likelihood
    ``reg_covar`` alone keeps finite, and where mclust reports NA. ``scale``: the
    columns' standard deviations (:func:`_column_scale`)."""
    structure = covariance_structure(model.covariance_type)
    cov = np.asarray(model.covariances_, dtype=np.float64)
    low = structure.smallest_eigenvalues(
        cov, int(model.n_components), float(model.reg_covar), scale
    )
    return np.asarray(low <= _SINGULAR)

"""``emkit.MixtureModel``: a mixture of any family or product of families, by (MAP-)EM.

Also the convenience estimators :class:`PoissonMixture`, :class:`BernoulliMixture` and
:class:`CategoricalMixture`, which fix the family.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from emkit._validation import (
    as_float_matrix,
    check_choice,
    check_number,
    check_random_state,
    check_sample_weight,
    check_warm_start,
    column_as_float,
    has_missing_values,
    resolve_dtype,
)
from emkit._warnings import warnings_once
from emkit.engines._source import RowSource
from emkit.estimators._mixture_base import (
    FamilyMixture,
    FitPlan,
    check_em_parameters,
    check_labels,
    fit_engine,
    logger,
)
from emkit.estimators._rows import (
    bind_pass,
    check_blocks,
    check_streamed,
    column_summary,
    filler,
    initial_statistics_bounded,
    is_streamed,
    mapped_blocks,
    ordered_for_chunks,
    standardizer,
)
from emkit.exceptions import DegenerateComponentWarning, InputError, InputTypeError
from emkit.families import Bernoulli, Categorical, Gaussian, Multinomial, Poisson, Product
from emkit.families._base import check_family
from emkit.families.variational import point_params, variational
from emkit.inference.em import EMTrace, fit_em
from emkit.inference.init import INIT_METHODS
from emkit.models.mixing import (
    EXACT,
    Exact,
    MixingWeights,
    Variational,
    VariationalWeights,
    assignment,
)
from emkit.models.mixture import Mixture, MixtureParams, fixed_weights

# emEM's short runs: how many, and how many iterations each (Rmixmod's small EM)
_EMEM_STARTS = 10
_EMEM_ITERATIONS = 5

# init_params of MixtureModel: those of every mixture, "emEM", and "auto"
MIXTURE_INIT_METHODS = (*INIT_METHODS, "emEM", "auto")

__all__ = [
    "BernoulliMixture",
    "CategoricalMixture",
    "MixtureModel",
    "PoissonMixture",
    "infer_family",
]

Array = NDArray[np.floating[Any]]

INTEGER_FAMILIES = ("poisson", "categorical")


# -- tables: DataFrames and arrays to one float matrix plus column kinds ----------------


def _column_kinds(X: Any) -> list[str]:
    """The kind of every column: 'float' (negative integers too), 'count' (integers
    >= 0), 'bool', 'category'. From a DataFrame's dtypes, or an array's one dtype."""
    if hasattr(X, "dtypes") and hasattr(X, "columns"):
        kinds = []
        for name in X.columns:
            col = X[name]
            kind = col.dtype.kind if hasattr(col.dtype, "kind") else "O"
            if str(col.dtype) == "category":
                kinds.append("category")
            elif kind == "b":
                kinds.append("bool")
            elif kind in "iu":
                kinds.append("count" if (col.dropna().to_numpy() >= 0).all() else "float")
            else:
                kinds.append("float")
        return kinds
    arr = np.asarray(X)
    if arr.dtype.kind == "b":
        return ["bool"] * arr.shape[1]
    if arr.dtype.kind in "iu":
        return ["count" if (arr[:, j] >= 0).all() else "float" for j in range(arr.shape[1])]
    return ["float"] * (arr.shape[1] if arr.ndim == 2 else 1)


def infer_family(X: Any, integers: str = "poisson") -> Any:
    """The family a table's column types suggest, as a :class:`~emkit.families.Product`.

    float (and negative integer) columns -> one full-covariance Gaussian block;
    non-negative integers -> Poisson (``integers='poisson'``) or Categorical
    (``integers='categorical'``); bool -> Bernoulli; pandas ``category`` -> Categorical.
    A table of one kind gets that family alone.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"x": [0.5, 1.5, 2.0], "n": [3, 0, 1], "ok": [True, False, True]})
    >>> family = infer_family(df)
    >>> {name: cols for name, (cols, _) in family.blocks.items()}
    {'gaussian': [0], 'poisson': [1], 'bernoulli': [2]}
    """
    check_choice("integers", integers, INTEGER_FAMILIES)
    makers: dict[str, Callable[[], Any]] = {
        "gaussian": lambda: Gaussian("full"),
        "poisson": Poisson,
        "bernoulli": Bernoulli,
        "categorical": Categorical,
    }
    by_kind = {
        "float": "gaussian",
        "count": integers,
        "bool": "bernoulli",
        "category": "categorical",
    }
    groups: dict[str, list[int]] = {}
    for j, kind in enumerate(_column_kinds(X)):
        groups.setdefault(by_kind[kind], []).append(j)
    if len(groups) == 1:
        return makers[next(iter(groups))]()
    return Product({name: (cols, makers[name]()) for name, cols in groups.items()})


# -- the estimator --------------------------------------------------------------------


class MixtureModel(FamilyMixture, DensityMixin, BaseEstimator):
    """Finite mixture of any exponential family, or product of families, fitted by EM.

    The E-step is one matrix product over the concatenated sufficient statistics of all
    column blocks; the M-step is each family's (MAP) update from summed statistics. With
    priors on the families and ``weight_concentration > 1`` it is MAP-EM, and the
    objective is log-likelihood + log prior.

    Missing values (NaN) are handled exactly: a row's E-step uses the density of its
    observed values (independent columns drop out; Gaussian blocks are conditioned on
    the observed coordinates) and the M-step the expected statistics of the missing ones;
    :meth:`impute` fills them with their conditional means. Multinomial blocks need
    complete rows.

    Parameters
    ----------
    family : family, Product, or None, default=None
        The component family: e.g. ``Poisson()``, ``Gaussian("diag")``, or
        ``Product({"vitals": (["age", "bp"], Gaussian()), "visits": (["n"], Poisson())})``
        (columns by position or DataFrame column name). ``None`` infers it from the
        column types (:func:`infer_family`); the choice is in ``family_``.
    n_components : int, default=1
    tol : float, default=1e-3
        EM stops when the per-sample objective gains less than ``tol``.
    max_iter : int, default=100
    n_init : int, default=1
    init_params : {'auto', 'kmeans', 'k-means++', 'random', 'random_from_data', 'hc', \
'emEM'}, default='auto'
        How initial responsibilities are drawn (k-means and ``'hc'`` run on standardized
        columns). ``'emEM'`` runs EM for 5 iterations from each of 10 starts at random
        rows and continues the best (Biernacki, Celeux & Govaert 2003), for each of the
        ``n_init`` runs. ``'auto'``: ``'emEM'`` for a family of discrete blocks only
        (Bernoulli, categorical, multinomial, Poisson: k-means on them finds clusters pure
        in some column, probabilities 0 or 1 that EM cannot leave), ``'kmeans'`` otherwise.
    weight_concentration : float, default=1.0
        Dirichlet prior alpha >= 1 on the mixing weights (1: maximum likelihood).
    weight_concentration_prior : float or None, default=None
        With ``e_step='variational'``, the Dirichlet prior alpha_0 > 0 on the weights
        (scikit-learn's name; ``None``: ``1 / n_components``). Small values let the fit
        empty the components it does not need.
    e_step : {'exact', 'hard', 'variational', 'monte-carlo', 'stochastic'} or MonteCarlo, \
default='exact'
        The E-step's posterior: ``'exact'`` is EM; ``'hard'`` is classification EM, every
        row wholly on its most probable component, and the objective the complete-data
        log-likelihood at those assignments; ``'variational'`` is mean-field variational
        EM (variational Bayes) for families with a conjugate prior (Poisson, Exponential,
        Bernoulli, Categorical, Multinomial and Products of them): a posterior over every
        component's parameters and the weights, the objective the ELBO
        (:mod:`emkit.families.variational`);
        ``'monte-carlo'`` is Monte-Carlo EM: the statistics average over labels drawn
        from the posterior, a number of draws a row that grows as the run converges,
        and a stopping rule that several small changes in a row must meet (pass
        :class:`emkit.inference.MonteCarlo` options instead to set them);
        ``'stochastic'`` is stochastic EM (one label drawn a row). Both report the exact
        log-likelihood, which they need not raise at every iteration: they take
        ``accelerate=None`` and the monotonicity check is off for them.
    semi_supervised : bool, default=False
        Read ``y`` in ``fit(X, y)`` as known components: ``y[i]`` in 0..n_components-1
        for a labelled row, -1 for an unlabelled one. Off by default so that
        scikit-learn's tools, which pass class labels to every ``fit``, leave the
        unsupervised fit unchanged.
    fixed : dict or None, default=None
        Known parameters, held fixed while the others are fitted. Keys: ``'weights'`` and
        the family's parameters as its fitted attributes name them (``'means'`` and
        ``'covariances'`` for a Gaussian, ``'rates'``, ``'probabilities'``, ``'shapes'``,
        ``'a'``/``'b'``, ``'log_means'``/``'log_covariances'``; derived ones such as
        precisions are not fixable); for a :class:`~emkit.families.Product`, the family
        keys go under the block's name: ``{'weights': w, 'size': {'means': {0: [5.0]}}}``.
        A value is the whole group (an array of the attribute's shape, in the user's
        coordinates) or a dict ``{component: value}`` for some components (a tied
        covariance is shared: only the whole of it). Known weights are >= 0 and sum to 1
        when all are given, less otherwise. The M-step maximizes over the free parameters
        given the known ones, and :meth:`bic`/:meth:`aic` count only the free ones; the
        objective still includes the whole prior.
    integers : {'poisson', 'categorical'}, default='poisson'
        How ``family=None`` models non-negative integer columns.
    random_state : int, Generator, RandomState or None, default=None
    warm_start : bool, default=False
        Continue from the fitted parameters (with ``e_step='variational'``, the fitted
        posteriors) and the fitted trace's last objective, so that repeated
        ``max_iter=1`` fits converge as one fit does.
    verbose : int, default=0
    verbose_interval : int, default=10
    learning_offset : float, default=10.0
        ``partial_fit``'s step-size schedule: the t-th mini-batch is blended into the
        running statistics with step ``(learning_offset + t) ** -learning_decay`` (the
        names of scikit-learn's online LDA).
    learning_decay : float, default=0.7
        In (0.5, 1] online EM converges; 0 makes every ``partial_fit`` a whole EM step on
        its batch.
    dtype : {'float64', 'float32'}, default='float64'
    monotonicity : {'warn', 'raise', 'off'}, default='warn'
    accelerate : {None, 'squarem'}, default=None
        ``'squarem'`` extrapolates the EM map on the statistics (SQUAREM, Varadhan &
        Roland 2008): several times fewer iterations on overlapping components, the same
        optimum, and the objective still never decreases (a rejected jump falls back to
        plain EM).
    chunk_size : int or None, default=None
    n_threads : int or None, default=None
    engine : None, 'memory', 'streaming' or an engine, default=None
        Where the rows live and how their statistics are summed: ``None`` or
        ``'memory'`` is the in-memory engine (``chunk_size`` rows a chunk on
        ``n_threads`` threads); ``'streaming'`` reads a table opened with
        :func:`emkit.io.open_table` a block at a time; an object with ``map_reduce`` and
        ``map_rows`` (:class:`emkit.engines.Engine`) is used as it is.

    Attributes
    ----------
    family_ : the bound family (a Product for mixed tables): what was fitted to what
    weights_ : ndarray of shape (n_components,)
    component_params_ : dict
        The family's parameters by name (for a Product: one dict per block).
    <name>_ : ndarray
        For a single family, each of its parameters as an attribute (``rates_``,
        ``probabilities_``, ``means_``...).
    categories_ : dict
        For DataFrame ``category`` columns: the categories behind the integer codes.
    weight_concentration_ : ndarray of shape (n_components,)
        With ``e_step='variational'``: the posterior Dirichlet's alpha over the weights
        (``weights_`` is its mean, and the family's attributes the posterior means).
    weight_concentration_prior_ : float
        With ``e_step='variational'``: the prior alpha_0 used.
    posteriors_ : prior object or dict
        With ``e_step='variational'``: q(theta), one distribution per component
        (``GammaPrior``, ``BetaPrior``, ``DirichletPrior`` with ``(K, ...)`` arrays; a dict
        by block name for a Product).
    converged_, n_iter_, lower_bound_, lower_bounds_, trace_, n_features_in_,
    feature_names_in_ : as in :class:`emkit.GaussianMixture`

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import MixtureModel
    >>> from emkit.families import Gaussian, Poisson, Product
    >>> rng = np.random.default_rng(0)
    >>> z = rng.integers(0, 2, 400)
    >>> X = np.column_stack([rng.normal(4 * z, 1.0), rng.poisson(1 + 6 * z)])
    >>> family = Product({"size": ([0], Gaussian()), "visits": ([1], Poisson())})
    >>> model = MixtureModel(family, n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(model.component_params_["visits"]["rates"].ravel()))
    array([1., 7.])

    Known weights and variances (the components are then no longer interchangeable, so
    restarts help), only the means fitted:

    >>> X = np.concatenate([rng.normal(5.0, 1.0, 600), rng.normal(10.0, 2.0, 400)])[:, None]
    >>> fixed = {"weights": [0.6, 0.4], "covariances": [[1.0], [4.0]]}
    >>> model = MixtureModel(Gaussian("diag"), 2, fixed=fixed, n_init=3, random_state=0)
    >>> np.round(model.fit(X).means_.ravel(), 1), model.weights_
    (array([ 5., 10.]), array([0.6, 0.4]))
    """

    def __init__(
        self,
        family: Any = None,
        n_components: int = 1,
        *,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "auto",
        weight_concentration: float = 1.0,
        weight_concentration_prior: float | None = None,
        e_step: str = "exact",
        semi_supervised: bool = False,
        fixed: Any = None,
        integers: str = "poisson",
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        learning_offset: float = 10.0,
        learning_decay: float = 0.7,
        dtype: str = "float64",
        monotonicity: str = "warn",
        accelerate: str | None = None,
        chunk_size: int | None = None,
        n_threads: int | None = None,
        engine: Any = None,
    ) -> None:
        self.family = family
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration = weight_concentration
        self.weight_concentration_prior = weight_concentration_prior
        self.e_step = e_step
        self.semi_supervised = semi_supervised
        self.fixed = fixed
        self.integers = integers
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.dtype = dtype
        self.monotonicity = monotonicity
        self.accelerate = accelerate
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.engine = engine

    # -- hooks for the convenience estimators ------------------------------------------

    def _family_spec(self, X: Any) -> Any:
        """The unbound family to fit (the convenience estimators fix it)."""
        return infer_family(X, self.integers) if self.family is None else self.family

    def _transform_input(self, X: Array) -> Array:
        """A last change to the rows before the family sees them (binarizing)."""
        return X

    def _transform_streamed(self, table: Any) -> Any:
        """:meth:`_transform_input` on every block of a table streamed from a file."""
        return table

    # -- validation ------------------------------------------------------------------

    _e_steps = ("exact", "hard", "variational", "monte-carlo", "stochastic")
    _init_methods = MIXTURE_INIT_METHODS

    def _check_parameters(self) -> None:
        check_em_parameters(self)
        check_number("weight_concentration", self.weight_concentration, minimum=1.0)
        self._check_variational()
        if self.fixed is not None and not isinstance(self.fixed, Mapping):
            raise InputError(
                "fixed must be None or a dict of known parameters, e.g. {'weights': [0.6, 0.4], "
                f"'means': {{0: [5.0]}}}}, got {type(self.fixed).__name__}."
            )

    def _check_variational(self) -> None:
        """The options that variational EM takes, and those it does not."""
        prior = self.weight_concentration_prior
        if self.e_step != "variational":
            if prior is not None:
                raise InputError(
                    f"weight_concentration_prior={prior!r} is the Dirichlet prior of "
                    f"e_step='variational', but e_step={self.e_step!r}. Set "
                    "e_step='variational', or use weight_concentration for MAP-EM's prior."
                )
            return
        if prior is not None and not check_number("weight_concentration_prior", prior) > 0:
            raise InputError(
                f"weight_concentration_prior must be > 0 (a Dirichlet's alpha_0), got {prior!r}."
            )
        unsupported = [
            (
                "weight_concentration",
                self.weight_concentration != 1.0,
                "the weights' prior is weight_concentration_prior",
            ),
            (
                "accelerate",
                self.accelerate is not None,
                "SQUAREM extrapolates EM's statistics, not a posterior; leave accelerate=None",
            ),
            (
                "fixed",
                bool(self.fixed),
                "variational EM fits a posterior over every parameter; remove fixed",
            ),
        ]
        for name, given, why in unsupported:
            if given:
                raise InputError(
                    f"e_step='variational' does not take {name}={getattr(self, name)!r}: "
                    f"{why}, or use e_step='exact'."
                )

    def _validate_X(self, X: Any, *, reset: bool) -> tuple[Any, list[str]]:
        """The rows as one float matrix (category columns as their codes) and the column
        labels for messages; a table streamed from a file (:func:`emkit.io.open_table`)
        as it is, its columns checked."""
        if is_streamed(X):
            rows = check_streamed(self, X, reset=reset)
            self._check_coded(rows, reset=reset)
            names = rows.names or [f"x{j}" for j in range(rows.shape[1])]  # a Dask array's
            return self._transform_streamed(rows), [repr(name) for name in names]
        if hasattr(X, "dtypes") and hasattr(X, "columns"):
            Xa = self._frame_to_matrix(X, reset=reset)
        else:
            Xa = as_float_matrix(X, dtype=None, allow_nan=True)
        validate_data(self, X, reset=reset, skip_check_array=True)
        names = getattr(self, "feature_names_in_", None)
        labels = (
            [repr(str(c)) for c in names]
            if names is not None
            else [f"column {j}" for j in range(Xa.shape[1])]
        )
        return self._transform_input(Xa), labels

    # a table streamed from a file may read text columns as category codes
    _fits_categories = True

    def _check_coded(self, table: Any, *, reset: bool) -> None:
        """The text columns of a table streamed from a file read as codes of their
        categories (``table.categories``): a fit keeps them in ``categories_``; a fitted
        model takes a table coded by its own categories only."""
        coded = getattr(table, "categories", None) or {}
        if reset:
            if coded:
                self.categories_ = {name: list(values) for name, values in coded.items()}
            return
        known = getattr(self, "categories_", None) or {}
        names = (table.names or []) if hasattr(table, "iter_chunks") else []  # not Dask rows
        for name in names:
            ours = list(known[name]) if name in known else None
            theirs = coded.get(name)
            text = ours is not None and all(isinstance(v, str) for v in ours)
            if (theirs is not None or text) and theirs != ours:

                def shown(values: Any) -> str:
                    return repr(values if len(values) <= 10 else [*values[:10], "..."])

                raise InputError(
                    f"{table!r} reads column {name!r} as "
                    + ("numbers" if theirs is None else f"the codes of {shown(theirs)}")
                    + ", and the model was fitted on "
                    + ("numbers in it" if ours is None else f"the codes of {shown(ours)}")
                    + ". Open the file with open_table(..., categories=model.categories_) so "
                    "that its codes are the model's."
                )

    def _frame_to_matrix(self, frame: Any, *, reset: bool) -> Array:
        if reset:
            self.categories_ = {
                str(c): list(frame[c].cat.categories)
                for c in frame.columns
                if str(frame[c].dtype) == "category"
            }
        columns = []
        for c in frame.columns:
            col = frame[c]
            known = getattr(self, "categories_", {}).get(str(c))
            if known is not None:
                import pandas as pd

                codes = pd.Index(known).get_indexer(col.astype(object)).astype(np.float64)
                unseen = (codes < 0) & col.notna().to_numpy()
                if unseen.any():
                    row = int(np.argmax(unseen))
                    raise InputError(
                        f"Column {str(c)!r} has category {col.iloc[row]!r} (row {row}) that "
                        f"was not seen in fit (categories: {known}). Refit with it, or map it "
                        "to a known category."
                    )
                codes[codes < 0] = np.nan
                columns.append(codes)
            elif (values := column_as_float(col, f"Column {str(c)!r}")) is not None:
                columns.append(values)
            else:
                raise InputTypeError(
                    f"Column {str(c)!r} has dtype {col.dtype}; emkit needs numbers, bools or "
                    "pandas 'category' columns. Convert text columns with "
                    "df[col].astype('category')."
                )
        return as_float_matrix(
            np.column_stack(columns) if columns else np.empty((len(frame), 0)), allow_nan=True
        )

    # -- fitting ---------------------------------------------------------------------

    @warnings_once
    def fit(
        self,
        X: Any,
        y: Any = None,
        sample_weight: ArrayLike | None = None,
        checkpoint: Any = None,
    ) -> Any:
        """Estimate the parameters with EM (MAP-EM when the family has priors).

        Parameters
        ----------
        X : array-like or DataFrame of shape (n_samples, n_features)
            NaN marks a missing value: the E-step uses the density of the observed
            values alone, the M-step the expected statistics of the missing ones.
        y : array-like of shape (n_samples,), default=None
            With ``semi_supervised=True``, the known components: ``y[i]`` in
            0..n_components-1 fixes row i's responsibilities to its component, ``-1``
            leaves it unknown. Ignored otherwise (as scikit-learn's mixtures do).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; an integer weight is the same as repeating the row.
        checkpoint : str or os.PathLike, default=None
            A directory to save the fit's state in and resume it from, as in
            :meth:`GaussianMixture.fit` (one start: ``n_init=1``).

        Returns
        -------
        self
        """
        self._check_parameters()
        warm = self.warm_start and hasattr(self, "params_")
        # (a loaded model was fitted with its own e_step)
        same_objective = getattr(self, "_fitted_e_step", self.e_step) == self.e_step
        # a warm start continues the previous trace (convergence across calls), when it
        # measured the same objective (the same E-step)
        plan, result = self._run_plan(
            X,
            y,
            sample_weight,
            warm=warm,
            start_objective=self.lower_bound_ if warm and same_objective else -np.inf,
            checkpoint=checkpoint,
        )
        model = plan.model
        self._set_model(model)
        family = plan.family
        params = result.params
        for name in ("weight_concentration_", "weight_concentration_prior_", "posteriors_"):
            self.__dict__.pop(name, None)
        if self.e_step == "variational":
            self.weight_concentration_prior_ = model.weights.concentration
            self.weight_concentration_ = params.weights
            self.posteriors_ = (
                dict(zip(family.blocks, params.components, strict=True))
                if isinstance(family, Product)
                else params.components
            )
            # the point estimates predict/score/sample use: the posterior means
            params = MixtureParams(
                model.weights.point(params.weights), point_params(model.family, params.components)
            )
        self._set_fitted(family, params, result.trace, result.converged)
        return self

    def _plan(self, X: Any, y: Any, sample_weight: Any, engine: Any, *, warm: bool) -> FitPlan:
        """The checked data, the bound model and the initialization (or, warm, the fitted
        parameters) that ``fit`` runs EM from, and ``partial_fit`` online EM."""
        Xa, labels = self._validate_X(X, reset=not warm)
        if warm:
            check_warm_start("n_components", len(self.weights_), self.n_components)
            # the family argument the fitted one came from (a loaded model has none)
            # (the specialized mixtures have no family argument: None)
            family_argument = getattr(self, "family", None)
            fitted_from = getattr(self, "_family_argument", family_argument)
            if family_argument is not fitted_from:
                raise InputError(
                    f"warm_start=True continues the previous fit, whose family came from "
                    f"family={fitted_from!r}, but family is now {family_argument!r}. Set "
                    "warm_start=False to fit the new family from scratch, or set family back."
                )
        n, d = Xa.shape
        K = self.n_components
        if n < 2 or n < K:
            raise InputError(
                f"X has {n} samples but n_components={K}: a mixture needs at least 2 samples "
                "and as many samples as components. Decrease n_components or pass more data."
            )
        dtype = resolve_dtype(self.dtype)
        w = check_sample_weight(sample_weight, n, dtype)
        known = check_labels(y, n, K) if self.semi_supervised else None
        streamed = is_streamed(Xa)
        # (a streamed table holds float64 values: its kinds are those of a float array)
        spec_of = np.empty((0, d)) if streamed else X
        family: Any = getattr(self, "family_", None) if warm else self._family_spec(spec_of)
        check_family(family)
        if not warm and isinstance(family, Product):
            names = Xa.names if streamed else getattr(self, "feature_names_in_", None)
            family = family.resolve(names, d)
        # values checked first, in the caller's row order (a block at a time when streamed)
        if streamed:
            check_blocks(family, Xa, labels)
        else:
            family.check(Xa, labels)
            has_missing_values(Xa)  # infinities and rows with nothing observed: refused
        # the binding from one statistics pass wherever the rows live; the rows stay in
        # their order (each chunk groups its own missing-value patterns)
        if warm:
            summary = column_summary(engine, RowSource(Xa, w))
            missing = summary.missing
            fill = filler(summary.fill_means) if missing else None
        else:
            family, missing, fill = bind_pass(family, engine, Xa, w)
        filled = Xa
        fixed_params = dict(self.fixed or {})  # known parameters: the weights', the family's
        alpha = float(self.weight_concentration)
        known_weights = fixed_weights(fixed_params.pop("weights", None), K, alpha)
        family = family.fix(fixed_params, K)
        fit_family: Any = family
        mixing: MixingWeights | VariationalWeights = MixingWeights(alpha, known_weights)
        if self.e_step == "variational":
            fit_family = variational(family)
            prior = self.weight_concentration_prior
            mixing = VariationalWeights(1.0 / K if prior is None else float(prior))
        model = Mixture(
            fit_family,
            dtype,
            mixing,
            assignment(self.e_step, self._e_steps),
            missing=missing,
        )
        row_bytes = model.row_bytes(d, fit_family.n_stats, K) + d * Xa.itemsize
        rng = check_random_state(self.random_state)
        if self.verbose:
            logger.info("Family: %r", family)
        # log h(x) depends on no parameter: once per fit, then a column of data
        first_row = next(Xa.iter_chunks())[1][:1] if streamed else Xa[:1]
        # EM's chunks: with missing values in memory, few patterns each
        rows, row_w, row_known = (
            ordered_for_chunks(engine, Xa, w, known) if missing else (Xa, w, known)
        )
        log_h = (
            # in chunks sized as the E-step's (a bare array would be mapped as one chunk)
            engine.map_rows(model.base_measure, RowSource(rows, work_bytes=row_bytes))
            if model.base_measure(first_row) is not None
            else None
        )
        data = RowSource(rows, row_w, row_known, (log_h,), row_bytes)
        if warm:
            previous: MixtureParams = self._warm_params(family)

            def initialize(rng: np.random.Generator) -> MixtureParams:
                if not fixed_params and known_weights is None:
                    return previous
                # one EM step, so that the start holds the known values
                stats = engine.map_reduce(model.expectation(previous), data)
                return model.m_step(previous, stats)

        else:
            method = _init_method(self.init_params, family)
            # emEM's short runs are plain EM (a Monte-Carlo E-step draws by row position,
            # which the fit adds later)
            short_model = (
                model
                if isinstance(model.assign, Exact | Variational)
                else (replace(model, assign=EXACT))
            )

            def start_from(how: str, rng: np.random.Generator) -> MixtureParams:
                # k-means on standardized columns (of a bounded sample beyond INIT_ROWS)
                stats = initial_statistics_bounded(
                    how,
                    model,
                    engine,
                    filled,
                    w,
                    K,
                    rng,
                    fill,
                    work_bytes=row_bytes,
                    view=standardizer,
                    known=known,
                )
                start = MixtureParams(np.full(K, 1.0 / K), fit_family.default_params(K))
                return model.m_step(start, stats)

            def initialize(rng: np.random.Generator) -> MixtureParams:
                if method != "emEM":
                    return start_from(method, rng)
                # emEM (Biernacki, Celeux & Govaert 2003): short runs from random rows,
                # the best one continued by the main run; a run that emptied or
                # collapsed a component is kept only if every run did (its warnings
                # are the main run's to give, if it keeps the collapse)
                best, best_key = None, (False, -np.inf)
                for _ in range(_EMEM_STARTS):
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", DegenerateComponentWarning)
                        short = fit_em(
                            short_model,
                            engine,
                            data,
                            start_from("random_from_data", rng),
                            tol=0.0,
                            max_iter=_EMEM_ITERATIONS,
                            monotonicity=self.monotonicity,
                            dtype=dtype,
                        )
                    key = (not short.trace.degenerate.any(), short.objective)
                    if best is None or key > best_key:
                        best, best_key = short.params, key
                assert best is not None
                return best

        return FitPlan(model, data, initialize, rng, dtype, row_bytes, family)

    def _warm_params(self, family: Any) -> MixtureParams:
        """The parameters a warm start continues from: the fitted ones, or with
        ``e_step='variational'`` the fitted posteriors q(pi) and q(theta)."""
        if self.e_step != "variational":
            return MixtureParams(self.params_.weights, self.params_.components)
        posteriors = getattr(self, "posteriors_", None)
        if posteriors is None:
            raise InputError(
                "warm_start=True with e_step='variational' continues the fitted posteriors, "
                "but the previous fit was not variational (it has no posteriors_). Set "
                "warm_start=False to start a variational fit afresh."
            )
        components = (
            tuple(posteriors[name] for name in family.blocks)
            if isinstance(family, Product)
            else posteriors
        )
        return MixtureParams(np.asarray(self.weight_concentration_), components)

    def _set_model(self, model: Mixture) -> None:
        """What the fitted model keeps of its fit's settings besides its parameters."""
        self._fixed_weights = model.weights.fixed
        self._family_argument = getattr(self, "family", None)
        self._fitted_e_step = self.e_step

    def partial_fit(self, X: Any, y: Any = None, sample_weight: ArrayLike | None = None) -> Any:
        """One step of online EM on a mini-batch (see the base class); not with
        ``e_step='variational'``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None

        Returns
        -------
        self
        """
        if self.e_step == "variational":
            raise InputError(
                "partial_fit runs online EM on point estimates; it does not take "
                "e_step='variational'. Use fit, or e_step='exact'."
            )
        return super().partial_fit(X, y, sample_weight=sample_weight)

    def _set_fitted(
        self, family: Any, params: MixtureParams, trace: EMTrace, converged: bool
    ) -> None:
        self.family_ = family
        self.params_ = params
        self.weights_ = params.weights
        self.component_params_ = family.fitted_attributes(params.components)
        if not isinstance(family, Product):
            for name, value in self.component_params_.items():
                setattr(self, f"{name}_", value)
        self._set_trace(trace, converged)

    # -- online EM (partial_fit) --------------------------------------------------------

    def _online_start(self) -> tuple[Mixture, MixtureParams]:
        weights = MixingWeights(float(self.weight_concentration), self._fixed_weights)
        model = Mixture(
            self.family_,
            resolve_dtype(self.dtype),
            weights,
            assignment(self.e_step, self._e_steps),
            True,
        )
        return model, self.params_

    def _online_rows(self, X: Any, sample_weight: Any, model: Any) -> tuple[Array, Array | None]:
        Xa, labels = self._validate_X(X, reset=False)
        model.family.check(Xa, labels)
        return Xa, check_sample_weight(sample_weight, Xa.shape[0], resolve_dtype(self.dtype))

    def _set_online(self, model: Any, params: Any, trace: EMTrace, dtype: Any) -> None:
        self._set_model(model)
        self._set_fitted(model.family, params, trace, False)

    # -- the fitted model -------------------------------------------------------------

    def _map_model(self, X: Any, make: Callable[[Any, Any], Callable[[Array], Any]]) -> Any:
        check_is_fitted(self)
        Xa, labels = self._validate_X(X, reset=False)
        if is_streamed(Xa):
            check_blocks(self.family_, Xa, labels)
            with fit_engine(self, Xa) as engine:
                missing = column_summary(engine, RowSource(Xa)).missing
        else:
            missing = has_missing_values(Xa)
            self.family_.check(Xa, labels)
        model = Mixture(self.family_, resolve_dtype(self.dtype), missing=missing)
        fn = make(model, self.params_)
        row_bytes = model.row_bytes(Xa.shape[1], self.family_.n_stats, 2 * self.n_components)
        with fit_engine(self, Xa) as engine:
            return engine.map_rows(fn, RowSource(Xa, work_bytes=row_bytes))

    def _sampling_family(self) -> tuple[Any, Any]:
        return self.family_, self.params_.components

    def _n_parameters(self) -> int:
        mixture = Mixture(
            self.family_, weights=MixingWeights(fixed=getattr(self, "_fixed_weights", None))
        )
        return int(mixture.n_parameters(self.n_components))


# -- convenience estimators: MixtureModel with the family fixed ----------------------
# Each repeats the constructor: scikit-learn reads an estimator's parameters from its
# own __init__ signature.


class PoissonMixture(MixtureModel):
    """Mixture of independent Poisson counts (one rate per component and column).

    Parameters
    ----------
    prior : GammaPrior, 'auto' or None, default=None
        Gamma prior on the rates (MAP-EM).
    n_components, tol, max_iter, n_init, init_params, weight_concentration,
    weight_concentration_prior, e_step,
    semi_supervised, fixed,
    random_state, warm_start, verbose, verbose_interval, learning_offset, learning_decay,
    dtype, monotonicity, accelerate,
    chunk_size, n_threads :
        As in :class:`MixtureModel`.

    Attributes
    ----------
    rates_ : ndarray of shape (n_components, n_features)
    weights_, converged_, n_iter_, lower_bound_, ... : as in :class:`MixtureModel`

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import PoissonMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.poisson([1, 8], (300, 2)), rng.poisson([9, 2], (300, 2))])
    >>> model = PoissonMixture(2, random_state=0).fit(X)
    >>> np.round(np.sort(model.rates_[:, 0]))
    array([1., 9.])
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        prior: Any = None,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "auto",
        weight_concentration: float = 1.0,
        weight_concentration_prior: float | None = None,
        e_step: str = "exact",
        semi_supervised: bool = False,
        fixed: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        learning_offset: float = 10.0,
        learning_decay: float = 0.7,
        dtype: str = "float64",
        monotonicity: str = "warn",
        accelerate: str | None = None,
        chunk_size: int | None = None,
        n_threads: int | None = None,
        engine: Any = None,
    ) -> None:
        self.prior = prior
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration = weight_concentration
        self.weight_concentration_prior = weight_concentration_prior
        self.e_step = e_step
        self.semi_supervised = semi_supervised
        self.fixed = fixed
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.dtype = dtype
        self.monotonicity = monotonicity
        self.accelerate = accelerate
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.engine = engine

    def _family_spec(self, X: Any) -> Any:
        return Poisson(prior=self.prior)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True  # scikit-learn's checks then pass counts
        tags.input_tags.positive_only = True
        return tags


class BernoulliMixture(MixtureModel):
    """Mixture of independent binary columns (latent class analysis for binary items).

    Parameters
    ----------
    prior : BetaPrior, 'auto' or None, default=None
        Beta prior on the probabilities (MAP-EM); keeps all-0/all-1 columns off the
        boundary.
    binarize : float or None, default=None
        If a number, values above it count as 1 and the others as 0 (as scikit-learn's
        BernoulliNB), and missing values (NaN) stay missing; if None, the data must
        already be 0/1.
    n_components, tol, max_iter, n_init, init_params, weight_concentration,
    weight_concentration_prior, e_step,
    semi_supervised, fixed,
    random_state, warm_start, verbose, verbose_interval, learning_offset, learning_decay,
    dtype, monotonicity, accelerate,
    chunk_size, n_threads :
        As in :class:`MixtureModel`.

    Attributes
    ----------
    probabilities_ : ndarray of shape (n_components, n_features)
        P(x_j = 1 | component).

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import BernoulliMixture
    >>> rng = np.random.default_rng(0)
    >>> a = rng.random((300, 3)) < [0.9, 0.1, 0.8]
    >>> b = rng.random((300, 3)) < [0.1, 0.9, 0.2]
    >>> X = np.vstack([a, b])
    >>> model = BernoulliMixture(2, random_state=0).fit(X.astype(float))
    >>> np.round(np.sort(model.probabilities_[:, 0]), 1)
    array([0.1, 0.9])
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        prior: Any = None,
        binarize: float | None = None,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "auto",
        weight_concentration: float = 1.0,
        weight_concentration_prior: float | None = None,
        e_step: str = "exact",
        semi_supervised: bool = False,
        fixed: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        learning_offset: float = 10.0,
        learning_decay: float = 0.7,
        dtype: str = "float64",
        monotonicity: str = "warn",
        accelerate: str | None = None,
        chunk_size: int | None = None,
        n_threads: int | None = None,
        engine: Any = None,
    ) -> None:
        self.prior = prior
        self.binarize = binarize
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration = weight_concentration
        self.weight_concentration_prior = weight_concentration_prior
        self.e_step = e_step
        self.semi_supervised = semi_supervised
        self.fixed = fixed
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.dtype = dtype
        self.monotonicity = monotonicity
        self.accelerate = accelerate
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.engine = engine

    def _family_spec(self, X: Any) -> Any:
        return Bernoulli(prior=self.prior)

    def _transform_input(self, X: Array) -> Array:
        if self.binarize is None:
            return X
        threshold = check_number("binarize", self.binarize, minimum=-np.inf)
        # A missing value stays missing: ``NaN > t`` is False, which would count it as 0.
        return np.where(np.isnan(X), X, X > threshold).astype(X.dtype, copy=False)

    def _transform_streamed(self, table: Any) -> Any:
        return table if self.binarize is None else mapped_blocks(table, self._transform_input)


class CategoricalMixture(MixtureModel):
    """Mixture of independent categorical columns (latent class analysis).

    Each column holds integer codes 0..C_j-1 (or is a pandas ``category`` column).

    Parameters
    ----------
    prior : DirichletPrior, 'auto' or None, default=None
        Dirichlet prior on every column's category probabilities (MAP-EM).
    n_categories : int, sequence of int or None, default=None
        Categories per column; None takes max code + 1 from the training data.
    n_components, tol, max_iter, n_init, init_params, weight_concentration,
    weight_concentration_prior, e_step,
    semi_supervised, fixed,
    random_state, warm_start, verbose, verbose_interval, learning_offset, learning_decay,
    dtype, monotonicity, accelerate,
    chunk_size, n_threads :
        As in :class:`MixtureModel`.

    Attributes
    ----------
    probabilities_ : list of ndarray of shape (n_components, n_categories_j)
        P(x_j = c | component), one array per column.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import CategoricalMixture
    >>> rng = np.random.default_rng(0)
    >>> a = rng.choice(3, (300, 2), p=[0.8, 0.1, 0.1])
    >>> b = rng.choice(3, (300, 2), p=[0.1, 0.1, 0.8])
    >>> model = CategoricalMixture(2, random_state=0).fit(np.vstack([a, b]))
    >>> [p.shape for p in model.probabilities_]
    [(2, 3), (2, 3)]
    """

    def __init__(
        self,
        n_components: int = 1,
        *,
        prior: Any = None,
        n_categories: Any = None,
        tol: float = 1e-3,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "auto",
        weight_concentration: float = 1.0,
        weight_concentration_prior: float | None = None,
        e_step: str = "exact",
        semi_supervised: bool = False,
        fixed: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        learning_offset: float = 10.0,
        learning_decay: float = 0.7,
        dtype: str = "float64",
        monotonicity: str = "warn",
        accelerate: str | None = None,
        chunk_size: int | None = None,
        n_threads: int | None = None,
        engine: Any = None,
    ) -> None:
        self.prior = prior
        self.n_categories = n_categories
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration = weight_concentration
        self.weight_concentration_prior = weight_concentration_prior
        self.e_step = e_step
        self.semi_supervised = semi_supervised
        self.fixed = fixed
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.dtype = dtype
        self.monotonicity = monotonicity
        self.accelerate = accelerate
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.engine = engine

    def _family_spec(self, X: Any) -> Any:
        return Categorical(n_categories=self.n_categories, prior=self.prior)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.categorical = True  # scikit-learn's checks then pass codes
        tags.input_tags.positive_only = True
        return tags


def _init_method(init_params: str, family: Any) -> str:
    """The start ``init_params`` names for ``family``: ``"auto"`` is emEM for a family of
    discrete blocks only (Bernoulli, categorical, multinomial, Poisson), where k-means
    finds clusters pure in some column, probabilities 0 or 1 that EM cannot leave, and
    k-means otherwise."""
    if init_params != "auto":
        return init_params
    blocks = getattr(family, "blocks", None)
    members = [fam for _, fam in blocks.values()] if blocks is not None else [family]
    discrete = (Bernoulli, Categorical, Multinomial, Poisson)
    return "emEM" if all(isinstance(fam, discrete) for fam in members) else "kmeans"

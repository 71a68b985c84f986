"""``emkit.GaussianMixture``: a drop-in for ``sklearn.mixture.GaussianMixture``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from emkit._compiled_modules import compiled_module, numba_loaded
from emkit._validation import (
    as_float_matrix,
    check_choice,
    check_number,
    check_sample_weight,
    check_warm_start,
    has_missing_values,
    resolve_dtype,
)
from emkit._warnings import warnings_once
from emkit.engines._base import Engine
from emkit.engines._source import RowSource
from emkit.engines.memory import _MIN_ROWS
from emkit.estimators._mixture_base import (
    FamilyMixture,
    FitPlan,
    check_em_parameters,
    check_labels,
    fit_engine,
    initial_statistics,
)
from emkit.estimators._rows import (
    INIT_ROWS,
    bind_pass,
    check_streamed,
    column_summary,
    initial_statistics_bounded,
    is_streamed,
    ordered_for_chunks,
)
from emkit.exceptions import InputError
from emkit.families.covariance import covariance_types
from emkit.families.gaussian import (
    COVARIANCE_TYPES,
    FULL_LAYOUT,
    TIED_LAYOUT,
    GaussianFamily,
    GaussianParams,
    centred_scale,
    check_gaussian_prior,
    covariance_structure,
)
from emkit.inference.em import EMTrace
from emkit.inference.init import (
    INIT_METHODS,
    RandomSource,
    init_random_source,
    initial_responsibilities,
)
from emkit.models._small_block import MAX_FEATURES, compiled_start
from emkit.models.mixing import assignment
from emkit.models.mixture import Mixture, MixtureParams

__all__ = ["GaussianMixture"]

Array = NDArray[np.floating[Any]]

# held while a fit finds or makes ModelBasedClustering's shared binding of a structure
# (its cells may run on threads)
_BINDING = threading.Lock()


class GaussianMixture(FamilyMixture, DensityMixin, BaseEstimator):
    """Gaussian mixture fitted by EM over sufficient statistics.

    Same constructor, attributes and methods as :class:`sklearn.mixture.GaussianMixture`;
    beyond it: missing values (NaN) handled exactly in fit and in every prediction, with
    :meth:`impute`; known labels (``semi_supervised=True``); hard (classification) EM;
    ``fit(X, sample_weight=...)``, a ``dtype`` option, the whole objective trace
    (``trace_``), a monotonicity check of every iteration, and chunked, multi-threaded
    E- and M-steps.

    Parameters
    ----------
    n_components : int, default=1
        Number of mixture components.
    covariance_type : str, default='full'
        Structure of the covariance matrices: scikit-learn's 'full', 'tied', 'diag',
        'spherical', or one of mclust's fourteen models (Celeux & Govaert 1995) 'EII',
        'VII', 'EEI', 'VEI', 'EVI', 'VVI', 'EEE', 'VEE', 'EVE', 'VVE', 'EEV', 'VEV',
        'EVV', 'VVV' (volume, shape, orientation: Equal, Variable or Identity; 'VII' is
        'spherical', 'VVI' 'diag', 'EEE' 'tied', 'VVV' 'full'), or for one column
        mclust's 'E' and 'V'. The mclust models store their covariances as 'spherical'
        (EII), 'diag' (EEI, VEI, EVI) or 'full' (the others) do.
    tol : float, default=1e-3
        Convergence threshold: EM stops when the per-sample log-likelihood gains less
        than ``tol`` (``0 <= change < tol``; a decrease is never convergence).
    reg_covar : float, default=1e-6
        Non-negative regularization added to the diagonal of covariances.
    prior : None, 'mclust', 'auto' or GaussianPrior, default=None
        A conjugate prior on the means and covariances, for MAP-EM (the objective is
        log-likelihood + log prior; ``bic``, ``score`` and ``lower_bound_``'s
        log-likelihood stay the data's, as in mclust). ``'mclust'``: R mclust's default
        ``priorControl()`` (shrinkage 0.01 to the data mean, ``n_features + 2`` degrees
        of freedom, scale ``var(X) / n_components^(2 / n_features)``, each of the 14
        models' M-step as mclust 6 computes it;
        :func:`~emkit.families.covariance.mclust_prior_shares`). ``'auto'``: the same
        defaults as each component's own conjugate prior
        (``GaussianPrior()``). A :class:`~emkit.families.GaussianPrior` sets them.
        The defaults that read the data (its mean and covariance) come from one
        statistics pass over the rows, in memory or streamed from a file
        (:func:`emkit.io.open_table`). ``partial_fit`` is then MAP online EM (the prior
        enters every M-step): an unfitted estimator's first ``partial_fit`` takes the
        defaults from its first batch (a table's first block), a fitted one keeps those
        of the fit it continues; a :class:`~emkit.families.GaussianPrior` with ``mean``
        and ``scale`` sets them for every batch.
    max_iter : int, default=100
        Number of EM iterations to perform.
    n_init : int, default=1
        Number of initializations; the best run is kept.
    init_params : {'auto', 'kmeans', 'k-means++', 'random', 'random_from_data', 'hc'}, \
default='auto'
        How the initial responsibilities are drawn. ``'auto'``: k-means from 10 k-means++
        seedings, the one of least inertia kept, on a uniform sample of max(8192,
        256 * n_components) rows (every row when there are fewer), and every row labelled
        by its nearest centre; where one k-means lands in a worse optimum, it reaches the
        likelihood of mclust's hierarchical start on bench/bench_default_fit.py's
        workloads, for about the cost of a few EM iterations. ``'kmeans'`` is
        scikit-learn's default: one k-means on every row (up to 131,072 rows; the same
        ``random_state``, the same start as scikit-learn's ``GaussianMixture``; beyond,
        on a sample of that many rows). ``'hc'`` is mclust's start:
        model-based agglomerative hierarchical clustering (the VVV criterion of Fraley
        1998 on the SVD-transformed data, :mod:`emkit.inference.hierarchical`),
        deterministic up to 2000 rows and built on 2000 rows drawn with ``random_state``
        beyond that; missing values are filled with their column's mean for it, and with
        ``n_init > 1`` each start draws its own subset (below 2000 rows the starts are equal).
    weights_init : array-like of shape (n_components,), default=None
        Initial weights.
    means_init : array-like of shape (n_components, n_features), default=None
        Initial means.
    precisions_init : array-like, default=None
        Initial precisions (inverse covariances), shaped by ``covariance_type`` as in
        scikit-learn: (n_components,), (n_features, n_features),
        (n_components, n_features) or (n_components, n_features, n_features).
    random_state : int, Generator, RandomState or None, default=None
        Seeds the initialization and :meth:`sample`. An int or a RandomState draws the
        initialization as scikit-learn's GaussianMixture does: the same seed, the same
        start.
    warm_start : bool, default=False
        Start from the previous fit's parameters and continue its objective trace, so that
        repeated calls with a small ``max_iter`` detect convergence (``n_init`` is then
        ignored, as in scikit-learn).
    verbose : int or bool, default=0
        Log progress (logger ``"emkit"``) every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
        Iterations between two progress messages.
    learning_offset : float, default=10.0
        ``partial_fit``'s step-size schedule: the t-th mini-batch is blended into the
        running statistics with step ``(learning_offset + t) ** -learning_decay`` (the
        names of scikit-learn's online LDA).
    learning_decay : float, default=0.7
        In (0.5, 1] online EM converges; 0 makes every ``partial_fit`` a whole EM step on
        its batch.
    e_step : {'exact', 'hard', 'monte-carlo', 'stochastic'} or MonteCarlo, default='exact'
        The E-step's posterior: ``'exact'`` is EM; ``'hard'`` is classification EM, every
        row wholly on its most probable component, and the objective (``lower_bound_``)
        the complete-data log-likelihood at those assignments,
        sum_n max_k log(pi_k p(x_n | k)) per sample, which never decreases;
        ``'monte-carlo'`` is Monte-Carlo EM: the statistics average over labels drawn
        from the posterior, a number of draws a row that grows as the run converges,
        and a stopping rule that several small changes in a row must meet (pass
        :class:`emkit.inference.MonteCarlo` options instead to set them);
        ``'stochastic'`` is stochastic EM (one label drawn a row). Both report the exact
        log-likelihood, which they need not raise at every iteration: they take
        ``accelerate=None`` and the monotonicity check is off for them.
    semi_supervised : bool, default=False
        Read ``y`` in ``fit(X, y)`` as known components (-1: unknown). Off by default so
        that scikit-learn's tools, which pass class labels to every ``fit``
        (``cross_val_score``, ``GridSearchCV``), leave the unsupervised fit unchanged.
    dtype : {'float64', 'float32'}, default='float64'
        Precision of the per-row work. ``float32`` is about twice as fast on large data;
        statistics are still summed and parameters kept in float64 during the fit. (The
        fitted attributes follow the data: float32 for float32 ``X``, as in scikit-learn.)
    monotonicity : {'warn', 'raise', 'off'}, default='warn'
        What to do if the objective decreases between iterations (a numerical failure).
    accelerate : {None, 'squarem'}, default=None
        ``'squarem'`` extrapolates the EM map on the statistics (SQUAREM, Varadhan &
        Roland 2008): several times fewer iterations on overlapping components, the same
        optimum, and the objective still never decreases (a rejected jump falls back to
        plain EM).
    chunk_size : int or None, default=None
        Rows per chunk of the E-step; ``None`` sizes chunks for the CPU cache.
    n_threads : int or None, default=None
        Threads for the chunks; ``None`` uses every available core.
    engine : None, 'memory', 'streaming', 'dask' or an engine, default=None
        Where the rows live and how their statistics are summed: ``None`` or
        ``'memory'`` is the in-memory engine (``chunk_size`` rows a chunk on
        ``n_threads`` threads); ``'streaming'`` reads a table opened with
        :func:`emkit.io.open_table` a block at a time; ``'dask'`` (and ``None`` for a
        ``dask.array`` or ``dask.dataframe`` ``X``) computes each block's statistics on
        the current ``distributed`` client's workers, or on Dask's local scheduler
        (:class:`emkit.engines.DaskEngine`; predictions of Dask rows are Dask arrays);
        an object with ``map_reduce`` and ``map_rows`` (:class:`emkit.engines.Engine`)
        is used as it is.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        This and the other arrays below are float32 when ``X`` was, float64 otherwise.
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Per-sample log-likelihood of the best run at its last iteration.
    lower_bounds_ : ndarray of shape (n_iter_,)
        Per-sample log-likelihood at every iteration of the best run.
    trace_ : EMTrace
        The best run's objective and seconds per iteration.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import GaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> gm = GaussianMixture(n_components=2, random_state=0).fit(X)
    >>> np.sort(gm.means_[:, 0])
    array([ 1., 10.])
    >>> left, right = gm.predict([[1, 2], [10, 2]])
    >>> gm.predict([[0, 0], [12, 3]]).tolist() == [left, right]
    True
    """

    # scikit-learn's starts, mclust's, and the default "auto"
    _init_methods = (*INIT_METHODS, "auto")

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        prior: Any = None,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "auto",
        weights_init: ArrayLike | None = None,
        means_init: ArrayLike | None = None,
        precisions_init: ArrayLike | None = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        learning_offset: float = 10.0,
        learning_decay: float = 0.7,
        e_step: str = "exact",
        semi_supervised: bool = False,
        dtype: str = "float64",
        monotonicity: str = "warn",
        accelerate: str | None = None,
        chunk_size: int | None = None,
        n_threads: int | None = None,
        engine: Any = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.prior = prior
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.e_step = e_step
        self.semi_supervised = semi_supervised
        self.dtype = dtype
        self.monotonicity = monotonicity
        self.accelerate = accelerate
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.engine = engine

    # -- validation ------------------------------------------------------------------

    def _check_parameters(self) -> None:
        """Declarative checks of the constructor arguments, run at fit time."""
        check_em_parameters(self)
        check_choice("covariance_type", self.covariance_type, covariance_types())
        check_number("reg_covar", self.reg_covar)
        check_gaussian_prior(self.prior)

    def _validate_X(self, X: Any, *, reset: bool) -> Any:
        if is_streamed(X):  # a table from a file, or Dask rows: read a block at a time
            return check_streamed(self, X, reset=reset)
        # float64 and float32 data are used in place; NaN marks a missing value
        arr = as_float_matrix(X, dtype=None, allow_nan=True)
        # feature names and n_features_in_ the scikit-learn way, after our own checks
        if isinstance(X, np.ndarray) and _no_feature_names(self, arr.shape[1], reset):
            # an array has no feature names: scikit-learn's checks would only set or
            # confirm n_features_in_ (after a tag lookup that costs a small fit ~20 us)
            if reset:
                self.n_features_in_ = int(arr.shape[1])
                if hasattr(self, "feature_names_in_"):  # fitted on a DataFrame before
                    del self.feature_names_in_
        else:
            validate_data(self, X, reset=reset, skip_check_array=True)
        return arr

    def _check_initial_parameters(self, n_features: int) -> NDArray[np.floating[Any]] | None:
        """Check the ``*_init`` arguments; the Cholesky factors of ``precisions_init``
        (scikit-learn's upper ``precisions_cholesky_``) that the positive-definiteness
        check computed, for the start to reuse (None without a dense one)."""
        K, d = self.n_components, n_features
        factor = None
        if self.weights_init is not None:
            w = _as_array("weights_init", self.weights_init, (K,))
            # (np.isclose's test, |sum - 1| <= atol + rtol, without its cost on a small fit)
            if (w < 0).any() or (w > 1).any() or not abs(float(w.sum()) - 1.0) <= 1e-6 + 1e-5:
                raise InputError(
                    "weights_init must be non-negative and sum to 1, got "
                    f"{np.array2string(w, precision=4)} (sum {w.sum():.6g}). Normalize it."
                )
        if self.means_init is not None:
            _as_array("means_init", self.means_init, (K, d))
        if self.precisions_init is not None:
            structure = covariance_structure(self.covariance_type)
            P = _as_array("precisions_init", self.precisions_init, structure.shape(K, d))
            if structure.dense:
                stack = P.reshape(-1, d, d)
                transposed = stack.transpose(0, 2, 1)
                with np.errstate(over="ignore"):  # np.isclose's test for finite values
                    far = np.abs(stack - transposed) > 1e-8 + 1e-5 * np.abs(transposed)
                symmetric = ~far.any(axis=(1, 2))
                if symmetric.all():
                    # positive-definite if the factor the start uses exists (one Cholesky)
                    try:
                        factor = structure.from_precisions(P)
                    except np.linalg.LinAlgError:
                        factor = None
                if factor is None:
                    # (the eigenvalues of the symmetric part: no error on an asymmetric
                    # matrix) to name the first bad one
                    positive = np.linalg.eigvalsh(0.5 * (stack + transposed)).min(axis=1) > 0
                    k = int(np.argmax(~(symmetric & positive)))
                    raise InputError(
                        f"precisions_init[{k}] is not symmetric positive-definite; pass "
                        "precision matrices (inverse covariances) that are."
                    )
            elif (P <= 0).any():
                raise InputError(
                    "precisions_init must be positive for covariance_type="
                    f"{self.covariance_type!r}, got a value <= 0."
                )
        return factor

    # -- fitting ---------------------------------------------------------------------

    @warnings_once
    def fit(
        self,
        X: ArrayLike,
        y: Any = None,
        sample_weight: ArrayLike | None = None,
        checkpoint: Any = None,
    ) -> Any:
        """Estimate the model parameters with EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing value: the E-step uses the marginal density of the
            observed coordinates, the M-step the conditional expectations of the missing
            ones and of their second moments (Ghahramani & Jordan, 1994).
        y : array-like of shape (n_samples,), default=None
            With ``semi_supervised=True``, the known components: ``y[i]`` in
            0..n_components-1 fixes row i's responsibilities to its component, ``-1``
            leaves it unknown. Ignored otherwise (as scikit-learn's mixtures do).
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; an integer weight is the same as repeating the row.
        checkpoint : str or os.PathLike, default=None
            A directory where the parameters and the objective trace are written
            atomically every 5 iterations and at the end. If it holds a checkpoint of the
            same fit (same arguments and data: its key hashes the data's shape and dtype,
            a bounded sample of its rows, the weights and labels), EM continues from it
            and ends with the model the uninterrupted fit gives; another fit's checkpoint
            is refused. Needs ``n_init=1`` and plain EM (no ``accelerate``).

        Returns
        -------
        self : GaussianMixture
        """
        self._check_parameters()
        warm = self.warm_start and hasattr(self, "weights_")
        plan, result = self._run_plan(
            X,
            y,
            sample_weight,
            warm=warm,
            # a warm start continues the previous fit's trace, so that repeated calls
            # with a small max_iter converge
            start_objective=self.lower_bound_ if warm else -np.inf,
            checkpoint=checkpoint,
        )
        family = plan.model.family
        assert isinstance(family, GaussianFamily)
        rows = plan.data.rows
        self._set_fitted(family, result.params, result.trace, result.converged, rows.dtype)
        return self

    def _plan(self, X: Any, y: Any, sample_weight: Any, engine: Any, *, warm: bool) -> FitPlan:
        """The checked data, the bound model and the initialization (or, warm, the fitted
        parameters) that ``fit`` runs EM from, and ``partial_fit`` online EM."""
        Xa = self._validate_X(X, reset=not warm)
        n, d = Xa.shape
        K = self.n_components
        if warm:
            check_warm_start("n_components", len(self.weights_), K)
            # the covariances' shape says which structure they have; diag and tied share
            # one when n_components == n_features, where a tied precision factor is upper
            # triangular (but for rounding below it) and diagonal ones are positive (with
            # one feature, they agree)
            fitted = [
                t
                for t in COVARIANCE_TYPES
                if covariance_structure(t).shape(K, d) == np.shape(self.covariances_)
            ]
            if len(fitted) > 1 and d > 1:
                factor = np.abs(np.asarray(self.precisions_cholesky_, dtype=np.float64))
                upper = bool((np.tril(factor, -1) <= 1e-12 * factor.max()).all())
                fitted = ["tied" if upper else "diag"]
            # an mclust model continues from the structure that stores the same arrays
            layout = type(covariance_structure(self.covariance_type)).__mro__
            if not any(covariance_structure(t).__class__ in layout for t in fitted):
                check_warm_start(
                    "covariance_type", fitted[0] if fitted else "?", self.covariance_type
                )
        if n < 2:
            raise InputError(
                f"X has {n} sample; fitting a mixture needs at least 2 samples "
                f"(n_samples={n}, shape {Xa.shape})."
            )
        if n < K:
            raise InputError(
                f"Expected n_samples >= n_components: X has {n} samples but n_components={K}, "
                "and a mixture needs at least as many samples as components. Decrease "
                "n_components or pass more data."
            )
        dtype = resolve_dtype(self.dtype)
        w = check_sample_weight(sample_weight, n, dtype)
        known = check_labels(y, n, K) if self.semi_supervised else None
        if known is not None and hasattr(Xa, "take_rows"):
            raise InputError(
                "semi_supervised=True with known labels y needs every row in memory for its "
                "initialization, and X is a Dask collection. Fit X.compute(), or fit without "
                "labels (y=None)."
            )
        prec_chol = self._check_initial_parameters(d)
        structure = covariance_structure(self.covariance_type)
        unbound = GaussianFamily(structure, reg_covar=float(self.reg_covar), prior=self.prior)
        # the binding (centre, scales, a prior's defaults: the data's mean and covariance)
        # from one statistics pass wherever the rows live; the rows stay in their order
        # (each chunk groups its own missing-value patterns)
        # (in memory, infinities and rows with nothing observed are refused there)
        # (ModelBasedClustering fits its cells on the same rows, with the same weights,
        # reg_covar and prior: it shares one binding a structure, _bindings, among them)
        shared = getattr(self, "_bindings", None)
        if shared is None:
            bound = bind_pass(unbound, engine, Xa, w, refuse_invalid=True)
        else:
            # (a sweep's cells on threads: the first to come binds, the others wait for
            # it rather than each binding the same rows again)
            with _BINDING:
                bound = shared.get(self.covariance_type)
                if bound is None:
                    bound = bind_pass(unbound, engine, Xa, w, refuse_invalid=True)
                    shared[self.covariance_type] = bound
        family, missing, fill = bound
        filled: Any = Xa
        model = Mixture(family, dtype, assign=assignment(self.e_step), missing=missing)
        row_bytes = model.row_bytes(d, structure.n_stats(d), K) + d * Xa.itemsize

        if warm:
            previous = self._mixture_params(family)

            def initialize(rng: RandomSource) -> MixtureParams:
                return previous

        else:

            def initialize(rng: RandomSource) -> MixtureParams:
                return self._initialize(model, engine, filled, w, known, rng, fill, prec_chol)

        given = (self.weights_init, self.means_init, self.precisions_init)
        # a start that draws nothing (warm, or every *_init given) needs no random source
        # (a Generator costs as much as an iteration of a small fit)
        # (nor does an hc start from the tree or partition ModelBasedClustering gives,
        # read on the exact path: up to INIT_ROWS rows; other starts draw as ever)
        given_start = (
            self.init_params == "hc"
            and getattr(self, "_hc_tree", None) is not None
            and n <= INIT_ROWS
        )
        draws = not warm and any(v is None for v in given) and not given_start
        source = init_random_source(self.random_state) if draws else None
        # the mixture's rows: no base-measure column for a Gaussian (None)
        # EM's chunks: with missing values in memory, few patterns each
        rows, row_w, row_known = (
            ordered_for_chunks(engine, Xa, w, known) if missing else (Xa, w, known)
        )
        data = RowSource(rows, row_w, row_known, (None,), work_bytes=row_bytes)
        return FitPlan(model, data, initialize, source, dtype, row_bytes)

    def _initialize(
        self,
        model: Mixture,
        engine: Engine,
        X: Any,
        w: NDArray[np.floating[Any]] | None,
        known: NDArray[np.intp] | None,
        rng: RandomSource,
        fill: Any = None,
        prec_chol: NDArray[np.floating[Any]] | None = None,
    ) -> MixtureParams:
        """Parameters from initial responsibilities (the model's own M-step) and the inits.

        ``X`` is the rows (missing values filled) or a streamed table (``fill`` then fills
        its missing values a block at a time); ``prec_chol``, the factors of
        ``precisions_init`` where its check made them."""
        family = model.family
        assert isinstance(family, GaussianFamily)
        K, d = self.n_components, X.shape[1]
        given = (self.weights_init, self.means_init, self.precisions_init)
        if all(v is not None for v in given):
            means = np.asarray(self.means_init, dtype=np.float64)
            params = family.params_from_precisions(
                means, np.asarray(self.precisions_init, dtype=np.float64), prec_chol
            )
            given_weights = np.asarray(self.weights_init, dtype=np.float64)
            return MixtureParams(given_weights / given_weights.sum(), params)
        # ModelBasedClustering builds one hierarchy for every n_components it fits
        tree = getattr(self, "_hc_tree", None)
        # float64 rows, their statistics and responsibilities: chunks sized for them
        work = (2 * d + family.structure.n_stats(d) + K) * 8
        if (
            self.init_params == "hc"
            and all(v is None for v in given)
            and w is None
            and known is None
            and fill is None
            and isinstance(X, np.ndarray)
            and X.shape[0] <= INIT_ROWS
        ):
            # the exact path of initial_statistics_bounded: the partition (the tree's cut,
            # or mclust's hierarchy of the rows), then its M-step, compiled where it can be
            labels = initial_responsibilities("hc", X, K, rng, None, tree=tree)
            start = compiled_start(model, X, labels, K)
            if start is not None:
                return start
            stats = initial_statistics(model, engine, X, None, labels, K, work)
        else:
            stats = initial_statistics_bounded(
                self.init_params, model, engine, X, w, K, rng, fill, work, tree=tree, known=known
            )
        placeholder = MixtureParams(np.full(K, 1.0 / K), family.default_params(K))
        start = model.m_step(placeholder, stats)
        weights = start.weights
        comp: GaussianParams = start.components
        if self.weights_init is not None:
            user_weights = np.asarray(self.weights_init, dtype=np.float64)
            weights = user_weights / user_weights.sum()
        if self.means_init is not None:
            comp = comp._replace(
                means=family.centred_means(np.asarray(self.means_init, dtype=np.float64))
            )
        if self.precisions_init is not None:
            user = family.params_from_precisions(
                np.zeros((K, d)), np.asarray(self.precisions_init, dtype=np.float64), prec_chol
            )
            comp = comp._replace(
                covariances=user.covariances, precisions_cholesky=user.precisions_cholesky
            )
        return MixtureParams(weights, comp)

    def _set_fitted(
        self,
        family: GaussianFamily,
        params: MixtureParams,
        trace: EMTrace,
        converged: bool,
        dtype: np.dtype[Any],
    ) -> None:
        """The fitted attributes, in the data's precision (float32 data gives float32
        attributes, as in scikit-learn; the fit itself summed in float64)."""
        comp: GaussianParams = params.components
        # the prior with its data defaults, for partial_fit to continue MAP online EM
        self._bound_prior = (family.prior, family.data_covariance)
        precisions = family.structure.precisions(comp.precisions_cholesky)
        means = family.user_means(comp)
        parts = (comp.covariances, comp.precisions_cholesky, precisions, means)
        # float32 only where float32 holds them: data near its range has squares beyond it
        out = np.float32 if dtype == np.float32 and _holds(np.float32, parts) else np.float64
        self.weights_ = params.weights.astype(out)
        self.means_ = means.astype(out)
        self.covariances_ = comp.covariances.astype(out)
        self.precisions_cholesky_ = comp.precisions_cholesky.astype(out)
        self.precisions_ = precisions.astype(out)
        self._set_trace(trace, converged)

    # -- the fitted model -------------------------------------------------------------

    def _family(self, shift: Array | None = None, scale: float = 1.0) -> GaussianFamily:
        # Any shift gives the same densities; the weighted centre keeps the expansion accurate.
        centre = self._centre() if shift is None else shift
        return GaussianFamily(
            covariance_structure(self.covariance_type), centre, float(self.reg_covar), scale
        )

    def _centre(self) -> Array:
        return np.asarray(self.weights_, dtype=np.float64) @ np.asarray(self.means_, np.float64)

    def _mixture_params(self, family: GaussianFamily) -> MixtureParams:
        def f64(a: Array) -> Array:
            return np.asarray(a, dtype=np.float64)

        comp = GaussianParams(
            family.centred_means(f64(self.means_)),
            f64(self.covariances_),
            f64(self.precisions_cholesky_),
        )
        return MixtureParams(f64(self.weights_), comp)

    def _map_model(self, X: Any, make: Callable[[Any, Any], Callable[[Array], Any]]) -> Any:
        check_is_fitted(self)
        Xa = self._validate_X(X, reset=False)
        shift = self._centre()
        if is_streamed(Xa):
            with fit_engine(self, X) as engine:
                summary = column_summary(engine, RowSource(Xa))
            missing, scale = summary.missing, summary.scale(shift)
        else:
            missing, scale = has_missing_values(Xa), centred_scale(Xa, shift)
        family = self._family(shift, scale)
        model = Mixture(family, resolve_dtype(self.dtype), missing=missing)
        fn = make(model, self._mixture_params(family))
        d = Xa.shape[1]
        # the float64 (n, K) output of every chunk is held as well
        row_bytes = model.pass_row_bytes(d, family.structure.n_stats(d), 2 * self.n_components)
        with fit_engine(self, X) as engine:
            out = engine.map_rows(fn, RowSource(Xa, work_bytes=row_bytes))
        # densities and probabilities of float32 data in float32, as in scikit-learn
        if Xa.dtype == np.float32 and out.dtype.kind == "f":
            return out.astype(np.float32)
        return out

    def score_samples(self, X: Any) -> Array:
        """Log-density of each sample, shape (n_samples,)."""
        # (an array, and a model fitted without feature names: checked as the model's
        # own pass checks it, which no warning of the check then repeats)
        if isinstance(X, np.ndarray) and not hasattr(self, "feature_names_in_"):
            check_is_fitted(self)
            values = self._compiled_values(self._validate_X(X, reset=False))
            if values is not None:
                return np.ascontiguousarray(values[:, 0])
        return super().score_samples(X)

    def _compiled_values(self, X: Any) -> Array | None:
        """(n, 3) each row's log-density, the log of its largest posterior probability and
        its most likely component, for checked rows ``X``, by one compiled loop over the
        rows (:func:`emkit.models._small_pass.cell_values`: the whitened form of ``log
        p(x, k)``, the model's own pass to round-off) where the in-memory engine would map
        them as one chunk in the calling thread: complete float64 rows in memory, fewer
        than its ``_MIN_ROWS`` (beyond, its chunks run on threads), fitted in float64
        without an engine object, Numba loaded (its import costs more than a small
        call); None elsewhere (and where the loop leaves a
        value non-finite), for the model's own pass. ``score_samples`` and
        :class:`~emkit.ModelBasedClustering`'s pass at the end of each cell take it (~70
        us of interpreter less a call on faithful)."""
        if not (
            _COMPILED_PASS
            and numba_loaded()
            and isinstance(X, np.ndarray)
            and X.ndim == 2
            and X.dtype == np.float64
            and 0 < X.shape[0] < _MIN_ROWS
            and self.engine is None
            and np.dtype(resolve_dtype(self.dtype)) == np.float64
        ):
            return None
        layout = covariance_structure(self.covariance_type).compiled_layout
        means = np.asarray(self.means_, dtype=np.float64)
        K, d = means.shape
        if layout is None or X.shape[1] != d or d > MAX_FEATURES:
            return None
        kernels = compiled_module("emkit.models._small_pass")
        if kernels is None:
            return None
        # centred at the weighted mean of the means, as the model's own pass is
        centre = self._centre()
        prec = np.asarray(self.precisions_cholesky_, dtype=np.float64)
        dense = layout in (FULL_LAYOUT, TIED_LAYOUT)
        pc3 = np.ascontiguousarray(prec.reshape(-1, d, d)) if dense else np.empty((0, d, d))
        pc2 = np.empty((0, 1)) if dense else np.ascontiguousarray(prec.reshape(K, -1))
        with np.errstate(divide="ignore"):  # a weight of 0: log 0 = -inf, as the pass has it
            log_weights = np.log(np.asarray(self.weights_, dtype=np.float64))
        out = np.empty((X.shape[0], 3))
        kernels.cell_values(
            np.ascontiguousarray(X - centre), means - centre, log_weights, pc3, pc2, layout, out
        )
        # (missing values, or values beyond float64 in the whitened form: the own pass)
        return out if np.isfinite(out).all() else None

    # -- online EM (partial_fit) --------------------------------------------------------

    def _online_start(self) -> tuple[Mixture, MixtureParams]:
        family = self._family()
        if self.prior is not None:
            # MAP online EM: the prior bound by the fit continued (its data defaults read
            # then) enters every M-step
            bound = getattr(self, "_bound_prior", None)
            if bound is None:
                raise InputError(
                    f"partial_fit continues this model with prior={self.prior!r}, but the "
                    "model holds no bound prior (a model loaded from a file keeps its "
                    "parameters, not the data defaults of its prior). Fit it again, or "
                    "start partial_fit on an unfitted GaussianMixture."
                )
            family = replace(family, prior=bound[0], data_covariance=bound[1])
        model = Mixture(family, resolve_dtype(self.dtype), assign=assignment(self.e_step))
        return replace(model, missing=True), self._mixture_params(family)

    def _online_rows(self, X: Any, sample_weight: Any, model: Any) -> tuple[Array, Array | None]:
        Xa = self._validate_X(X, reset=False)
        return Xa, check_sample_weight(sample_weight, Xa.shape[0], resolve_dtype(self.dtype))

    def _set_online(self, model: Any, params: Any, trace: EMTrace, dtype: Any) -> None:
        self._set_fitted(
            model.family, params, trace, False, self.means_.dtype if dtype is None else dtype
        )

    def _sampling_family(self) -> tuple[GaussianFamily, GaussianParams]:
        family = self._family()
        return family, self._mixture_params(family).components

    def _n_parameters(self) -> int:
        d = self.means_.shape[1]
        return Mixture(self._family(np.zeros(d))).n_parameters(self.n_components)


# Whether small passes over the rows may take the compiled loop (the tests switch it off
# to compare)
_COMPILED_PASS = True


def _no_feature_names(est: Any, n_features: int, reset: bool) -> bool:
    """Whether scikit-learn's feature checks of rows without feature names (an array)
    would do no more than set (``reset``) or confirm ``n_features_in_``: no names fitted
    to warn about, and the fitted number of features."""
    if reset:
        return True
    return not hasattr(est, "feature_names_in_") and (
        getattr(est, "n_features_in_", None) == n_features
    )


def _as_array(name: str, value: ArrayLike, shape: tuple[int, ...]) -> Array:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric: {exc}") from exc
    if arr.shape != shape:
        raise InputError(
            f"{name} must have shape {shape} (from n_components and the data), got {arr.shape}."
        )
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinity; pass finite values.")
    return arr


def _holds(dtype: Any, arrays: tuple[Array, ...]) -> bool:
    """Whether ``dtype`` keeps every entry of ``arrays`` finite and every nonzero one
    nonzero (no overflow to inf, no underflow to 0)."""
    info = np.finfo(dtype)
    for a in arrays:
        magnitude = np.abs(a[a != 0])
        if magnitude.size and (magnitude.max() >= info.max or magnitude.min() < info.tiny):
            return False
    return True

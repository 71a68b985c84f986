"""``emkit.KMeans``: a drop-in for ``sklearn.cluster.KMeans`` (Lloyd's algorithm), fitted
as hard EM by the one driver."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.sparse import csr_array, issparse
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.utils.extmath import row_norms
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import check_is_fitted, validate_data

from emkit._validation import (
    as_float_matrix,
    check_choice,
    check_fit_range,
    check_flag,
    check_number,
    check_positive_int,
    check_random_state,
    check_sample_weight,
)
from emkit._warnings import warnings_once
from emkit.engines._base import Engine
from emkit.engines._source import RowSource
from emkit.estimators import _rows
from emkit.estimators._mixture_base import fit_engine, logger, rows_output, verbose_logging
from emkit.estimators._rows import fit_checkpoint
from emkit.exceptions import ConvergenceWarning, InputError
from emkit.inference.em import MONOTONICITY_POLICIES, fit_em_restarts
from emkit.inference.init import seed_from
from emkit.models.kmeans import (
    KMeansModel,
    KMeansParams,
    Sparse,
    SparseRows,
    as_dense,
    design_matrix,
    euclidean_distances,
    nearest,
    row_state,
    squared_distances,
)

__all__ = ["KMeans"]

Array = NDArray[np.floating[Any]]

INIT_METHODS = ("k-means++", "random")
# scikit-learn's two exact algorithms: emkit's bounded Lloyd serves both (same results)
ALGORITHMS = ("lloyd", "elkan")
# n_init="auto": one run from k-means++ or given centers, ten from random starts
_AUTO_N_INIT = {"k-means++": 1, "random": 10}


class KMeans(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """K-means clustering as hard EM (Lloyd's algorithm).

    Hard (classification) EM for Gaussian clusters with equal weights and one shared
    spherical covariance: each iteration assigns every row to its nearest center, then
    moves each center to the (sample-weighted) mean of its rows. Same constructor,
    attributes and methods as :class:`sklearn.cluster.KMeans`, and the same centers from
    the same start: an integer ``random_state`` draws the same k-means++ or random starts
    as scikit-learn. Beyond it: the objective trace (``trace_``), a monotonicity check of
    every iteration, and chunked, multi-threaded iterations. Once few rows change
    cluster, an iteration on dense data skips the rows whose nearest center cannot have
    changed (Hamerly's distance bounds, with a margin for round-off) and updates the
    clusters' sums from the rows that moved: the same labels and centers as Lloyd's at
    every iteration, for a fraction of the work.

    Sparse data (:mod:`scipy.sparse`, e.g. TF-IDF rows) are clustered as they are, never
    made dense: the distances and the clusters' sums are sparse matrix products, every
    iteration measures every row (Lloyd's algorithm, without the bounds), and, as in
    scikit-learn, the rows are not centred.

    Parameters
    ----------
    n_clusters : int, default=8
        Number of clusters (centers).
    init : {'k-means++', 'random'}, callable or array-like of shape \
(n_clusters, n_features), default='k-means++'
        How the starting centers are chosen: scikit-learn's greedy k-means++
        (:func:`sklearn.cluster.kmeans_plusplus`, weighted by ``sample_weight``),
        ``n_clusters`` distinct rows drawn with probability proportional to their weight,
        the given centers, or ``init(X, n_clusters, random_state=...)``. As in
        scikit-learn, a callable receives the data centred on their mean (sparse data as
        they are) and returns centers in those coordinates, and ``random_state`` is a
        :class:`numpy.random.RandomState`.
    n_init : 'auto' or int, default='auto'
        Number of runs from different starts; the run with the lowest inertia is kept.
        ``'auto'``: 1 for ``'k-means++'`` and given centers, 10 for ``'random'`` and a
        callable (scikit-learn's rule).
    max_iter : int, default=300
        Maximum number of iterations of a run.
    tol : float, default=1e-4
        A run stops when no row changed cluster, or when the squared shift of the
        centers, sum_k ||c_k^new - c_k||^2, is at most ``tol`` times the mean of the
        features' variances (scikit-learn's rules).
    verbose : int or bool, default=0
        Report the start and each iteration's inertia, and why a run stopped, as
        scikit-learn does ("Initialization complete", "Iteration i, inertia ...",
        "Converged at iteration i: ..."): the messages go to the logger ``"emkit"`` at
        level INFO, shown on standard output during the fit unless that logger has
        handlers of its own.
    random_state : int, RandomState, Generator or None, default=None
        Seeds the starts.
    copy_x : bool, default=True
        scikit-learn's argument, accepted for compatibility: emkit never modifies ``X``
        (it centres a copy of dense data, and sparse data are not centred), so both
        values give the same results and leave ``X`` untouched.
    algorithm : {'lloyd', 'elkan'}, default='lloyd'
        scikit-learn's choice between Lloyd's iterations and Elkan's accelerated ones,
        which give the same clusters. emkit's exact distance bounds (Hamerly's) serve
        both: the two values give the same labels, centers and iterations.
    monotonicity : {'warn', 'raise', 'off'}, default='warn'
        What to do if the objective (minus the inertia per unit of weight) decreases
        between iterations, which exact arithmetic rules out.
    chunk_size : int or None, default=None
        Rows per chunk of an iteration; ``None`` sizes chunks for the CPU cache.
    n_threads : int or None, default=None
        Threads for the chunks; ``None`` uses every available core.
    engine : None, 'memory', 'streaming' or an engine, default=None
        Where the rows live and how their statistics are summed: ``None`` or
        ``'memory'`` is the in-memory engine (``chunk_size`` rows a chunk on
        ``n_threads`` threads); ``'streaming'`` reads a table opened with
        :func:`emkit.io.open_table` a block at a time; an object with ``map_reduce`` and
        ``map_rows`` (:class:`emkit.engines.Engine`) is used as it is.

    Attributes
    ----------
    cluster_centers_ : ndarray of shape (n_clusters, n_features)
        The centers, in the dtype of X (float32 or float64).
    labels_ : ndarray of shape (n_samples,)
        The nearest center of each training row (``predict`` on the training data).
    inertia_ : float
        Sum of the rows' squared distances to their nearest center, weighted by
        ``sample_weight``.
    n_iter_ : int
        Iterations of the kept run.
    converged_ : bool
        Whether the kept run met ``tol`` before ``max_iter``.
    trace_ : EMTrace
        The kept run's objective (minus the inertia per unit of weight, before each
        M-step) and seconds per iteration.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    Notes
    -----
    A cluster that gets no rows is moved, as in scikit-learn, onto a row far from its
    center. Where scikit-learn's choice is arbitrary (three or more clusters empty at
    once), emkit gives them the farthest rows in decreasing distance; where no row can be
    taken (every row on its center), a cluster keeps its center rather than joining the
    largest cluster.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import KMeans
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [10, 2], [10, 4], [10, 0]])
    >>> km = KMeans(n_clusters=2, random_state=0).fit(X)
    >>> km.labels_
    array([1, 1, 1, 0, 0, 0])
    >>> km.predict([[0, 0], [12, 3]])
    array([1, 0])
    >>> km.cluster_centers_
    array([[10.,  2.],
           [ 1.,  2.]])
    >>> float(km.inertia_)
    16.0
    """

    def __init__(
        self,
        n_clusters: int = 8,
        *,
        init: str | ArrayLike | Callable[..., Any] = "k-means++",
        n_init: str | int = "auto",
        max_iter: int = 300,
        tol: float = 1e-4,
        verbose: int = 0,
        random_state: Any = None,
        copy_x: bool = True,
        algorithm: str = "lloyd",
        monotonicity: str = "warn",
        chunk_size: int | None = None,
        n_threads: int | None = None,
        engine: Any = None,
    ) -> None:
        self.n_clusters = n_clusters
        self.init = init
        self.n_init = n_init
        self.max_iter = max_iter
        self.tol = tol
        self.verbose = verbose
        self.random_state = random_state
        self.copy_x = copy_x
        self.algorithm = algorithm
        self.monotonicity = monotonicity
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.engine = engine

    # -- validation ------------------------------------------------------------------

    def _check_parameters(self) -> None:
        """Declarative checks of the constructor arguments, run at fit time."""
        check_positive_int("n_clusters", self.n_clusters)
        check_positive_int("max_iter", self.max_iter)
        check_number("tol", self.tol)
        # verbose=True is scikit-learn's verbose=1
        verbose = int(self.verbose) if isinstance(self.verbose, bool) else self.verbose
        check_positive_int("verbose", verbose, minimum=0)
        check_flag("copy_x", self.copy_x)
        check_choice("algorithm", self.algorithm, ALGORITHMS)
        check_choice("monotonicity", self.monotonicity, MONOTONICITY_POLICIES)
        check_random_state(self.random_state)
        if not (isinstance(self.n_init, str) and self.n_init == "auto"):
            if isinstance(self.n_init, str):
                raise InputError(f"n_init must be 'auto' or an integer >= 1, got {self.n_init!r}.")
            check_positive_int("n_init", self.n_init)
        if isinstance(self.init, str):
            check_choice("init", self.init, INIT_METHODS)

    def _validate_X(self, X: Any, *, reset: bool) -> Array | Sparse:
        if _rows.is_streamed(X):  # a table from a file, or Dask rows: read a block at a time
            return _rows.check_streamed(self, X, reset=reset)
        # float64 and float32 data are used as they are; sparse data stay sparse (CSR)
        arr = _as_float_csr(X) if issparse(X) else as_float_matrix(X, dtype=None)
        if not reset and arr.shape[1] != self.n_features_in_:
            raise InputError(
                f"X has {arr.shape[1]} features, but KMeans is expecting "
                f"{self.n_features_in_} features as input: pass data with the columns the "
                "model was fitted on."
            )
        # feature names and n_features_in_ the scikit-learn way, after our own checks
        validate_data(self, X, reset=reset, skip_check_array=True)
        return arr

    def _given_centers(self, n_features: int, dtype: Any) -> Array | None:
        """``init`` as an array of centers, checked, or None when it is a method."""
        if isinstance(self.init, str) or callable(self.init):
            return None
        return _check_centers(self.init, self.n_clusters, n_features, dtype, "init")

    def _resolve_n_init(self) -> int:
        """scikit-learn's rule: 'auto' is 1 from k-means++ or given centers, 10 otherwise;
        given centers run once whatever n_init says (with a warning, as there)."""
        if isinstance(self.init, str):
            auto = _AUTO_N_INIT[self.init]
        else:
            auto = 10 if callable(self.init) else 1
        if isinstance(self.n_init, str):  # "auto"
            return auto
        if not isinstance(self.init, str) and not callable(self.init) and self.n_init != 1:
            warnings.warn(
                "Explicit initial center position passed: performing only one init in "
                f"KMeans instead of n_init={self.n_init}.",
                RuntimeWarning,
                stacklevel=3,
            )
            return 1
        return int(self.n_init)

    def _init_centroids(
        self,
        X: Array | Sparse,
        x_squared_norms: Array,
        init: Any,
        random_state: np.random.RandomState,
        sample_weight: Array | None,
        n_centroids: int | None = None,
    ) -> Array:
        """One start of ``n_centroids`` centers (default ``n_clusters``) for the rows
        ``X``, drawn from ``random_state`` by the method ``init`` (or the given centers),
        in the coordinates of ``X``; scikit-learn's private method of the same name."""
        k = self.n_clusters if n_centroids is None else n_centroids
        given = None
        if not isinstance(init, str) and not callable(init):
            given = _check_centers(init, k, X.shape[1], X.dtype, "init")
        return _draw_centers(init, given, X, x_squared_norms, sample_weight, k, random_state)

    # -- fitting ---------------------------------------------------------------------

    @warnings_once
    def fit(
        self,
        X: ArrayLike,
        y: Any = None,
        sample_weight: ArrayLike | None = None,
        checkpoint: Any = None,
    ) -> Any:
        """Compute k-means clustering.

        Parameters
        ----------
        X : {array-like, sparse matrix} of shape (n_samples, n_features)
            Training rows; float32 data are worked on in float32. Sparse data are used as
            CSR (other formats are converted, the values are never made dense).
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; an integer weight is the same as repeating the row.
            The starts 'k-means++' and 'random' draw rows in proportion to it.
        checkpoint : str or os.PathLike, default=None
            A directory to save the fit's state in and resume it from, as in
            :meth:`emkit.GaussianMixture.fit` (one start: ``n_init=1``).

        Returns
        -------
        self : KMeans
        """
        self._check_parameters()
        Xa = self._validate_X(X, reset=True)
        n, d = Xa.shape
        K = int(self.n_clusters)
        if n < K:
            raise InputError(
                f"X has {n} sample{'' if n == 1 else 's'} but n_clusters={K}: "
                f"n_samples={n} should be >= n_clusters={K}, as k-means needs at least as "
                "many samples as clusters. Decrease n_clusters or pass more data."
            )
        w = check_sample_weight(sample_weight, n, Xa.dtype.type)
        if self.algorithm == "elkan" and K == 1:
            warnings.warn(
                "algorithm='elkan' doesn't make sense for a single cluster. Using 'lloyd' "
                "instead (emkit runs the same exact iterations for both).",
                RuntimeWarning,
                stacklevel=2,
            )
        given = self._given_centers(d, Xa.dtype)
        self._n_init = n_init = self._resolve_n_init()
        sparse = issparse(Xa)
        streamed = _rows.is_streamed(Xa)

        if streamed and callable(self.init) and n > _rows.INIT_ROWS:
            raise InputError(
                f"A callable init receives every row of X, and X ({Xa!r}) is read a block at "
                f"a time ({n} rows, more than the {_rows.INIT_ROWS} a start reads). Pass the "
                "starting centers as an array, or use init='k-means++' (drawn from a sample)."
            )
        A: Any
        rows: Any
        if streamed:
            # the centre and spread from passes over the rows; each chunk's design rows
            # are made where it is mapped (_Centred), the initialization's from a sample
            with fit_engine(self, Xa) as engine:
                shift, variance = _streamed_moments(engine, Xa)
            A = Xa
            rows, x_squared_norms = _init_rows(Xa, shift)
        elif sparse:
            # sparse rows stay as they are (centring would fill them), as in scikit-learn
            shift = np.zeros(d, dtype=Xa.dtype)
            A = SparseRows(design_matrix(Xa, shift))  # chunks of rows as views
            x_squared_norms = row_norms(Xa, squared=True)
            variance = float(mean_variance_axis(Xa, axis=0)[1].mean())
            rows = Xa
            row_bytes = KMeansModel.sparse_row_bytes(Xa, K)
        else:
            # Centre the data once, as scikit-learn does, for accurate expanded distances.
            shift = Xa.mean(axis=0)
            # the spread from the column extremes: no temporary array
            spread = np.maximum(Xa.max(axis=0) - shift, shift - Xa.min(axis=0))
            check_fit_range(float(spread.max()), Xa.shape, "k-means", Xa.dtype)
            A = design_matrix(Xa, shift)
            # the mean variance of the features is the mean squared norm of the centred
            # rows over d
            x_squared_norms = A[:, d + 1]
            variance = float(x_squared_norms.mean()) / d
            rows = A[:, :d]
        # scikit-learn's tol is relative to the mean variance of the features
        model = KMeansModel(float(self.tol) * variance, Xa.dtype.type, bounds=not sparse)
        if not sparse:
            row_bytes = model.row_bytes(d)
        if streamed:  # the design rows of a chunk, made and dropped with it
            row_bytes += (d + 2) * Xa.dtype.itemsize
        random = _legacy_stream(self.random_state)
        start = None if given is None else given - shift
        total_weight = float(n if w is None else w.sum())
        verbose = bool(self.verbose)

        def draw(_rng: np.random.Generator) -> KMeansParams:
            # scikit-learn's RandomState stream, not the driver's Generator
            if isinstance(self.init, str) and self.init == "k-means++" and n > _rows.INIT_ROWS:
                # k-means++ on a uniform sample of INIT_ROWS rows (its distances are a few
                # rows' worth per center): the bounded start of every mixture estimator
                sample = np.sort(random.choice(n, _rows.INIT_ROWS, replace=False))
                centers = _draw_centers(
                    self.init,
                    None,
                    rows[sample],
                    x_squared_norms[sample],
                    None if w is None else w[sample],
                    K,
                    random,
                )
            else:
                centers = _draw_centers(self.init, start, rows, x_squared_norms, w, K, random)
            if verbose:
                logger.info("Initialization complete")
            return KMeansParams(np.asarray(centers, dtype=np.float64))

        def centers_of(params: KMeansParams) -> Array:
            return (params.centers + shift).astype(Xa.dtype)

        reporting = _Reporting(model)

        def callback(iteration: int, objective: float, change: float) -> None:
            if verbose:  # scikit-learn counts iterations from 0
                # the inertia of the iteration's assignment, under the centers it used
                logger.info("Iteration %d, inertia %s.", iteration - 1, -objective * total_weight)
                if reporting.stopped is not None:
                    logger.info("Converged at iteration %d: %s.", iteration - 1, reporting.stopped)

        with (
            fit_engine(self, Xa) as engine,
            verbose_logging(verbose, sys.stdout),
        ):
            # the C-step's per-row memory (label, bounds), where the engine maps views of
            # it; elsewhere (Dask workers) every C-step measures every row, as Lloyd's
            state = row_state(n) if getattr(engine, "keeps_row_state", True) else ()
            fitted: Any = reporting if verbose else model
            result = fit_em_restarts(
                _Centred(fitted, shift) if streamed else fitted,
                engine,
                # the rows, their weights, and the C-step's per-row memory
                RowSource(A, w, columns=state, work_bytes=row_bytes),
                draw,
                n_init=n_init,
                rng=np.random.default_rng(0),
                # the stopping rule is the centers' shift; the objective only checks
                tol=0.0,
                max_iter=int(self.max_iter),
                monotonicity=self.monotonicity,
                dtype=Xa.dtype.type,
                callback=callback,
                # runs compare by their final centers' inertia, as in scikit-learn
                score=lambda params: -_assign(engine, Xa, w, centers_of(params))[1],
                checkpoint=fit_checkpoint(self, checkpoint, Xa, w),
            )
            self.cluster_centers_ = centers_of(result.params)
            # the final assignment is predict's, so that fit(X).predict(X) == labels_
            labels, self.inertia_ = _assign(engine, Xa, w, self.cluster_centers_)
            self.labels_ = np.asarray(labels)  # Dask rows' labels: computed
        self.n_iter_ = result.n_iter
        self.converged_ = result.converged
        self.trace_ = result.trace
        self._n_features_out = K
        distinct = np.unique(self.labels_).shape[0]
        if distinct < K:
            warnings.warn(
                f"Number of distinct clusters ({distinct}) found smaller than n_clusters "
                f"({K}). Possibly due to duplicate points in X.",
                ConvergenceWarning,
                stacklevel=2,
            )
        return self

    # -- the fitted model -------------------------------------------------------------

    def predict(self, X: ArrayLike) -> NDArray[np.intp]:
        """The nearest center of each sample, shape (n_samples,); X may be sparse."""
        check_is_fitted(self)
        Xa = self._validate_X(X, reset=False)
        with fit_engine(self, Xa) as engine:
            return rows_output(_assign(engine, Xa, None, self.cluster_centers_, inertia=False)[0])

    def fit_predict(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> NDArray[np.intp]:
        """Fit and return ``labels_``."""
        return np.asarray(self.fit(X, sample_weight=sample_weight).labels_)

    def transform(self, X: ArrayLike) -> Array:
        """Euclidean distance of each sample to each center, shape (n_samples, n_clusters);
        X may be sparse."""
        from sklearn.metrics.pairwise import euclidean_distances as expanded

        check_is_fitted(self)
        Xa = self._validate_X(X, reset=False)
        shift, centers = _centred(self.cluster_centers_, Xa)
        centers_work = centers.astype(Xa.dtype)
        row_bytes = (Xa.shape[1] + 3 * centers.shape[0]) * Xa.dtype.itemsize

        def distances(chunk: Array | Sparse) -> Array:
            rows = _minus(chunk, shift)
            if issparse(rows):
                return np.asarray(expanded(rows, centers_work))
            # dense rows: no inf for a distance the dtype holds (rows far out are scaled)
            return euclidean_distances(rows, centers)

        with fit_engine(self, Xa) as engine:
            return rows_output(engine.map_rows(distances, RowSource(Xa, work_bytes=row_bytes)))

    def fit_transform(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> Array:
        """Fit and return the distances of the samples to the centers."""
        return self.fit(X, sample_weight=sample_weight).transform(X)

    def score(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> float:
        """Minus the inertia of ``X`` (weighted by ``sample_weight``) under the centers;
        X may be sparse."""
        check_is_fitted(self)
        Xa = self._validate_X(X, reset=False)
        w = check_sample_weight(sample_weight, Xa.shape[0], Xa.dtype.type)
        with fit_engine(self, Xa) as engine:
            return -_assign(engine, Xa, w, self.cluster_centers_)[1]

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags


def _as_float_csr(X: Any, name: str = "X") -> Sparse:
    """Sparse ``X`` as a CSR array of float32 or float64 values (other numeric types as
    float64), duplicate entries summed, or a clear :class:`InputError`. The values are
    never made dense, and ``X`` itself is never modified."""
    if X.ndim != 2:
        raise InputError(
            f"{name} must be 2-D of shape (n_samples, n_features), got a {X.ndim}-D sparse "
            f"array of shape {X.shape}."
        )
    n, d = X.shape
    if n == 0 or d == 0:
        raise InputError(
            f"{name} is empty (shape={X.shape}): k-means needs at least one sample and one "
            "feature; pass data."
        )
    if X.dtype.kind not in "biuf":
        raise InputError(
            f"{name} has non-numeric or complex values (dtype {X.dtype}); pass real numbers."
        )
    dtype = X.dtype if X.dtype in (np.float32, np.float64) else np.float64
    csr = csr_array(X.tocsr(), dtype=dtype)
    if not csr.has_canonical_format:
        csr = csr.copy()  # the caller's X keeps its layout
        csr.sum_duplicates()
    bad = np.flatnonzero(~np.isfinite(csr.data))
    if bad.size:
        at = int(bad[0])
        row = int(np.searchsorted(csr.indptr, at, side="right")) - 1
        kind = "NaN" if np.isnan(csr.data[at]) else "infinity"
        raise InputError(
            f"{name} contains {kind} (first at row {row}, column {int(csr.indices[at])}). "
            "KMeans needs finite values: drop or impute those rows first."
        )
    return csr


class _Reporting:
    """A :class:`KMeansModel` that notes why a run stopped, in scikit-learn's words
    ("strict convergence" or "center shift ... within tolerance ..."), for the verbose
    report of the iteration (the driver asks ``converged`` before its callback)."""

    def __init__(self, model: KMeansModel) -> None:
        self.model = model
        self.stopped: str | None = None

    def expectation(self, params: KMeansParams) -> Callable[..., Any]:
        return self.model.expectation(params)

    def supplement(self, params: KMeansParams, stats: Any) -> Callable[..., Any] | None:
        return self.model.supplement(params, stats)

    def m_step(self, params: KMeansParams, stats: Any) -> KMeansParams:
        return self.model.m_step(params, stats)

    def objective(self, params: KMeansParams, stats: Any) -> float:
        return self.model.objective(params, stats)

    def m_step_gap(self, params: KMeansParams, stats: Any) -> float:
        return self.model.m_step_gap(params, stats)

    def lower_bound(self, params: KMeansParams, new: KMeansParams, stats: Any) -> float:
        return self.model.lower_bound(params, new, stats)

    def converged(self, previous: KMeansParams, params: KMeansParams) -> bool:
        self.stopped = None
        if not self.model.converged(previous, params):
            return False
        if params.last is not None and params.last.stats.moved == 0:
            self.stopped = "strict convergence"
        else:
            shift = float(((params.centers - previous.centers) ** 2).sum())
            self.stopped = f"center shift {shift} within tolerance {self.model.tol}"
        return True


class _Centred:
    """A k-means model whose mapped functions take the rows themselves, as a streamed
    table or Dask rows give them, and make each chunk's design rows
    (:func:`~emkit.models.kmeans.design_matrix`, about ``shift``) where it is mapped;
    everything else is the model's."""

    def __init__(self, model: Any, shift: Array) -> None:
        self.model = model
        self.shift = shift

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name == "model":  # not set yet (a copy being made)
            raise AttributeError(name)
        return getattr(self.model, name)

    def _on_rows(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        shift = self.shift
        return lambda rows, *args: fn(design_matrix(rows, shift), *args)

    def expectation(self, params: KMeansParams) -> Callable[..., Any]:
        return self._on_rows(self.model.expectation(params))

    def supplement(self, params: KMeansParams, stats: Any) -> Callable[..., Any] | None:
        fn = self.model.supplement(params, stats)
        return None if fn is None else self._on_rows(fn)


def _streamed_moments(engine: Engine, X: Any) -> tuple[Array, float]:
    """(the mean of the rows, the mean of the features' variances) of a streamed table
    or Dask rows, in two passes of ``engine`` (the in-memory fit's ``shift`` and
    ``variance``, unweighted as there); a missing or infinite value is refused."""
    n, d = X.shape
    summary = _rows.column_summary(engine, RowSource(X))
    if summary.missing or not (np.isfinite(summary.low).all() and np.isfinite(summary.high).all()):
        raise InputError(
            f"X ({X!r}) contains NaN or infinity; KMeans needs finite values: drop or "
            "impute those rows first."
        )
    shift = (summary.plain / n).astype(X.dtype)
    spread = np.maximum(summary.high - shift, shift - summary.low)
    check_fit_range(float(spread.max()), X.shape, "k-means", X.dtype)

    def squares(rows: Array, _weights: Any) -> float:
        centred = rows - shift
        return float(np.einsum("ij,ij->", centred, centred, dtype=np.float64))

    return shift, float(engine.map_reduce(squares, RowSource(X))) / n / d


class _SampledRows:
    """The centred rows of a streamed table or Dask rows, read only where indexed (the
    random start's few rows, k-means++'s sample): ``rows[indices]`` as in memory."""

    def __init__(self, X: Any, shift: Array) -> None:
        self.X, self.shift = X, shift
        self.shape, self.dtype = tuple(X.shape), X.dtype

    def __getitem__(self, indices: Any) -> Array:
        order = np.asarray(indices)
        unique, where = np.unique(order, return_inverse=True)
        return np.asarray(_rows._rows_at(self.X, unique)[where] - self.shift, dtype=self.dtype)


class _SampledNorms:
    """The squared norms of :class:`_SampledRows`' rows where indexed."""

    def __init__(self, rows: _SampledRows) -> None:
        self.rows = rows

    def __getitem__(self, indices: Any) -> Array:
        picked = self.rows[indices]
        return np.einsum("ij,ij->i", picked, picked)


def _init_rows(X: Any, shift: Array) -> tuple[Any, Any]:
    """The centred rows and their squared norms that a start draws from: every row when
    there are at most ``INIT_ROWS`` (read once), else rows read only where drawn."""
    if X.shape[0] <= _rows.INIT_ROWS:
        rows = np.asarray(X.read(), dtype=X.dtype) - shift
        return rows, np.einsum("ij,ij->i", rows, rows)
    sampled = _SampledRows(X, shift)
    return sampled, _SampledNorms(sampled)


def _centred(centers: Array, X: Array | Sparse) -> tuple[Array, NDArray[np.float64]]:
    """(shift, centers - shift) in float64: predictions on dense rows expand the
    distances about the centers' mean, where the rows are (as accurate as the fit's
    centring on the data); sparse rows are not moved (shift 0)."""
    centers64 = np.asarray(centers, dtype=np.float64)
    shift = np.zeros(centers64.shape[1]) if issparse(X) else centers64.mean(axis=0)
    return shift.astype(X.dtype), centers64 - shift


def _minus(rows: Array | Sparse, shift: Array) -> Array | Sparse:
    """The rows moved by ``-shift``; sparse rows as they are (their shift is 0)."""
    return rows if issparse(rows) else rows - shift


def _assign(
    engine: Engine,
    X: Array | Sparse,
    w: Array | None,
    centers: Array,
    *,
    inertia: bool = True,
) -> tuple[NDArray[np.intp], float]:
    """The nearest of ``centers`` for each row of ``X`` and, unless told not to, the
    (weighted) inertia, its distances computed directly."""
    shift, centred = _centred(centers, X)
    row_bytes = (X.shape[1] + 2 * centred.shape[0]) * X.dtype.itemsize
    rows = X
    if issparse(X):
        row_bytes = KMeansModel.sparse_row_bytes(X, centred.shape[0])
        rows = SparseRows(X)  # chunks of rows as views
    labels = engine.map_rows(
        lambda c: nearest(_minus(c, shift), centred), RowSource(rows, work_bytes=row_bytes)
    )
    if not inertia:
        return labels, float("nan")

    def chunk_inertia(c: Array | Sparse, wc: Array | None, lab: NDArray[np.intp]) -> float:
        dist = squared_distances(_minus(c, shift), centred, lab)
        return float(dist.sum() if wc is None else wc @ dist)

    source = RowSource(rows, w, columns=(labels,), work_bytes=row_bytes)
    return labels, float(engine.map_reduce(chunk_inertia, source))


def _check_centers(value: Any, n_clusters: int, n_features: int, dtype: Any, name: str) -> Array:
    """Centers given by the user (``init`` or what a callable ``init`` returned)."""
    if issparse(value):
        value = value.toarray()
    try:
        centers = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric centers: {exc}") from exc
    if centers.ndim != 2 or centers.shape != (n_clusters, n_features):
        # scikit-learn's wording first, then emkit's expected and received shapes
        if centers.ndim != 2 or centers.shape[0] != n_clusters:
            what = f"the number of clusters {n_clusters}"
        else:
            what = f"the number of features of the data {n_features}"
        raise InputError(
            f"The shape of the initial centers {centers.shape} does not match {what}: "
            f"{name} must have shape (n_clusters, n_features) = ({n_clusters}, {n_features}), "
            f"got {centers.shape}. Pass one center per cluster, with the columns of X."
        )
    if not np.isfinite(centers).all():
        raise InputError(f"{name} contains NaN or infinity; pass finite centers.")
    return centers


def _legacy_stream(random_state: Any) -> np.random.RandomState:
    """scikit-learn's random stream for the starts, so that the same ``random_state``
    draws the same starts as :class:`sklearn.cluster.KMeans` (a RandomState passed in is
    used, and advanced, as there)."""
    if isinstance(random_state, np.random.RandomState):
        return random_state
    if isinstance(random_state, int | np.integer) and not isinstance(random_state, bool):
        return np.random.RandomState(int(random_state))
    return np.random.RandomState(seed_from(check_random_state(random_state)))


def _draw_centers(
    init: Any,
    given: Array | None,
    X: Array | Sparse,
    x_squared_norms: Array,
    w: Array | None,
    n_clusters: int,
    random: np.random.RandomState,
) -> Array:
    """One start of ``n_clusters`` centers for the rows ``X`` (the given ones, already in
    the coordinates of ``X``, or drawn from ``random`` as scikit-learn draws them)."""
    n, d = X.shape
    centers: Array
    if given is not None:
        centers = given
    elif callable(init):
        centers = _check_centers(
            init(X, n_clusters, random_state=random), n_clusters, d, X.dtype, "init(X)"
        )
    elif init == "k-means++":
        from sklearn.cluster import kmeans_plusplus

        centers, _ = kmeans_plusplus(
            X,
            n_clusters,
            sample_weight=w,
            x_squared_norms=x_squared_norms,
            random_state=random,
        )
    else:  # "random": distinct rows, drawn in proportion to their weight
        weights = np.ones(n, dtype=X.dtype) if w is None else w
        if np.count_nonzero(weights) < n_clusters:
            raise InputError(
                f"init='random' draws {n_clusters} distinct rows of positive weight, but "
                f"sample_weight has only {np.count_nonzero(weights)} positive values. "
                "Decrease n_clusters or use init='k-means++'."
            )
        rows = random.choice(n, size=n_clusters, replace=False, p=weights / weights.sum())
        centers = as_dense(X[rows])
    return centers

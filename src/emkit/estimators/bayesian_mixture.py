"""``emkit.BayesianGaussianMixture``: a drop-in for ``sklearn.mixture.BayesianGaussianMixture``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from numbers import Real
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from emkit._validation import (
    as_float_matrix,
    check_choice,
    check_number,
    check_random_state,
    check_sample_weight,
    check_warm_start,
    has_missing_values,
)
from emkit._warnings import warnings_once
from emkit.engines._base import Engine
from emkit.engines._source import RowSource
from emkit.estimators._mixture_base import (
    check_em_parameters,
    check_n_samples,
    fit_engine,
    logger,
    progress_callback,
    rows_output,
    verbose_logging,
)
from emkit.estimators._rows import (
    bind_pass,
    check_streamed,
    column_summary,
    initial_statistics_bounded,
    is_streamed,
    ordered_for_chunks,
)
from emkit.exceptions import ConvergenceWarning, InputError
from emkit.families.gaussian import (
    COVARIANCE_TYPES,
    GaussianFamily,
    centred_scale,
    covariance_structure,
)
from emkit.families.normal_wishart import NormalWishart, along_components
from emkit.families.priors import GaussianPrior
from emkit.inference.em import EMResult, fit_em
from emkit.inference.init import RandomSource, init_random_source
from emkit.models.variational_gaussian import (
    WEIGHT_PRIOR_TYPES,
    VariationalGaussianMixture,
    VariationalParams,
    mean_weights,
)

__all__ = ["BayesianGaussianMixture"]

Array = NDArray[np.floating[Any]]

_NOT_CONVERGED = (
    "Best performing initialization did not converge. Try different init parameters, or "
    "increase max_iter, tol, or check for degenerate data."
)


class BayesianGaussianMixture(DensityMixin, BaseEstimator):
    """Variational Bayesian Gaussian mixture, fitted by variational EM over sufficient
    statistics.

    Same constructor, attributes and methods as
    :class:`sklearn.mixture.BayesianGaussianMixture` (from the same ``random_state`` the
    same start and the same ``lower_bound_``, up to 131,072 rows); beyond it:
    ``fit(X, sample_weight=...)``, the objective trace (``trace_``) with a check that the
    ELBO never decreases, the E-step of :class:`~emkit.GaussianMixture` (two matrix
    products an iteration over chunks of rows, on threads), missing values (NaN: the
    missing coordinates of a row are latent variables with a variational posterior
    q(x_m | z), the variational counterpart of exact EM's marginal; see
    :mod:`emkit.models.variational_gaussian`), and tables streamed from files or reduced
    by another ``engine``.

    The posterior over each component's mean and precision is Normal-Wishart, over the
    weights a Dirichlet (``weight_concentration_prior_type='dirichlet_distribution'``)
    or a truncated stick-breaking process (``'dirichlet_process'``), whose small
    ``weight_concentration_prior`` leaves the components the data do not need with
    weights near 0.

    Parameters
    ----------
    n_components : int, default=1
        Upper bound on the number of components.
    covariance_type : {'full', 'tied', 'diag', 'spherical'}, default='full'
    tol : float, default=1e-3
        EM stops when the lower bound (total, not per sample, as in scikit-learn) gains
        less than ``tol`` (``0 <= change < tol``).
    reg_covar : float, default=1e-6
        Non-negative regularization added to the diagonal of each component's covariance
        estimate before the posterior update.
    max_iter : int, default=100
    n_init : int, default=1
        Number of initializations; the one with the largest lower bound is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        scikit-learn's starts, on every row up to 131,072 rows (the same draws); beyond,
        k-means (or the seeding, or the draw of rows) on a uniform sample of that many
        rows and every row labelled by its nearest centre, a chunk at a time, so that
        the start holds no copy of X ('random': each chunk's responsibilities drawn from
        a generator keyed by its first row).
    weight_concentration_prior_type : {'dirichlet_process', 'dirichlet_distribution'}, \
default='dirichlet_process'
    weight_concentration_prior : float > 0, default=None
        The weights' prior concentration (gamma_0); ``None`` is ``1 / n_components``.
    mean_precision_prior : float > 0, default=None
        beta_0, the pseudo-count of the means' prior; ``None`` is 1.
    mean_prior : array-like of shape (n_features,), default=None
        m_0; ``None`` is the (weighted) mean of ``X``.
    degrees_of_freedom_prior : float > n_features - 1, default=None
        nu_0; ``None`` is ``n_features``.
    covariance_prior : float or array-like, default=None
        W_0^-1: (n_features, n_features) for 'full' and 'tied', (n_features,) for 'diag',
        a float for 'spherical'; ``None`` is the (weighted) covariance of ``X`` (its
        diagonal, its mean variance).
    random_state : int, RandomState, Generator or None, default=None
        An int or a RandomState draws the initialization as scikit-learn does.
    warm_start : bool, default=False
        Continue from the previous fit (``n_init`` is then ignored).
    verbose : int, default=0
        Log progress (logger ``"emkit"``) every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
    monotonicity : {'warn', 'raise', 'off'}, default='warn'
        What to do if the lower bound decreases between iterations (a numerical failure).
    chunk_size : int or None, default=None
        Rows per chunk of the E-step; ``None`` sizes chunks for the CPU cache.
    n_threads : int or None, default=None
        Threads for the chunks; ``None`` uses every available core.
    engine : None, 'memory', 'streaming' or an engine, default=None
        Where the rows live and how their statistics are summed: ``None`` or
        ``'memory'`` is the in-memory engine (``chunk_size`` rows a chunk on
        ``n_threads`` threads); ``'streaming'`` reads a table opened with
        :func:`emkit.io.open_table` a block at a time; an object with ``map_reduce`` and
        ``map_rows`` (:class:`emkit.engines.Engine`) is used as it is. ``fit``,
        ``predict``, ``predict_proba``, ``score`` and ``score_samples`` take such tables
        as ``X`` with every engine: the prior's defaults and the centre come from passes
        over the rows, and the initialization reads at most 2^17 of them (all of them
        for smaller tables), as in memory: the same fit.

    Attributes
    ----------
    weights_ : ndarray of shape (n_components,)
        E_q[pi] (renormalized over the components for the Dirichlet process).
    means_ : ndarray of shape (n_components, n_features)
    covariances_ : ndarray
        E_q[Lambda_k]^-1, shaped by ``covariance_type``.
    precisions_ : ndarray
    precisions_cholesky_ : ndarray
    weight_concentration_prior_ : float
    weight_concentration_ : ndarray of shape (2, n_components) or (n_components,)
        The sticks' Beta parameters (a_k, b_k) as two rows ('dirichlet_process';
        scikit-learn holds the same two rows as a tuple), or the Dirichlet's.
    mean_precision_prior_ : float
    mean_precision_ : ndarray of shape (n_components,)
    mean_prior_ : ndarray of shape (n_features,)
    degrees_of_freedom_prior_ : float
    degrees_of_freedom_ : ndarray of shape (n_components,), or () for 'tied'
    covariance_prior_ : ndarray
        (n_features, n_features), (n_features,), or () for 'spherical'.
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        The best run's lower bound (ELBO up to terms constant in the fit) at its last
        iteration, scikit-learn's value.
    lower_bounds_ : ndarray of shape (n_iter_,)
        The lower bound at every iteration of the best run.
    trace_ : EMTrace
        The best run's per-sample objective and seconds per iteration.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import BayesianGaussianMixture
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [4, 2], [12, 4], [10, 7]])
    >>> bgm = BayesianGaussianMixture(n_components=2, random_state=42).fit(X)
    >>> bgm.means_.round(2)
    array([[2.5 , 2.29],
           [8.46, 4.52]])
    >>> bgm.predict([[0, 0], [9, 3]])
    array([0, 1])
    """

    def __init__(
        self,
        *,
        n_components: int = 1,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weight_concentration_prior_type: str = "dirichlet_process",
        weight_concentration_prior: float | None = None,
        mean_precision_prior: float | None = None,
        mean_prior: ArrayLike | None = None,
        degrees_of_freedom_prior: float | None = None,
        covariance_prior: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        verbose: int = 0,
        verbose_interval: int = 10,
        monotonicity: str = "warn",
        chunk_size: int | None = None,
        n_threads: int | None = None,
        engine: Any = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weight_concentration_prior_type = weight_concentration_prior_type
        self.weight_concentration_prior = weight_concentration_prior
        self.mean_precision_prior = mean_precision_prior
        self.mean_prior = mean_prior
        self.degrees_of_freedom_prior = degrees_of_freedom_prior
        self.covariance_prior = covariance_prior
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.monotonicity = monotonicity
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.engine = engine

    # -- validation ------------------------------------------------------------------

    def _check_parameters(self) -> None:
        check_em_parameters(self)
        check_choice("covariance_type", self.covariance_type, COVARIANCE_TYPES)
        check_choice(
            "weight_concentration_prior_type",
            self.weight_concentration_prior_type,
            WEIGHT_PRIOR_TYPES,
        )
        check_number("reg_covar", self.reg_covar)
        for name in ("weight_concentration_prior", "mean_precision_prior"):
            _check_positive(name, getattr(self, name))
        _check_positive("degrees_of_freedom_prior", self.degrees_of_freedom_prior)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing value
        return tags

    def _validate_X(self, X: Any, *, reset: bool) -> Any:
        if is_streamed(X):  # a table read a block at a time (emkit.io.open_table)
            return check_streamed(self, X, reset=reset)
        # NaN marks a missing value
        arr = as_float_matrix(X, dtype=None, allow_nan=True)
        validate_data(self, X, reset=reset, skip_check_array=True)
        return arr

    def _resolve_prior(
        self, mean: Array, covariance: Callable[[], Array], dtype: Any
    ) -> GaussianPrior:
        """The prior's hyper-parameters, the defaults from the (weighted) data: its
        ``mean`` over the rows and its ``covariance()`` (computed only if needed)."""
        d = mean.shape[0]
        kind = self.covariance_type
        self.weight_concentration_prior_ = (
            1.0 / self.n_components
            if self.weight_concentration_prior is None
            else float(self.weight_concentration_prior)
        )
        self.mean_precision_prior_ = (
            1.0 if self.mean_precision_prior is None else float(self.mean_precision_prior)
        )
        if self.mean_prior is None:
            self.mean_prior_ = mean.astype(dtype)
        else:
            self.mean_prior_ = _as_array("mean_prior", self.mean_prior, (d,), "means")
        if self.degrees_of_freedom_prior is None:
            self.degrees_of_freedom_prior_ = float(d)
        elif self.degrees_of_freedom_prior > d - 1.0:
            self.degrees_of_freedom_prior_ = float(self.degrees_of_freedom_prior)
        else:
            raise InputError(
                f"The parameter 'degrees_of_freedom_prior' should be greater than {d - 1}, "
                f"but got {self.degrees_of_freedom_prior:.3f}: a Wishart prior on "
                f"{d} features needs more than {d - 1} degrees of freedom."
            )
        self.covariance_prior_: Any
        if self.covariance_prior is None:
            # the data's covariance in the structure's shape (diagonal, mean variance)
            structure = covariance_structure(kind)
            self.covariance_prior_ = np.array(structure.shaped_scale(covariance(), d))
        else:
            self.covariance_prior_ = _check_covariance_prior(self.covariance_prior, kind, d)
        return GaussianPrior(
            mean=self.mean_prior_,
            shrinkage=self.mean_precision_prior_,
            dof=self.degrees_of_freedom_prior_,
            scale=self.covariance_prior_,
        )

    # -- fitting ---------------------------------------------------------------------

    @warnings_once
    def fit(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> Any:
        """Fit the variational posterior by variational EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features), or a table from :func:`emkit.io.open_table`
            NaN marks a missing value: its row's log rho uses the marginal of the
            observed coordinates, the M-step the conditional expectations of the missing
            ones and of their second moments under q(x_m | z), and the ELBO adds the
            entropy of q(x_m | z). The prior's defaults (``mean_prior``,
            ``covariance_prior``) read the rows with missing values at their column's
            (weighted) mean.
        y : None
            Ignored.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; an integer weight is the same as repeating the row.

        Returns
        -------
        self : BayesianGaussianMixture
        """
        self._check_parameters()
        warm = bool(self.warm_start) and hasattr(self, "converged_")
        Xa = self._validate_X(X, reset=not warm)
        n, d = Xa.shape
        K = self.n_components
        if warm:
            check_warm_start("n_components", len(self.weights_), K)
            check_warm_start("covariance_type", self._kind(), self.covariance_type)
            check_warm_start(
                "weight_concentration_prior_type",
                self._weight_kind(),
                self.weight_concentration_prior_type,
            )
        if n < 2:
            raise InputError(
                f"X has {n} sample; fitting a mixture needs at least 2 samples "
                f"(n_samples={n}, shape {Xa.shape})."
            )
        if n < K:
            raise InputError(
                f"Expected n_samples >= n_components but got n_components = {K}, "
                f"n_samples = {n}: a mixture needs at least as many samples as components. "
                "Decrease n_components or pass more data."
            )
        w = check_sample_weight(sample_weight, n, np.float64)
        structure = covariance_structure(self.covariance_type)
        unbound = GaussianFamily(structure, reg_covar=float(self.reg_covar))
        callback = progress_callback(self)
        rng = init_random_source(self.random_state)
        best: EMResult[VariationalParams] | None = None
        with fit_engine(self, Xa) as engine, verbose_logging(self.verbose):
            # the binding and the prior's defaults from statistics passes over the rows,
            # wherever they live, missing values at their column's weighted mean (filled
            # a chunk at a time); the start reads them in their order (at most INIT_ROWS
            # of them, filled, when values are missing or the rows are streamed)
            # (rows in memory with an infinity or nothing observed: refused by the pass,
            # which checks the whole X only when it saw a missing or infinite value)
            family, missing, fill = bind_pass(unbound, engine, Xa, w, refuse_invalid=True)
            assert family.shift is not None
            shift = family.shift
            prior = self._resolve_prior(
                shift,
                lambda: _data_covariance(engine, Xa, w, shift, fill),
                np.float64 if is_streamed(Xa) else Xa.dtype,
            )
            # EM's rows: with missing values in memory, in pattern order through an index
            # (few patterns a chunk), no reordered copy
            rows, row_w, _ = ordered_for_chunks(engine, Xa, w, None) if missing else (Xa, w, None)
            model = VariationalGaussianMixture(
                family,
                prior.attach(structure, K, family.shift),
                self.weight_concentration_prior_type,
                self.weight_concentration_prior_,
                K,
                missing=missing,
            )
            total = float(n) if w is None else float(w.sum())
            row_bytes = model.mixture.row_bytes(d, structure.n_stats(d), K) + d * rows.itemsize
            for init in range(1 if warm else self.n_init):
                if self.verbose:
                    logger.info("Initialization %d", init)
                if warm:
                    start = self._variational_params(family)
                else:
                    start = self._initialize(model, engine, Xa, w, rng, fill)
                result = fit_em(
                    model,
                    engine,
                    RowSource(rows, row_w, work_bytes=row_bytes),
                    start,
                    # the driver's objective is per unit of weight, tol is on the total
                    tol=float(self.tol) / total,
                    max_iter=int(self.max_iter),
                    monotonicity=self.monotonicity,
                    callback=callback,
                    start_objective=self.lower_bound_ / total if warm else -np.inf,
                )
                if best is None or result.objective > best.objective:
                    best = result
        assert best is not None
        if not best.converged and self.max_iter > 0:
            warnings.warn(_NOT_CONVERGED, ConvergenceWarning, stacklevel=2)
        self._set_fitted(family, best, total, Xa.dtype)
        return self

    def _initialize(
        self,
        model: VariationalGaussianMixture,
        engine: Engine,
        X: Any,
        w: Array | None,
        rng: RandomSource,
        fill: Callable[[Array], Array] | None = None,
    ) -> VariationalParams:
        """The posteriors from initial responsibilities (the model's own M-step), of the
        rows in their order as :class:`~emkit.GaussianMixture` reads them: scikit-learn's
        start on every row up to ``INIT_ROWS`` rows, a bounded sample beyond (``fill``
        fills missing values a chunk at a time)."""
        K, d = self.n_components, X.shape[1]
        work = (2 * d + model.family.structure.n_stats(d) + K) * 8
        stats = initial_statistics_bounded(
            self.init_params, model.mixture, engine, X, w, K, rng, fill, work
        )
        return model.m_step(None, stats)  # type: ignore[arg-type]

    def _set_fitted(
        self,
        family: GaussianFamily,
        result: EMResult[VariationalParams],
        total: float,
        dtype: np.dtype[Any],
    ) -> None:
        params = result.params
        post = params.components
        assert family.shift is not None
        out = np.float32 if dtype == np.float32 else np.float64
        structure = family.structure
        self._fitted_type = self.covariance_type
        self._fitted_weight_type = self.weight_concentration_prior_type
        conc = params.concentration
        # the sticks' (a, b) as the rows of a (2, K) array (scikit-learn: a tuple of two)
        self.weight_concentration_ = conc.copy()
        self.weights_ = mean_weights(conc, self.weight_concentration_prior_type).astype(out)
        self.mean_precision_ = post.shrinkage.astype(out)
        self.means_ = (post.mean + family.shift).astype(out)
        self.degrees_of_freedom_ = np.asarray(post.dof).astype(out)  # () for tied
        self.covariances_ = post.covariances.astype(out)
        self.precisions_cholesky_ = post.precisions_cholesky.astype(out)
        self.precisions_ = structure.precisions(post.precisions_cholesky).astype(out)
        trace = result.trace
        self.converged_ = bool(result.converged)
        self.n_iter_ = int(trace.objective.shape[0])
        self.lower_bounds_ = trace.objective * total
        self.lower_bound_ = float(self.lower_bounds_[-1]) if self.n_iter_ else -np.inf
        self.trace_ = trace

    # -- the fitted model -------------------------------------------------------------

    def _kind(self) -> str:
        """The covariance type of the fitted attributes (a loaded model's parameter)."""
        return str(getattr(self, "_fitted_type", self.covariance_type))

    def _weight_kind(self) -> str:
        """The weights' prior type of the fitted attributes."""
        return str(getattr(self, "_fitted_weight_type", self.weight_concentration_prior_type))

    def _variational_params(self, family: GaussianFamily) -> VariationalParams:
        """The fitted posteriors in ``family``'s centred coordinates."""
        assert family.shift is not None
        f64 = np.float64
        dof = np.asarray(self.degrees_of_freedom_, dtype=f64)
        cov = np.asarray(self.covariances_, dtype=f64)
        post = NormalWishart(
            self._kind(),
            np.asarray(self.means_, dtype=f64) - family.shift,
            np.asarray(self.mean_precision_, dtype=f64),
            dof,
            cov * along_components(dof, cov),  # W^-1 = nu E[Lambda]^-1
        )
        conc = self.weight_concentration_
        concentration = np.asarray(np.stack(conc) if isinstance(conc, tuple) else conc, dtype=f64)
        return VariationalParams(concentration, post)

    def _fitted_model(
        self, X: Any, engine: Any = None
    ) -> tuple[VariationalGaussianMixture, VariationalParams]:
        """The fitted posteriors as a model for the rows ``X`` (in memory, or streamed
        through ``engine``: their scale and whether values are missing from one pass)."""
        shift = self._centre()
        if is_streamed(X):
            summary = column_summary(engine, RowSource(X))
            missing, scale = summary.missing, summary.scale(shift)
        else:
            missing, scale = has_missing_values(X), centred_scale(X, shift)
        structure = covariance_structure(self._kind())
        family = GaussianFamily(structure, shift, float(self.reg_covar), scale)
        # the prior does not enter predictions: the posteriors stand for it
        model = VariationalGaussianMixture(
            family,
            GaussianPrior(mean=shift, shrinkage=1.0, dof=float(X.shape[1]), scale=1.0).attach(
                structure, len(self.weights_), shift
            ),
            self._weight_kind(),
            float(self.weight_concentration_prior_),
            len(self.weights_),
            missing=missing,
        )
        return model, self._variational_params(family)

    def _centre(self) -> Array:
        return np.asarray(self.weights_, np.float64) @ np.asarray(self.means_, np.float64)

    def _map(self, X: Any, which: str, fn: Any) -> Any:
        check_is_fitted(self)
        Xa = self._validate_X(X, reset=False)
        K = len(self.weights_)
        d = Xa.shape[1]
        with fit_engine(self, Xa) as engine:
            model, params = self._fitted_model(Xa, engine)
            rows = getattr(model, which)(params)
            row_bytes = model.mixture.pass_row_bytes(d, model.family.structure.n_stats(d), 2 * K)
            out = engine.map_rows(
                lambda chunk: fn(rows(chunk)), RowSource(Xa, work_bytes=row_bytes)
            )
        if Xa.dtype == np.float32 and out.dtype.kind == "f":
            return out.astype(np.float32)
        return out

    def score_samples(self, X: ArrayLike) -> Array:
        """log sum_k exp(E_q[log pi_k] + E_q[log N(x | mu_k, Lambda_k)]) of each sample
        (scikit-learn's value; a lower bound on the log predictive density up to its
        normalization), shape (n_samples,)."""
        return rows_output(self._map(X, "weighted_log_prob", lambda lp: logsumexp(lp, axis=1)))

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean of :meth:`score_samples`."""
        return float(np.mean(self.score_samples(X)))

    def predict(self, X: ArrayLike) -> NDArray[np.intp]:
        """The most probable component of each sample under q, shape (n_samples,)."""
        return rows_output(self._map(X, "log_resp", lambda lr: lr.argmax(axis=1)))

    def predict_proba(self, X: ArrayLike) -> Array:
        """q(z_n = k) of each sample, shape (n_samples, n_components)."""
        return rows_output(self._map(X, "log_resp", np.exp))

    def fit_predict(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> NDArray[np.intp]:
        """Fit, then the most probable component of each sample (as ``fit(X).predict(X)``)."""
        return self.fit(X, y, sample_weight=sample_weight).predict(X)

    def sample(self, n_samples: int = 1) -> tuple[Array, NDArray[np.intp]]:
        """Draw samples from the mixture with the fitted ``weights_``, ``means_`` and
        ``covariances_`` (as scikit-learn does).

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        y : ndarray of shape (n_samples,)
        """
        check_is_fitted(self)
        check_n_samples(n_samples)
        rng = check_random_state(self.random_state)
        weights = np.asarray(self.weights_, dtype=np.float64)
        counts = rng.multinomial(int(n_samples), weights / weights.sum())
        d = self.means_.shape[1]
        cov = np.asarray(self.covariances_, dtype=np.float64)
        structure = covariance_structure(self._kind())
        parts = []
        for k, c in enumerate(counts):
            L = np.linalg.cholesky(structure.component_covariance(cov, k, d))
            parts.append(self.means_[k] + rng.standard_normal((int(c), d)) @ L.T)
        return np.vstack(parts), np.repeat(np.arange(len(weights)), counts)


def _data_covariance(
    engine: Any, X: Any, w: Array | None, mean: Array, fill: Callable[[Array], Array] | None
) -> Array:
    """The covariance of the rows (missing values at ``mean``, their columns' weighted
    means), unbiased, with sample weights as frequencies (an integer weight is a repeated
    row): the weighted scatter about ``mean`` / (sum(w) - 1), from one pass of
    ``engine`` (no centred copy of the rows)."""

    def scatter(Xc: Array, wc: Array | None) -> Array:
        rows = np.asarray(Xc if fill is None else fill(Xc), dtype=np.float64) - mean
        return np.asarray((rows.T if wc is None else rows.T * wc) @ rows)

    total = float(X.shape[0]) if w is None else float(w.sum())
    if total <= 1.0:
        raise InputError(
            f"sample_weight sums to {total:.6g} <= 1, where the default covariance_prior (the "
            "data's covariance, the weights counting rows: scatter / (sum(sample_weight) - 1)) "
            "is undefined. Pass covariance_prior, or weights that count rows."
        )
    return np.atleast_2d(engine.map_reduce(scatter, RowSource(X, w)) / (total - 1.0))


def _check_positive(name: str, value: Any) -> None:
    if value is None:
        return
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not np.isfinite(float(value))
        or value <= 0
    ):
        raise InputError(
            f"The '{name}' parameter of BayesianGaussianMixture must be None or a float in "
            f"the range (0.0, inf). Got {value!r} instead."
        )


def _as_array(name: str, value: Any, shape: tuple[int, ...], what: str) -> Array:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric: {exc}") from exc
    if arr.shape != shape:
        raise InputError(
            f"The parameter '{what}' should have the shape of {shape}, but got {arr.shape} "
            f"({name}: one value per feature of X)."
        )
    if not np.isfinite(arr).all():
        raise InputError(f"{name} contains NaN or infinity; pass finite values.")
    return arr


def _check_covariance_prior(value: Any, kind: str, d: int) -> Any:
    """covariance_prior checked against the covariance type and the data's width."""
    if kind == "spherical":
        if isinstance(value, bool) or not isinstance(value, Real):
            raise InputError(
                "The 'covariance_prior' parameter of BayesianGaussianMixture must be a float "
                f"in the range (0.0, inf) for covariance_type='spherical'. Got {value!r}."
            )
        _check_positive("covariance_prior", value)
        return np.asarray(float(value))
    if kind == "diag":
        arr = _as_array("covariance_prior", value, (d,), "diag covariance prior")
        if (arr <= 0).any():
            raise InputError(
                "'diag covariance prior' should be positive: covariance_prior holds the "
                f"prior's variances, got {arr}."
            )
        return arr
    arr = _as_array("covariance_prior", value, (d, d), f"{kind} covariance prior")
    if not np.allclose(arr, arr.T):
        raise InputError(
            f"'{kind} covariance prior' should be symmetric: covariance_prior must be a "
            "symmetric positive-definite matrix."
        )
    if np.linalg.eigvalsh(arr).min() <= 0:
        raise InputError(
            f"'{kind} covariance prior' should be symmetric, positive-definite: "
            "covariance_prior has an eigenvalue <= 0."
        )
    return arr

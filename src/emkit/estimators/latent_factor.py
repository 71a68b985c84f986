"""``emkit.PPCA`` and ``emkit.FactorAnalysis``: continuous latent factors fitted by EM.

Both are scikit-learn transformers. With complete data, one pass over the rows reduces them
to their weighted count, sum and scatter matrix, and every EM iteration after it costs
O(d^2 q) whatever the number of rows. With missing values (NaN), the E-step goes over the
rows and conditions on the observed entries of each, exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import fields, replace
from typing import Any, ClassVar

import numpy as np
import scipy.linalg
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.extmath import randomized_svd
from sklearn.utils.validation import check_is_fitted, validate_data

from emkit._validation import (
    as_float_matrix,
    check_choice,
    check_flag,
    check_number,
    check_positive_int,
    check_random_state,
    check_sample_weight,
    has_missing_values,
)
from emkit._warnings import warnings_once
from emkit.engines._base import Engine
from emkit.engines._source import RowSource
from emkit.engines.reduced import ReducedEngine
from emkit.estimators._mixture_base import (
    check_n_samples,
    fit_engine,
    logger,
    progress_callback,
    rows_output,
    verbose_logging,
)
from emkit.estimators._rows import (
    check_streamed,
    column_summary,
    fit_checkpoint,
    is_streamed,
    partial_fit_rows,
)
from emkit.exceptions import InputError
from emkit.inference.em import MONOTONICITY_POLICIES, EMTrace, fit_em_restarts
from emkit.inference.monte_carlo import monte_carlo_plan
from emkit.inference.online import OnlineState
from emkit.models.latent_factor import (
    FactorParams,
    LatentFactor,
    LatentFactorMoments,
    canonical_components,
    column_moments,
    drop_negligible,
    loadings_given_noise,
    noise_structure,
    orthomax,
    power_of_two_scale,
)
from emkit.models.sampling import Draws, factor_draws

__all__ = ["PPCA", "FactorAnalysis"]

Array = NDArray[np.floating[Any]]

# What a fit runs: the model, the engine and data its E-step maps over, and the start.
_FitPlan = tuple[LatentFactor, Any, RowSource, Callable[[np.random.Generator], FactorParams]]

# Noise variances are kept >= this times the average feature variance: the likelihood is
# unbounded as a noise variance goes to 0 (a feature the factors explain exactly).
_NOISE_FLOOR = 1e-6


def _row_model(model: LatentFactor, draws: Draws) -> LatentFactor:
    """The row E-step's model with the settings of ``model`` (which may be the
    sufficient-statistics one, :class:`LatentFactorMoments`) and Monte-Carlo ``draws``."""
    settings = {f.name: getattr(model, f.name) for f in fields(model)}
    return LatentFactor(**{**settings, "draws": draws})


def _noise_floor(variances: Array) -> float:
    return _NOISE_FLOOR * (float(variances.mean()) or 1.0)


def magnitude(X: Array) -> float:
    """The largest magnitude among the observed (non-NaN) values of ``X``."""
    with np.errstate(invalid="ignore"):
        return float(max(abs(np.nanmin(X)), abs(np.nanmax(X))))


def check_scale_parameters(
    estimator: BaseEstimator, noise: Array, loadings: Array, scale: float
) -> None:
    """Raise a clear :class:`InputError` when parameters fitted to X / scale (``noise``
    variances and ``loadings``) cannot be written in the units of X: their values
    overflow or underflow float64."""
    with np.errstate(over="ignore", under="ignore"):
        noise_x = noise * (scale * scale)
        loadings_x = loadings * scale
    if np.isfinite(noise_x).all() and np.isfinite(loadings_x).all() and (noise_x > 0).all():
        return
    direction = "overflow" if not np.isfinite(noise_x).all() else "underflow"
    fix = "Divide" if direction == "overflow" else "Multiply"
    raise InputError(
        f"X's values are of magnitude up to about {scale:.3g}: {type(estimator).__name__} "
        f"fits them, but its noise variances (about {float(np.max(noise)):.3g} times "
        f"{scale:.3g}^2) {direction} float64. {fix} X by a constant such as {scale:.3g} "
        "before fitting (and scale the results back)."
    )


def validate_rows(estimator: BaseEstimator, X: Any, *, reset: bool) -> tuple[Any, bool | None]:
    """``X`` as a float matrix in which NaN marks a missing value, and whether one is.

    Infinities, and rows with every value missing, are rejected with a clear message. A
    table streamed from a file (:func:`emkit.io.open_table`) is returned as it is, its
    columns checked; whether a value is missing is then None (a statistics pass says).
    """
    if is_streamed(X):
        return check_streamed(estimator, X, reset=reset), None
    arr = as_float_matrix(X, dtype=None, allow_nan=True)
    # feature names and n_features_in_ the scikit-learn way, after our own checks
    validate_data(estimator, X, reset=reset, skip_check_array=True)
    return arr, has_missing_values(arr)


class _LatentFactorEstimator(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """What PPCA and FactorAnalysis share; they differ in the noise structure."""

    _noise_type: ClassVar[str]

    def __init__(
        self,
        n_components: int = 1,
        *,
        tol: float = 1e-6,
        max_iter: int = 1000,
        random_state: Any = None,
        verbose: int = 0,
        verbose_interval: int = 10,
        monotonicity: str = "warn",
        accelerate: str | None = None,
        learning_offset: float = 10.0,
        learning_decay: float = 0.7,
        chunk_size: int | None = None,
        n_threads: int | None = None,
        e_step: Any = "exact",
        engine: Any = None,
    ) -> None:
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.monotonicity = monotonicity
        self.accelerate = accelerate
        self.learning_offset = learning_offset
        self.learning_decay = learning_decay
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.e_step = e_step
        self.engine = engine

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _check_parameters(self) -> None:
        check_number("tol", self.tol)
        check_positive_int("max_iter", self.max_iter, minimum=0)
        # scikit-learn's estimators take verbose=True
        verbose = int(self.verbose) if isinstance(self.verbose, bool) else self.verbose
        check_positive_int("verbose", verbose, minimum=0)
        check_positive_int("verbose_interval", self.verbose_interval)
        check_choice("monotonicity", self.monotonicity, MONOTONICITY_POLICIES)
        check_random_state(self.random_state)
        factor_draws(self.e_step)

    def _n_factors(self, n_features: int) -> int:
        """The number of factors q to fit, checked against ``n_features``."""
        q = check_positive_int("n_components", self.n_components)
        if q >= n_features:
            raise InputError(
                f"n_components={q} must be less than n_features={n_features}: the model "
                "keeps n_components directions and needs at least one more for the noise. "
                "Decrease n_components."
            )
        return q

    def _initial_params(
        self,
        model: LatentFactor,
        root: Array,
        mean: Array,
        variances: Array,
        q: int,
        rng: np.random.Generator,
        missing: bool,
    ) -> FactorParams:
        """The start of EM, in the model's coordinates, from a root R of the rows'
        covariance (R^T R), their ``mean`` and the feature variances."""
        if missing:  # near the maximum: each iteration is a pass over the rows
            return model.params_from_covariance(root.T @ root, mean, q)
        return model.initial_params(rng, mean, variances, q)

    def _orient(self, components: Array, noise: Array) -> Array:
        """The representative of W (d, q) to report (the likelihood sees only W W^T)."""
        return canonical_components(drop_negligible(components, noise))

    # -- fitting ---------------------------------------------------------------------

    @warnings_once
    def fit(
        self,
        X: ArrayLike,
        y: Any = None,
        sample_weight: ArrayLike | None = None,
        checkpoint: Any = None,
    ) -> Any:
        """Estimate the loadings, mean and noise by EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or ChunkedTable
            Training data; NaN marks a missing value (a row needs one observed value). A
            table opened with :func:`emkit.io.open_table` is read a block at a time.
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; an integer weight is the same as repeating the row.
        checkpoint : str or os.PathLike, default=None
            A directory to save the fit's state in and resume it from, as in
            :meth:`emkit.GaussianMixture.fit` (one start: ``n_init=1``).

        Returns
        -------
        self
        """
        self._check_parameters()
        Xa, missing = validate_rows(self, X, reset=True)
        n, d = Xa.shape
        q = self._n_factors(d)
        name = type(self).__name__
        w = check_sample_weight(sample_weight, n)
        rng = check_random_state(self.random_state)

        callback = progress_callback(self)

        with (
            fit_engine(self, Xa) as engine,
            verbose_logging(self.verbose),
        ):
            summary = None
            if missing is None:  # streamed: the centre, magnitude and missing values
                summary = column_summary(engine, RowSource(Xa, w))
                missing = summary.missing
            model, plan_engine, data, initialize = self._begin(engine, Xa, w, missing, summary)
            path = "rows with missing values" if missing else "the sufficient statistics"
            draws = factor_draws(self.e_step)
            if draws is not None:  # draws need the rows: the row E-step, from the same start
                model, plan_engine = _row_model(model, draws), engine
                data = RowSource(Xa, w, work_bytes=LatentFactor.row_bytes(d, q))
                path = f"the rows ({draws.options.name} E-step)"
            logger.info("%s: EM over %s, %d rows, %d features, q=%d", name, path, n, d, q)
            fit_data, step = monte_carlo_plan(
                model,
                data,
                plan_engine,
                random_state=self.random_state,
                tol=float(self.tol),
                accelerate=self.accelerate,
                monotonicity=self.monotonicity,
            )
            result = fit_em_restarts(
                model,
                plan_engine,
                fit_data,
                initialize,
                n_init=1,
                rng=rng,
                tol=float(self.tol),
                max_iter=int(self.max_iter),
                monotonicity=self.monotonicity,
                accelerate=self.accelerate,
                callback=callback,
                step=step,
                checkpoint=fit_checkpoint(self, checkpoint, Xa, w),
            )
            # the log-likelihood of the parameters EM returns (the trace's last entry is
            # that of the parameters before the last M-step), by the exact E-step
            final = plan_engine.map_reduce(
                replace(model, draws=None).expectation(result.params), data
            )
        check_scale_parameters(self, result.params.noise, result.params.components, model.scale)
        self._online: OnlineState[FactorParams] | None = None  # a fit ends any online run
        self._set_fitted(result.params, model, result.trace, result.converged)
        self._set_loglike(result.trace, final.loglik, final.weight)
        return self

    def _begin(
        self, engine: Engine, X: Any, w: Array | None, missing: bool, summary: Any = None
    ) -> _FitPlan:
        """What EM on these rows starts from: the model, the engine and data its E-step
        maps over, and the initialization (``fit``'s, and ``partial_fit``'s on its first
        batch). ``summary`` (:class:`~emkit.estimators._rows.ColumnSummary`) gives the
        magnitude and centre of streamed rows, which are not read whole."""
        n = X.shape[0]
        q = self._n_factors(X.shape[1])
        if n < 2:
            raise InputError(
                f"X has {n} sample; fitting {type(self).__name__} needs at least 2 samples "
                f"(n_samples={n})."
            )
        # EM runs on X / scale (exact, a power of two): 1 unless X's magnitude is extreme
        if summary is None:
            scale = power_of_two_scale(magnitude(X))
        else:
            scale = power_of_two_scale(float(np.abs([summary.low, summary.high]).max()))
        if missing:
            return self._plan_missing(engine, X, w, q, scale)
        return self._plan_complete(engine, X, w, q, scale, summary)

    def partial_fit(
        self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None
    ) -> Any:
        """One step of online EM on a mini-batch (stepwise EM, Cappé & Moulines 2009).

        The batch's expected statistics (of x and the factors z given x), per unit of
        sample weight, are blended into running statistics with step size
        ``(learning_offset + t) ** -learning_decay`` for the t-th batch (the first with
        step 1), and the M-step maps them to the loadings, mean and noise. The first call
        on an unfitted estimator initializes from its batch as ``fit`` does
        (``random_state``, and FactorAnalysis's ``noise_variance_init`` and
        ``svd_method``); on a fitted one, online EM continues from the fitted parameters.
        ``fit`` starts afresh. The log-likelihood of online EM need not increase;
        ``lower_bounds_`` records each batch's per-sample log-likelihood under the
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

        def start(
            engine: Engine, X: Any, sample_weight: Any
        ) -> tuple[OnlineState[FactorParams], bool]:
            if hasattr(self, "components_"):  # online EM from the fitted parameters
                return OnlineState(*self._online_continue()), False
            self._check_parameters()
            Xa, missing = validate_rows(self, X, reset=True)
            w = check_sample_weight(sample_weight, Xa.shape[0])
            return OnlineState(*self._online_begin(engine, Xa, w, bool(missing))), True

        def batch(X: Any, sample_weight: Any, state: OnlineState[FactorParams]) -> RowSource:
            Xa, _ = validate_rows(self, X, reset=False)
            w = check_sample_weight(sample_weight, Xa.shape[0])
            d, q = state.params.components.shape
            return RowSource(Xa, w, work_bytes=LatentFactor.row_bytes(d, q))

        def finish(
            state: OnlineState[FactorParams], trace: EMTrace, dtype: Any, seen: float
        ) -> None:
            params, model = state.params, state.model
            check_scale_parameters(self, params.noise, params.components, model.scale)
            self._set_fitted(params, model, trace, False)
            self._set_online_loglike(state.updates > 1, state.objective * (state.seen - seen))

        return partial_fit_rows(self, X, sample_weight, start=start, batch=batch, finish=finish)

    def _online_begin(
        self, engine: Engine, X: Array, w: Array | None, missing: bool
    ) -> tuple[LatentFactor, FactorParams]:
        """The row model and the start of online EM from its first batch, as ``fit``
        initializes."""
        plan_model, _, _, initialize = self._begin(engine, X, w, missing)
        model = LatentFactor(
            plan_model.noise, plan_model.shift, plan_model.noise_floor, plan_model.scale
        )
        return model, initialize(check_random_state(self.random_state))

    def _online_continue(self) -> tuple[LatentFactor, FactorParams]:
        """The row model and parameters of the fitted attributes, online EM's start."""
        model, params = self._fitted()
        # fit's floor: a small fraction of the average feature variance, diag(W W^T + Psi)
        variances = (params.components**2).sum(axis=1) + params.noise
        return replace(model, noise_floor=_noise_floor(variances)), params

    def _set_online_loglike(self, continuing: bool, loglik: float) -> None:
        """Record a batch's total log-likelihood (FactorAnalysis's ``loglike_``)."""

    def _set_loglike(self, trace: EMTrace, final: float, weight: float) -> None:
        """Record the total log-likelihood per iteration (FactorAnalysis's ``loglike_``)."""

    def _plan_complete(
        self,
        engine: Engine,
        X: Any,
        w: Array | None,
        q: int,
        scale: float,
        summary: Any = None,
    ) -> _FitPlan:
        """EM on the sufficient statistics: one pass over the rows, then O(d^2 q) an
        iteration."""
        n, d = X.shape
        if summary is None:
            weights = np.ones(n) if w is None else w
            shift = (weights @ X) / weights.sum() / scale  # one BLAS pass
        else:
            shift = summary.shift / scale
        structure = noise_structure(self._noise_type)
        moments = engine.map_reduce(
            LatentFactor(structure, shift, 0.0, scale).moments,
            RowSource(X, w, work_bytes=3 * d * 8),
        )
        scatter = moments.scatter_root()
        variances = (scatter.root**2).sum(axis=0) / scatter.weight
        model = LatentFactorMoments(structure, shift, _noise_floor(variances), scale)
        root = scatter.root / np.sqrt(scatter.weight)  # root^T root = the covariance

        def initialize(rng: np.random.Generator) -> FactorParams:
            return self._initial_params(model, root, scatter.mean, variances, q, rng, False)

        return model, ReducedEngine(), RowSource(scatter), initialize

    def _plan_missing(
        self, engine: Engine, X: Array, w: Array | None, q: int, scale: float
    ) -> _FitPlan:
        """EM over the rows. Each iteration is then a pass over the data, so the start is
        near the maximum: the fit of the available-case covariance (one more pass)."""
        d = X.shape[1]
        columns = engine.map_reduce(
            lambda block, weights: column_moments(block, weights, scale),
            RowSource(X, w, work_bytes=4 * d * 8),
        )
        if (columns.count <= 0).any():
            raise InputError(
                f"Column {int(np.argmax(columns.count <= 0))} of X has no observed value "
                "(with a positive sample_weight); drop that column."
            )
        structure = noise_structure(self._noise_type)
        variances = columns.variance()
        model = LatentFactor(structure, columns.mean(), _noise_floor(variances), scale)
        pairs = engine.map_reduce(model.pairwise_moments, RowSource(X, w, work_bytes=3 * d * 8))
        lam, V = np.linalg.eigh(pairs.covariance())
        root = (V * np.sqrt(np.maximum(lam, 0.0))).T  # root^T root = the covariance, clipped
        start: list[FactorParams] = []

        def initialize(rng: np.random.Generator) -> FactorParams:
            if not start:
                mean = np.zeros(d)
                start.append(self._initial_params(model, root, mean, variances, q, rng, True))
            return start[0]

        return model, engine, RowSource(X, w, work_bytes=LatentFactor.row_bytes(d, q)), initialize

    def _set_fitted(
        self, params: FactorParams, model: LatentFactor, trace: EMTrace, converged: bool
    ) -> None:
        scale = model.scale
        self.components_ = (self._orient(params.components, params.noise) * scale).T.copy()
        self.mean_ = (model.shift + params.mean) * scale
        self.noise_variance_ = self._noise_attribute(params.noise * (scale * scale))
        self.converged_ = bool(converged)
        self.n_iter_ = int(trace.objective.shape[0])
        self.lower_bounds_ = trace.objective.copy()
        self.lower_bound_ = float(trace.objective[-1]) if self.n_iter_ else -np.inf
        self.trace_ = trace

    def _noise_attribute(self, noise: Array) -> Any:
        raise NotImplementedError

    def _noise_vector(self) -> Array:
        """The noise variances as a vector (n_features,) whatever the structure."""
        return np.broadcast_to(self.noise_variance_, self.mean_.shape).astype(np.float64)

    # -- the fitted model -------------------------------------------------------------

    def _fitted(self) -> tuple[LatentFactor, FactorParams]:
        check_is_fitted(self)
        d = self.mean_.shape[0]
        noise = self._noise_vector()
        # the model's own coordinates: those of its fit, where X was of extreme magnitude
        scale = power_of_two_scale(float(np.sqrt(noise.max())))
        structure = noise_structure(self._noise_type)
        model = LatentFactor(structure, self.mean_ / scale, 0.0, scale)
        params = FactorParams(self.components_.T / scale, np.zeros(d), noise / scale**2)
        return model, params

    def _map_rows(self, X: ArrayLike, method: str) -> Array:
        model, params = self._fitted()
        Xa, _ = validate_rows(self, X, reset=False)
        fn = getattr(model, method)(params)
        row_bytes = LatentFactor.row_bytes(*params.components.shape)
        with fit_engine(self, Xa) as engine:
            return rows_output(engine.map_rows(fn, RowSource(Xa, work_bytes=row_bytes)))

    def transform(self, X: ArrayLike) -> Array:
        """Posterior mean of the latent factors, E[z | x], given each row's observed values.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            NaN marks a missing value.

        Returns
        -------
        Z : ndarray of shape (n_samples, n_components)
        """
        return self._map_rows(X, "posterior_mean")

    def inverse_transform(self, X: ArrayLike) -> Array:
        """The mean of x given the factors, W z + mu.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_components)
            Latent factors, e.g. from :meth:`transform`.

        Returns
        -------
        X_original : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        Z = as_float_matrix(X)
        q = self.components_.shape[0]
        if Z.shape[1] != q:
            raise InputError(
                f"X has {Z.shape[1]} columns, but {type(self).__name__} has "
                f"n_components={q}: pass latent factors such as transform() returns."
            )
        return np.asarray(Z @ self.components_ + self.mean_)

    def score_samples(self, X: ArrayLike) -> Array:
        """Log-likelihood of each row's observed values, shape (n_samples,).

        NaN marks a missing value: the row's density is the marginal of its observed
        entries.
        """
        return self._map_rows(X, "log_density")

    def score(self, X: ArrayLike, y: Any = None) -> float:
        """Mean log-likelihood of the rows (observed values only)."""
        return float(self.score_samples(X).mean())

    def get_covariance(self) -> Array:
        """Model covariance W W^T + Psi, shape (n_features, n_features)."""
        check_is_fitted(self)
        return np.asarray(self.components_.T @ self.components_ + np.diag(self._noise_vector()))

    def get_precision(self) -> Array:
        """Inverse of the model covariance, by Woodbury, shape (n_features, n_features)."""
        check_is_fitted(self)
        W, inv_psi = self.components_.T, 1.0 / self._noise_vector()
        Wp = W * inv_psi[:, None]
        # C^-1 = Psi^-1 - Psi^-1 W (I + W^T Psi^-1 W)^-1 W^T Psi^-1
        M = np.eye(W.shape[1]) + W.T @ Wp
        return np.asarray(np.diag(inv_psi) - Wp @ np.linalg.solve(M, Wp.T))

    def sample(self, n_samples: int = 1) -> Array:
        """Draw rows from the fitted model: x = W z + mu + noise.

        Returns
        -------
        X : ndarray of shape (n_samples, n_features)
        """
        check_is_fitted(self)
        check_n_samples(n_samples)
        rng = check_random_state(self.random_state)
        q, d = self.components_.shape
        Z = rng.standard_normal((int(n_samples), q))
        noise = rng.standard_normal((int(n_samples), d)) * np.sqrt(self._noise_vector())
        return np.asarray(Z @ self.components_ + self.mean_ + noise)

    def _n_parameters(self) -> int:
        q, d = self.components_.shape
        return LatentFactor(noise_structure(self._noise_type), self.mean_, 0.0).n_parameters(d, q)

    def bic(self, X: ArrayLike) -> float:
        """Bayesian information criterion on ``X`` (lower is better)."""
        n = np.shape(X)[0]
        return -2.0 * self.score(X) * n + self._n_parameters() * np.log(n)

    def aic(self, X: ArrayLike) -> float:
        """Akaike information criterion on ``X`` (lower is better)."""
        n = np.shape(X)[0]
        return -2.0 * self.score(X) * n + 2.0 * self._n_parameters()

    @property
    def _n_features_out(self) -> int:
        return int(self.components_.shape[0])


_PARAMETERS = """
    Parameters
    ----------
    n_components : int, default=1
        Dimension q of the latent factors; less than n_features.
    tol : float, default=1e-6
        Convergence threshold: EM stops when the per-sample log-likelihood gains less than
        ``tol`` (``0 <= change < tol``; a decrease is never convergence).
    max_iter : int, default=1000
        Maximum number of EM iterations.
    random_state : int, Generator, RandomState or None, default=None
        Seeds the random orthonormal start of W and :meth:`sample`. (With missing values,
        EM starts instead from the PPCA fit of the available-case covariance: there each
        iteration is a pass over the rows, so a start near the maximum pays.)
    verbose : int, default=0
        Log progress (logger ``"emkit"``) every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
        Iterations between two progress messages.
    monotonicity : {'warn', 'raise', 'off'}, default='warn'
        What to do if the log-likelihood decreases between iterations (a numerical
        failure: exact EM never lowers it).
    accelerate : {None, 'squarem'}, default=None
        ``'squarem'`` extrapolates the EM map on the statistics (SQUAREM, Varadhan &
        Roland 2008): several times fewer iterations on overlapping components, the same
        optimum, and the objective still never decreases (a rejected jump falls back to
        plain EM).
    learning_offset : float, default=10.0
        ``partial_fit``'s step-size schedule: the t-th mini-batch is blended into the
        running statistics with step ``(learning_offset + t) ** -learning_decay`` (the
        names of scikit-learn's online LDA).
    learning_decay : float, default=0.7
        In (0.5, 1] online EM converges; 0 makes every ``partial_fit`` a whole EM step on
        its batch.
    chunk_size : int or None, default=None
        Rows per chunk of a pass over the data; ``None`` sizes chunks for the CPU cache.
    n_threads : int or None, default=None
        Threads for the chunks; ``None`` uses every available core.
    e_step : {'exact', 'monte-carlo', 'stochastic'} or MonteCarlo, default='exact'
        ``'exact'`` is EM; ``'monte-carlo'`` is Monte-Carlo EM: the statistics average
        over factor scores drawn from their Gaussian posterior, a number of draws a row
        that grows as the run converges, and a stopping rule that several small changes
        in a row must meet (pass :class:`emkit.inference.MonteCarlo` options instead to
        set them); ``'stochastic'`` is stochastic EM (one draw a row). Both run over the
        rows at every iteration (exact EM on complete data runs on their sufficient
        statistics), report the exact log-likelihood, which they need not raise at
        every iteration, take ``accelerate=None``, and the monotonicity check is off for
        them.
    engine : None, 'memory', 'streaming' or an engine, default=None
        Where the rows live and how their statistics are summed: ``None`` or
        ``'memory'`` is the in-memory engine (``chunk_size`` rows a chunk on
        ``n_threads`` threads); ``'streaming'`` reads a table opened with
        :func:`emkit.io.open_table` a block at a time; an object with ``map_reduce`` and
        ``map_rows`` (:class:`emkit.engines.Engine`) is used as it is.
"""

_ATTRIBUTES = """
    components_ : ndarray of shape (n_components, n_features)
        W^T: the loadings, rows orthogonal and by decreasing norm (the likelihood depends on
        W only through W W^T; this is the representative picked).
    mean_ : ndarray of shape (n_features,)
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Per-sample log-likelihood at the last iteration.
    lower_bounds_ : ndarray of shape (n_iter_,)
        Per-sample log-likelihood at every iteration (never decreasing with the exact
        E-step).
    trace_ : EMTrace
        Objective and seconds per iteration.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.
"""


class PPCA(_LatentFactorEstimator):
    __doc__ = (
        """Probabilistic PCA (Tipping & Bishop, 1999) fitted by EM, with missing values.

    x = W z + mu + noise with z ~ N(0, I) and isotropic noise N(0, sigma^2 I). At the
    maximum, W = U (Lambda - sigma^2 I)^(1/2) R spans the leading principal subspace and
    sigma^2 is the mean of the discarded eigenvalues of the sample covariance; EM reaches
    it from the sufficient statistics alone (one pass over complete data), and with
    missing values (NaN) it conditions exactly on each row's observed entries.
"""
        + _PARAMETERS
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES
        + """    noise_variance_ : float
        sigma^2.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import PPCA
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(500, 2)) @ [[3.0, 0, 0, 0], [0, 2.0, 0, 0]]
    >>> X += 0.1 * rng.normal(size=(500, 4))
    >>> X[::7, 1] = np.nan                          # missing values are fine
    >>> ppca = PPCA(n_components=2, random_state=0).fit(X)
    >>> ppca.transform(X).shape
    (500, 2)
    >>> bool(ppca.noise_variance_ < 0.02)
    True
    """
    )

    _noise_type = "isotropic"

    def _noise_attribute(self, noise: Array) -> Any:
        return float(noise[0])


_FA_PARAMETERS = """
    Parameters
    ----------
    n_components : int or None, default=None
        Dimension q of the latent factors, 0 <= q <= n_features; ``None`` means
        n_features (as in scikit-learn).
    tol : float, default=1e-6
        Convergence threshold: EM stops when the per-sample log-likelihood gains less than
        ``tol`` (``0 <= change < tol``; a decrease is never convergence). scikit-learn's
        ``tol`` bounds the gain of the total log-likelihood instead.
    copy : bool, default=True
        Accepted for scikit-learn compatibility. emkit never writes to ``X`` (rows are
        centred chunk by chunk in scratch buffers), so both values leave ``X`` unchanged
        and give the same fit.
    max_iter : int, default=1000
        Maximum number of EM iterations.
    noise_variance_init : array-like of shape (n_features,) or None, default=None
        The noise variances EM starts from (positive); ``None`` starts from the feature
        variances. EM starts from the loadings that maximize the likelihood given them.
    svd_method : {'lapack', 'randomized'}, default='randomized'
        The SVD that computes those starting loadings: LAPACK's full SVD
        (``scipy.linalg.svd``) or scikit-learn's ``randomized_svd`` (faster when
        n_components is much less than n_features). EM then runs on the data's sufficient
        statistics, with no SVD of the data.
    iterated_power : int, default=3
        Power iterations of the randomized SVD (used with ``svd_method='randomized'``).
    rotation : {'varimax', 'quartimax'} or None, default=None
        Orthogonal rotation of the fitted loadings that maximizes the varimax (Kaiser,
        1958) or quartimax criterion: a representative of W that is easier to read. The
        model (its covariance, likelihood and scores) does not change; ``transform``
        returns the factors in the rotated frame.
    random_state : int, Generator, RandomState or None, default=None
        Seeds the randomized SVD and :meth:`sample`.
    verbose : int or bool, default=0
        Log progress (logger ``"emkit"``) every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
        Iterations between two progress messages.
    monotonicity : {'warn', 'raise', 'off'}, default='warn'
        What to do if the log-likelihood decreases between iterations (a numerical
        failure: exact EM never lowers it).
    accelerate : {None, 'squarem'}, default=None
        ``'squarem'`` extrapolates the EM map (SQUAREM, Varadhan & Roland 2008) and falls
        back to plain EM whenever a jump would lower the log-likelihood.
    learning_offset : float, default=10.0
        ``partial_fit``'s step-size schedule: the t-th mini-batch is blended into the
        running statistics with step ``(learning_offset + t) ** -learning_decay`` (the
        names of scikit-learn's online LDA).
    learning_decay : float, default=0.7
        In (0.5, 1] online EM converges; 0 makes every ``partial_fit`` a whole EM step on
        its batch.
    chunk_size : int or None, default=None
        Rows per chunk of a pass over the data; ``None`` sizes chunks for the CPU cache.
    n_threads : int or None, default=None
        Threads for the chunks; ``None`` uses every available core.
    e_step : {'exact', 'monte-carlo', 'stochastic'} or MonteCarlo, default='exact'
        ``'exact'`` is EM; ``'monte-carlo'`` is Monte-Carlo EM: the statistics average
        over factor scores drawn from their Gaussian posterior, a number of draws a row
        that grows as the run converges, and a stopping rule that several small changes
        in a row must meet (pass :class:`emkit.inference.MonteCarlo` options instead to
        set them); ``'stochastic'`` is stochastic EM (one draw a row). Both run over the
        rows at every iteration (exact EM on complete data runs on their sufficient
        statistics), report the exact log-likelihood, which they need not raise at
        every iteration, take ``accelerate=None``, and the monotonicity check is off for
        them.
    engine : None, 'memory', 'streaming' or an engine, default=None
        Where the rows live and how their statistics are summed: ``None`` or
        ``'memory'`` is the in-memory engine (``chunk_size`` rows a chunk on
        ``n_threads`` threads); ``'streaming'`` reads a table opened with
        :func:`emkit.io.open_table` a block at a time; an object with ``map_reduce`` and
        ``map_rows`` (:class:`emkit.engines.Engine`) is used as it is.
"""

SVD_METHODS = ("lapack", "randomized")
ROTATIONS = ("varimax", "quartimax")
# the orthomax criterion's gamma of each rotation
_ORTHOMAX_GAMMA = {"varimax": 1.0, "quartimax": 0.0}


class FactorAnalysis(_LatentFactorEstimator):
    __doc__ = (
        """Factor analysis fitted by EM (Rubin & Thayer, 1982), with missing values.

    x = W z + mu + noise with z ~ N(0, I) and diagonal noise N(0, Psi): each feature has
    its own noise variance. With complete data EM runs on the sufficient statistics (one
    pass over the rows); with missing values (NaN) it conditions exactly on each row's
    observed entries. The parameters are scikit-learn's (plus sample weights, missing
    values and the monotonicity check); EM starts from the loadings that maximize the
    likelihood given ``noise_variance_init``.
"""
        + _FA_PARAMETERS
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES
        + """    noise_variance_ : ndarray of shape (n_features,)
        The diagonal of Psi.
    loglike_ : ndarray of shape (n_iter_,)
        The log-likelihood of the training data (summed over the samples, weighted by
        ``sample_weight``) after each iteration, as scikit-learn records it (there, a
        list): the last entry is ``score_samples(X) @ sample_weight`` of the fitted model.
        After ``partial_fit``: each batch's, under the parameters before its step.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import FactorAnalysis
    >>> rng = np.random.default_rng(0)
    >>> W = rng.normal(size=(6, 2))
    >>> X = rng.normal(size=(2000, 2)) @ W.T + rng.normal(size=(2000, 6)) * [1, 2, 1, 2, 1, 2]
    >>> fa = FactorAnalysis(n_components=2, random_state=0).fit(X)
    >>> bool(np.allclose(fa.noise_variance_, [1, 4, 1, 4, 1, 4], rtol=0.15))
    True
    >>> fa.transform(X[:3]).shape
    (3, 2)
    """
    )

    _noise_type = "diagonal"
    loglike_: Array

    def __init__(
        self,
        n_components: int | None = None,
        *,
        tol: float = 1e-6,
        copy: bool = True,
        max_iter: int = 1000,
        noise_variance_init: ArrayLike | None = None,
        svd_method: str = "randomized",
        iterated_power: int = 3,
        rotation: str | None = None,
        random_state: Any = None,
        verbose: int = 0,
        verbose_interval: int = 10,
        monotonicity: str = "warn",
        accelerate: str | None = None,
        learning_offset: float = 10.0,
        learning_decay: float = 0.7,
        chunk_size: int | None = None,
        n_threads: int | None = None,
        e_step: Any = "exact",
        engine: Any = None,
    ) -> None:
        super().__init__(
            n_components,  # type: ignore[arg-type]
            tol=tol,
            max_iter=max_iter,
            random_state=random_state,
            verbose=verbose,
            verbose_interval=verbose_interval,
            monotonicity=monotonicity,
            accelerate=accelerate,
            learning_offset=learning_offset,
            learning_decay=learning_decay,
            chunk_size=chunk_size,
            n_threads=n_threads,
            e_step=e_step,
            engine=engine,
        )
        self.copy = copy
        self.noise_variance_init = noise_variance_init
        self.svd_method = svd_method
        self.iterated_power = iterated_power
        self.rotation = rotation

    def _check_parameters(self) -> None:
        super()._check_parameters()
        check_flag("copy", self.copy)
        check_choice("svd_method", self.svd_method, SVD_METHODS)
        check_positive_int("iterated_power", self.iterated_power, minimum=0)
        if self.rotation is not None:
            check_choice("rotation", self.rotation, ROTATIONS)

    def _n_factors(self, n_features: int) -> int:
        if self.n_components is None:
            return n_features
        q = check_positive_int("n_components", self.n_components, minimum=0)
        if q > n_features:
            raise InputError(
                f"n_components={q} must be at most n_features={n_features}: there are no "
                "more directions to load. Decrease n_components (or pass None for "
                "n_features)."
            )
        return q

    def _noise_start(self, variances: Array, scale: float) -> Array:
        """The initial noise variances, in the model's coordinates."""
        d = variances.shape[0]
        if self.noise_variance_init is None:
            return variances
        init = np.asarray(self.noise_variance_init)
        if init.shape != (d,) or not np.issubdtype(init.dtype, np.number):
            raise InputError(
                f"noise_variance_init must be an array of {d} numbers, one per feature of X "
                f"(n_features={d}), got shape {init.shape} and dtype {init.dtype}. Pass "
                "one positive variance per feature, or None to start from the feature "
                "variances."
            )
        init = init.astype(np.float64)
        if not (np.isfinite(init).all() and (init > 0).all()):
            raise InputError(
                f"noise_variance_init must hold finite positive variances, got {init!r}. "
                "Pass one positive variance per feature, or None."
            )
        return init / (scale * scale)

    def _initial_params(
        self,
        model: LatentFactor,
        root: Array,
        mean: Array,
        variances: Array,
        q: int,
        rng: np.random.Generator,
        missing: bool,
    ) -> FactorParams:
        noise = model.noise.pool(
            self._noise_start(variances, model.scale), np.ones(mean.shape[0]), model.noise_floor
        )
        if self.svd_method == "lapack":

            def svd(A: Array, k: int) -> tuple[Array, Array]:
                _, s, Vt = scipy.linalg.svd(A, full_matrices=False, check_finite=False)
                return s[:k], Vt[:k]

        else:
            seed = int(rng.integers(np.iinfo(np.int32).max))

            def svd(A: Array, k: int) -> tuple[Array, Array]:
                _, s, Vt = randomized_svd(A, k, n_iter=int(self.iterated_power), random_state=seed)
                return s, Vt

        return FactorParams(loadings_given_noise(root, noise, q, svd), mean, noise)

    def _orient(self, components: Array, noise: Array) -> Array:
        W = super()._orient(components, noise)
        if self.rotation is None:
            return W
        W = orthomax(W, _ORTHOMAX_GAMMA[self.rotation])
        # each column's largest entry positive, as canonical_components leaves them
        rows = np.abs(W).argmax(axis=0)
        signs = np.sign(W[rows, np.arange(W.shape[1])])
        return np.asarray(W * np.where(signs == 0, 1.0, signs))

    def _set_online_loglike(self, continuing: bool, loglik: float) -> None:
        # a batch's, under the parameters before its step
        previous = self.loglike_ if continuing else np.zeros(0)
        self.loglike_ = np.append(previous, loglik)

    def _set_loglike(self, trace: EMTrace, final: float, weight: float) -> None:
        # entry i: the parameters after iteration i + 1, whose per-sample log-likelihood
        # the trace records at the start of iteration i + 2
        loglike = np.append(trace.objective[1:] * weight, final)
        self.loglike_ = loglike if trace.objective.size else np.zeros(0)

    def _noise_attribute(self, noise: Array) -> Any:
        return noise.copy()

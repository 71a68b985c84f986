"""``emkit.MixtureOfPPCA`` and ``emkit.MixtureOfFactorAnalyzers``: clustering in high
dimension with a low-rank-plus-noise covariance per cluster.

A cluster's covariance W_k W_k^T + Psi_k has d q + d (or d q + 1) parameters instead of
d (d + 1) / 2, and its log-density costs O(d q) a row (Woodbury), never a d x d solve.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy.special import logsumexp
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from emkit._validation import (
    as_float_matrix,
    check_number,
    check_positive_int,
    check_random_state,
    check_sample_weight,
)
from emkit._warnings import warnings_once
from emkit.engines._source import RowSource
from emkit.estimators._mixture_base import (
    FittedMixture,
    check_em_parameters,
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
    initial_statistics_bounded,
    is_streamed,
)
from emkit.estimators.latent_factor import check_scale_parameters
from emkit.exceptions import InputError
from emkit.inference.em import EMTrace, fit_em_restarts
from emkit.inference.monte_carlo import monte_carlo_plan
from emkit.models.factor_mixture import FactorMixture, FactorMixtureParams
from emkit.models.latent_factor import (
    canonical_components,
    noise_structure,
    power_of_two_scale,
)
from emkit.models.mixing import assignment

__all__ = ["MixtureOfFactorAnalyzers", "MixtureOfPPCA"]

Array = NDArray[np.floating[Any]]


class _FactorMixtureEstimator(FittedMixture, DensityMixin, BaseEstimator):
    """What the two mixtures share; they differ in the noise structure."""

    _noise_type: ClassVar[str]

    def __init__(
        self,
        n_components: int = 1,
        *,
        n_factors: int = 1,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        random_state: Any = None,
        verbose: int = 0,
        verbose_interval: int = 10,
        e_step: str = "exact",
        monotonicity: str = "warn",
        accelerate: str | None = None,
        chunk_size: int | None = None,
        n_threads: int | None = None,
        engine: Any = None,
    ) -> None:
        self.n_components = n_components
        self.n_factors = n_factors
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.e_step = e_step
        self.monotonicity = monotonicity
        self.accelerate = accelerate
        self.chunk_size = chunk_size
        self.n_threads = n_threads
        self.engine = engine

    def _check_parameters(self) -> None:
        check_em_parameters(self)
        check_positive_int("n_factors", self.n_factors)
        if check_number("reg_covar", self.reg_covar) <= 0:
            raise InputError(
                f"reg_covar must be > 0, got {self.reg_covar!r}: it is the floor of the noise "
                "variances, which keeps a collapsing cluster's likelihood finite."
            )

    def _validate_X(self, X: Any, *, reset: bool) -> Any:
        if is_streamed(X):  # a table read a block at a time (emkit.io.open_table)
            return check_streamed(self, X, reset=reset)
        arr = as_float_matrix(X, dtype=None)  # float64 and float32 data are used in place
        validate_data(self, X, reset=reset, skip_check_array=True)
        return arr

    # -- fitting ---------------------------------------------------------------------

    @warnings_once
    def fit(
        self,
        X: ArrayLike,
        y: Any = None,
        sample_weight: ArrayLike | None = None,
        checkpoint: Any = None,
    ) -> Any:
        """Estimate the mixture by EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features) or ChunkedTable
            A table opened with :func:`emkit.io.open_table` is read a block at a time, in
            every pass.
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
        Xa = self._validate_X(X, reset=True)
        n, d = Xa.shape
        K, q = int(self.n_components), int(self.n_factors)
        if n < 2:
            raise InputError(
                f"X has {n} sample; fitting a mixture needs at least 2 samples "
                f"(n_samples={n}, shape {Xa.shape})."
            )
        if n < K:
            raise InputError(
                f"X has {n} samples but n_components={K}: a mixture needs at least as many "
                "samples as components. Decrease n_components or pass more data."
            )
        if q >= d:
            raise InputError(
                f"n_factors={q} must be less than n_features={d}: each cluster keeps n_factors "
                "directions and needs at least one more for the noise. Decrease n_factors."
            )
        w = check_sample_weight(sample_weight, n)
        row_bytes = FactorMixture.row_bytes(d, K, q) + d * Xa.itemsize
        rng = check_random_state(self.random_state)
        callback = progress_callback(self)

        with (
            fit_engine(self, Xa) as engine,
            verbose_logging(self.verbose),
        ):
            # the centre and the magnitude of the values: one pass over the rows
            summary = column_summary(engine, RowSource(Xa, w))
            if summary.missing:
                raise InputError(
                    f"{type(self).__name__} takes no missing values (NaN); X has some. "
                    "Drop or impute those rows, or fit PPCA / FactorAnalysis, which take them."
                )
            # EM runs on X / scale (exact, a power of two): 1 unless X's magnitude is extreme
            scale = power_of_two_scale(float(np.abs([summary.low, summary.high]).max()))
            floor = _scaled_floor(float(self.reg_covar), scale)
            if not np.isfinite(floor):
                raise InputError(
                    f"X's values are of magnitude up to about {scale:.3g}, too small next to "
                    f"reg_covar={self.reg_covar!r} (the floor of the noise variances) for "
                    f"float64: every cluster would be that floor. Multiply X by a constant "
                    f"such as {1.0 / scale:.3g}, or lower reg_covar."
                )
            shift = summary.shift
            model = FactorMixture(
                noise_structure(self._noise_type),
                shift / scale,
                floor,
                assignment(self.e_step),
                scale=scale,
            )

            def rescaled(rows: Array) -> Any:
                # the initialization reads the rows too: at an extreme magnitude, rescaled
                return (lambda chunk: chunk) if scale == 1.0 else (lambda chunk: chunk / scale)

            def initialize(rng: np.random.Generator) -> FactorMixtureParams:
                stats = initial_statistics_bounded(
                    self.init_params, model, engine, Xa, w, K, rng, None, row_bytes, view=rescaled
                )
                return model.initial_params(stats, q)

            data, step = monte_carlo_plan(
                model,
                RowSource(Xa, w, work_bytes=row_bytes),
                engine,
                random_state=self.random_state,
                tol=float(self.tol),
                accelerate=self.accelerate,
                monotonicity=self.monotonicity,
            )
            result = fit_em_restarts(
                model,
                engine,
                data,
                initialize,
                n_init=int(self.n_init),
                rng=rng,
                tol=float(self.tol),
                max_iter=int(self.max_iter),
                monotonicity=self.monotonicity,
                accelerate=self.accelerate,
                callback=callback,
                on_start=(lambda i: logger.info("Initialization %d", i)) if self.verbose else None,
                step=step,
                checkpoint=fit_checkpoint(self, checkpoint, Xa, w),
            )
        check_scale_parameters(self, result.params.noise, result.params.components, scale)
        self._set_fitted(result.params, model, result.trace, result.converged)
        return self

    def _set_fitted(
        self, params: FactorMixtureParams, model: FactorMixture, trace: EMTrace, converged: bool
    ) -> None:
        W = canonical_components(params.components)  # (K, d, q)
        s = model.scale
        self.weights_ = params.weights
        self.means_ = (model.shift + params.means) * s
        self.components_ = np.ascontiguousarray(np.swapaxes(W, 1, 2)) * s
        self.noise_variance_ = self._noise_attribute(params.noise * s**2)
        self.covariances_ = (W @ np.swapaxes(W, 1, 2) + _diag_stack(params.noise)) * s**2
        self.converged_ = bool(converged)
        self.n_iter_ = int(trace.objective.shape[0])
        self.lower_bounds_ = trace.objective.copy()
        self.lower_bound_ = float(trace.objective[-1]) if self.n_iter_ else -np.inf
        self.trace_ = trace

    def _noise_attribute(self, noise: Array) -> Any:
        raise NotImplementedError

    def _noise_matrix(self) -> Array:
        """Noise variances (n_components, n_features) whatever the structure."""
        K, d = self.means_.shape
        nv = np.asarray(self.noise_variance_, dtype=np.float64)
        return np.broadcast_to(nv.reshape(K, -1), (K, d)).copy()

    # -- the fitted model -------------------------------------------------------------

    def _fitted(self) -> tuple[FactorMixture, FactorMixtureParams]:
        check_is_fitted(self)
        noise = self._noise_matrix()
        # the model's own coordinates: those of its fit, where X was of extreme magnitude
        s = power_of_two_scale(float(np.sqrt(noise.max())))
        centre = (self.weights_ @ self.means_) / s
        model = FactorMixture(
            noise_structure(self._noise_type), centre, _scaled_floor(self.reg_covar, s), scale=s
        )
        W = np.ascontiguousarray(np.swapaxes(self.components_, 1, 2)) / s
        params = FactorMixtureParams(self.weights_, W, self.means_ / s - centre, noise / s**2)
        return model, params

    def _map_parts(self, X: ArrayLike, fn: Any) -> Any:
        """Apply ``fn`` to each chunk's parts (log p(x_n, k) - o_n, o_n) (see
        :meth:`FactorMixture.log_prob_parts`)."""
        model, params = self._fitted()
        Xa = self._validate_X(X, reset=False)
        parts = model.log_prob_parts(params)
        K, q, d = self.components_.shape
        row_bytes = FactorMixture.row_bytes(d, 2 * K, q)
        with fit_engine(self, Xa) as engine:
            return engine.map_rows(
                lambda chunk: fn(*parts(chunk)), RowSource(Xa, work_bytes=row_bytes)
            )

    def _map_rows(self, X: ArrayLike, fn: Any) -> Any:
        """Apply ``fn`` to the rows' joint log-probabilities (n, K), chunk by chunk, less
        a constant per row where they are all beyond float64's range (an outlier):
        the responsibilities and the most likely component stay exact."""
        return self._map_parts(X, lambda log_prob, offset: fn(log_prob))

    def score_samples(self, X: ArrayLike) -> Array:
        """Log-density of each sample, shape (n_samples,) (-inf for a row whose density
        is below float64's range)."""
        return rows_output(
            self._map_parts(X, lambda log_prob, offset: logsumexp(log_prob, axis=1) + offset)
        )

    def _draw(self, component: int, n: int, rng: np.random.Generator) -> Array:
        # x = W^T z + mu + noise, z ~ N(0, I_q)
        noise = self._noise_matrix()[component]
        q, d = self.components_.shape[1:]
        z = rng.standard_normal((n, q))
        return np.asarray(
            z @ self.components_[component]
            + self.means_[component]
            + rng.standard_normal((n, d)) * np.sqrt(noise)
        )

    def _n_parameters(self) -> int:
        K, q, d = self.components_.shape
        model = FactorMixture(noise_structure(self._noise_type), np.zeros(d), 1.0)
        return model.n_parameters(K, d, q)


def _scaled_floor(reg_covar: float, scale: float) -> float:
    """reg_covar / scale^2 (0 or inf beyond float64's range; scale is a power of two)."""
    with np.errstate(over="ignore", under="ignore"):
        return float(np.ldexp(reg_covar, -2 * (int(np.frexp(scale)[1]) - 1)))


def _diag_stack(noise: Array) -> Array:
    out = np.zeros((*noise.shape, noise.shape[-1]))
    idx = np.arange(noise.shape[-1])
    out[..., idx, idx] = noise
    return out


_PARAMETERS = """
    Parameters
    ----------
    n_components : int, default=1
        Number of clusters.
    n_factors : int, default=1
        Dimension q of each cluster's latent factors; less than n_features.
    tol : float, default=1e-3
        Convergence threshold: EM stops when the per-sample log-likelihood gains less than
        ``tol`` (``0 <= change < tol``; a decrease is never convergence).
    reg_covar : float, default=1e-6
        Floor of the noise variances (> 0), which keeps the likelihood bounded when a
        cluster collapses onto a subspace.
    max_iter : int, default=100
        Maximum number of EM iterations.
    n_init : int, default=1
        Number of initializations; the best run is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How the initial responsibilities are drawn; each cluster then starts at the
        closed-form PPCA fit of its weighted covariance.
    random_state : int, Generator, RandomState or None, default=None
        Seeds the initialization and :meth:`sample`.
    verbose : int, default=0
        Log progress (logger ``"emkit"``) every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
        Iterations between two progress messages.
    e_step : {'exact', 'hard', 'monte-carlo', 'stochastic'} or MonteCarlo, default='exact'
        The E-step's posterior: ``'exact'`` is EM; ``'hard'`` is classification EM, every
        row wholly on its most probable cluster, and the objective the complete-data
        log-likelihood at those assignments;
        ``'monte-carlo'`` is Monte-Carlo EM: the statistics average over labels drawn
        from the posterior (the factors stay integrated out), a number of draws a row
        that grows as the run converges, and a stopping rule that several small changes
        in a row must meet (pass :class:`emkit.inference.MonteCarlo` options instead to
        set them); ``'stochastic'`` is stochastic EM (one label drawn a row). Both
        report the exact log-likelihood, which they need not raise at every iteration:
        they take ``accelerate=None`` and the monotonicity check is off for them.
    monotonicity : {'warn', 'raise', 'off'}, default='warn'
        What to do if the log-likelihood decreases between iterations.
    accelerate : {None, 'squarem'}, default=None
        ``'squarem'`` extrapolates the EM map on the statistics (SQUAREM, Varadhan &
        Roland 2008): several times fewer iterations on overlapping components, the same
        optimum, and the objective still never decreases (a rejected jump falls back to
        plain EM).
    chunk_size : int or None, default=None
        Rows per chunk of the E-step; ``None`` sizes chunks for the CPU cache.
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
    weights_ : ndarray of shape (n_components,)
    means_ : ndarray of shape (n_components, n_features)
    components_ : ndarray of shape (n_components, n_factors, n_features)
        W_k^T for each cluster, rows orthogonal and by decreasing norm.
    covariances_ : ndarray of shape (n_components, n_features, n_features)
        W_k W_k^T + Psi_k, for reference (the model never inverts them).
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
"""


class MixtureOfPPCA(_FactorMixtureEstimator):
    __doc__ = (
        """Mixture of probabilistic PCA (Tipping & Bishop, 1999), fitted by EM.

    Cluster k is N(mu_k, W_k W_k^T + sigma_k^2 I). Given the responsibilities, each
    cluster's M-step is the closed-form PPCA maximum on its weighted covariance, so EM
    is exact and the log-likelihood never decreases.
"""
        + _PARAMETERS
        + """    noise_variance_ : ndarray of shape (n_components,)
        sigma_k^2.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import MixtureOfPPCA
    >>> rng = np.random.default_rng(0)
    >>> line = rng.normal(size=(200, 1)) * [[1.0, 1.0, 0, 0, 0]]
    >>> X = np.vstack([line, line[:, ::-1] + 10]) + 0.01 * rng.normal(size=(400, 5))
    >>> mppca = MixtureOfPPCA(n_components=2, n_factors=1, random_state=0).fit(X)
    >>> labels = mppca.predict(X)
    >>> bool((labels[:200] == labels[0]).all() and (labels[200:] != labels[0]).all())
    True
    """
    )

    _noise_type = "isotropic"

    def _noise_attribute(self, noise: Array) -> Any:
        return noise[:, 0].copy()


class MixtureOfFactorAnalyzers(_FactorMixtureEstimator):
    __doc__ = (
        """Mixture of factor analyzers (Ghahramani & Hinton, 1996), fitted by EM.

    Cluster k is N(mu_k, W_k W_k^T + Psi_k) with a diagonal Psi_k. Given the
    responsibilities, each cluster's M-step is one factor-analysis EM update from its
    weighted covariance (generalized EM: the log-likelihood still never decreases).
"""
        + _PARAMETERS
        + """    noise_variance_ : ndarray of shape (n_components, n_features)
        The diagonal of each Psi_k.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import MixtureOfFactorAnalyzers
    >>> rng = np.random.default_rng(0)
    >>> line = rng.normal(size=(200, 1)) * [[1.0, 1.0, 0, 0, 0]]
    >>> X = np.vstack([line, line[:, ::-1] + 10]) + 0.01 * rng.normal(size=(400, 5))
    >>> mfa = MixtureOfFactorAnalyzers(n_components=2, n_factors=1, random_state=0).fit(X)
    >>> mfa.components_.shape, mfa.noise_variance_.shape
    ((2, 1, 5), (2, 5))
    """
    )

    _noise_type = "diagonal"

    def _noise_attribute(self, noise: Array) -> Any:
        return noise.copy()

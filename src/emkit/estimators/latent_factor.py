"""``emkit.PPCA`` and ``emkit.FactorAnalysis``: continuous latent factors fitted by EM.

Both are scikit-learn transformers. With complete data, one pass over the rows reduces them
to their weighted count, sum and scatter matrix, and every EM iteration after it costs
O(d^2 q) whatever the number of rows. With missing values (NaN), the E-step goes over the
rows and conditions on the observed entries of each, exactly.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from emkit._validation import (
    as_float_matrix,
    check_random_state,
    check_sample_weight,
    has_missing_values,
)
from emkit._warnings import warnings_once
from emkit.engines.memory import InMemoryEngine
from emkit.engines.reduced import ReducedEngine
from emkit.estimators._mixture_base import (
    check_em_parameters,
    check_n_samples,
    logger,
    progress_callback,
    verbose_logging,
)
from emkit.exceptions import InputError
from emkit.inference.em import EMTrace, fit_em_restarts
from emkit.models.latent_factor import (
    FactorParams,
    LatentFactor,
    LatentFactorMoments,
    canonical_components,
    column_moments,
    noise_structure,
)

__all__ = ["PPCA", "FactorAnalysis"]

Array = NDArray[np.floating[Any]]

# What a fit runs: the model, the engine and data its E-step maps over, and the start.
_FitPlan = tuple[LatentFactor, Any, tuple[Any, ...], Callable[[np.random.Generator], FactorParams]]

# Noise variances are kept >= this times the average feature variance: the likelihood is
# unbounded as a noise variance goes to 0 (a feature the factors explain exactly).
_NOISE_FLOOR = 1e-6


def _noise_floor(variances: Array) -> float:
    return _NOISE_FLOOR * (float(variances.mean()) or 1.0)


def validate_rows(estimator: BaseEstimator, X: Any, *, reset: bool) -> tuple[Array, bool]:
    """``X`` as a float matrix in which NaN marks a missing value, and whether one is.

    Infinities, and rows with every value missing, are rejected with a clear message.
    """
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
        chunk_size: int | None = None,
        n_threads: int | None = None,
    ) -> None:
        self.n_components = n_components
        self.tol = tol
        self.max_iter = max_iter
        self.random_state = random_state
        self.verbose = verbose
        self.verbose_interval = verbose_interval
        self.monotonicity = monotonicity
        self.accelerate = accelerate
        self.chunk_size = chunk_size
        self.n_threads = n_threads

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True
        return tags

    def _check_parameters(self) -> None:
        check_em_parameters(self)

    # -- fitting ---------------------------------------------------------------------

    @warnings_once
    def fit(self, X: ArrayLike, y: Any = None, sample_weight: ArrayLike | None = None) -> Any:
        """Estimate the loadings, mean and noise by EM.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training data; NaN marks a missing value (a row needs one observed value).
        y : ignored
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights; an integer weight is the same as repeating the row.

        Returns
        -------
        self
        """
        self._check_parameters()
        Xa, missing = validate_rows(self, X, reset=True)
        n, d = Xa.shape
        q = int(self.n_components)
        name = type(self).__name__
        if n < 2:
            raise InputError(
                f"X has {n} sample; fitting {name} needs at least 2 samples (n_samples={n})."
            )
        if q >= d:
            raise InputError(
                f"n_components={q} must be less than n_features={d}: the model keeps "
                "n_components directions and needs at least one more for the noise. "
                "Decrease n_components."
            )
        w = check_sample_weight(sample_weight, n)
        rng = check_random_state(self.random_state)

        callback = progress_callback(self)

        with (
            InMemoryEngine(self.chunk_size, self.n_threads) as engine,
            verbose_logging(self.verbose),
        ):
            plan = self._plan_missing if missing else self._plan_complete
            model, fit_engine, data, initialize = plan(engine, Xa, w, q)
            path = "rows with missing values" if missing else "the sufficient statistics"
            logger.info("%s: EM over %s, %d rows, %d features, q=%d", name, path, n, d, q)
            result = fit_em_restarts(
                model,
                fit_engine,
                data,
                initialize,
                n_init=1,
                rng=rng,
                tol=float(self.tol),
                max_iter=int(self.max_iter),
                monotonicity=self.monotonicity,
                accelerate=self.accelerate,
                row_bytes=LatentFactor.row_bytes(d, q),
                callback=callback,
            )
        self._set_fitted(result.params, model.shift, result.trace, result.converged)
        return self

    def _plan_complete(self, engine: InMemoryEngine, X: Array, w: Array | None, q: int) -> _FitPlan:
        """EM on the sufficient statistics: one pass over the rows, then O(d^2 q) an
        iteration; the start is a random orthonormal W scaled to the variances."""
        n, d = X.shape
        weights = np.ones(n) if w is None else w
        shift = (weights @ X) / weights.sum()  # one BLAS pass
        structure = noise_structure(self._noise_type)
        moments = engine.map_reduce(
            LatentFactor(structure, shift, 0.0).moments, X, w, row_bytes=3 * d * 8
        )
        scatter = moments.scatter_root()
        variances = (scatter.root**2).sum(axis=0) / scatter.weight
        model = LatentFactorMoments(structure, shift, _noise_floor(variances))

        def initialize(rng: np.random.Generator) -> FactorParams:
            return model.initial_params(rng, scatter.mean, variances, q)

        return model, ReducedEngine(), (scatter,), initialize

    def _plan_missing(self, engine: InMemoryEngine, X: Array, w: Array | None, q: int) -> _FitPlan:
        """EM over the rows. Each iteration is then a pass over the data, so the start is
        near the maximum: the PPCA fit of the available-case covariance (one more pass)."""
        d = X.shape[1]
        columns = engine.map_reduce(column_moments, X, w, row_bytes=4 * d * 8)
        if (columns.count <= 0).any():
            raise InputError(
                f"Column {int(np.argmax(columns.count <= 0))} of X has no observed value "
                "(with a positive sample_weight); drop that column."
            )
        structure = noise_structure(self._noise_type)
        model = LatentFactor(structure, columns.mean(), _noise_floor(columns.variance()))
        pairs = engine.map_reduce(model.pairwise_moments, X, w, row_bytes=3 * d * 8)
        start = model.params_from_covariance(pairs.covariance(), np.zeros(d), q)

        def initialize(rng: np.random.Generator) -> FactorParams:
            return start

        return model, engine, (X, w), initialize

    def _set_fitted(
        self, params: FactorParams, shift: Array, trace: EMTrace, converged: bool
    ) -> None:
        self.components_ = canonical_components(params.components).T.copy()
        self.mean_ = shift + params.mean
        self.noise_variance_ = self._noise_attribute(params.noise)
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
        model = LatentFactor(noise_structure(self._noise_type), self.mean_, 0.0)
        return model, FactorParams(self.components_.T, np.zeros(d), self._noise_vector())

    def _map_rows(self, X: ArrayLike, method: str) -> Array:
        model, params = self._fitted()
        Xa, _ = validate_rows(self, X, reset=False)
        fn = getattr(model, method)(params)
        row_bytes = LatentFactor.row_bytes(*self.components_.T.shape)
        with InMemoryEngine(self.chunk_size, self.n_threads) as engine:
            return np.asarray(engine.map_rows(fn, Xa, row_bytes=row_bytes))

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
    chunk_size : int or None, default=None
        Rows per chunk of a pass over the data; ``None`` sizes chunks for the CPU cache.
    n_threads : int or None, default=None
        Threads for the chunks; ``None`` uses every available core.
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
        Per-sample log-likelihood at every iteration (never decreasing).
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


class FactorAnalysis(_LatentFactorEstimator):
    __doc__ = (
        """Factor analysis fitted by EM (Rubin & Thayer, 1982), with missing values.

    x = W z + mu + noise with z ~ N(0, I) and diagonal noise N(0, Psi): each feature has
    its own noise variance. With complete data EM runs on the sufficient statistics (one
    pass over the rows); with missing values (NaN) it conditions exactly on each row's
    observed entries.
"""
        + _PARAMETERS
        + """
    Attributes
    ----------"""
        + _ATTRIBUTES
        + """    noise_variance_ : ndarray of shape (n_features,)
        The diagonal of Psi.

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

    def _noise_attribute(self, noise: Array) -> Any:
        return noise.copy()

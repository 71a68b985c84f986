"""``emkit.StudentTMixture``: robust clustering with multivariate t components, fitted by
EM with the degrees of freedom by a 1-D solve (:mod:`emkit.models.student_t`)."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator, DensityMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from emkit._validation import (
    as_float_matrix,
    check_choice,
    check_number,
    check_positive_int,
    check_random_state,
    check_sample_weight,
    has_missing_values,
)
from emkit.engines._source import RowSource
from emkit.estimators._mixture_base import (
    FittedMixture,
    check_em_parameters,
    fit_engine,
    logger,
    progress_callback,
    verbose_logging,
)
from emkit.estimators._rows import (
    check_streamed,
    column_summary,
    filler,
    fit_checkpoint,
    initial_statistics_bounded,
    is_streamed,
    ordered_for_chunks,
)
from emkit.exceptions import InputError
from emkit.families.covariance import covariance_types
from emkit.families.gaussian import centred_column_scale, covariance_structure
from emkit.inference.em import fit_em_restarts
from emkit.inference.monte_carlo import monte_carlo_plan
from emkit.models.mixing import assignment
from emkit.models.student_t import (
    DOF_BOUNDS,
    DOF_TYPES,
    DegreesOfFreedom,
    StudentTParams,
)
from emkit.models.student_t import (
    StudentTMixture as StudentTModel,
)

__all__ = ["StudentTMixture"]

Array = NDArray[np.floating[Any]]

# where the degrees of freedom start when they are estimated and not given
_DEFAULT_INITIAL_DOF = 10.0


class StudentTMixture(FittedMixture, DensityMixin, BaseEstimator):
    """Mixture of multivariate Student-t distributions, for clustering robust to outliers.

    Component k is t_nu_k(mu_k, Sigma_k): a Gaussian N(mu_k, Sigma_k / u) whose precision
    is scaled by a latent u ~ Gamma(nu_k / 2, rate nu_k / 2) per row. A row far from a
    component gets a small expected scale E[u] = (nu + d) / (nu + delta) and so little
    say in that component's mean and scale: the heavy tails absorb outliers that would
    drag a Gaussian mixture's means and inflate its covariances. As nu grows the
    components become Gaussian.

    EM (Peel & McLachlan, 2000) treats the labels and the scales u as missing: the E-step
    gives the responsibilities, E[u] and E[log u]; the M-step updates the weights, then
    the means and scale matrices from the statistics weighted by E[u] (a Gaussian
    covariance M-step), then the degrees of freedom by a 1-D root solve
    (:func:`scipy.optimize.brentq`) of the ECM equation. Each part maximizes the expected
    complete-data log-likelihood, so the log-likelihood never decreases.

    Parameters
    ----------
    n_components : int, default=1
        Number of components.
    covariance_type : str, default='full'
        Structure of the scale matrices, as in :class:`GaussianMixture`: scikit-learn's
        four names, mclust's fourteen models ('EII' ... 'VVV', each fitted by the same
        constrained M-step as the Gaussian's, on the u-weighted statistics: an ECM step),
        or 'E' / 'V' for one column.
    degrees_of_freedom : float or None, default=None
        nu > 0: its value when ``dof_type='fixed'`` (required then), its starting value
        otherwise (None: start at 10).
    dof_type : {'per-component', 'shared', 'fixed'}, default='per-component'
        How nu is estimated: one per component, one shared by all, or not at all.
    max_m_step_iter : int or None, default=None
        Iterations of the degrees of freedom's root solve per M-step; None solves to
        convergence. A bound makes the M-step a generalized one (GEM): a value past the
        maximum is pulled back towards the old nu until it raises the objective, which
        therefore still never decreases. (The Gamma and Beta families' Newton M-steps
        take the same option.)
    tol : float, default=1e-3
        Convergence threshold on the gain of the per-sample log-likelihood.
    reg_covar : float, default=1e-6
        Added to the diagonal of the scale matrices (> 0).
    max_iter : int, default=100
        Maximum number of EM iterations.
    n_init : int, default=1
        Number of initializations; the best run is kept.
    init_params : {'kmeans', 'k-means++', 'random', 'random_from_data'}, default='kmeans'
        How the initial responsibilities are drawn (the first M-step sets every u = 1).
    random_state : int, Generator, RandomState or None, default=None
        Seeds the initialization and :meth:`sample`.
    warm_start : bool, default=False
        Start the next :meth:`fit` from this fit's parameters (``n_init`` is then 1).
    verbose : int, default=0
        Log progress (logger ``"emkit"``) every ``verbose_interval`` iterations.
    verbose_interval : int, default=10
        Iterations between two progress messages.
    e_step : {'exact', 'hard', 'monte-carlo', 'stochastic'} or MonteCarlo, default='exact'
        ``'exact'`` is EM; ``'hard'`` is classification EM (each row wholly on its most
        probable component; the scales u stay integrated out); ``'monte-carlo'`` is
        Monte-Carlo EM: the statistics average over labels drawn from the posterior
        (the scales' moments given the label stay exact), a number of draws a row that
        grows as the run converges, and a stopping rule that several small changes in a
        row must meet (pass :class:`emkit.inference.MonteCarlo` options instead to set
        them); ``'stochastic'`` is stochastic EM (one label drawn a row). Both report
        the exact log-likelihood, which they need not raise at every iteration: they
        take ``accelerate=None`` and the monotonicity check is off for them.
    monotonicity : {'warn', 'raise', 'off'}, default='warn'
        What to do if the log-likelihood decreases between iterations.
    accelerate : {None, 'squarem'}, default=None
        ``'squarem'`` extrapolates the EM map on the statistics (a rejected jump falls
        back to the plain EM step, so the objective still never decreases).
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
        The locations mu_k (the means when nu_k > 1).
    covariances_ : ndarray
        The scale matrices Sigma_k, shaped as in :class:`GaussianMixture` for the
        ``covariance_type``. They are not the covariances: for nu_k > 2 the covariance
        of component k is nu_k / (nu_k - 2) * Sigma_k (infinite for nu_k <= 2).
    precisions_cholesky_ : ndarray
        U_k upper triangular with Sigma_k^-1 = U_k U_k^T (as in scikit-learn).
    precisions_ : ndarray
        Sigma_k^-1.
    degrees_of_freedom_ : ndarray of shape (n_components,)
        nu_k (all equal for ``'shared'``).
    converged_ : bool
    n_iter_ : int
    lower_bound_ : float
        Per-sample log-likelihood of the best run at its last iteration.
    lower_bounds_ : ndarray of shape (n_iter_,)
    trace_ : EMTrace
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Defined only when ``X`` has feature names that are all strings.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit import StudentTMixture
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.standard_t(3, (200, 2)), rng.standard_t(3, (200, 2)) + 10])
    >>> tm = StudentTMixture(n_components=2, random_state=0).fit(X)
    >>> np.round(np.sort(tm.means_[:, 0]))
    array([ 0., 10.])
    """

    means_: Array
    covariances_: Array
    precisions_cholesky_: Array
    degrees_of_freedom_: Array

    def __init__(
        self,
        n_components: int = 1,
        *,
        covariance_type: str = "full",
        degrees_of_freedom: float | None = None,
        dof_type: str = "per-component",
        max_m_step_iter: int | None = None,
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        random_state: Any = None,
        warm_start: bool = False,
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
        self.covariance_type = covariance_type
        self.degrees_of_freedom = degrees_of_freedom
        self.dof_type = dof_type
        self.max_m_step_iter = max_m_step_iter
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.random_state = random_state
        self.warm_start = warm_start
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
        check_choice("covariance_type", self.covariance_type, covariance_types())
        check_choice("dof_type", self.dof_type, DOF_TYPES)
        if self.max_m_step_iter is not None:
            check_positive_int("max_m_step_iter", self.max_m_step_iter)
        if check_number("reg_covar", self.reg_covar) <= 0:
            raise InputError(
                f"reg_covar must be > 0, got {self.reg_covar!r}: it is added to the scale "
                "matrices' diagonals and keeps a collapsing component's likelihood finite."
            )
        nu = self.degrees_of_freedom
        if nu is None:
            if self.dof_type == "fixed":
                raise InputError(
                    "dof_type='fixed' needs degrees_of_freedom, the value to keep, got None. "
                    "Pass degrees_of_freedom=nu (e.g. 4.0) or dof_type='per-component'."
                )
            return
        lo, hi = DOF_BOUNDS
        if (
            isinstance(nu, bool)
            or not isinstance(nu, int | float | np.integer | np.floating)
            or not lo <= nu <= hi
        ):
            raise InputError(
                f"degrees_of_freedom must be a number in [{lo:g}, {hi:g}] or None, got "
                f"{nu!r}. Small values give heavy tails (1: Cauchy); large ones approach a "
                "Gaussian."
            )

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # a missing value
        return tags

    def _validate_X(self, X: Any, *, reset: bool) -> Any:
        if is_streamed(X):  # a table read a block at a time (emkit.io.open_table)
            return check_streamed(self, X, reset=reset)
        arr = as_float_matrix(X, allow_nan=True)
        has_missing_values(arr)  # raises for infinities and rows with no observed value
        validate_data(self, X, reset=reset, skip_check_array=True)
        return arr

    def _model(
        self, shift: Array, missing: bool = True, column_scale: Array | None = None
    ) -> StudentTModel:
        structure = covariance_structure(self.covariance_type)
        structure.check_features(shift.shape[0])
        return StudentTModel(
            structure,
            shift,
            float(self.reg_covar),
            DegreesOfFreedom(
                self.dof_type,
                None if self.max_m_step_iter is None else int(self.max_m_step_iter),
            ),
            assignment(self.e_step),
            missing=missing,
            column_scale=column_scale,
        )

    # -- fitting ---------------------------------------------------------------------

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
            NaN marks a missing value. A table opened with :func:`emkit.io.open_table`
            is read a block at a time, in every pass.
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
        warm = self.warm_start and hasattr(self, "weights_")
        Xa = self._validate_X(X, reset=not warm)
        n, d = Xa.shape
        K = int(self.n_components)
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
        w = check_sample_weight(sample_weight, n)
        row_bytes = StudentTModel.row_bytes(d, K)
        rng = check_random_state(self.random_state)
        nu0 = _DEFAULT_INITIAL_DOF if self.degrees_of_freedom is None else self.degrees_of_freedom
        start_dof = np.full(K, float(nu0))

        with (
            fit_engine(self, Xa) as engine,
            verbose_logging(self.verbose),
        ):
            # the centre, the column scales and whether a value is missing: one pass
            summary = column_summary(engine, RowSource(Xa, w))
            missing = summary.missing
            shift = self.weights_ @ self.means_ if warm else summary.shift
            column_scale = centred_column_scale(np.concatenate(summary.spaced), shift)
            model = self._model(shift, missing, column_scale)
            fill = filler(summary.fill_means) if missing else None
            # EM's rows: with missing values in memory, rows of a pattern together, read
            # through an index (no reordered copy); the start reads the rows in their
            # order, filled a chunk at a time (a streamed table keeps the file's order:
            # each chunk groups its own)
            rows, row_w, _ = ordered_for_chunks(engine, Xa, w, None) if missing else (Xa, w, None)

            def initialize(rng: np.random.Generator) -> StudentTParams:
                if warm:
                    return self._params(shift)
                stats = initial_statistics_bounded(
                    self.init_params, model, engine, Xa, w, K, rng, fill, row_bytes
                )
                return model.initial_params(stats, start_dof)

            data, step = monte_carlo_plan(
                model,
                RowSource(rows, row_w, work_bytes=row_bytes),
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
                n_init=1 if warm else int(self.n_init),
                rng=rng,
                tol=float(self.tol),
                max_iter=int(self.max_iter),
                monotonicity=self.monotonicity,
                accelerate=self.accelerate,
                callback=progress_callback(self),
                on_start=(lambda i: logger.info("Initialization %d", i)) if self.verbose else None,
                step=step,
                checkpoint=fit_checkpoint(self, checkpoint, Xa, w),
            )
        params = result.params
        structure = model.structure
        self.weights_ = params.weights
        self.means_ = shift + params.means
        self.covariances_ = params.covariances
        self.precisions_cholesky_ = params.precisions_cholesky
        self.precisions_ = structure.precisions(params.precisions_cholesky)
        self.degrees_of_freedom_ = params.dof
        self._set_trace(result.trace, result.converged)
        return self

    # -- the fitted model -------------------------------------------------------------

    def _params(self, shift: Array) -> StudentTParams:
        return StudentTParams(
            self.weights_,
            self.means_ - shift,
            self.covariances_,
            self.precisions_cholesky_,
            self.degrees_of_freedom_,
        )

    def _map_rows(self, X: ArrayLike, fn: Any) -> Any:
        """Apply ``fn`` to the rows' joint log-probabilities (n, K), chunk by chunk."""
        check_is_fitted(self)
        Xa = self._validate_X(X, reset=False)
        shift = self.weights_ @ self.means_
        log_prob = self._model(shift).weighted_log_prob(self._params(shift))
        K, d = self.means_.shape
        row_bytes = StudentTModel.row_bytes(d, 2 * K)
        with fit_engine(self, Xa) as engine:
            return engine.map_rows(
                lambda chunk: fn(log_prob(chunk)), RowSource(Xa, work_bytes=row_bytes)
            )

    def _draw(self, component: int, n: int, rng: np.random.Generator) -> Array:
        # x = mu + z / sqrt(g), z ~ N(0, Sigma), g ~ Gamma(nu/2, rate nu/2) = chi2(nu) / nu
        d = self.means_.shape[1]
        structure = covariance_structure(self.covariance_type)
        scale = structure.component_covariance(self.covariances_, component, d)
        nu = float(self.degrees_of_freedom_[component])
        z = rng.standard_normal((n, d)) @ np.linalg.cholesky(scale).T
        g = rng.chisquare(nu, n) / nu
        return np.asarray(self.means_[component] + z / np.sqrt(g)[:, None])

    def _n_parameters(self) -> int:
        K, d = self.means_.shape
        return self._model(np.zeros(d)).n_parameters(K, d)

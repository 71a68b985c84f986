"""The Gaussian family, with its covariance structure as a small strategy object.

In natural form, with precision P = Sigma^-1 = U U^T (U upper triangular),

    log N(x | mu, Sigma) = x.(P mu) - 1/2 x^T P x - 1/2 mu^T P mu + 1/2 log|P| - d/2 log(2 pi)

so the statistics are ``x`` and the products the structure needs (``x x^T`` packed for
``full``, ``x**2`` for ``diag``, ``||x||^2`` for ``spherical``; ``tied`` shares ``x^T P x``
between components, so it needs ``x`` alone plus one resp-independent scatter matrix).

The data are centred once (``shift``) so the expanded quadratic form stays accurate; where
it would still lose precision (float32, badly scaled data) :meth:`GaussianFamily.natural`
flags it and :meth:`GaussianFamily.log_prob` uses the whitened form ``||(x - mu) U||^2``.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar, NamedTuple

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import DegenerateComponentWarning, EmkitError, InputError
from emkit.families._base import Natural

__all__ = [
    "COVARIANCE_TYPES",
    "CovarianceStructure",
    "Diag",
    "Full",
    "GaussianFamily",
    "GaussianParams",
    "Spherical",
    "Tied",
    "covariance_structure",
]

Array = NDArray[np.floating[Any]]
LOG_2PI = float(np.log(2.0 * np.pi))

# Absolute error (in nats) of a log-density the expanded form may make before the
# whitened form is used instead: float64 stays at sklearn-parity accuracy, float32 at 1e-3.
_EXPANDED_FORM_TOLERANCE = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-3}

_ILL_DEFINED = (
    "Fitting the mixture model failed because some components have ill-defined empirical "
    "covariance (for instance caused by singleton or collapsed samples). Try to decrease "
    "the number of components, increase reg_covar, or scale the input data."
)


class GaussianParams(NamedTuple):
    """Parameters of all Gaussian components, in the family's centred coordinates."""

    means: Array  # (K, d)
    covariances: Array  # full (K, d, d), tied (d, d), diag (K, d), spherical (K,)
    precisions_cholesky: Array  # same shapes; P = U U^T with U upper triangular
    mended: bool = False  # the M-step raised a singular covariance: it was not exact


def _cholesky_upper_of_precision(cov: Array) -> Array:
    """U upper triangular with U U^T = cov^-1, for a stack (..., d, d)."""
    # cov = L L^T  =>  cov^-1 = L^-T L^-1 = U U^T with U = L^-T
    L = np.linalg.cholesky(cov)
    eye = np.broadcast_to(np.eye(cov.shape[-1]), cov.shape)
    return np.swapaxes(np.linalg.solve(L, eye), -1, -2)


@lru_cache(maxsize=64)
def _triu_indices(d: int) -> tuple[NDArray[np.intp], NDArray[np.intp]]:
    """Row and column indices of the packed upper triangle (i <= j), in packing order."""
    i, j = np.triu_indices(d)
    i.flags.writeable = j.flags.writeable = False
    return i, j


def _stat_rows(Xc: Array, n_stats: int) -> tuple[Array, Array]:
    """A statistics buffer whose first d rows already hold x, and x feature-major.

    Statistics are stored statistic-major, (n_stats, n): each statistic is one contiguous
    row, so forming them and the row-wise softmax run at memory speed, and ``buffer.T``
    is still the (n, n_stats) matrix T of the maths.
    """
    n, d = Xc.shape
    XT = np.ascontiguousarray(Xc.T)  # a view when Xc comes from prepare
    TT = np.empty((n_stats, n), dtype=Xc.dtype)
    TT[:d] = XT
    return XT, TT


class CovarianceStructure:
    """How one covariance structure shapes the Gaussian statistics and M-step."""

    name: ClassVar[str]
    has_row_term: ClassVar[bool] = False
    dense: ClassVar[bool] = False  # covariances are (d, d) matrices

    def n_stats(self, d: int) -> int:
        raise NotImplementedError

    def statistics(self, Xc: Array) -> Array:
        raise NotImplementedError

    def stat_scale(self, d: int, s: float) -> Array:
        """Largest magnitude each statistic can take when every |x_j| <= s."""
        raise NotImplementedError

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        """(eta, log_norm) in float64 such that log N = T @ eta_k - log_norm_k + row term."""
        raise NotImplementedError

    def row_term(self, Xc: Array, prec_chol: Array) -> Array | None:
        """A log-density term equal for all components (only ``tied`` has one)."""
        return None

    def shared_statistics(self, Xc: Array, weights: Array | None) -> Array:
        return np.zeros(0)

    def covariances(
        self, nk: Array, means: Array, sum_t: Array, shared: Array, reg_covar: float
    ) -> Array:
        raise NotImplementedError

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        """(n, K) squared Mahalanobis distances, evaluated in whitened form."""
        raise NotImplementedError

    def spectrum(self, cov: Array, nk: Array, d: int) -> tuple[Array, Array]:
        """Eigenvalues of the covariances and the responsibility mass behind each one."""
        raise NotImplementedError

    def half_log_det(self, prec_chol: Array, d: int) -> Array:
        """1/2 log|P_k| for every component, shape (K,) (or () for tied)."""
        raise NotImplementedError

    def factor(self, cov: Array, reg_covar: float) -> tuple[Array, Array, bool]:
        """(covariances, precision Cholesky factors, mended): singular covariances are
        raised (with a :class:`DegenerateComponentWarning`) until they factor."""
        raise NotImplementedError

    def from_precisions(self, precisions: Array) -> Array:
        raise NotImplementedError

    def precisions(self, prec_chol: Array) -> Array:
        raise NotImplementedError

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        raise NotImplementedError

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        raise NotImplementedError

    def n_parameters(self, n_components: int, d: int) -> int:
        raise NotImplementedError

    def keep(self, new: Array, old: Array, frozen: NDArray[np.bool_]) -> Array:
        """Keep ``old`` covariance parameters for the components marked ``frozen``."""
        out = new.copy()
        out[frozen] = old[frozen]
        return out


class _Triangular(CovarianceStructure):
    """Shared code of the structures whose covariances are dense matrices."""

    dense = True

    def precisions(self, prec_chol: Array) -> Array:
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)

    def from_precisions(self, precisions: Array) -> Array:
        # sklearn's convention: U = flip(chol(flip(P))) is upper triangular with P = U U^T
        flipped = precisions[..., ::-1, ::-1]
        return np.ascontiguousarray(np.linalg.cholesky(flipped)[..., ::-1, ::-1])

    def factor(self, cov: Array, reg_covar: float) -> tuple[Array, Array, bool]:
        try:
            return cov, _cholesky_upper_of_precision(cov), False
        except np.linalg.LinAlgError:
            pass
        stack = cov.reshape((-1, *cov.shape[-2:])).copy()
        d = stack.shape[-1]
        out = np.empty_like(stack)
        for k in range(stack.shape[0]):
            base = max(reg_covar, 1e-10 * float(np.trace(stack[k])) / d, 1e-12)
            for j in range(13):
                try:
                    out[k] = _cholesky_upper_of_precision(stack[k])
                    break
                except np.linalg.LinAlgError:
                    jitter = base * 10.0**j
                    stack[k].flat[:: d + 1] += jitter
                    warnings.warn(
                        f"Component {k}'s covariance is singular; added {jitter:.3g} to its "
                        "diagonal. Increase reg_covar, decrease n_components, or scale the "
                        "input data.",
                        DegenerateComponentWarning,
                        stacklevel=6,
                    )
            else:
                raise EmkitError(_ILL_DEFINED)
        return stack.reshape(cov.shape), out.reshape(cov.shape), True

    def half_log_det(self, prec_chol: Array, d: int) -> Array:
        # 1/2 log|P| = sum(log(diag(U)))
        return np.sum(np.log(np.diagonal(prec_chol, axis1=-2, axis2=-1)), axis=-1)


class Full(_Triangular):
    """Each component has its own full covariance matrix."""

    name = "full"

    def n_stats(self, d: int) -> int:
        return d + d * (d + 1) // 2

    def statistics(self, Xc: Array) -> Array:
        d = Xc.shape[1]
        XT, TT = _stat_rows(Xc, self.n_stats(d))
        off = d
        for a in range(d):  # packed upper triangle of x x^T, row a: x_a * x_{a..d-1}
            np.multiply(XT[a], XT[a:], out=TT[off : off + d - a])
            off += d - a
        return TT.T

    def stat_scale(self, d: int, s: float) -> Array:
        return np.concatenate([np.full(d, s), np.full(d * (d + 1) // 2, s * s)])

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        d = means.shape[1]
        P = self.precisions(prec_chol)
        Pmu = np.einsum("kij,kj->ki", P, means)
        i, j = _triu_indices(d)
        # x^T P x = sum_i P_ii x_i^2 + 2 sum_{i<j} P_ij x_i x_j
        quad = -np.where(i == j, 0.5, 1.0) * P[:, i, j]
        eta = np.concatenate([Pmu, quad], axis=1)
        log_norm = 0.5 * np.sum(Pmu * means, axis=1) - self.half_log_det(prec_chol, d)
        return eta, log_norm + 0.5 * d * LOG_2PI

    def covariances(
        self, nk: Array, means: Array, sum_t: Array, shared: Array, reg_covar: float
    ) -> Array:
        K, d = means.shape
        i, j = _triu_indices(d)
        packed = sum_t[:, d:] / nk[:, None]
        cov = np.empty((K, d, d))
        cov[:, i, j] = packed
        cov[:, j, i] = packed
        # Sigma_k = E_k[x x^T] - mu_k mu_k^T
        cov -= means[:, :, None] * means[:, None, :]
        cov[:, np.arange(d), np.arange(d)] += reg_covar
        return cov

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        out = np.empty((Xc.shape[0], means.shape[0]), dtype=Xc.dtype)
        for k in range(means.shape[0]):
            U = prec_chol[k].astype(Xc.dtype)
            y = Xc @ U - (means[k] @ prec_chol[k]).astype(Xc.dtype)
            out[:, k] = np.einsum("ij,ij->i", y, y)
        return out

    def spectrum(self, cov: Array, nk: Array, d: int) -> tuple[Array, Array]:
        lam = np.linalg.eigvalsh(cov)
        return lam, np.broadcast_to(nk[:, None], lam.shape)

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        return cov[k]

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        return (n_components, d, d)

    def n_parameters(self, n_components: int, d: int) -> int:
        return n_components * d * (d + 1) // 2


class Tied(_Triangular):
    """All components share one full covariance matrix."""

    name = "tied"
    has_row_term = True

    def n_stats(self, d: int) -> int:
        return d

    def statistics(self, Xc: Array) -> Array:
        return Xc

    def stat_scale(self, d: int, s: float) -> Array:
        return np.full(d, s)

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        d = means.shape[1]
        Pmu = means @ self.precisions(prec_chol)
        log_norm = 0.5 * np.sum(Pmu * means, axis=1) - self.half_log_det(prec_chol, d)
        return Pmu, log_norm + 0.5 * d * LOG_2PI

    def row_term(self, Xc: Array, prec_chol: Array) -> Array:
        # -1/2 x^T P x, the same for every component
        y = Xc @ prec_chol.astype(Xc.dtype)
        return -0.5 * np.einsum("ij,ij->i", y, y)

    def shared_statistics(self, Xc: Array, weights: Array | None) -> Array:
        # sum_n w_n x_n x_n^T does not depend on the responsibilities (they sum to one)
        Xw = Xc if weights is None else Xc * weights[:, None]
        return (Xw.T @ Xc).astype(np.float64).ravel()

    def covariances(
        self, nk: Array, means: Array, sum_t: Array, shared: Array, reg_covar: float
    ) -> Array:
        d = means.shape[1]
        # Sigma = (sum_n w_n x x^T - sum_k N_k mu_k mu_k^T) / sum_k N_k
        cov = shared.reshape(d, d) - (nk * means.T) @ means
        cov /= nk.sum()
        cov.flat[:: d + 1] += reg_covar
        return cov

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        U = prec_chol.astype(Xc.dtype)
        y = Xc @ U
        mu = (means @ prec_chol).astype(Xc.dtype)
        out = np.empty((Xc.shape[0], means.shape[0]), dtype=Xc.dtype)
        for k in range(means.shape[0]):
            z = y - mu[k]
            out[:, k] = np.einsum("ij,ij->i", z, z)
        return out

    def spectrum(self, cov: Array, nk: Array, d: int) -> tuple[Array, Array]:
        lam = np.linalg.eigvalsh(cov)
        return lam, np.full(lam.shape, nk.sum())

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        return cov

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        return (d, d)

    def n_parameters(self, n_components: int, d: int) -> int:
        return d * (d + 1) // 2

    def keep(self, new: Array, old: Array, frozen: NDArray[np.bool_]) -> Array:
        return new  # shared by all components: a collapsed one has no say in it


class _Variances(CovarianceStructure):
    """Shared code of the structures whose covariances are variances (diag, spherical)."""

    def factor(self, cov: Array, reg_covar: float) -> tuple[Array, Array, bool]:
        var, mended = _mend_variances(cov, reg_covar)
        return var, 1.0 / np.sqrt(var), mended

    def from_precisions(self, precisions: Array) -> Array:
        return np.sqrt(precisions)

    def precisions(self, prec_chol: Array) -> Array:
        return prec_chol**2


class Diag(_Variances):
    """Each component has its own diagonal covariance matrix."""

    name = "diag"

    def n_stats(self, d: int) -> int:
        return 2 * d

    def statistics(self, Xc: Array) -> Array:
        d = Xc.shape[1]
        XT, TT = _stat_rows(Xc, 2 * d)
        np.multiply(XT, XT, out=TT[d:])
        return TT.T

    def stat_scale(self, d: int, s: float) -> Array:
        return np.concatenate([np.full(d, s), np.full(d, s * s)])

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        d = means.shape[1]
        prec = prec_chol**2
        eta = np.concatenate([prec * means, -0.5 * prec], axis=1)
        log_norm = 0.5 * np.sum(prec * means**2, axis=1) - self.half_log_det(prec_chol, d)
        return eta, log_norm + 0.5 * d * LOG_2PI

    def covariances(
        self, nk: Array, means: Array, sum_t: Array, shared: Array, reg_covar: float
    ) -> Array:
        d = means.shape[1]
        return sum_t[:, d:] / nk[:, None] - means**2 + reg_covar

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        out = np.empty((Xc.shape[0], means.shape[0]), dtype=Xc.dtype)
        for k in range(means.shape[0]):
            z = (Xc - means[k].astype(Xc.dtype)) * prec_chol[k].astype(Xc.dtype)
            out[:, k] = np.einsum("ij,ij->i", z, z)
        return out

    def half_log_det(self, prec_chol: Array, d: int) -> Array:
        return np.sum(np.log(prec_chol), axis=1)

    def spectrum(self, cov: Array, nk: Array, d: int) -> tuple[Array, Array]:
        return cov, np.broadcast_to(nk[:, None], cov.shape)

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        return np.diag(cov[k])

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        return (n_components, d)

    def n_parameters(self, n_components: int, d: int) -> int:
        return n_components * d


class Spherical(_Variances):
    """Each component has its own single variance, the same along every axis."""

    name = "spherical"

    def n_stats(self, d: int) -> int:
        return d + 1

    def statistics(self, Xc: Array) -> Array:
        d = Xc.shape[1]
        XT, TT = _stat_rows(Xc, d + 1)
        np.einsum("ij,ij->j", XT, XT, out=TT[d])
        return TT.T

    def stat_scale(self, d: int, s: float) -> Array:
        return np.concatenate([np.full(d, s), [d * s * s]])

    def natural(self, means: Array, prec_chol: Array) -> tuple[Array, Array]:
        d = means.shape[1]
        prec = prec_chol**2
        eta = np.concatenate([prec[:, None] * means, -0.5 * prec[:, None]], axis=1)
        log_norm = 0.5 * prec * np.sum(means**2, axis=1) - self.half_log_det(prec_chol, d)
        return eta, log_norm + 0.5 * d * LOG_2PI

    def covariances(
        self, nk: Array, means: Array, sum_t: Array, shared: Array, reg_covar: float
    ) -> Array:
        d = means.shape[1]
        # mean over features of the diagonal variances: (E||x||^2 - ||mu||^2) / d
        return (sum_t[:, d] / nk - np.sum(means**2, axis=1)) / d + reg_covar

    def mahalanobis(self, Xc: Array, means: Array, prec_chol: Array) -> Array:
        out = np.empty((Xc.shape[0], means.shape[0]), dtype=Xc.dtype)
        for k in range(means.shape[0]):
            z = Xc - means[k].astype(Xc.dtype)
            out[:, k] = np.einsum("ij,ij->i", z, z) * Xc.dtype.type(prec_chol[k] ** 2)
        return out

    def half_log_det(self, prec_chol: Array, d: int) -> Array:
        return d * np.log(prec_chol)

    def spectrum(self, cov: Array, nk: Array, d: int) -> tuple[Array, Array]:
        return cov, d * nk  # a spherical variance is d equal eigenvalues

    def component_covariance(self, cov: Array, k: int, d: int) -> Array:
        return np.eye(d) * cov[k]

    def shape(self, n_components: int, d: int) -> tuple[int, ...]:
        return (n_components,)

    def n_parameters(self, n_components: int, d: int) -> int:
        return n_components


def _mend_variances(var: Array, reg_covar: float) -> tuple[Array, bool]:
    """Variances raised (with a warning) where they are zero, negative or at round-off."""
    if not np.isfinite(var).all():
        raise EmkitError(_ILL_DEFINED)
    # var = E[x^2] - mu^2 cancels: anything below this is zero in floating point
    floor = np.maximum(max(reg_covar, 1e-300), 1e-10 * np.max(np.abs(var), axis=0))
    bad = var < floor
    if not bad.any():
        return var, False
    where = np.argwhere(bad)
    warnings.warn(
        f"Component {int(where[0][0])} has a zero variance (it collapsed onto a point); "
        f"raised it to {float(np.max(floor)):.3g}. Increase reg_covar, decrease "
        "n_components, or scale the input data.",
        DegenerateComponentWarning,
        stacklevel=6,
    )
    return np.where(bad, floor, var), True


_STRUCTURES: dict[str, type[CovarianceStructure]] = {
    cls.name: cls for cls in (Full, Tied, Diag, Spherical)
}
COVARIANCE_TYPES: tuple[str, ...] = tuple(_STRUCTURES)


def covariance_structure(covariance_type: str) -> CovarianceStructure:
    """The one place a covariance type string becomes a structure object."""
    if covariance_type not in _STRUCTURES:
        raise InputError(
            f"covariance_type must be one of {', '.join(map(repr, COVARIANCE_TYPES))}, "
            f"got {covariance_type!r}."
        )
    return _STRUCTURES[covariance_type]()


@dataclass(frozen=True, eq=False)
class GaussianFamily:
    """Multivariate Gaussian components with a given covariance structure.

    ``shift`` is subtracted from every row before the statistics are formed; ``scale`` is
    the largest absolute centred value seen in training, used to bound the round-off of
    the expanded quadratic form.
    """

    structure: CovarianceStructure
    shift: Array
    reg_covar: float = 1e-6
    scale: float = 1.0

    @property
    def n_features(self) -> int:
        return int(self.shift.shape[0])

    def prepare(self, X: Array, dtype: Any) -> Array:
        # Centre in the data's precision, round to the working dtype, and lay the result
        # out feature-major in one pass: (d, n) C-order, returned as its (n, d) view, so
        # the statistics are built from contiguous rows.
        XT = np.empty((X.shape[1], X.shape[0]), dtype=dtype)
        np.subtract(X.T, self.shift.astype(X.dtype)[:, None], out=XT, casting="same_kind")
        return XT.T

    def statistics(self, X: Array) -> Array:
        return self.structure.statistics(X)

    def natural(self, params: GaussianParams, dtype: Any) -> Natural:
        eta, log_norm = self.structure.natural(params.means, params.precisions_cholesky)
        d = self.n_features
        # Round-off of T @ eta_k - log_norm_k: eps times the size of the terms that cancel
        # (their 2-norm: rounding errors add like a random walk), at the largest |x|.
        terms = np.abs(eta) * self.structure.stat_scale(d, self.scale)
        size = np.sqrt(np.sum(terms**2, axis=1) + log_norm**2)
        if self.structure.has_row_term:
            size = size + d * self.scale**2 * np.max(
                np.abs(self.structure.precisions(params.precisions_cholesky))
            )
        dt = np.dtype(dtype)
        exact = bool(np.finfo(dt).eps * np.max(size) > _EXPANDED_FORM_TOLERANCE[dt])
        return Natural(eta.astype(dt), log_norm.astype(dt), exact)

    def log_prob(
        self,
        X: Array,
        T: Array,
        params: GaussianParams,
        natural: Natural,
        offset: Array | None = None,
    ) -> Array:
        if natural.exact_form:
            d = self.n_features
            maha = self.structure.mahalanobis(X, params.means, params.precisions_cholesky)
            const = self.structure.half_log_det(params.precisions_cholesky, d) - 0.5 * d * LOG_2PI
            if offset is not None:
                const = const + offset
            return -0.5 * maha + np.asarray(const, dtype=X.dtype)
        log_prob = (natural.eta @ T.T).T  # (n, K), component-major like T
        log_prob -= natural.log_norm if offset is None else natural.log_norm - offset
        row = self.structure.row_term(X, params.precisions_cholesky)
        if row is not None:
            log_prob += row[:, None]
        return log_prob

    def shared_statistics(self, X: Array, weights: Array | None) -> Array:
        return self.structure.shared_statistics(X, weights)

    def m_step(
        self,
        params: GaussianParams,
        nk: Array,
        sum_t: Array,
        shared: Array,
        total_weight: float,
    ) -> GaussianParams:
        d = self.n_features
        means = sum_t[:, :d] / nk[:, None]
        cov = self.structure.covariances(nk, means, sum_t, shared, self.reg_covar)
        # A component with no responsibility mass: any parameters maximize its (zero) share
        # of the expected log-likelihood, so keep the previous ones rather than divide 0 by 0.
        frozen = nk <= 1e-12 * total_weight
        if frozen.any():
            warnings.warn(
                f"Component {int(np.argmax(frozen))} collapsed (no sample is assigned to it); "
                "its parameters are kept and its weight is ~0. Consider fewer components.",
                DegenerateComponentWarning,
                stacklevel=5,
            )
            means = np.where(frozen[:, None], params.means, means)
            cov = self.structure.keep(cov, params.covariances, frozen)
        cov, prec_chol, mended = self.structure.factor(cov, self.reg_covar)
        return GaussianParams(means, cov, prec_chol, mended)

    def m_step_gap(self, params: GaussianParams, nk: Array) -> float:
        """How far short of maximizing Q the regularized M-step fell (total nats, >= 0).

        With eigenvalues lam of Sigma' = S + r I and S the exact maximizer, the expected
        complete-data log-likelihood lost is sum N/2 (log lam - log(lam - r) - r/lam); EM's
        objective can decrease by at most this much in the next iteration.
        """
        if params.mended:
            return float("inf")  # the covariance was raised off a singular maximizer
        r = self.reg_covar
        if r == 0.0:
            return 0.0
        lam, mass = self.structure.spectrum(params.covariances, nk, self.n_features)
        if np.any(lam <= r):
            return float("inf")  # the unregularized maximizer is singular: no bound
        x = r / lam
        return 0.5 * float(np.sum(mass * (-np.log1p(-x) - x)))

    def n_parameters(self, n_components: int) -> int:
        d = self.n_features
        return n_components * d + self.structure.n_parameters(n_components, d)

    def sample(
        self, params: GaussianParams, component: int, n: int, rng: np.random.Generator
    ) -> Array:
        d = self.n_features
        cov = self.structure.component_covariance(params.covariances, component, d)
        L = np.linalg.cholesky(cov)
        z = rng.standard_normal((n, d))
        return params.means[component] + self.shift + z @ L.T

    # -- conversions between the user's parameters and the family's -----------------

    def params_from_covariances(self, means: Array, covariances: Array) -> GaussianParams:
        """Parameters from means in the user's coordinates and covariances."""
        covariances, prec_chol, _ = self.structure.factor(covariances, self.reg_covar)
        return GaussianParams(means - self.shift, covariances, prec_chol)

    def params_from_precisions(self, means: Array, precisions: Array) -> GaussianParams:
        """Parameters from means in the user's coordinates and precision matrices."""
        try:
            prec_chol = self.structure.from_precisions(precisions)
        except np.linalg.LinAlgError as exc:
            raise InputError(
                "precisions_init is not symmetric positive-definite; pass precision "
                "matrices (inverse covariances) that are."
            ) from exc
        precisions = self.structure.precisions(prec_chol)
        covariances = np.linalg.inv(precisions) if self.structure.dense else 1.0 / precisions
        return GaussianParams(means - self.shift, covariances, prec_chol)

    def user_means(self, params: GaussianParams) -> Array:
        return params.means + self.shift

"""mclust's covariance models as composed strategies: volume x shape x orientation.

Celeux & Govaert (1995) write each component's covariance as

    Sigma_k = lambda_k D_k A_k D_k^T      (lambda_k > 0, A_k diagonal with |A_k| = 1,
                                            D_k orthogonal)

and name a model by three letters, one per factor: ``E`` (equal for all components),
``V`` (variable) or ``I`` (the identity: spherical shape, axis-aligned orientation). The
four structures of scikit-learn are four of the fourteen (spherical = VII, diag = VVI,
tied = EEE, full = VVV); the ten others are the classes of this module. Each one reuses the
statistics, E-step and prior of the structure that stores the same arrays (its
``layout``: a trace per component for EII, a diagonal for EEI/VEI/EVI, a full matrix for
the rest) and replaces only the M-step.

The M-step maximizes, over the covariances of the model,

    -1/2 sum_k [ m_k log|Sigma_k| + tr(W_k Sigma_k^-1) ]

where ``W_k`` is the scatter about the new means (plus a conjugate prior's scale) and
``m_k`` its mass (N_k, plus the prior's share): the expected complete-data log-likelihood
(plus log prior). :meth:`Composed.maximize` does it by block-coordinate ascent, starting
from the previous covariances, each block in closed form or by a step that cannot decrease
the objective:

- volume given shape and orientation: ``c_k = tr(D_k^T W_k D_k A_k^-1)``, so
  ``lambda_k = c_k / (d m_k)`` (V) or ``lambda = sum c_k / (d sum m_k)`` (E);
- shape and orientation given the volumes: for ``EE`` the eigen-decomposition of
  ``sum_k W_k / lambda_k``; for ``VV`` that of each ``W_k``; for ``EV`` (equal shape,
  variable orientation) ``D_k`` the eigenvectors of ``W_k`` (eigenvalues in decreasing
  order) and ``A`` proportional to ``sum_k omega_k / lambda_k``; for ``VE`` (variable
  shape, common orientation) ``A_k`` from the diagonal of ``D^T W_k D`` and ``D`` by the
  minorize-maximize step of Browne & McNicholas (2014): with ``alpha_k`` the largest
  eigenvalue of ``W_k``, ``D = U V^T`` for the SVD ``U S V^T`` of
  ``sum_k (alpha_k I - W_k) D_old (lambda_k A_k)^-1``.

Models where these blocks are exact in one pass (EII, EEI, EVI, EEV, EVV, and the four
above) converge in one cycle; the others (VEI, VEE, EVE, VVE, VEV) iterate to a relative
change of ``_TOLERANCE`` (at most ``_MAX_CYCLES`` cycles), as mclust does. Every cycle
increases the objective, so EM stays monotone (a generalized EM where the cycles stop
short). ``reg_covar`` adds ``reg_covar * m_k`` to the diagonal of ``W_k`` before the
constrained maximization (for the four sklearn structures: ``reg_covar`` added to the
diagonal of each covariance, as there).

Where Numba is installed the cycles run as compiled loops
(:mod:`emkit.families._covariance_compiled`, ``bench/profile_mstep.py``), with the
same arithmetic; the NumPy loops here remain the reference and the fallback.
"""

from __future__ import annotations

import functools
import math
from typing import Any, ClassVar, NamedTuple

import numpy as np
from numpy.typing import NDArray

from emkit._compiled_modules import compiled_module
from emkit.exceptions import InputError
from emkit.families.gaussian import (
    _FLOOR_EPS,
    CovarianceStructure,
    Diag,
    Full,
    Spherical,
    Tied,
)

__all__ = [
    "EEI",
    "EEV",
    "EII",
    "EVE",
    "EVI",
    "EVV",
    "MCLUST_MODELS",
    "ONE_DIMENSIONAL_MODELS",
    "VEE",
    "VEI",
    "VEV",
    "VVE",
    "Composed",
    "E",
    "PriorShares",
    "V",
    "covariance_types",
    "mclust_prior_shares",
    "structure_class",
]

Array = NDArray[np.floating[Any]]

# relative change of the M-step's objective below which the iterative models stop
_TOLERANCE = 1e-13
_MAX_CYCLES = 2000
_TINY = float(np.finfo(np.float64).tiny)
_RELATIVE_FLOOR = 1e-100

MCLUST_MODELS: tuple[str, ...] = (
    "EII",
    "VII",
    "EEI",
    "VEI",
    "EVI",
    "VVI",
    "EEE",
    "VEE",
    "EVE",
    "VVE",
    "EEV",
    "VEV",
    "EVV",
    "VVV",
)
ONE_DIMENSIONAL_MODELS: tuple[str, ...] = ("E", "V")

# the compiled M-step's codes of a factor (emkit.families._covariance_compiled)
_CODES = {"E": 0, "V": 1, "I": 2}


def kernels() -> Any:
    """The composed models' compiled M-step (:mod:`emkit.families._covariance_compiled`),
    or None when Numba is not installed (imported on first use: scikit-learn's four
    structures never reach it)."""
    return compiled_module("emkit.families._covariance_compiled")


def _geometric_mean(x: Array) -> Array:
    # (the mean as NumPy's: the sum over the last axis divided by its length)
    return np.asarray(np.exp(np.log(np.maximum(x, _TINY)).sum(axis=-1) / x.shape[-1]))


def _unit(x: Array) -> Array:
    """Positive vectors (..., d) scaled to a product of one (a shape matrix's diagonal);
    entries of a singular scatter are kept above ``_RELATIVE_FLOOR`` times the largest."""
    x = np.maximum(x, np.maximum(_RELATIVE_FLOOR * x.max(axis=-1, keepdims=True), _TINY))
    return np.asarray(x / _geometric_mean(x)[..., None])


def _eigh_descending(W: Array) -> tuple[Array, Array]:
    """Eigenvalues (decreasing) and eigenvectors; eigenvalues of a singular scatter are
    kept above ``_RELATIVE_FLOOR`` times the largest (the degeneracy floor of the
    family then decides), so that no ratio or logarithm leaves float64."""
    omega, V = np.linalg.eigh(W)
    omega = omega[..., ::-1]
    low = np.maximum(_RELATIVE_FLOOR * omega[..., :1], _TINY)
    return np.maximum(omega, low), np.ascontiguousarray(V[..., ::-1])


def _tiled(x: Array, K: int) -> Array:
    """``K`` copies of ``x`` stacked (what np.broadcast_to(x, (K, *x.shape)) reads, at a
    fraction of its cost on the M-step's small arrays)."""
    return x[None].repeat(K, axis=0)


def _rotation_sweep(U: Array, M: Array, beta: Array) -> Array:
    """One sweep of plane rotations of the common orientation ``U`` (columns), each the
    exact minimizer of ``f = sum_k sum_j beta_kj u_j^T W_k u_j`` over its angle; ``M``
    (K, d, d) holds ``U^T W_k U`` and is rotated in place with ``U``.

    Rotating columns i and j by theta changes f by ``P cos 2 theta + Q sin 2 theta`` up to
    a constant, with ``P = sum_k (beta_ki - beta_kj)(M_kii - M_kjj) / 2`` and
    ``Q = sum_k (beta_ki - beta_kj) M_kij``: the minimum is at ``2 theta = atan2(-Q, -P)``
    (a sweep never increases f; Flury & Gautschi's common principal components use the
    same rotations)."""
    U = U.copy()
    d = U.shape[0]
    for i in range(d - 1):
        for j in range(i + 1, d):
            diff = beta[:, i] - beta[:, j]
            P = 0.5 * float((diff * (M[:, i, i] - M[:, j, j])).sum())
            Q = float((diff * M[:, i, j]).sum())
            if P * P + Q * Q == 0.0:
                continue
            # P cos phi + Q sin phi at phi = 0 (no rotation) is P: rotate only if lower
            if -np.hypot(P, Q) >= P:
                continue
            half = 0.5 * np.arctan2(-Q, -P)
            c, s = math.cos(half), math.sin(half)  # (math: scalars, NumPy's values)
            # (each right side is made, from the old values, before it is assigned)
            U[:, i], U[:, j] = c * U[:, i] + s * U[:, j], -s * U[:, i] + c * U[:, j]
            M[:, i], M[:, j] = c * M[:, i] + s * M[:, j], -s * M[:, i] + c * M[:, j]
            M[:, :, i], M[:, :, j] = (
                c * M[:, :, i] + s * M[:, :, j],
                -s * M[:, :, i] + c * M[:, :, j],
            )
    return U


class Composed(CovarianceStructure):
    """A covariance model ``lambda_k D_k A_k D_k^T`` named by three letters (E, V, I).

    Subclasses set ``volume``, ``shape_kind`` and ``orientation`` and inherit a layout
    (:class:`~emkit.families.gaussian.Spherical`, ``Diag`` or ``Full``) for everything
    but the M-step (see the module's docstring).
    """

    volume: ClassVar[str]
    shape_kind: ClassVar[str]
    orientation: ClassVar[str]
    # a constrained covariance has no conjugate posterior (MAP-EM only)
    wishart_form: ClassVar[str | None] = None
    compiled_m_step: ClassVar[bool] = True

    @property
    def ties(self) -> bool:
        return "E" in (self.volume, self.shape_kind, self.orientation)

    # -- the parameters of the decomposition ---------------------------------------------

    def n_parameters(self, n_components: int, d: int) -> int:
        """Free covariance parameters, as mclust counts them (``nVarParams``)."""
        K = n_components
        if K == 0:
            return 0
        count = {"E": 1, "V": K}[self.volume]
        count += {"I": 0, "E": d - 1, "V": K * (d - 1)}[self.shape_kind]
        count += {"I": 0, "E": d * (d - 1) // 2, "V": K * d * (d - 1) // 2}[self.orientation]
        return count

    def keep(self, new: Array, old: Array, frozen: NDArray[np.bool_]) -> Array:
        # shared factors: a component without mass has no say in them, and keeping its
        # old covariance would leave the model; it takes the constrained one
        return new

    def divide(self, scatter: Array, mass: Array, reg_covar: float) -> Array:
        return self.maximize(scatter, mass, reg_covar, None)[0]

    def factor(self, cov: Array, column_scale: Array) -> tuple[Array, Array, NDArray[np.bool_]]:
        # dense covariances: their precision factors by the compiled loops where every
        # one passes the degeneracy floor's cheap test (the layout's NumPy path otherwise)
        compiled = kernels() if self.compiled_m_step and cov.ndim == 3 else None
        if compiled is not None and cov.dtype == np.float64 and np.isfinite(cov).all():
            cov = np.ascontiguousarray(cov)
            scale = np.ascontiguousarray(column_scale, dtype=np.float64)
            prec_chol = np.empty_like(cov)
            floor = _FLOOR_EPS * cov.shape[-1]
            if compiled.factor_dense(cov, scale, floor, prec_chol) == compiled.OK:
                return cov, prec_chol, np.zeros(cov.shape[0], dtype=bool)
        return super().factor(cov, column_scale)

    # -- the M-step -----------------------------------------------------------------------

    def _effective_d(self, scatter: Array) -> int:
        """d in ``d m_k log lambda_k``: 1 for a trace (its mass already counts d)."""
        return 1 if scatter.ndim == 1 else int(scatter.shape[-1])

    def maximize(
        self, scatter: Array, mass: Array, reg_covar: float, previous: Array | None
    ) -> tuple[Array, float | None]:
        """The constrained maximizer (see the module's docstring), started from
        ``previous`` (covariances of this model) when given, and how much lower the
        objective is there than at ``previous`` (>= 0; None without ``previous``).

        Compiled (:mod:`emkit.families._covariance_compiled`) where Numba is installed
        and the statistics are finite with positive masses; the NumPy loops
        (:meth:`maximize_numpy`) otherwise, with the same result to round-off."""
        if self.compiled_m_step:
            done = self._maximize_compiled(scatter, mass, reg_covar, previous)
            if done is not None:
                return done
        return self.maximize_numpy(scatter, mass, reg_covar, previous)

    def _maximize_compiled(
        self, scatter: Array, mass: Array, reg_covar: float, previous: Array | None
    ) -> tuple[Array, float | None] | None:
        """:meth:`maximize` by the compiled loops, or None where they do not apply
        (no Numba, non-finite statistics, a component without mass, no convergence)."""
        compiled = kernels()
        if compiled is None:
            return None
        W = np.ascontiguousarray(scatter, dtype=np.float64)
        m = np.ascontiguousarray(mass, dtype=np.float64)
        if m.ndim != 1 or not (np.isfinite(W).all() and (m > 0.0).all() and np.isfinite(m).all()):
            return None
        codes = _CODES
        trace = W.ndim == 1
        if trace:  # a variance per component: one column whose mass counts the axes
            W = W[:, None]
        if previous is None:
            prev = np.empty((0, *W.shape[1:]))
        elif np.size(previous) == W.size:
            prev = np.ascontiguousarray(previous, dtype=np.float64).reshape(W.shape)
        else:  # covariances of another layout: left to the NumPy path
            return None
        cov = np.empty_like(W)
        gap = np.full(1, np.nan)
        if W.ndim == 3:
            status = compiled.m_step_dense(
                W,
                m,
                float(reg_covar),
                prev,
                codes[self.volume],
                codes[self.shape_kind],
                codes[self.orientation],
                self.exact,
                _TOLERANCE,
                _MAX_CYCLES,
                cov,
                gap,
            )
        else:
            status = compiled.m_step_variances(
                W,
                m,
                float(reg_covar),
                prev,
                codes[self.volume],
                codes[self.shape_kind],
                self.exact,
                _TOLERANCE,
                _MAX_CYCLES,
                cov,
                gap,
            )
        if status != compiled.OK:
            return None
        return (cov[:, 0] if trace else cov), (None if previous is None else float(gap[0]))

    def maximize_numpy(
        self, scatter: Array, mass: Array, reg_covar: float, previous: Array | None
    ) -> tuple[Array, float | None]:
        """:meth:`maximize` in NumPy (the reference the compiled loops reproduce)."""
        W = self._regularized(scatter, mass, reg_covar)
        m = np.asarray(mass, dtype=np.float64)
        # a singular scatter may push a ratio beyond float64: the degeneracy floor of
        # the family's factor then holds the covariance (or reports it ill-defined)
        with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
            cov = self._solve(W, m, previous)
        if previous is None:
            return cov, None
        # the objective is the unregularized one: what EM's monotonicity is about
        gap = 0.5 * (self._loss(scatter, m, cov) - self._loss(scatter, m, previous))
        return cov, float(max(gap, 0.0)) if np.isfinite(gap) else float("inf")

    def _regularized(self, scatter: Array, mass: Array, reg_covar: float) -> Array:
        if reg_covar == 0.0:
            return scatter
        if scatter.ndim == 3:
            W = scatter.copy()
            d = W.shape[-1]
            W[:, np.arange(d), np.arange(d)] += reg_covar * mass[:, None]
            return W
        if scatter.ndim == 2:
            return scatter + reg_covar * mass[:, None]
        return scatter + reg_covar * mass  # a trace: mass counts the d axes

    def _loss(self, W: Array, m: Array, cov: Array) -> float:
        """``sum_k m_k log|Sigma_k| + tr(W_k Sigma_k^-1)`` (log of the variance for a
        trace layout, whose mass counts the axes)."""
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if W.ndim == 3:
                sign, logdet = np.linalg.slogdet(cov)
                if np.any(sign <= 0):
                    return float("inf")
                trace = np.einsum("kij,kji->k", W, np.linalg.inv(cov))
                return float((m * logdet + trace).sum())
            if W.ndim == 2:
                return float((m * np.log(cov).sum(axis=1) + (W / cov).sum(axis=1)).sum())
            return float((m * np.log(cov) + W / cov).sum())

    def _start(
        self, previous: Array | None, K: int, d: int, dense: bool
    ) -> tuple[Array, Array, Array | None]:
        """(lambda (K,), A (K, d), D (K, d, d) or None) of ``previous`` (identity
        without one), averaged over components where the model shares a factor."""
        lam: Array = np.ones(K)
        A: Array = np.ones((K, d))
        D = _tiled(np.eye(d), K) if dense else None
        if previous is None:
            return lam, A, D
        prev = np.asarray(previous, dtype=np.float64)
        if prev.ndim == 1:
            lam = prev.copy()
        elif prev.ndim == 2:
            lam = _geometric_mean(prev)
            A = _unit(prev)
        else:
            if self.orientation == "E":
                volumes = _geometric_mean(np.linalg.eigvalsh(prev))
                _, V = _eigh_descending((prev / volumes[:, None, None]).sum(axis=0))
                D = _tiled(V, K)
                diag = np.einsum("ji,kjl,li->ki", V, prev, V)
                lam, A = _geometric_mean(diag), _unit(diag)
            else:
                omega, D = _eigh_descending(prev)
                lam, A = _geometric_mean(omega), _unit(omega)
        if self.shape_kind == "E":
            A = _tiled(_unit(A.mean(axis=0)), K)
        if self.volume == "E":
            lam = np.full(K, float(_geometric_mean(lam)))
        return lam, A, D

    def _solve(self, W: Array, m: Array, previous: Array | None) -> Array:
        K = m.shape[0]
        d = self._effective_d(W)
        dense = W.ndim == 3
        # (a model exact in one cycle needs no start: its cycle sets every factor)
        lam, A, D = self._start(None if self.exact else previous, K, d, dense)
        if dense and self.orientation == "V":
            omega, V = _eigh_descending(W)  # D_k: W_k's eigenvectors whatever A is
        last = np.inf
        for _ in range(_MAX_CYCLES):
            # shape and orientation given the volumes, then B_k = diag(D_k^T W_k D_k)
            if not dense:
                B = W if W.ndim == 2 else W[:, None]
                if self.shape_kind == "V":
                    A = _unit(B)
                elif self.shape_kind == "E":
                    A = _tiled(_unit((B / lam[:, None]).sum(axis=0)), B.shape[0])
                else:
                    A = np.ones_like(B)
            elif self.orientation == "V":
                D, B = V, omega
                A = (
                    _unit(B)
                    if self.shape_kind == "V"
                    else _tiled(_unit((B / lam[:, None]).sum(axis=0)), K)
                )
            elif self.shape_kind == "E":  # EE: one matrix D A D^T
                C = (W / lam[:, None, None]).sum(axis=0)
                w, U = _eigh_descending(C)
                D = _tiled(U, K)
                A = _tiled(_unit(w), K)
                B = np.einsum("ji,kjl,li->ki", U, W, U)
            else:  # VE: A_k given D, then D by a sweep of exact plane rotations
                assert D is not None
                U = D[0]
                M = np.einsum("ji,kjl,lm->kim", U, W, U)  # D^T W_k D
                A = _unit(np.diagonal(M, axis1=1, axis2=2))
                U = _rotation_sweep(U, M, 1.0 / (lam[:, None] * A))
                D = _tiled(U, K)
                B = np.diagonal(M, axis1=1, axis2=2)
            # volumes given shape and orientation: c_k = tr(D_k^T W_k D_k A_k^-1)
            c = (B / A).sum(axis=1)
            lam = c / (d * m) if self.volume == "V" else np.full(K, c.sum() / (d * m.sum()))
            lam = np.maximum(lam, _TINY)
            loss = float((d * m * np.log(lam) + c / lam).sum())
            if self.exact or not last - loss > _TOLERANCE * abs(loss):
                break
            last = loss
        if not dense:
            return lam if W.ndim == 1 else lam[:, None] * A
        assert D is not None
        cov = np.einsum("kij,kj,klj->kil", D, lam[:, None] * A, D)
        return 0.5 * (cov + np.swapaxes(cov, -1, -2))

    @property
    def pair(self) -> str:
        """The shape and orientation letters."""
        return self.shape_kind + self.orientation

    @property
    def exact(self) -> bool:
        """One cycle gives the maximizer (no iteration)."""
        return self.pair in ("II", "VI", "VV") or (
            self.volume == "E" and self.pair in ("EI", "EV", "EE")
        )

    def infeasible(self, covariances: Array) -> str | None:
        """Why known covariances (all components) are not of this model (None: they are).
        A covariance set is of the model exactly when the constrained maximizer for
        ``W_k = Sigma_k`` with unit masses gives it back."""
        cov = np.asarray(covariances, dtype=np.float64)
        back = self._solve(cov, np.ones(cov.shape[0]), cov)
        scale = float(np.max(np.abs(cov)))
        if np.allclose(back, cov, rtol=1e-6, atol=1e-9 * scale):
            return None
        return (
            f"are not of the model {self.name!r} (volume {self.volume}, shape "
            f"{self.shape_kind}, orientation {self.orientation}: E equal for all components, "
            "V variable, I identity); pass covariances with that structure, or fit them."
        )


class EII(Composed, Spherical):
    """Spherical covariances of one volume, ``lambda I``."""

    name = "EII"
    volume, shape_kind, orientation = "E", "I", "I"


class EEI(Composed, Diag):
    """One diagonal covariance for all components, ``lambda A``."""

    name = "EEI"
    volume, shape_kind, orientation = "E", "E", "I"


class VEI(Composed, Diag):
    """Diagonal covariances of one shape and variable volumes, ``lambda_k A``."""

    name = "VEI"
    volume, shape_kind, orientation = "V", "E", "I"


class EVI(Composed, Diag):
    """Diagonal covariances of one volume and variable shapes, ``lambda A_k``."""

    name = "EVI"
    volume, shape_kind, orientation = "E", "V", "I"


class VEE(Composed, Full):
    """Covariances equal up to their volume, ``lambda_k D A D^T``."""

    name = "VEE"
    volume, shape_kind, orientation = "V", "E", "E"


class EVE(Composed, Full):
    """One volume and orientation, variable shapes, ``lambda D A_k D^T``."""

    name = "EVE"
    volume, shape_kind, orientation = "E", "V", "E"


class VVE(Composed, Full):
    """One orientation, variable volumes and shapes, ``lambda_k D A_k D^T``."""

    name = "VVE"
    volume, shape_kind, orientation = "V", "V", "E"


class EEV(Composed, Full):
    """One volume and shape, variable orientations, ``lambda D_k A D_k^T``."""

    name = "EEV"
    volume, shape_kind, orientation = "E", "E", "V"


class VEV(Composed, Full):
    """One shape, variable volumes and orientations, ``lambda_k D_k A D_k^T``."""

    name = "VEV"
    volume, shape_kind, orientation = "V", "E", "V"


class EVV(Composed, Full):
    """One volume, variable shapes and orientations, ``lambda D_k A_k D_k^T``."""

    name = "EVV"
    volume, shape_kind, orientation = "E", "V", "V"


class E(EII):
    """mclust's one-dimensional ``E``: one variance for all components."""

    name = "E"

    def check_features(self, d: int) -> None:
        _one_dimensional(self.name, d)


class V(Spherical):
    """mclust's one-dimensional ``V``: a variance per component."""

    name = "V"

    def check_features(self, d: int) -> None:
        _one_dimensional(self.name, d)


def _one_dimensional(name: str, d: int) -> None:
    if d != 1:
        raise InputError(
            f"covariance_type {name!r} is mclust's model for one-dimensional data, got "
            f"{d} columns; use {name + 'II'!r} (or any of {', '.join(MCLUST_MODELS)})."
        )


class PriorShares(NamedTuple):
    """How a conjugate prior enters one covariance model's M-step (see
    :func:`mclust_prior_shares`): ``mass`` is added to each component's :meth:`mass`
    (its share of the prior's degrees of freedom and of the means' normal priors, in the
    layout's units), ``scale`` multiplies the prior scale added to each component's
    scatter, ``shrink_means`` says whether the means are pulled to the prior mean and
    ``shrink_scatter`` whether the scatter takes the term
    ``kappa N_k / (kappa + N_k) (xbar_k - mean)(xbar_k - mean)^T``."""

    mass: float
    scale: float
    shrink_means: bool = True
    shrink_scatter: bool = True


# mclust's names of scikit-learn's four structures
_MCLUST_NAME = {"spherical": "VII", "diag": "VVI", "tied": "EEE", "full": "VVV"}


def mclust_prior_shares(
    name: str, d: int, n_components: int, dof: float, mean_prior: bool
) -> PriorShares | None:
    """mclust 6's M-step with ``prior = priorControl()``, model by model (None for VEE,
    EVE, VVE and EVV, for which mclust has no prior).

    Every model but these four maximizes

        -1/2 sum_k [ (N_k + a_k) log|Sigma_k| + tr((W_k + s L) Sigma_k^-1) ]

    over its constrained covariances, with ``W_k`` the scatter about the (shrunk) means
    plus the shrinkage term, ``L`` the prior scale (one variance for the spherical and
    diagonal models, the (d, d) matrix for the others), ``s`` the share of it each
    component takes and ``a_k`` its share of the degrees of freedom ``nu`` and of the
    means' priors (``m`` = 1 if the shrinkage is positive, else 0); ``|Sigma_k|`` counts
    the d axes of a spherical model (its trace layout's units are d per row). What
    mclust 6.0.0 does, checked against its ``mstep`` (tests/data/mclust_prior_reference.R):

    ======  ===============================  =========  =================================
    model   a_k                              s          notes
    ======  ===============================  =========  =================================
    EII     d m + (nu + 2) / K               0          the scale is not used
    VII     d m + nu + 2                     1
    E (1D)  m + (nu + 2) / K                 1 / K
    V (1D)  m + nu + 2                       1
    EEI     m + (nu + 2) / K                 1 / K      see below
    VEI     (nu + 2 + m) / d                 1
    EVI     m + (nu + 2) / K                 1
    VVI     m + nu + 2                       1
    EEE     nu + d + 1 + K m (one Sigma)     1          one covariance, one scale
    EEV     (nu + d + 1) / K                 1          no shrinkage at all
    VEV     0                                1
    VVV     m + nu + d + 1                   1
    ======  ===============================  =========  =================================

    For EII, EEV and VEV this is not what Fraley & Raftery (2007) write for a conjugate
    prior; it is what mclust computes, and what ``prior='mclust'`` reproduces. Each row is
    the mode of a fixed prior density, so MAP-EM stays monotone. Two exceptions, both
    mclust's inconsistencies: its EEI ``mstep`` leaves the means at xbar_k although the
    covariance takes the shrinkage term (no prior has that mode; its EM is not monotone),
    where emkit shrinks the means as for every other model (same covariance, means
    within kappa / N_k of mclust's); and mclust's ``me``/``em`` run, for EEI, EVI and
    EEV, an M-step that differs from its own ``mstep`` with the same prior (from the
    same z), which emkit does not reproduce.
    """
    name = _MCLUST_NAME.get(name, name)
    m, K, nu = float(mean_prior), n_components, float(dof)
    # (a_k, s, shrink the means and the scatter), one model at a time (an M-step's cost)
    if name in ("EII", "VII"):
        share = nu + 2.0 if name == "VII" else (nu + 2.0) / K
        return PriorShares(d * m + share, 1.0 if name == "VII" else 0.0)
    if name in ("E", "EEI", "EVI"):
        return PriorShares(m + (nu + 2.0) / K, 1.0 if name == "EVI" else 1.0 / K)
    if name in ("V", "VVI"):
        return PriorShares(m + nu + 2.0, 1.0)
    if name == "VEI":
        return PriorShares((nu + 2.0 + m) / d, 1.0)
    if name == "EEE":
        return PriorShares(nu + d + 1.0 + K * m, 1.0)
    if name == "EEV":
        return PriorShares((nu + d + 1.0) / K, 1.0, shrink_means=False, shrink_scatter=False)
    if name == "VEV":
        return PriorShares(0.0, 1.0)
    if name == "VVV":
        return PriorShares(m + nu + d + 1.0, 1.0)
    return None


def structure_class(covariance_type: str) -> type[CovarianceStructure] | None:
    """The structure class a covariance type names (scikit-learn's four names, mclust's
    fourteen and its two one-dimensional ones), or None."""
    return _structure_classes().get(covariance_type)


@functools.cache
def _structure_classes() -> dict[str, type[CovarianceStructure]]:
    """Each covariance type's structure class, built once (every fit and every check of
    a sweep's 663 fits looks one up)."""
    classes: dict[str, type[CovarianceStructure]] = {
        "full": Full,
        "tied": Tied,
        "diag": Diag,
        "spherical": Spherical,
        "VII": Spherical,
        "VVI": Diag,
        "EEE": Tied,
        "VVV": Full,
        "E": E,
        "V": V,
    }
    for cls in (EII, EEI, VEI, EVI, VEE, EVE, VVE, EEV, VEV, EVV):
        classes[cls.name] = cls
    return classes


def covariance_types() -> tuple[str, ...]:
    """Every name ``covariance_type`` accepts: scikit-learn's four, mclust's fourteen
    (the aliases spherical = VII, diag = VVI, tied = EEE, full = VVV) and mclust's
    one-dimensional E and V."""
    return ("full", "tied", "diag", "spherical", *MCLUST_MODELS, *ONE_DIMENSIONAL_MODELS)

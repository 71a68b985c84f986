"""Blocks of EM iterations of a small Gaussian mixture, compiled (optional: Numba).

:func:`gaussian_block` gives :meth:`Mixture.block <emkit.models.mixture.Mixture.block>`'s
runner where the compiled loop of :mod:`emkit.models._small_em` covers the fit: exact
EM of a Gaussian mixture (any of the covariance structures) without a prior, known
parameters or missing values, in float64, on complete rows in memory that the engine
maps as one block, without known labels; for scikit-learn's four structures (which
never import Numba for a small fit) only where Numba is imported already. Anywhere else
it gives None and the Python step runs every iteration; where it runs, the loop hands
the iterations it does not cover (a fall of the objective beyond the driver's
tolerance, a covariance at the degeneracy floor, ...) back to the Python step, see
:mod:`emkit.models._small_em`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray

from emkit._compiled_modules import compiled_module, numba_loaded
from emkit.families.covariance import _CODES, _MAX_CYCLES, _TOLERANCE, Composed
from emkit.families.gaussian import (
    DIAG_LAYOUT,
    FULL_LAYOUT,
    SPHERICAL_LAYOUT,
    TIED_LAYOUT,
    GaussianFamily,
    GaussianParams,
)
from emkit.models.mixing import Exact, MixingWeights

__all__ = [
    "MAX_FEATURES",
    "BlockRun",
    "KernelForm",
    "compiled_start",
    "gaussian_block",
    "kernel_form",
]

Array = NDArray[np.float64]
# each iteration's objective, bound and slack, and its parameters made on demand (by the
# iteration's index)
BlockRun = tuple[list[float], list[float], list[float], Callable[[int], Any]]

# the covariance layouts of the compiled loops (a structure's ``compiled_layout``)
FULL, TIED, DIAG, SPHERICAL = FULL_LAYOUT, TIED_LAYOUT, DIAG_LAYOUT, SPHERICAL_LAYOUT

# Whether fits may take the compiled blocks, and starts the compiled M-step (the tests
# switch them off to compare).
_SMALL_EM = True
_COMPILED_START = True
# Columns beyond this: the loop's scalar arithmetic (n K d^2 a row pass) is no longer
# small next to the Python step's fixed cost, whose matrix products use BLAS.
MAX_FEATURES = 16
# The most bytes of parameters one block writes (it runs again for more iterations).
_BLOCK_BYTES = 1 << 21


def gaussian_block(
    model: Any, engine: Any, data: Any
) -> Callable[[Any, float, float, int, float, float | None], BlockRun] | None:
    """``run(params, previous, slack, n_max, tol, floor)``: up to ``n_max`` EM iterations
    of ``model`` on ``data`` from ``params`` (``previous``: the objective before them,
    ``slack``: how far the first may fall below it, as the driver allows) by
    the compiled loop, stopping at the driver's ``0 <= change < threshold`` (``tol``, or
    ``tol * (floor + |objective|)`` with a ``floor``) and before an iteration the Python
    step must do; each iteration's objective, bound and slack, and a function that makes
    the parameters of the iteration it is given (an index). None where the
    loop does not apply (see the module's docstring) or Numba is not installed."""
    if not _SMALL_EM:
        return None
    one_chunk = getattr(engine, "one_chunk", None)
    if one_chunk is None or getattr(data, "labels", True) is not None or not one_chunk(data):
        return None
    X, w = data.rows, data.weights
    if any(c is not None for c in data.columns):
        return None
    if not isinstance(X, np.ndarray) or X.ndim != 2 or X.dtype != np.float64:
        return None
    if w is not None and not (isinstance(w, np.ndarray) and w.dtype == np.float64):
        return None
    n, d = X.shape
    form = kernel_form(model, d)
    if n == 0 or form is None:
        return None
    layout, composed, codes, exact = form
    family = model.family
    if not composed and not numba_loaded():
        # scikit-learn's four structures never import Numba for a small fit (importing
        # it costs more than such a fit): their blocks run where the process has it
        # already (a composed model's fit, hierarchical starts, a large fit's E-step)
        return None
    kernels = compiled_module("emkit.models._small_em")
    if kernels is None:
        return None
    Xc = np.ascontiguousarray(family.prepare(X, np.float64))
    if not np.isfinite(Xc).all():
        return None
    w = np.ones(n) if w is None else np.ascontiguousarray(w)
    # sum_n w_n x_n x_n^T: a tied covariance's second moments, the same every iteration
    shared = (Xc * w[:, None]).T @ Xc if layout == TIED else np.zeros((d, d))
    column_scale = np.ascontiguousarray(family._floor_scale(), dtype=np.float64)
    reg_covar = float(family.reg_covar)
    far_scale = float(family.scale)
    dense = layout in (FULL, TIED)
    no_dense = np.empty((0, d, d))
    no_variances = np.empty((0, 1))

    def run(
        params: Any, previous: float, slack: float, n_max: int, tol: float, floor: float | None
    ) -> BlockRun:
        weights0 = np.ascontiguousarray(params.weights, dtype=np.float64)
        components = params.components
        K = weights0.shape[0]
        cov = np.asarray(components.covariances, dtype=np.float64)
        prec = np.asarray(components.precisions_cholesky, dtype=np.float64)
        if dense:
            cov3 = np.ascontiguousarray(cov.reshape(-1, d, d))
            pc3 = np.ascontiguousarray(prec.reshape(-1, d, d))
            cov2, pc2 = no_variances, no_variances
        else:
            cov3, pc3 = no_dense, no_dense
            cov2 = np.ascontiguousarray(cov.reshape(K, -1))
            pc2 = np.ascontiguousarray(prec.reshape(K, -1))
        Kc, K2, dv = cov3.shape[0], cov2.shape[0], cov2.shape[1]
        per_iteration = 8 * (K + K * d + 2 * Kc * d * d + 2 * K2 * dv + 4)
        n_max = max(1, min(n_max, _BLOCK_BYTES // per_iteration))
        out_w = np.empty((n_max, K))
        out_means = np.empty((n_max, K, d))
        out_cov3 = np.empty((n_max, Kc, d, d))
        out_pc3 = np.empty((n_max, Kc, d, d))
        out_cov2 = np.empty((n_max, K2, dv))
        out_pc2 = np.empty((n_max, K2, dv))
        out = np.empty((4, n_max))  # gap, objective, bound, slack
        count, _ = kernels.run(
            Xc, w, shared, layout, composed, codes, exact, _TOLERANCE, _MAX_CYCLES,
            reg_covar, column_scale, far_scale, weights0,
            np.ascontiguousarray(components.means, dtype=np.float64), cov3, pc3, cov2, pc2,
            float(previous), float(slack), float(tol), floor is not None,
            0.0 if floor is None else floor, n_max,
            out_w, out_means, out_cov3, out_pc3, out_cov2, out_pc2, out[0], out[1], out[2], out[3],
        )  # fmt: skip
        floored = np.zeros(K, dtype=bool)
        floored.flags.writeable = False
        # each iteration's covariances and factors in the parameters' shape: one view of
        # the whole block, whose rows are the iterations' (a row's view is one index)
        shape = (n_max, *np.shape(components.covariances))
        covs = (out_cov3 if dense else out_cov2).reshape(shape)
        precs = (out_pc3 if dense else out_pc2).reshape(shape)
        make = type(params)
        gaps, objectives, bounds, slacks = out[:, :count].tolist()

        def made(i: int) -> Any:
            # iteration i's parameters, made only where they are read (the driver reads
            # the last ones it takes and those it checkpoints)
            return make(out_w[i], GaussianParams(out_means[i], covs[i], precs[i], floored, gaps[i]))

        return objectives, bounds, slacks, made

    return run


class KernelForm(NamedTuple):
    """How the compiled loops take a model: its covariances' ``layout`` (``FULL``,
    ``TIED``, ``DIAG``, ``SPHERICAL``), whether it is ``composed`` (mclust's models), the
    ``codes`` of its volume, shape and orientation, and whether its M-step is ``exact``."""

    layout: int
    composed: bool
    codes: NDArray[np.int64]
    exact: bool


def kernel_form(model: Any, d: int) -> KernelForm | None:
    """The compiled loops' form of exact EM of ``model`` (a mixture) on ``d`` columns;
    None where they do not cover it: not a Gaussian family, a prior, known parameters,
    missing values, not float64, not exact EM, more than ``MAX_FEATURES`` columns, a
    covariance structure without a compiled layout."""
    family = model.family
    if not isinstance(family, GaussianFamily):
        return None
    if family.prior is not None or family.fixed is not None or family.shift is None:
        return None
    weights = model.weights
    if not isinstance(weights, MixingWeights) or weights.fixed is not None:
        return None
    if weights.concentration != 1.0 or model.missing or not isinstance(model.assign, Exact):
        return None
    if np.dtype(model.dtype) != np.float64 or d > MAX_FEATURES:
        return None
    structure: Any = family.structure
    layout = structure.compiled_layout
    if layout is None:
        return None
    composed = isinstance(structure, Composed)
    codes = np.array(
        [_CODES[structure.volume], _CODES[structure.shape_kind], _CODES[structure.orientation]]
        if composed
        else [0, 0, 0],
        dtype=np.int64,
    )
    return KernelForm(layout, composed, codes, bool(structure.exact) if composed else True)


def compiled_start(model: Any, X: Any, labels: NDArray[np.intp], n_components: int) -> Any:
    """The parameters (MixtureParams) of the M-step from the partition ``labels``
    (0..n_components-1, -1: a row left out) of the rows ``X`` by one compiled loop
    (:func:`emkit.models._small_pass.start`: the partition's statistics, then the
    compiled EM loop's M-step, :func:`emkit.models._small_em.m_step`), the Python
    start's to round-off; None where it does not apply, for the Python start (the
    statistics through the engine and the model's M-step): Numba not loaded (its import
    costs more than a small fit), a model the loops do not cover (:func:`kernel_form`),
    rows that are not finite float64, or a partition the Python M-step must decide (a
    component without mass, a covariance at the degeneracy floor, a composed kernel's
    failure). ModelBasedClustering starts every cell and shared start so (561 starts a
    faithful sweep), where the Python start spent ~35 us of interpreter each on ~2 us of
    arithmetic."""
    if not (_COMPILED_START and numba_loaded()):
        return None
    if not (isinstance(X, np.ndarray) and X.ndim == 2 and X.dtype == np.float64):
        return None
    n, d = X.shape
    K = int(n_components)
    form = kernel_form(model, d)
    if form is None or labels.shape[0] != n or K < 1:
        return None
    kernels = compiled_module("emkit.models._small_pass")
    if kernels is None:
        return None
    family = model.family
    Xc = np.ascontiguousarray(family.prepare(X, np.float64))
    if not np.isfinite(Xc).all():
        return None
    layout, composed = form.layout, form.composed
    dense = layout in (FULL, TIED)
    # the Python start's placeholder covariances (identity), where a composed model
    # iterates from them
    Kc = (1 if layout == TIED else K) if dense else 0
    dv = 1 if dense or layout == SPHERICAL else d
    prev3 = (
        np.broadcast_to(np.eye(d), (K, d, d)).copy() if composed and dense else np.empty((0, d, d))
    )
    prev2 = np.ones((K, dv)) if composed and not dense else np.empty((0, dv))
    out_w = np.empty(K)
    out_means = np.empty((K, d))
    out_cov3 = np.empty((Kc, d, d) if dense else (0, d, d))
    out_pc3 = np.empty_like(out_cov3)
    out_cov2 = np.empty((0, dv) if dense else (K, dv))
    out_pc2 = np.empty_like(out_cov2)
    gap = np.empty(1)
    status = kernels.start(
        Xc, np.ascontiguousarray(labels, dtype=np.intp),
        Xc.T @ Xc if layout == TIED else np.zeros((d, d)),
        layout, composed, form.codes, form.exact,
        _TOLERANCE, _MAX_CYCLES, float(family.reg_covar),
        np.ascontiguousarray(family._floor_scale(), dtype=np.float64),
        prev3, prev2, out_w, out_means, out_cov3, out_pc3, out_cov2, out_pc2, gap,
    )  # fmt: skip
    if status != kernels.OK:
        return None
    shape = family.structure.shape(K, d)
    components = GaussianParams(
        out_means,
        (out_cov3 if dense else out_cov2).reshape(shape),
        (out_pc3 if dense else out_pc2).reshape(shape),
        np.zeros(K, dtype=bool),
        float(gap[0]),
    )
    from emkit.models.mixture import MixtureParams  # (mixture imports this module)

    return MixtureParams(out_w, components)

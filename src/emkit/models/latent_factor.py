"""Probabilistic PCA and factor analysis, x = W z + mu + noise, as pure functions.

With z ~ N(0, I_q) and noise ~ N(0, Psi), Psi = sigma^2 I (PPCA) or diagonal (factor
analysis), x ~ N(mu, C) with C = W W^T + Psi. Given the observed part x_O of a row, the
posterior of z is Gaussian:

    M = I + W_O^T Psi_O^-1 W_O,   G = M^-1,   E[z] = G W_O^T Psi_O^-1 (x_O - mu_O),
    E[z z^T] = G + E[z] E[z]^T

and log N(x_O; mu_O, C_OO) follows from the same M (determinant lemma, and the quadratic
form as the minimum over z that E[z] attains, a sum of squares with no cancellation even
when a noise variance is tiny):

    log|C_OO| = log|Psi_O| + log|M|,
    e^T C_OO^-1 e = ||Psi_O^-1/2 (e - W_O E[z])||^2 + ||E[z]||^2,   e = x_O - mu_O

The M-step solves, feature by feature, a least-squares problem in the expected statistics
of z~ = [z, 1] (so the mean is estimated jointly with W, which missing values need):

    [W_i, mu_i] = b_i^T A_i^-1,   A_i = sum_{n: x_ni observed} E[z~_n z~_n^T],
    b_i = sum x_ni E[z~_n],       psi_i = (sum x_ni^2 - [W_i, mu_i] b_i) / n_i

pooled over features for PPCA. The M-step is parameter-expanded (PX-EM; Liu, Rubin & Wu,
1998): it also fits z ~ N(eta, Sigma) from the sum of E[z~ z~^T] over all rows and folds it
back, W <- W L with L L^T = Sigma and mu <- mu + W eta. That is an exact EM step of the
expanded model, so the likelihood still never decreases, and it removes the slow mode of
plain EM when the signal is strong (lambda / sigma^2 large: a rate of 1 - 2 sigma^2 / lambda
an iteration), thousands of iterations down to tens.

These sums add over rows (:class:`FactorStats`), so chunks, sample weights and missing
values share one M-step. With complete data the rows enter only through the weighted count,
sum x and sum x x^T (:class:`Moments`, one pass): :class:`LatentFactorMoments` runs EM on
d pseudo-rows whose scatter matrix is the data's (:class:`ScatterRoot`), O(d^2 q) an
iteration whatever the number of rows.

Numerics: strong and weak directions of W can differ by many orders of magnitude (when the
factors explain a feature almost exactly its noise variance falls to the floor), and M's
inverse and determinant, formed directly, then lose every digit of the weak directions:
EM seemed to lower the likelihood. So each E-step works in the principal frame of
Psi^-1/2 W = U S V^T: with W V for W, M = I + S^2 is diagonal, and the SVD keeps small
singular values to absolute precision. Rows with missing values add a pattern-dependent
part to M, inverted after Jacobi scaling. Statistics come out in that frame, and so do the
next parameters: the model sees W only through W W^T.

Rows with missing values are grouped by their pattern of observed features within a chunk:
M, its Cholesky factor and G are computed once a pattern, so the cost of an iteration is
O(n d q + p d q^2 + p q^3) for p patterns, plus O(n d q^2) for A_i when values are missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, ClassVar, NamedTuple

import numpy as np
from numpy.typing import NDArray

from emkit.families._base import pattern_ids
from emkit.models.sampling import Draws
from emkit.models.statistics import Statistics

__all__ = [
    "NOISE_TYPES",
    "ColumnMoments",
    "Diagonal",
    "FactorParams",
    "FactorStats",
    "Isotropic",
    "LatentFactor",
    "LatentFactorMoments",
    "Moments",
    "NoiseStructure",
    "PairwiseMoments",
    "ScatterRoot",
    "canonical_components",
    "column_moments",
    "drop_negligible",
    "factor_analysis_step",
    "loadings_given_noise",
    "noise_structure",
    "orthomax",
    "power_of_two_scale",
    "ppca_maximum_likelihood",
    "row_scales",
]

Array = NDArray[np.floating[Any]]
LOG_2PI = float(np.log(2.0 * np.pi))


def principal_frame(W: Array, noise: Array) -> tuple[Array, Array, Array]:
    """``W V``, ``s^2`` and ``V^T`` where Psi^-1/2 W = U diag(s) V^T, for stacks (..., d, q).

    In this frame M = I + W^T Psi^-1 W is diag(1 + s^2): its inverse and log-determinant
    are exact to the last digit however far apart the singular values are. A latent
    vector z' of the frame is z = V z' in the frame of ``W``.
    """
    _, s, Vt = np.linalg.svd(W / np.sqrt(noise)[..., :, None], full_matrices=False)
    return W @ np.swapaxes(Vt, -1, -2), s * s, Vt


# Data whose largest magnitude lies within [2^-64, 2^64] is used as it is.
_SAFE_EXPONENT = 64


def power_of_two_scale(magnitude: float) -> float:
    """1, or the power of two nearest above ``magnitude`` when it is outside [2^-64, 2^64].

    Dividing by a power of two is exact, so EM on X / scale reaches the same parameters
    as on X, scaled, while squares and sums of squares of values near 1e200 (or 1e-200)
    stay within float64's range.
    """
    if not np.isfinite(magnitude) or magnitude <= 0.0:
        return 1.0
    exponent = int(np.frexp(magnitude)[1])
    return 1.0 if abs(exponent) <= _SAFE_EXPONENT else float(np.ldexp(1.0, exponent))


def row_scales(E: Array) -> Array:
    """Per row, 1 or the power of two just above its largest magnitude when that is > 1.

    A quadratic form computed on E / c and multiplied back by c^2 overflows only when its
    true value is beyond float64's range, not when a square of an entry is.
    """
    with np.errstate(invalid="ignore"):
        top = np.max(np.abs(E), axis=1, initial=0.0)
    return np.ldexp(1.0, np.maximum(np.frexp(top)[1], 0))


def orthomax(loadings: Array, gamma: float, *, tol: float = 1e-8, max_iter: int = 500) -> Array:
    """The orthogonal rotation of ``loadings`` (d, q) that maximizes the orthomax criterion.

    The criterion of L = loadings R is sum_j [sum_i L_ij^4 - (gamma / d) (sum_i L_ij^2)^2]:
    varimax is gamma = 1 (Kaiser, 1958), quartimax gamma = 0. Each step takes the polar
    factor of its gradient, R = U V^T with U S V^T = loadings^T (L^3 - (gamma / d) L
    diag(sum_i L_ij^2)), until the criterion's bound sum(S) gains less than ``tol``
    relatively (the iteration of e.g. Jennrich, 2001). Returns ``loadings R``.
    """
    d, q = loadings.shape
    if q < 2:
        return loadings.copy()
    R = np.eye(q)
    bound = 0.0
    for _ in range(max_iter):
        L = loadings @ R
        L2 = L * L
        gradient = loadings.T @ (L2 * L - (gamma / d) * L * L2.sum(axis=0))
        U, S, Vt = np.linalg.svd(gradient)
        R = U @ Vt
        previous, bound = bound, float(S.sum())
        if bound <= previous * (1.0 + tol):
            break
    return np.asarray(loadings @ R)


# -- the noise structure: sigma^2 I or diag(psi) -----------------------------------------


def ppca_maximum_likelihood(S: Array, n_factors: int, floor: float) -> tuple[Array, Array]:
    """Tipping & Bishop's closed-form maximum of the PPCA likelihood for covariance ``S``.

    W = U_q (Lambda_q - sigma^2 I)^(1/2) and sigma^2 = the mean of the d - q discarded
    eigenvalues (kept >= ``floor``). ``S`` may be a stack (..., d, d); returns ``W``
    (..., d, q) and the noise variances (..., d), all equal to sigma^2.
    """
    d = S.shape[-1]
    lam, U = np.linalg.eigh(S)  # ascending
    s2 = np.maximum(lam[..., : d - n_factors].mean(axis=-1), floor)
    top = lam[..., d - n_factors :][..., ::-1]
    W = (
        U[..., d - n_factors :][..., ::-1]
        * np.sqrt(np.maximum(top - s2[..., None], 0.0))[..., None, :]
    )
    return W, np.broadcast_to(s2[..., None], S.shape[:-1]).copy()


def factor_analysis_step(S: Array, W: Array, noise: Array, floor: float) -> tuple[Array, Array]:
    """One EM update of factor analysis (Rubin & Thayer, 1982) on covariance ``S``.

    With B = G W^T Psi^-1 the posterior-mean map, G = (I + W^T Psi^-1 W)^-1 and
    Ezz = G + B S B^T: W' = S B^T Ezz^-1 and Psi' = diag(S - W' B S), kept >= ``floor``;
    then W' L with L L^T = Ezz (the parameter-expanded step, PX-EM). It never lowers the
    likelihood of ``S``. Stacks (..., d, d) of problems are solved at once.
    """
    W, s2, _ = principal_frame(W, noise)  # G = diag(g)
    g = 1.0 / (1.0 + s2)
    Wp = W / noise[..., :, None]  # Psi^-1 W
    SB = (S @ Wp) * g[..., None, :]  # S B^T
    Ezz = g[..., :, None] * (np.swapaxes(Wp, -1, -2) @ SB)  # B S B^T
    Ezz += _diag(g)  # + G
    W_new = np.swapaxes(np.linalg.solve(Ezz, np.swapaxes(SB, -1, -2)), -1, -2)
    diag_S = np.diagonal(S, axis1=-2, axis2=-1)
    noise_new = np.maximum(diag_S - (W_new * SB).sum(axis=-1), floor)
    # E[z] averages to 0 about the mean of S, so Sigma = Ezz
    return W_new @ np.linalg.cholesky(Ezz), noise_new


def loadings_given_noise(
    root: Array,
    noise: Array,
    n_factors: int,
    svd: Callable[[Array, int], tuple[Array, Array]],
) -> Array:
    """The W that maximizes the factor-analysis likelihood of covariance S = R^T R for
    fixed noise variances ``noise`` (``root`` is R, of shape (m, d)).

    With Psi^-1/2 S Psi^-1/2 = V diag(s^2) V^T (so ``svd(R Psi^-1/2, q)`` gives its q
    largest s and rows of V^T), W = Psi^1/2 V_q diag(max(s^2 - 1, 0))^1/2 (e.g. Barber,
    *Bayesian Reasoning and Machine Learning*, 2012, section 21.2). A direction whose
    s^2 <= 1 would get no loading, and EM never grows a loading from 0: it starts at a
    small fraction of its scale instead.
    """
    if n_factors == 0:
        return np.zeros((noise.shape[0], 0))
    sqrt_psi = np.sqrt(noise)
    s, Vt = svd(root / sqrt_psi, n_factors)
    excess = np.maximum(s * s - 1.0, 1e-3 * np.maximum(s * s, 1.0))
    return np.asarray(sqrt_psi[:, None] * Vt.T * np.sqrt(excess))


def _expanded_q(Wt: Array, noise: Array, eta: Array, L: Array, stats: FactorStats) -> float:
    """Q of the expanded model x = [W, mu] z~ + noise, z ~ N(eta, Sigma = L L^T), under the q
    that ``stats`` summarize, up to terms no parameter changes (total nats):

        sum_i -n_i/2 log psi_i - (sum x_i^2 - 2 w~_i . b_i + w~_i A_i w~_i^T) / (2 psi_i)
        - N/2 log|Sigma| - 1/2 tr(Sigma^-1 sum E[(z - eta)(z - eta)^T])
    """
    q = eta.shape[0]
    quad = np.einsum("ij,ijk,ik->i", Wt, stats.sum_zz, Wt)
    expected_sq = stats.sum_xx - 2.0 * (Wt * stats.sum_xz).sum(axis=1) + quad
    value = -0.5 * float(np.sum(stats.count * np.log(noise) + expected_sq / noise))
    Szz = stats.sum_zz_all
    ez = Szz[:q, q]
    spread = Szz[:q, :q] - np.outer(eta, ez) - np.outer(ez, eta) + stats.weight * np.outer(eta, eta)
    # log|Sigma| = 2 sum log diag(L); tr(Sigma^-1 B) = tr(L^-1 B L^-T)
    half = np.linalg.solve(L, spread)
    trace = float(np.trace(np.linalg.solve(L, half.T)))
    value -= stats.weight * float(np.sum(np.log(np.diag(L)))) + 0.5 * trace
    return value


def _diag(v: Array) -> Array:
    """Diagonal matrices (..., q, q) from vectors (..., q)."""
    out = np.zeros((*v.shape, v.shape[-1]))
    i = np.arange(v.shape[-1])
    out[..., i, i] = v
    return out


class NoiseStructure:
    """How the noise covariance Psi is parametrized: its M-step and its parameter count.

    Noise variances are always held as a vector (..., d); isotropic noise repeats sigma^2.
    """

    name: ClassVar[str]

    def pool(self, residual: Array, count: Array, floor: float) -> Array:
        """Noise variances maximizing Q, from each feature's expected squared residual sum
        and observed weight (the constrained maximum when it is below ``floor``)."""
        raise NotImplementedError

    def component_m_step(
        self, S: Array, W: Array, noise: Array, floor: float
    ) -> tuple[Array, Array]:
        """New (W, noise) of mixture components given their weighted covariances ``S``."""
        raise NotImplementedError

    def n_parameters(self, n_features: int) -> int:
        raise NotImplementedError


class Isotropic(NoiseStructure):
    """sigma^2 I: probabilistic PCA. The mixture M-step is exact (closed form)."""

    name = "isotropic"

    def pool(self, residual: Array, count: Array, floor: float) -> Array:
        s2 = np.maximum(residual.sum(axis=-1) / count.sum(axis=-1), floor)
        return np.broadcast_to(np.asarray(s2)[..., None], residual.shape).copy()

    def component_m_step(
        self, S: Array, W: Array, noise: Array, floor: float
    ) -> tuple[Array, Array]:
        return ppca_maximum_likelihood(S, W.shape[-1], floor)

    def n_parameters(self, n_features: int) -> int:
        return 1


class Diagonal(NoiseStructure):
    """diag(psi): factor analysis. The mixture M-step is one Rubin-Thayer update
    (generalized EM: it raises the objective, without maximizing it)."""

    name = "diagonal"

    def pool(self, residual: Array, count: Array, floor: float) -> Array:
        return np.maximum(residual / count, floor)

    def component_m_step(
        self, S: Array, W: Array, noise: Array, floor: float
    ) -> tuple[Array, Array]:
        return factor_analysis_step(S, W, noise, floor)

    def n_parameters(self, n_features: int) -> int:
        return n_features


NOISE_TYPES = ("isotropic", "diagonal")
_STRUCTURES: dict[str, NoiseStructure] = {"isotropic": Isotropic(), "diagonal": Diagonal()}


def noise_structure(name: str) -> NoiseStructure:
    """The noise structure called ``name`` (one of :data:`NOISE_TYPES`)."""
    return _STRUCTURES[name]


def canonical_components(W: Array) -> Array:
    """``W R`` for the rotation R that makes its columns orthogonal, by decreasing norm.

    The model depends on W only through W W^T; this picks one representative (for PPCA
    at the maximum, U_q (Lambda_q - sigma^2 I)^(1/2)), with each column's largest entry
    positive. Stacks (..., d, q) are rotated one by one.
    """
    U, s, _ = np.linalg.svd(W, full_matrices=False)
    V = U * s[..., None, :]
    rows = np.abs(V).argmax(axis=-2)
    signs = np.sign(np.take_along_axis(V, rows[..., None, :], axis=-2))
    return V * np.where(signs == 0, 1.0, signs)


def drop_negligible(W: Array, noise: Array) -> Array:
    """``W`` (d, q) with the columns whose share of W W^T + Psi is below round-off set to 0.

    EM shrinks a loading that the data do not support geometrically towards 0 and never
    reaches it; a column w with ||w||^2 <= eps * max_i C_ii changes no entry of the
    covariance C, yet it would add round-off dust (1e-11 and the like) to the factors.
    """
    negligible = (W * W).sum(axis=0) <= np.finfo(np.float64).eps * float(
        ((W * W).sum(axis=1) + noise).max(initial=0.0)
    )
    return np.where(negligible, 0.0, W) if negligible.any() else W


# -- parameters and statistics -------------------------------------------------------------


class FactorParams(NamedTuple):
    """Loadings, mean and noise variances, in the model's shifted coordinates."""

    components: Array  # (d, q)  W
    mean: Array  # (d,)  mu - shift
    noise: Array  # (d,)  diagonal of Psi


@dataclass(frozen=True)
class FactorStats(Statistics):
    """Additive expected statistics of a block of rows (z~ = [z, 1])."""

    count: Array  # (d,)  sum_n w_n [x_ni observed]
    sum_xz: Array  # (d, q+1)  sum_n w_n x_ni E[z~_n]
    sum_zz: Array  # (d, q+1, q+1)  sum_{n: x_ni observed} w_n E[z~_n z~_n^T]
    sum_xx: Array  # (d,)  sum_n w_n x_ni^2
    sum_zz_all: Array  # (q+1, q+1)  sum_n w_n E[z~_n z~_n^T] over every row
    loglik: float  # sum_n w_n log p(x_n,O)
    weight: float  # sum_n w_n


@dataclass(frozen=True)
class Moments(Statistics):
    """The sufficient statistics of complete rows, in shifted coordinates."""

    weight: float  # sum_n w_n
    sum_x: Array  # (d,)  sum_n w_n x_n
    sum_xxT: Array  # (d, d)  sum_n w_n x_n x_n^T

    def scatter_root(self) -> ScatterRoot:
        """The same statistics as a mean and d pseudo-rows R with R^T R the scatter matrix
        about the mean (from its eigendecomposition, so a singular one is fine)."""
        mean = self.sum_x / self.weight
        scatter = self.sum_xxT - np.outer(self.sum_x, mean)
        lam, V = np.linalg.eigh(0.5 * (scatter + scatter.T))
        return ScatterRoot(self.weight, mean, (V * np.sqrt(np.maximum(lam, 0.0))).T.copy())


@dataclass(frozen=True)
class ScatterRoot:
    """Complete rows reduced to their weight, mean and a square root of their scatter."""

    weight: float  # sum_n w_n
    mean: Array  # (d,)  sum_n w_n x_n / weight
    root: Array  # (d, d)  R with R^T R = sum_n w_n (x_n - mean)(x_n - mean)^T


@dataclass(frozen=True)
class ColumnMoments(Statistics):
    """Per-column sums over the observed entries (NaN is missing), for centring."""

    count: Array  # (d,)  sum_n w_n [x_ni observed]
    sum_x: Array  # (d,)
    sum_xx: Array  # (d,)

    def mean(self) -> Array:
        return self.sum_x / self.count

    def variance(self) -> Array:
        return np.maximum(self.sum_xx / self.count - self.mean() ** 2, 0.0)


def column_moments(X: Array, weights: Array | None, scale: float = 1.0) -> ColumnMoments:
    """:class:`ColumnMoments` of a block of rows divided by ``scale`` (NaN entries left
    out)."""
    observed = ~np.isnan(X)
    Y = np.where(observed, X, 0.0).astype(np.float64, copy=False)
    if scale != 1.0:
        Y = Y * (1.0 / scale)
    if weights is None:
        return ColumnMoments(
            observed.sum(axis=0, dtype=np.float64), Y.sum(axis=0), (Y * Y).sum(axis=0)
        )
    w = weights.astype(np.float64, copy=False)
    return ColumnMoments(w @ observed, w @ Y, w @ (Y * Y))


@dataclass(frozen=True)
class PairwiseMoments(Statistics):
    """Sums over the rows where both features of a pair are observed (NaN is missing)."""

    count: Array  # (d, d)  sum_n w_n [x_ni and x_nj observed]
    sum_xxT: Array  # (d, d)  sum_n w_n x_ni x_nj over those rows

    def covariance(self) -> Array:
        """The available-case covariance (of rows already centred), pairs never observed
        together set to 0."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.count > 0, self.sum_xxT / self.count, 0.0)


def _sampled_moments(mean: Array, cov: Array, draws: Draws) -> tuple[Array, Array]:
    """The mean (n, q) and covariance (n, q, q) of ``draws.n_draws`` draws of each row's
    z ~ N(mean_n, cov_n) (``cov``: (q, q) shared by the rows, or (n, q, q)), which the
    E-step uses in place of the posterior's moments."""
    n, q = mean.shape
    root = np.sqrt(np.diagonal(cov)) if cov.ndim == 2 else np.linalg.cholesky(cov)
    centre, spread = np.empty((n, q)), np.empty((n, q, q))
    for rows, block in draws.by_block():  # (a block's draws at a time: bounded memory)
        eps = block.normal(q)  # (rows, M, q)
        if cov.ndim == 2:  # diagonal in the principal frame
            z = eps * root
        else:
            z = np.matmul(eps, np.swapaxes(root[rows], 1, 2))  # e L^T
        centre[rows] = z.mean(axis=1)
        z -= centre[rows][:, None, :]
        # (1/M) sum_m z z^T - zbar zbar^T, from the draws about their own mean
        spread[rows] = np.matmul(np.swapaxes(z, 1, 2), z) / z.shape[1]
    return mean + centre, spread


def _scaled_rows(E: Array) -> tuple[Array, Array | None]:
    """``E`` and None, or E / c with the row scales c when a square of an entry could
    overflow (an outlying row: E[z] and the quadratic form are then computed on E / c)."""
    c = row_scales(E)
    if c.max() <= 2.0**_SAFE_EXPONENT:
        return E, None
    return E / c[:, None], c


def _times_square(quad: Array, c: Array) -> Array:
    """quad * c^2, +inf where the true value is beyond float64's range."""
    with np.errstate(over="ignore"):
        return np.asarray(quad * c * c)


def _expansion(stats: FactorStats, q: int) -> tuple[Array, Array]:
    """eta and L (L L^T = Sigma) of the expanded model z ~ N(eta, Sigma), from the
    moments of z~ = [z, 1] over every row (PX-EM)."""
    Ez = stats.sum_zz_all / stats.weight
    eta = Ez[:q, q]
    return eta, np.linalg.cholesky(Ez[:q, :q] - np.outer(eta, eta))


class _Posterior(NamedTuple):
    """The posterior of z for a block of rows."""

    Y: Array  # (n, d)  shifted observations, 0 where missing
    observed: NDArray[np.bool_] | None  # (n, d), None when nothing is missing
    mean: Array  # (n, q)  E[z_n]
    cov: Array  # (n, q, q), or (q, q) shared by every row when nothing is missing
    loglik: Array  # (n,)  log p(x_n,O)


# -- the model -------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class LatentFactor:
    """PPCA or factor analysis, E-step over rows that may hold missing values (NaN).

    Rows are read as X / ``scale`` - ``shift`` (d,): the parameters live in these
    coordinates, which keeps sums of squares accurate and within range (``scale`` is a
    power of two, see :func:`power_of_two_scale`); densities are of the rows as given.
    Noise variances stay >= ``noise_floor``.
    """

    noise: NoiseStructure
    shift: Array
    noise_floor: float
    # SQUAREM extrapolates the parameters: the statistics are taken about the current
    # means and in the current loadings' frame, coordinates that move every iteration
    extrapolate: ClassVar[str] = "parameters"
    scale: float = 1.0
    # Monte-Carlo EM: the E-step averages over draws of the factor scores from their
    # posterior (emkit.models.sampling) instead of taking its moments; None: exact EM
    draws: Draws | None = None

    def rows(self, X: Array) -> Array:
        """X / scale - shift in float64 (exact: the scale is a power of two)."""
        if self.scale == 1.0:
            return np.subtract(X, self.shift, dtype=np.float64)
        Y = np.multiply(X, 1.0 / self.scale, dtype=np.float64)
        Y -= self.shift
        return Y

    def _posterior(self, params: FactorParams) -> Callable[[Array], _Posterior]:
        _, mean, noise = params
        W, s2, _ = principal_frame(params.components, noise)  # M = I + diag(s2)
        d, q = W.shape
        g = 1.0 / (1.0 + s2)  # G = diag(g)
        inv_psi = 1.0 / noise
        # log|scale^2 Psi|: densities are of x = scale * y
        log_psi = np.log(noise) + 2.0 * np.log(self.scale)
        Wp = W * inv_psi[:, None]  # Psi^-1 W
        # log|C| = log|Psi| + log|M|
        logdet_full = log_psi.sum() + np.log1p(s2).sum()
        per_feature = (W[:, :, None] * Wp[:, None, :]).reshape(d, q * q)  # w_i w_i^T / psi_i

        def posterior(X: Array) -> _Posterior:
            Y = self.rows(X)
            missing = np.isnan(Y)
            if not missing.any():
                E, c = _scaled_rows(Y - mean)
                Ez = (E @ Wp) * g
                resid = E - Ez @ W.T
                quad = (resid * resid) @ inv_psi + (Ez * Ez).sum(axis=1)
                if c is not None:
                    Ez, quad = Ez * c[:, None], _times_square(quad, c)
                loglik = -0.5 * (d * LOG_2PI + logdet_full + quad)
                return _Posterior(Y, None, Ez, np.diag(g), loglik)
            observed = ~missing
            Y[missing] = 0.0
            E = Y - mean
            E[missing] = 0.0
            first, inverse = pattern_ids(observed)
            patterns = observed[first]
            pf = patterns.astype(np.float64)
            M = (pf @ per_feature).reshape(len(pf), q, q)  # I + W_O^T Psi_O^-1 W_O
            M[:, range(q), range(q)] += 1.0
            # M = D^1/2 (D^-1/2 M D^-1/2) D^1/2 with D = diag(M): the scaled matrix is near
            # I in the principal frame, so its inverse and determinant keep their digits
            scale = 1.0 / np.sqrt(np.diagonal(M, axis1=1, axis2=2))
            outer = scale[:, :, None] * scale[:, None, :]
            M *= outer
            L = np.linalg.cholesky(M)
            G = (np.linalg.inv(M) * outer)[inverse]
            logdet = pf @ log_psi
            logdet += 2.0 * np.log(np.diagonal(L, axis1=1, axis2=2) / scale).sum(axis=1)
            E, c = _scaled_rows(E)
            Ez = np.matmul(G, (E @ Wp)[:, :, None])[:, :, 0]
            resid = E - Ez @ W.T
            resid[missing] = 0.0
            quad = (resid * resid) @ inv_psi + (Ez * Ez).sum(axis=1)
            if c is not None:
                Ez, quad = Ez * c[:, None], _times_square(quad, c)
            loglik = -0.5 * ((pf.sum(axis=1) * LOG_2PI + logdet)[inverse] + quad)
            return _Posterior(Y, observed, Ez, G, loglik)

        return posterior

    def expectation(self, params: FactorParams) -> Callable[..., FactorStats]:
        """The E-step for one iteration, as a function of a block of rows, their weights
        and their positions in the data (which Monte-Carlo draws are keyed by; ``None``
        otherwise).

        With :attr:`draws`, E[z_n] and E[z_n z_n^T] are replaced by the average of z and
        z z^T over draws z = E[z_n] + G_n^1/2 e, e ~ N(0, I) (G_n = Cov[z_n | x_n,O],
        diagonal in the principal frame for complete rows); the log-likelihood stays exact.
        """
        posterior = self._posterior(params)
        d, q = params.components.shape
        draws = self.draws

        def e_step(
            X: Array, weights: Array | None, index: NDArray[np.intp] | None = None
        ) -> FactorStats:
            post = posterior(X)
            mean, cov = post.mean, post.cov
            if draws is not None and index is not None:
                mean, cov = _sampled_moments(mean, cov, draws.for_rows(index))
            n = X.shape[0]
            w = np.ones(n) if weights is None else weights.astype(np.float64)
            total = float(w.sum())
            zt = np.empty((n, q + 1))
            zt[:, :q] = mean
            zt[:, q] = 1.0
            wz = zt * w[:, None]
            sum_xz = post.Y.T @ wz
            sum_xx = w @ (post.Y * post.Y)
            if post.observed is None:
                Szz = zt.T @ wz
                # sum_n w_n Cov[z_n]: one shared matrix, or the draws' own per row
                Szz[:q, :q] += total * cov if cov.ndim == 2 else np.einsum("n,nij->ij", w, cov)
                sum_zz = np.broadcast_to(Szz, (d, q + 1, q + 1)).copy()
                count = np.full(d, total)
            else:
                rows = wz[:, :, None] * zt[:, None, :]  # w_n E[z~] E[z~]^T
                rows[:, :q, :q] += cov * w[:, None, None]
                flat = rows.reshape(n, -1)
                of = post.observed.astype(np.float64)
                sum_zz = (of.T @ flat).reshape(d, q + 1, q + 1)
                Szz = flat.sum(axis=0).reshape(q + 1, q + 1)
                count = w @ of
            loglik = float(w @ post.loglik)
            return FactorStats(count, sum_xz, sum_zz, sum_xx, Szz, loglik, total)

        return e_step

    def m_step(self, params: FactorParams, stats: FactorStats) -> FactorParams:
        """Maximize Q of the expanded model: per feature [W_i, mu_i] = b_i^T A_i^-1 and
        the noise; eta and Sigma of z; then fold them back into W and mu."""
        q = params.components.shape[1]
        Wt, noise, eta, L = self._expanded_m_step(stats, q)  # L L^T = Sigma
        W = Wt[:, :q]
        return FactorParams(W @ L, Wt[:, q] + W @ eta, noise)

    def _expanded_m_step(self, stats: FactorStats, q: int) -> tuple[Array, Array, Array, Array]:
        """The maximizer of the expanded model's Q: ([W, mu] (d, q+1), the noise, and
        the factors' mean eta and the Cholesky factor L of their covariance Sigma)."""
        Wt = np.linalg.solve(stats.sum_zz, stats.sum_xz[:, :, None])[:, :, 0]
        residual = stats.sum_xx - (Wt * stats.sum_xz).sum(axis=1)
        noise = self.noise.pool(residual, stats.count, self.noise_floor)
        eta, L = _expansion(stats, q)
        return Wt, noise, eta, L

    def lower_bound(self, params: FactorParams, new: FactorParams, stats: FactorStats) -> float:
        """Per-sample L(q, new) after the (parameter-expanded) M-step.

        q is the posterior of the factors in the E-step's principal frame (W V for W,
        :func:`principal_frame`), so the parameters it started from are, in the expanded
        model, ([W V, mu], Psi, eta = 0, Sigma = I); the M-step maximized the expanded
        model's Q, whose maximizer has the same distribution of x as ``new``. The bound
        is objective(params) + (Q(expanded maximizer) - Q(start)) / weight."""
        q = params.components.shape[1]
        W, _, _ = principal_frame(params.components, params.noise)
        start = np.column_stack([W, params.mean])
        Wt, noise, eta, L = self._expanded_m_step(stats, q)
        lift = _expanded_q(Wt, noise, eta, L, stats) - _expanded_q(
            start, params.noise, np.zeros(q), np.eye(q), stats
        )
        return self.objective(params, stats) + lift / stats.weight

    def reframe(self, stats: FactorStats, params: FactorParams) -> FactorStats:
        """``stats`` in the latent frame of the E-step of ``params``, the M-step's result
        from them (online EM blends the statistics of successive E-steps: one frame).

        The M-step folds z = eta + L z' into the parameters, and the next E-step works
        in their principal frame, z' = V z''. So z~ = A z~'' with A = [[L V, eta], [0, 1]],
        and the statistics of z~'' are b A^-T and A^-1 S A^-1^T: an M-step on them gives
        ``params`` again (up to the rotation the likelihood does not see).
        """
        q = params.components.shape[1]
        eta, L = _expansion(stats, q)
        Vt = principal_frame(params.components, params.noise)[2]
        A = np.eye(q + 1)
        A[:q, :q] = L @ Vt.T
        A[:q, q] = eta
        Ainv = np.linalg.inv(A)
        return replace(
            stats,
            sum_xz=stats.sum_xz @ Ainv.T,
            sum_zz=Ainv @ stats.sum_zz @ Ainv.T,
            sum_zz_all=Ainv @ stats.sum_zz_all @ Ainv.T,
        )

    def m_step_gap(self, params: FactorParams, stats: Any) -> float:
        """Zero: the M-step maximizes Q (over noise variances >= the floor)."""
        return 0.0

    def objective(self, params: FactorParams, stats: FactorStats) -> float:
        """Per-sample log-likelihood (of the observed values)."""
        return stats.loglik / stats.weight

    def moments(self, X: Array, weights: Array | None) -> Moments:
        """:class:`Moments` of a block of complete rows, in shifted coordinates."""
        Y = self.rows(X)
        if weights is None:
            return Moments(float(X.shape[0]), Y.sum(axis=0), Y.T @ Y)
        w = weights.astype(np.float64, copy=False)
        Ys = Y * np.sqrt(w)[:, None]  # Ys^T Ys is one symmetric product
        return Moments(float(w.sum()), w @ Y, Ys.T @ Ys)

    def pairwise_moments(self, X: Array, weights: Array | None) -> PairwiseMoments:
        """:class:`PairwiseMoments` of a block of rows, in shifted coordinates."""
        Y = self.rows(X)
        observed = ~np.isnan(Y)
        Y[~observed] = 0.0
        of = observed.astype(np.float64)
        if weights is None:
            return PairwiseMoments(of.T @ of, Y.T @ Y)
        w = weights.astype(np.float64, copy=False)
        return PairwiseMoments(of.T @ (of * w[:, None]), Y.T @ (Y * w[:, None]))

    def log_density(self, params: FactorParams) -> Callable[[Array], Array]:
        """log p(x_n,O) of raw rows (NaN is missing), shape (n,)."""
        posterior = self._posterior(params)
        return lambda X: posterior(X).loglik

    def posterior_mean(self, params: FactorParams) -> Callable[[Array], Array]:
        """E[z_n | x_n,O] of raw rows (NaN is missing), shape (n, q), in the frame of
        ``params.components``."""
        posterior = self._posterior(params)
        Vt = principal_frame(params.components, params.noise)[2]
        return lambda X: posterior(X).mean @ Vt

    def initial_params(
        self, rng: np.random.Generator, mean: Array, variances: Array, n_factors: int
    ) -> FactorParams:
        """A random orthonormal W scaled to the average variance, noise from the variances."""
        d = variances.shape[0]
        Q, _ = np.linalg.qr(rng.standard_normal((d, n_factors)))
        W = Q * np.sqrt(max(float(variances.mean()), self.noise_floor))
        noise = self.noise.pool(variances, np.ones(d), self.noise_floor)
        return FactorParams(W, mean, noise)

    def params_from_covariance(self, S: Array, mean: Array, n_factors: int) -> FactorParams:
        """The closed-form PPCA maximum for covariance ``S`` (noise pooled by the structure):
        a start near the optimum when ``S`` is an estimate (e.g. from available cases)."""
        W, _ = ppca_maximum_likelihood(S, n_factors, self.noise_floor)
        residual = np.diagonal(S) - (W * W).sum(axis=1)  # diag(S - W W^T)
        noise = self.noise.pool(residual, np.ones(S.shape[0]), self.noise_floor)
        return FactorParams(W, mean, noise)

    def n_parameters(self, n_features: int, n_factors: int) -> int:
        """Free parameters: W up to rotation, the mean and the noise."""
        d, q = n_features, n_factors
        return d * q - q * (q - 1) // 2 + d + self.noise.n_parameters(d)

    @staticmethod
    def row_bytes(n_features: int, n_factors: int) -> int:
        """Bytes a row of a chunk needs in the E-step: copies of the row, its pattern, its
        posterior covariance and the outer products of z~."""
        d, q = n_features, n_factors
        return (5 * d + q * q + (q + 1) * (q + 4)) * 8


@dataclass(frozen=True, eq=False)
class LatentFactorMoments(LatentFactor):
    """The same model on complete data, with the E-step on a :class:`ScatterRoot`.

    Every statistic is a sum over rows of a quadratic function of e_n = x_n - mu; with
    x_n = mean + c_n, sum_n c_n = 0 and sum_n c_n c_n^T = R^T R, such sums equal the row
    E-step applied to the d + 1 pseudo-rows [R; sqrt(N) (mean - mu)], the count and the
    posterior covariance entering with the weight N. O(d^2 q) an iteration.
    """

    def expectation(self, params: FactorParams) -> Callable[[ScatterRoot], FactorStats]:
        _, mu, noise = params
        W, s2, _ = principal_frame(params.components, noise)
        d, q = W.shape
        g = 1.0 / (1.0 + s2)
        inv_psi = 1.0 / noise
        Wp = W * inv_psi[:, None]
        # log|scale^2 Psi| + log|M|: densities are of x = scale * y
        logdet = np.log(noise).sum() + 2.0 * d * np.log(self.scale) + np.log1p(s2).sum()

        def e_step(scatter: ScatterRoot) -> FactorStats:
            N, mean, R = scatter.weight, scatter.mean, scatter.root
            delta = mean - mu
            P = np.vstack([R, np.sqrt(N) * delta])  # P^T P = sum_n e_n e_n^T
            Ez = (P @ Wp) * g
            resid = P - Ez @ W.T
            quad = float(((resid * resid) @ inv_psi).sum() + (Ez * Ez).sum())
            loglik = -0.5 * (N * (d * LOG_2PI + logdet) + quad)
            ez = N * g * (delta @ Wp)  # sum_n E[z_n]
            Szz = np.empty((q + 1, q + 1))
            Szz[:q, :q] = Ez.T @ Ez + np.diag(N * g)  # sum_n E[z_n z_n^T]
            Szz[:q, q] = Szz[q, :q] = ez
            Szz[q, q] = N
            # sum_n x_n E[z_n]^T = R^T R B^T + mean (sum_n E[z_n])^T
            xz = R.T @ Ez[:-1] + np.outer(mean, ez)
            return FactorStats(
                np.full(d, N),
                np.column_stack([xz, N * mean]),
                np.broadcast_to(Szz, (d, q + 1, q + 1)).copy(),
                (R * R).sum(axis=0) + N * mean * mean,
                Szz,
                float(loglik),
                float(N),
            )

        return e_step

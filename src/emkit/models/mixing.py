"""What every mixture shares: how the E-step assigns rows to components (the posterior
policy), the responsibility floor, and the mixing weights as a component of their own.

The E-step of a mixture gives log p(x_n, k) for every row and component; a policy turns
it into the q(z_n) that the M-step averages over, and into the block's objective:

* ``"exact"``: q = p(z | x, theta), the responsibilities; the objective is the
  log-likelihood sum_n w_n log p(x_n) (the lower bound touches it: the E-step closes the
  gap KL(q || p(z | x)) to zero);
* ``"hard"``: classification EM, q puts all of row n on its most probable component; the
  objective is the complete-data log-likelihood at those assignments, which classification
  EM never decreases;
* ``"variational"``: mean-field variational EM, q(z_n = k) proportional to
  exp(E_q[log p(x_n, z_n = k | theta, pi)]): the same softmax as exact EM, of the expected
  log joint that a variational family (:mod:`emkit.families.variational`) and
  :class:`VariationalWeights` give; the block's objective is the data term of the ELBO.
* ``"monte-carlo"`` and ``"stochastic"`` (:class:`Sampled`): q is the empirical
  distribution of labels drawn from p(z | x, theta) (many a row, or one: stochastic EM);
  the objective is still the exact log-likelihood, which the draws do not change.

A row with a known label (semi-supervised) is assigned to it under every policy and counts
log p(x_n, y_n).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeAlias

import numpy as np
from numpy.typing import NDArray
from scipy.sparse import csc_array, csr_array, issparse
from scipy.special import gammaln

from emkit.exceptions import InputError
from emkit.families._base import Fixed
from emkit.families.priors import DirichletPrior
from emkit.models._softmax_kernels import kernels as softmax_kernels
from emkit.models._softmax_kernels import softmax_columns
from emkit.models.sampling import STOCHASTIC, Draws, MonteCarlo

__all__ = [
    "EXACT",
    "E_STEPS",
    "NK_FLOOR",
    "NO_PRIOR",
    "Assignment",
    "Exact",
    "Hard",
    "Labels",
    "MixingWeights",
    "Posterior",
    "Sampled",
    "Variational",
    "VariationalWeights",
    "as_dense",
    "assignment",
    "draw_labels",
    "for_rows",
    "label_counts",
    "mass",
    "posterior",
    "resp_floor",
    "weighted_sums",
]

Array = NDArray[np.floating[Any]]

# Added to every responsibility mass N_k before dividing, as scikit-learn does.
NK_FLOOR = 10.0 * float(np.finfo(np.float64).eps)

# log_prob - max is clipped here before exp: responsibilities below e^floor change nothing
# in the working precision, but subnormal ones (and their products in the M-step's matrix
# product) make the CPU 10-15x slower.
_LOG_RESP_FLOOR = {np.dtype(np.float64): -600.0, np.dtype(np.float32): -60.0}

_Known = tuple[NDArray[np.intp], NDArray[np.intp]]

# Whether Exact may use the compiled softmax (Numba); the tests switch it off to compare.
_COMPILED = True
# ... on blocks of at least this many values: below it the gain is microseconds, less
# than importing Numba (and compiling, the first time) costs a small fit.
_COMPILED_MIN_VALUES = 1 << 15


class Assignment(Protocol):
    """An E-step posterior policy: q(z) of a block of rows from log p(x, k)."""

    @property
    def name(self) -> str:
        """The policy's value of the estimators' ``e_step`` argument."""
        ...

    def __call__(
        self,
        log_prob: Array,
        row: Array | None,
        weights: Array | None,
        log_h: Array | None,
        labels: NDArray[np.intp] | None,
    ) -> tuple[Array, float]:
        """(q(z) times the sample weights, computed in place of ``log_prob``; the block's
        objective). ``row`` and ``log_h`` are terms of log p(x, k) equal for every k,
        added to the objective only; ``labels`` holds known components (-1: unknown)."""
        ...


def _known(labels: NDArray[np.intp] | None) -> _Known | None:
    if labels is None:
        return None
    rows = np.flatnonzero(labels >= 0)
    return (rows, labels[rows]) if rows.size else None


def _objective(
    row_loglik: Array, row: Array | None, weights: Array | None, log_h: Array | None
) -> float:
    """sum_n w_n (row_loglik_n + row_n + log h(x_n)), the terms common to every k in float64."""
    if row is not None:
        row_loglik += row
    loglik = row_loglik.sum(dtype=np.float64) if weights is None else weights @ row_loglik
    if log_h is not None:
        loglik += log_h.sum() if weights is None else weights @ log_h
    return float(loglik)


def _compiled_softmax(
    resp: Array, known: _Known | None
) -> Callable[[Array, Array | None], tuple[Array, Array]] | None:
    """The compiled softmax of :class:`Exact` for a block it applies to, or None (NumPy's).

    It applies to float64 and float32 blocks of at least ``_COMPILED_MIN_VALUES`` values
    without known labels, laid out component-major (the transpose of a C-contiguous
    (K, n) array, as the E-step's matrix product leaves them), when Numba is installed.
    """
    if not _COMPILED or known is not None or resp.dtype not in _LOG_RESP_FLOOR:
        return None
    if resp.ndim != 2 or resp.size < _COMPILED_MIN_VALUES or not resp.T.flags.c_contiguous:
        return None
    if softmax_kernels() is None:
        return None
    return lambda block, weights: softmax_columns(block.T, _LOG_RESP_FLOOR[block.dtype], weights)


def resp_floor(dtype: Any) -> float:
    """Where exact EM clips ``log p(x, k) - max_k log p(x, k)`` before the exp, for a
    float64 or float32 block: responsibilities below it change nothing in that precision,
    and subnormal ones make the CPU 10-15x slower."""
    return _LOG_RESP_FLOOR[np.dtype(dtype)]


def _shift_and_clip(resp: Array, known: Any) -> Array:
    """Shift each row of log-probabilities ``resp`` in place by its maximum (a labelled
    row: by its label's value, its likelihood being p(x, y) alone) and clip it to
    [floor, 0]; returns the shifts m_n, so that log sum_k exp(log_prob_nk) = m_n +
    log sum_k exp(resp_nk)."""
    m = resp.max(axis=1)
    if known is not None:
        m[known[0]] = resp[known]
    resp -= m[:, None]
    # in the working dtype, which the mixture may have raised to float64. Without labels
    # every value is <= 0 now (x - max x rounds to <= 0), so the upper bound changes
    # nothing; np.clip with both bounds was measured 2-3x faster than np.maximum with one
    # (bench/profile_iteration.py's softmax phase). With labels, values above 0 are in
    # labelled rows only, zeroed after the exp: no overflow.
    np.clip(resp, _LOG_RESP_FLOOR[resp.dtype], 0.0, out=resp)
    return m


@dataclass(frozen=True)
class Exact:
    """Exact EM: the responsibilities p(z_n = k | x_n), computed in log space."""

    name: str = "exact"

    def __call__(
        self,
        log_prob: Array,
        row: Array | None,
        weights: Array | None,
        log_h: Array | None,
        labels: NDArray[np.intp] | None,
    ) -> tuple[Array, float]:
        resp, known = log_prob, _known(labels)
        compiled = _compiled_softmax(resp, known)
        if compiled is not None:
            m, total = compiled(resp, weights)
            return resp, _objective(np.log(total) + m, row, weights, log_h)
        # log p(x_n) = m_n + log sum_k exp(log_prob_nk - m_n) + row_n
        m = _shift_and_clip(resp, known)
        np.exp(resp, out=resp)
        if known is not None:
            resp[known[0]] = 0.0
            resp[known] = 1.0
        total = resp.sum(axis=1)
        row_loglik = np.log(total) + m
        scale = 1.0 / total if weights is None else weights / total
        resp *= scale[:, None]
        return resp, _objective(row_loglik, row, weights, log_h)


class Labels(NamedTuple):
    """Hard assignments in sparse form: row n wholly on component ``labels[n]`` with its
    sample weight (``weights``; None: 1). The (n, K) responsibility matrix is the
    one-hot Z with w_n in column z_n; nothing here builds it densely: the masses are a
    bincount and the per-component sums of row statistics one sparse product Z^T T.

    Examples
    --------
    >>> q = Labels(np.array([1, 0, 1]), np.array([1.0, 2.0, 0.5]), 2)
    >>> q.mass().tolist()
    [2.0, 1.5]
    >>> q.sums(np.array([[1.0], [10.0], [100.0]])).tolist()
    [[20.0], [51.0]]
    """

    labels: NDArray[np.intp]  # (n,)
    weights: Array | None  # (n,) or None (every weight 1)
    n_components: int

    def _w(self) -> NDArray[np.float64]:
        n = self.labels.shape[0]
        return np.ones(n) if self.weights is None else np.asarray(self.weights, np.float64)

    def mass(self) -> NDArray[np.float64]:
        """(K,) N_k = sum of the weights of the rows on k."""
        w = None if self.weights is None else np.asarray(self.weights, np.float64)
        return np.bincount(self.labels, w, minlength=self.n_components).astype(np.float64)

    def row_counts(self) -> NDArray[np.intp]:
        """(K,) the rows of positive weight on each component (0: an empty component,
        whatever the round-off of the masses)."""
        on = self.labels if self.weights is None else self.labels[self.weights > 0]
        return np.bincount(on, minlength=self.n_components)

    def one_hot(self) -> Any:
        """Z^T, the (K, n) sparse matrix of the weights at the labels (CSC: one entry a
        column, built with no sorting)."""
        n = self.labels.shape[0]
        return csc_array((self._w(), self.labels, np.arange(n + 1)), shape=(self.n_components, n))

    def sums(self, T: Any, buffer: Array | None = None) -> NDArray[np.float64]:
        """(K, s) sum_n w_n T_n over the rows on each component, for row statistics T
        (n, s) dense or sparse (CSR), in float64: the segment sums Z^T T.

        Row-major T (C-contiguous, e.g. k-means' design matrix) and sparse T take one
        sparse product. Statistic-major T (T = S^T, S C-contiguous: the families' layout)
        with an (n, K) ``buffer`` that the caller no longer needs (the E-step's own
        log-densities) takes BLAS's product with Z written into it: for that layout it
        was measured 1.3-2x faster than bincount segment sums and 2-4x faster than the
        sparse product (chunks of 1k-16k rows, K = 16, 33-153 statistics), and it
        allocates no (n, K) matrix.
        """
        if issparse(T):
            # Z^T in CSR (rows grouped by component): scipy multiplies two CSR matrices
            # as they are (a CSC Z^T would make it convert T)
            order = np.argsort(self.labels, kind="stable")
            indptr = np.zeros(self.n_components + 1, dtype=np.intp)
            np.cumsum(np.bincount(self.labels, minlength=self.n_components), out=indptr[1:])
            Zt = csr_array((self._w()[order], order, indptr), shape=(self.n_components, T.shape[0]))
            return np.asarray((Zt @ T).toarray(), dtype=np.float64)
        if buffer is None or T.flags.c_contiguous:
            return np.asarray(self.one_hot() @ T, dtype=np.float64)
        n = self.labels.shape[0]
        buffer[...] = 0.0
        buffer[np.arange(n), self.labels] = 1.0 if self.weights is None else self.weights
        return np.asarray((T.T @ buffer).T, dtype=np.float64)

    def dense(self, dtype: Any = np.float64) -> Array:
        """The (n, K) responsibility matrix, for the few callers that need one (rows with
        missing values, whose statistics are per pattern)."""
        n = self.labels.shape[0]
        resp = np.zeros((n, self.n_components), dtype=dtype)
        resp[np.arange(n), self.labels] = 1.0 if self.weights is None else self.weights
        return resp


# A policy's q(z) of a block of rows: dense responsibilities times the weights, or hard
# labels in sparse form (:class:`Labels`).
Posterior: TypeAlias = Array | Labels


def mass(q: Posterior) -> NDArray[np.float64]:
    """(K,) N_k of a policy's q (dense or :class:`Labels`), in float64."""
    if isinstance(q, Labels):
        return q.mass()
    return np.asarray(q.sum(axis=0), dtype=np.float64)


def weighted_sums(q: Posterior, T: Array, buffer: Array | None = None) -> NDArray[np.float64]:
    """(K, s) sum_n q_nk T_n for row statistics T (n, s): :meth:`Labels.sums` for hard
    labels (``buffer``: an (n, K) array it may overwrite), one matrix product for dense q
    (as (T^T q)^T, which BLAS runs well for statistic-major T)."""
    if isinstance(q, Labels):
        return q.sums(T, buffer)
    return np.asarray((T.T @ q).T, dtype=np.float64)


def as_dense(q: Posterior, dtype: Any = np.float64) -> Array:
    """q as an (n, K) matrix (a copy-free pass-through for dense q)."""
    return q.dense(dtype) if isinstance(q, Labels) else q


@dataclass(frozen=True)
class Hard:
    """Classification EM: each row wholly on its most probable component (ties: the
    first), and the objective sum_n w_n log p(x_n, z_n) at those components.

    :meth:`labels` is the policy's own form, sparse (:class:`Labels`: no (n, K)
    responsibility matrix); ``__call__`` gives the dense matrix for the
    :class:`Assignment` protocol. Where the components are equally likely a priori and
    their family can find a row's nearest component faster than it can evaluate every
    log-density (k-means' bounded search), :meth:`choose` takes that query instead: the
    same labels, tie rule and known labels.
    """

    name: str = "hard"

    def labels(
        self,
        log_prob: Array,
        row: Array | None,
        weights: Array | None,
        log_h: Array | None,
        labels: NDArray[np.intp] | None,
    ) -> tuple[Labels, float]:
        """(the rows' labels in sparse form, the block's objective) from log p(x, k)."""
        choice = np.asarray(log_prob.argmax(axis=1))  # ties: the first
        q = self.choose(choice, weights, labels, log_prob.shape[1])
        n = log_prob.shape[0]
        row_loglik = log_prob[np.arange(n), q.labels].astype(np.float64)
        return q, _objective(row_loglik, row, weights, log_h)

    def choose(
        self,
        nearest: NDArray[np.intp],
        weights: Array | None,
        labels: NDArray[np.intp] | None,
        n_components: int,
    ) -> Labels:
        """The assignment from each row's most probable component, ``nearest`` (the
        arg-max of log p(x, k), ties to the lower index, or a family's nearest-component
        query where that is the same), a row with a known label (``labels`` >= 0) kept on
        it."""
        known = _known(labels)
        if known is not None:
            nearest = nearest.copy()
            nearest[known[0]] = known[1]
        return Labels(nearest, weights, n_components)

    def __call__(
        self,
        log_prob: Array,
        row: Array | None,
        weights: Array | None,
        log_h: Array | None,
        labels: NDArray[np.intp] | None,
    ) -> tuple[Array, float]:
        q, objective = self.labels(log_prob, row, weights, log_h, labels)
        return q.dense(log_prob.dtype), objective


def posterior(
    assign: Assignment,
    log_prob: Array,
    row: Array | None,
    weights: Array | None,
    log_h: Array | None,
    labels: NDArray[np.intp] | None,
) -> tuple[Posterior, float]:
    """``assign``'s q(z) of a block of rows and its objective, in the policy's own form:
    sparse :class:`Labels` for hard EM, dense responsibilities otherwise (see
    :func:`mass`, :func:`weighted_sums`)."""
    if isinstance(assign, Hard):
        return assign.labels(log_prob, row, weights, log_h, labels)
    return assign(log_prob, row, weights, log_h, labels)


@dataclass(frozen=True)
class Variational:
    """Variational EM's q(z): the softmax of the expected log joint E_q[log p(x, k)]
    (which the model supplies in place of log p(x, k)), computed as exact EM's
    responsibilities, with one of two outputs for the block's objective:

    * ``entropy=False``: the ELBO's data term sum_n w_n log sum_k exp(E_q[log p(x_n, k)])
      (= E_q[log p(x, z)] + H(q(z)) at this q), to which a conjugate family's mixture
      adds its -KL terms (:mod:`emkit.families.variational`); the same numbers as
      :class:`Exact`'s log-likelihood;
    * ``entropy=True``: the negative entropy of q(z), sum_n w_n sum_k r_nk log r_nk,
      the one data term of scikit-learn's lower bound that
      :class:`~emkit.models.variational_gaussian.VariationalGaussianMixture` reports
      (the rest follows from the posteriors' normalizers). Terms of log p(x, k) equal for
      every k (``row``, ``log_h``) change neither q nor the entropy.

    Examples
    --------
    >>> lp = np.log(np.array([[0.25, 0.75]]))
    >>> r, neg_entropy = Variational(entropy=True)(lp.copy(), None, None, None, None)
    >>> r.round(2).tolist(), round(neg_entropy, 4)
    ([[0.25, 0.75]], -0.5623)
    """

    name: str = "variational"
    entropy: bool = False

    def __call__(
        self,
        log_prob: Array,
        row: Array | None,
        weights: Array | None,
        log_h: Array | None,
        labels: NDArray[np.intp] | None,
    ) -> tuple[Array, float]:
        if not self.entropy:  # the conjugate families' mixture: exact EM's softmax
            return Exact()(log_prob, row, weights, log_h, labels)
        resp, known = log_prob, _known(labels)
        _shift_and_clip(resp, known)  # a labelled row is wholly on its label
        # one exp per value, and the shifted log-probabilities kept: log r = shifted -
        # log_total
        shifted = resp
        resp = np.exp(shifted)
        if known is not None:
            resp[known[0]] = 0.0
            resp[known] = 1.0
        total = resp.sum(axis=1)
        resp /= total[:, None]
        # sum_k r log r per row = sum_k r shifted - log_total (the r sum to 1), in float64;
        # a labelled row's r is one-hot at a shifted value of 0: 0
        row_entropy = np.einsum("ij,ij->i", resp, shifted, dtype=np.float64) - np.log(total)
        if weights is None:
            return resp, float(row_entropy.sum())
        resp *= weights[:, None]
        return resp, float(weights @ row_entropy)


def draw_labels(p: Array, u: Array) -> NDArray[np.intp]:
    """(n, M) labels drawn by inverse CDF from rows of probabilities ``p`` (n, K) with the
    uniform values ``u`` (n, M): draw m of row n is the k with cdf_{k-1} <= u_nm < cdf_k.

    Examples
    --------
    >>> draw_labels(np.array([[0.25, 0.75]]), np.array([[0.1, 0.3, 0.9]])).tolist()
    [[0, 1, 1]]
    """
    K = p.shape[1]
    cdf = np.cumsum(p, axis=1, dtype=np.float64)
    labels = np.zeros(u.shape, dtype=np.intp)
    for k in range(K - 1):  # the last cdf is 1 (up to round-off), above every u
        labels += cdf[:, k : k + 1] <= u
    return labels


def label_counts(p: Array, u: Array) -> Array:
    """(n, K) counts of the labels drawn by :func:`draw_labels` from ``p`` with ``u``.

    Examples
    --------
    >>> label_counts(np.array([[0.25, 0.75]]), np.array([[0.1, 0.3, 0.9]])).tolist()
    [[1.0, 2.0]]
    """
    n, K = p.shape
    labels = draw_labels(p, u)
    labels += (np.arange(n) * K)[:, None]
    return np.bincount(labels.ravel(), minlength=n * K).reshape(n, K).astype(np.float64)


@dataclass(frozen=True)
class Sampled:
    """Monte-Carlo EM's E-step: each row's q(z_n) is the share of ``draws.n_draws`` labels
    drawn from its responsibilities that fell on each component (one draw: stochastic EM,
    q a random one-hot row). The objective is the exact log-likelihood of the parameters,
    as for :class:`Exact`: the draws change the statistics, not what is reported.

    The draws are keyed by the rows' positions (:mod:`emkit.models.sampling`): the E-step
    binds the policy to its block of rows with :func:`for_rows`.
    """

    draws: Draws

    @property
    def name(self) -> str:
        return self.draws.options.name

    def at(self, key: tuple[int, ...], n_draws: int) -> Sampled:
        """The policy of one iteration (seed and iteration in ``key``)."""
        return Sampled(self.draws.at(key, n_draws))

    def for_rows(self, index: NDArray[np.intp]) -> Sampled:
        """The policy for the rows at positions ``index`` of the data."""
        return Sampled(self.draws.for_rows(index))

    def __call__(
        self,
        log_prob: Array,
        row: Array | None,
        weights: Array | None,
        log_h: Array | None,
        labels: NDArray[np.intp] | None,
    ) -> tuple[Array, float]:
        blocks = list(self.draws.by_block())  # first: a policy not bound to rows raises
        resp, loglik = EXACT(log_prob, row, weights, log_h, labels)
        total = resp.sum(axis=1, dtype=np.float64)[:, None]  # w_n (a row of weight 0: 0)
        p = np.divide(resp, total, out=np.zeros(resp.shape), where=total > 0)
        counts = np.empty(p.shape)
        for rows, draws in blocks:
            counts[rows] = label_counts(p[rows], draws.uniform())
        share = 1.0 / self.draws.n_draws  # each draw's share of the row's weight
        resp[...] = counts * share if weights is None else counts * (weights * share)[:, None]
        return resp, loglik


def for_rows(assign: Assignment, index: NDArray[np.intp] | None) -> Assignment:
    """``assign`` for the rows at positions ``index`` of the data: a :class:`Sampled`
    policy draws by position; other policies, and ``index=None``, are left as they are."""
    if index is None or not isinstance(assign, Sampled):
        return assign
    return assign.for_rows(index)


EXACT = Exact()
E_STEPS: Mapping[str, Assignment] = {
    "exact": EXACT,
    "hard": Hard(),
    "monte-carlo": Sampled(Draws(MonteCarlo())),
    "stochastic": Sampled(Draws(STOCHASTIC)),
}
VARIATIONAL = Variational()
_EXPLAIN = {
    "exact": "'exact' is EM",
    "hard": "'hard' is classification EM (each row wholly to its most probable component)",
    "variational": "'variational' is mean-field variational EM (a posterior over the "
    "parameters; families with a conjugate prior)",
    "monte-carlo": "'monte-carlo' averages over labels drawn from the posterior",
    "stochastic": "'stochastic' draws one label a row (stochastic EM)",
}


def assignment(e_step: Any, supported: tuple[str, ...] = tuple(E_STEPS)) -> Assignment:
    """The policy named by an estimator's ``e_step`` argument, checked: a name, or
    :class:`~emkit.models.sampling.MonteCarlo` options where ``"monte-carlo"`` is supported.

    Examples
    --------
    >>> assignment("hard").name
    'hard'
    >>> assignment(MonteCarlo(n_draws=1, max_draws=1)).name
    'stochastic'
    """
    if isinstance(e_step, MonteCarlo) and "monte-carlo" in supported:
        return Sampled(Draws(e_step.check()))
    if not isinstance(e_step, str) or e_step not in supported:
        explain = "; ".join(_EXPLAIN[s] for s in supported if s in _EXPLAIN)
        sampled = "monte-carlo" in supported
        options = " or emkit.inference.MonteCarlo(...) options" if sampled else ""
        raise InputError(
            f"e_step must be one of {', '.join(map(repr, supported))}{options}, got "
            f"{e_step!r}. {explain}."
        )
    return VARIATIONAL if e_step == "variational" else E_STEPS[e_step]


@dataclass(frozen=True)
class MixingWeights:
    """The mixing weights as a component: their M-step, log prior and parameter count.

    ``concentration`` is the Dirichlet prior's alpha (1: no prior); MAP-EM sets
    ``weights = (N_k + alpha - 1) / (N + K (alpha - 1))``. ``fixed`` holds known weights
    (``models.mixture.fixed_weights``); the free ones share the rest of the mass in
    proportion to their counts ``N_k + alpha - 1``.
    """

    concentration: float = 1.0
    fixed: Fixed | None = None

    def __post_init__(self) -> None:
        # the prior, checked and built once (not a field: every M-step updates it)
        object.__setattr__(self, "_prior", DirichletPrior(self.concentration))

    def m_step(self, nk: Array) -> Array:
        """The weights maximizing sum_k (N_k + alpha - 1) log pi_k on the simplex (for
        ``nk`` already floored by :data:`NK_FLOOR`)."""
        known = self.fixed
        if known is None and self.concentration == 1.0:
            return nk / nk.sum(axis=-1, keepdims=True)  # the mode without a prior
        prior: DirichletPrior = self.__dict__["_prior"]
        posterior = prior.posterior(nk)
        if known is None:
            return posterior.mode()
        counts = posterior.excess
        # max sum_k counts_k log pi_k over the free pi_k, which sum to 1 - sum(known)
        free = np.where(known.mask, 0.0, counts)
        rest = 1.0 - float(known.values[known.mask].sum())
        total = free.sum()
        return np.where(known.mask, known.values, rest * free / (total if total > 0 else 1.0))

    def expected_log(self, weights: Array) -> Array:
        """log pi (-inf for a weight of 0): the E-step's offsets."""
        with np.errstate(divide="ignore"):
            return np.log(weights)

    def point(self, weights: Array) -> Array:
        """The weights themselves."""
        return weights

    def log_prior(self, weights: Array) -> float:
        """log Dir(pi | alpha) = log Gamma(K alpha) - K log Gamma(alpha) + (alpha-1) sum log pi;
        0 without a prior."""
        alpha = self.concentration
        if alpha == 1.0:
            return 0.0
        K = weights.shape[0]
        return float(
            gammaln(K * alpha) - K * gammaln(alpha) + (alpha - 1.0) * np.log(weights).sum()
        )

    def n_parameters(self, n_components: int) -> int:
        """The weights not fixed, less one (they sum to a known total)."""
        known = self.fixed
        n_free = n_components if known is None else int((~known.mask).sum())
        return max(n_free - 1, 0)


NO_PRIOR = MixingWeights()  # maximum-likelihood weights, none known


@dataclass(frozen=True)
class VariationalWeights:
    """The mixing weights of variational EM: q(pi) = Dirichlet(alpha), ``alpha`` the
    parameters the mixture carries in place of the weights.

    ``concentration`` is the prior's alpha_0 > 0 (scikit-learn's
    ``weight_concentration_prior``); the update is ``alpha_k = alpha_0 + N_k``, the E-step
    uses ``E[log pi_k] = digamma(alpha_k) - digamma(sum alpha)``, and the ELBO's term is
    ``-KL(Dir(alpha) || Dir(alpha_0))``.

    Examples
    --------
    >>> q = VariationalWeights(0.5)
    >>> q.m_step(np.array([3.0, 1.0]))
    array([3.5, 1.5])
    """

    concentration: float = 1.0
    fixed: None = None

    def _prior(self, size: int) -> DirichletPrior:
        return DirichletPrior.packed(np.full(size, self.concentration), check=False)

    def m_step(self, nk: Array) -> Array:
        # the prior's conjugate update, as every variational component's
        return np.asarray(self._prior(nk.shape[0]).posterior(nk).concentration)

    def expected_log(self, alpha: Array) -> Array:
        return np.asarray(DirichletPrior.packed(alpha, check=False).expected_natural()[0])

    def point(self, alpha: Array) -> Array:
        """The posterior mean of the weights, alpha / sum(alpha)."""
        return np.asarray(DirichletPrior.packed(alpha, check=False).mean())

    def log_prior(self, alpha: Array) -> float:
        posterior = DirichletPrior.packed(alpha, check=False)
        return -float(posterior.kl(self._prior(alpha.shape[0])))

    def n_parameters(self, n_components: int) -> int:
        return max(n_components - 1, 0)

"""Categorical components over integer-coded columns (independent given the component).

Column j holds codes ``0 .. C_j - 1``. With one-hot indicators ``[x_j = c]``,

    log p(x | p) = sum_j sum_c [x_j = c] log(p_jc)

so the statistics are the indicators of every column, concatenated (``sum_j C_j`` of
them), ``eta = log(p)`` and ``A = 0`` (the probabilities of each column sum to one). With
a Dirichlet(alpha_j) prior on each column's probabilities, ``phi = alpha_j - 1`` and
``nu = sum_c (alpha_jc - 1)``: the MAP probabilities are
``(alpha_jc - 1 + S_kc) / (sum_c (alpha_jc - 1) + N_k)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from itertools import pairwise
from typing import Any, NamedTuple

import numpy as np
from numpy.typing import NDArray
from scipy.special import xlogy

from emkit.exceptions import InputError
from emkit.families._base import Group, check_distributions, column_label, statistic_rows
from emkit.families._simple import SimpleFamily, first_bad
from emkit.families._summary import Counts, High, Low, Summary, bind_rows, total_weight
from emkit.families.priors import DirichletPrior, check_prior, segment_sums

__all__ = ["Categorical", "CategoricalParams"]

Array = NDArray[np.floating[Any]]

# Probabilities are kept at least this far from 0, where log(p) = -inf would make
# 0 * log(0) a NaN in the E-step; the Q this costs is reported as the M-step's gap.
_PROB_FLOOR = 1e-300
# 'auto' prior: this many pseudo-rows at the columns' category frequencies.
_AUTO_PSEUDO_ROWS = 0.01
# More categories than this in a column counted from the data is taken for a column that
# is not coded 0..C-1 (its one-hot statistics would not fit in memory).
_MAX_COUNTED_CATEGORIES = 1 << 16


class CategoricalParams(NamedTuple):
    """Probabilities of all columns, packed: column j at ``offsets[j]:offsets[j + 1]``."""

    probabilities: Array  # (K, sum_j C_j)


def _check_codes(X: Array, labels: Sequence[str]) -> None:
    bad = X < 0  # first: scikit-learn's wording for data that must be non-negative
    if bad.any():
        col, row, value = first_bad(X, bad, labels)
        raise InputError(
            f"Negative values in data: {col} has the negative category code {value:g} in row "
            f"{row}; codes must be "
            "0, 1, ..., n_categories - 1. Encode the categories as integers first (e.g. with "
            "sklearn.preprocessing.OrdinalEncoder)."
        )
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(X) | (np.floor(X) != X)
    if bad.any():
        col, row, value = first_bad(X, bad, labels)
        raise InputError(
            f"{col} has the category code {value:g} in row {row}, which is not an integer; "
            "Categorical columns hold integer codes 0, 1, ..., n_categories - 1. Encode the "
            "categories as integers first (e.g. with sklearn.preprocessing.OrdinalEncoder)."
        )


def _valid_count(value: Any) -> bool:
    return bool(isinstance(value, int | np.integer) and not isinstance(value, bool) and value >= 1)


@dataclass(frozen=True, eq=False)
class Categorical(SimpleFamily):
    """Independent categorical columns, coded ``0`` to ``C_j - 1``, each with its own count.

    Parameters
    ----------
    n_categories : int, sequence of int or None, default=None
        Categories per column: one count for every column, one per column, or ``None`` to
        take ``max code + 1`` of each column from the training data. A count smaller than
        the data needs is an error; a larger one leaves room for categories that are
        absent from the training data (their probabilities then come from the prior).
    prior : DirichletPrior, 'auto' or None, default=None
        Dirichlet prior on each column's probabilities (MAP-EM). Its concentration is a
        scalar, one value per category (when every column has the same count), or one
        value per category of every column, packed. ``'auto'`` is worth 0.01
        pseudo-rows at the category frequencies of the data,
        ``concentration = 1 + 0.01 * frequency``: a category that occurs in the data
        keeps a positive probability in every component, at a strength no component
        with more than a few rows notices.

    Notes
    -----
    The statistics are dense one-hot indicators, ``sum_j C_j`` values per row: memory and
    the E-step's time grow with the total number of categories.

    Probabilities are kept at least 1e-300 (a category that never occurs in a component,
    without a prior); the expected log-likelihood this gives up is reported as the
    M-step's gap. The fitted attribute ``probabilities`` is a list with one
    ``(n_components, C_j)`` array per column.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0, 2.0], [1.0, 0.0], [1.0, 1.0]])
    >>> family = Categorical().bind(X, None)
    >>> family.categories, family.n_stats
    ((2, 3), 5)
    >>> T = family.statistics(family.prepare(X, np.float64))
    >>> T[0]
    array([1., 0., 0., 0., 1.])
    """

    name = "Categorical"
    n_categories: Any = None
    prior: Any = None
    categories: tuple[int, ...] | None = field(default=None, kw_only=True)  # from bind()

    def __post_init__(self) -> None:
        check_prior(self.name, self.prior, (DirichletPrior,))
        counts = self.n_categories
        if counts is None or _valid_count(counts):
            return
        if (
            isinstance(counts, str)
            or not isinstance(counts, Sequence | np.ndarray)
            or len(counts) == 0
            or not all(_valid_count(c) for c in counts)
        ):
            raise InputError(
                "n_categories must be None, a positive integer, or a sequence of positive "
                f"integers (one per column), got {counts!r}."
            )

    # -- shapes --------------------------------------------------------------------------

    @property
    def n_stats(self) -> int:
        return int(sum(self._categories()))

    def _categories(self) -> tuple[int, ...]:
        if self.categories is None:
            raise InputError(f"The {self.name} family is not bound to data yet; fit first.")
        return self.categories

    def _offsets(self) -> NDArray[np.intp]:
        """Where each column's categories start in the packed statistics (length d + 1)."""
        return np.concatenate([[0], np.cumsum(self._categories())]).astype(np.intp)

    def bind(self, X: Array, weights: Array | None) -> Categorical:
        return bind_rows(self, X, weights)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        # codes are checked by check(), which names the columns; counts tolerate bad ones
        summary = Summary(weight=total_weight(X, weights), high=High(X.max(axis=0, initial=0.0)))
        given = self._given_categories(X.shape[1])
        if given is not None:  # the first row with a code beyond them, per column
            beyond = X >= np.asarray(given, dtype=np.float64)
            first = np.where(beyond.any(axis=0), index[np.argmax(beyond, axis=0)], np.inf)
            summary["beyond"] = Low(first.astype(np.float64))
        if isinstance(self.prior, str):  # 'auto' counts every category
            codes = np.clip(X, 0, _MAX_COUNTED_CATEGORIES).astype(np.intp)
            summary["counts"] = Counts.of(codes, weights)
        return summary

    def _given_categories(self, d: int) -> tuple[int, ...] | None:
        """``n_categories`` as one count per column (None: counted from the data)."""
        given = self.n_categories
        if given is None:
            return None
        if _valid_count(given):
            return (int(given),) * d
        categories = tuple(int(c) for c in given)
        if len(categories) != d:
            raise InputError(
                f"n_categories has {len(categories)} entries but the data has {d} "
                "columns; pass one count per column, or a single integer."
            )
        return categories

    def bind_summary(self, summary: Summary, n_rows: int) -> Categorical:
        high = summary["high"].value
        d = int(high.shape[0])
        # float, so a huge code cannot overflow
        needed = np.maximum(np.floor(high) + 1.0, 1.0)
        given = self._given_categories(d)
        if given is None:
            for too_many in np.flatnonzero(needed > _MAX_COUNTED_CATEGORIES):
                j = int(too_many)
                raise InputError(
                    f"{column_label((), j)} has codes up to {needed[j] - 1:g}: that is "
                    f"{needed[j]:g} categories, each a statistic of every row. Recode the "
                    "column to consecutive codes 0..C-1 (e.g. sklearn.preprocessing."
                    "OrdinalEncoder), or pass n_categories explicitly if you mean it."
                )
            categories = tuple(int(c) for c in needed)
        else:
            categories = given
            for j in range(d):
                if needed[j] > categories[j]:
                    row = int(summary["beyond"].value[j])
                    raise InputError(
                        f"n_categories for {column_label((), j)} is {categories[j]}, but the "
                        f"data has the code {needed[j] - 1:g} in row {row}; pass n_categories "
                        f"of at least {needed[j]:g} for it, or None to count them from the data."
                    )
        bound = replace(self, n_columns=d, categories=categories)
        prior = self.prior
        if isinstance(prior, str):  # 'auto'
            total = summary["weight"]
            counts = summary["counts"].value
            freq = []
            for j, c in enumerate(categories):
                # codes beyond c - 1 count as c - 1 (as clipped)
                column = np.zeros(c)
                width = min(c, counts.shape[1])
                column[:width] = counts[j, :width]
                column[c - 1] += counts[j, c:].sum()
                freq.append(column / total)
            prior = DirichletPrior(1.0 + _AUTO_PSEUDO_ROWS * np.concatenate(freq))
        bound = replace(bound, prior=prior)
        bound._alpha()  # check the prior's shape against the categories
        return bound

    def _check_values(self, X: Array, labels: Sequence[str]) -> None:
        _check_codes(X, labels)
        if self.categories is None:
            return
        bad = X >= np.asarray(self.categories, dtype=np.float64)
        if bad.any():
            col, row, value = first_bad(X, bad, labels)
            count = self.categories[int(np.argwhere(bad)[0][1])]
            raise InputError(
                f"{col} has the category code {value:g} in row {row}, but the family has "
                f"{count} categories there (codes 0..{count - 1}): a category not seen in "
                "training. Map it to a known code, or refit with n_categories large enough "
                "to include it."
            )

    # -- E-step --------------------------------------------------------------------------

    def statistics(self, Xp: Array, out: Array | None = None) -> Array:
        # Xp is feature-major (prepare), so Xp.T is the contiguous (d, n) array of codes;
        # they are exact integers in float32 too (below 2^24)
        codes = Xp.T.astype(np.intp)
        n = codes.shape[1]
        buf = statistic_rows(out, self.n_stats, n, Xp.dtype)
        buf.fill(0)
        # the indicator of column j's code c is statistic offsets[j] + c: one flat scatter
        buf.put((self._offsets()[:-1, None] + codes) * n + np.arange(n), 1)
        return buf.T

    def _natural(self, params: CategoricalParams) -> tuple[Array, Array]:
        p = params.probabilities
        return np.log(p), np.zeros(p.shape[0])

    def _column_log_norm(self, params: CategoricalParams) -> Array:
        return np.zeros((params.probabilities.shape[0], self.n_features))

    def _expected_statistics(self, params: CategoricalParams) -> Array:
        return params.probabilities

    @property
    def stat_columns(self) -> NDArray[np.intp]:
        return np.repeat(np.arange(self.n_features), self._categories())

    def impute(self, params: CategoricalParams, state: Any, resp: Array) -> Array:
        """The most probable category of each column under the posterior predictive
        (a mean of category codes means nothing)."""
        predictive = resp @ params.probabilities  # (n, n_stats), packed like the statistics
        offsets = self._offsets()
        return np.column_stack(
            [predictive[:, lo:hi].argmax(axis=1) for lo, hi in pairwise(offsets)]
        ).astype(np.float64)

    # -- M-step --------------------------------------------------------------------------

    def _alpha(self) -> Array | None:
        """The Dirichlet concentrations, packed like the statistics (None without prior)."""
        if not isinstance(self.prior, DirichletPrior):
            return None
        categories = self._categories()
        total = sum(categories)
        alpha = np.asarray(self.prior.concentration, dtype=np.float64).ravel()
        if alpha.size == 1 or alpha.size == total:
            return self.prior.alpha(total)
        if len(set(categories)) == 1 and alpha.size == categories[0]:
            return np.tile(alpha, len(categories))
        raise InputError(
            f"DirichletPrior concentration has {alpha.size} values but the columns have "
            f"{list(categories)} categories; pass a scalar, one value per category of every "
            f"column packed ({total} values), or one per category when all columns have the "
            "same number."
        )

    def _pseudo(self) -> tuple[Array | float, Array | float]:
        """(phi, nu), packed like the statistics: phi = alpha - 1, nu = sum of the
        column's alpha - 1 (repeated for each of its categories)."""
        alpha = self._alpha()
        if alpha is None:
            return 0.0, 0.0
        phi = alpha - 1.0
        offsets = self._offsets()
        nu = np.add.reduceat(phi, offsets[:-1])
        return phi, np.repeat(nu, self._categories())

    def _conjugate(self) -> DirichletPrior:
        """One Dirichlet per column, packed like the statistics (Dirichlet(1): uniform,
        without a prior)."""
        alpha = self._alpha()
        offsets = self._offsets()
        return DirichletPrior.packed(np.ones(offsets[-1]) if alpha is None else alpha, offsets)

    def _posterior(self, counts: Array, sum_t: Array) -> DirichletPrior:
        """Dirichlet(alpha + S_k) on every column's probabilities (``counts`` unused: the
        indicators' sums are the counts)."""
        return self._conjugate().posterior(sum_t)

    def _maximize(self, nk: Array, sum_t: Array) -> CategoricalParams:
        mean = self._posterior(nk[:, None], sum_t).mode()
        if np.isnan(mean).any():
            mean = np.where(np.isnan(mean), self.default_params(nk.shape[0])[0], mean)
        return CategoricalParams(np.maximum(mean, _PROB_FLOOR))

    def _divergence(self, params: CategoricalParams, nk: Array, sum_t: Array) -> Array:
        # per column, Q(m) - Q(p) = count KL(m || p), Q = count sum_c m_c log p_c
        post = self._posterior(nk[:, None], sum_t)
        mean = post.mode()
        count = _segment_total(post)
        terms = count * (xlogy(mean, mean) - xlogy(mean, params.probabilities))
        loss = np.maximum(np.add.reduceat(terms, self._offsets()[:-1], axis=1), 0.0)
        return np.nan_to_num(loss, nan=0.0).sum(axis=1)

    # -- variational EM: q(probabilities) = Dirichlet per column ---------------------------

    def _proper_prior(self) -> DirichletPrior:
        return self._conjugate()

    def _expected_natural(self, post: DirichletPrior) -> tuple[Array, Array]:
        """(E[log p] (K, n_stats), each column's E[A] = 0 (K, d))."""
        e_log, _ = post.expected_natural()
        return e_log, np.zeros((e_log.shape[0], self.n_features))

    def _point(self, post: DirichletPrior) -> CategoricalParams:
        return CategoricalParams(post.mean())

    def _log_prior(self, params: CategoricalParams) -> float:
        alpha = self._alpha()
        if alpha is None:
            return 0.0
        offsets = self._offsets()
        total = 0.0
        for lo, hi in pairwise(offsets):
            prior = DirichletPrior(alpha[lo:hi])
            total += float(np.sum(prior.log_density(params.probabilities[:, lo:hi])))
        return total

    # -- the rest ------------------------------------------------------------------------

    def default_params(self, n_components: int) -> CategoricalParams:
        uniform = np.repeat([1.0 / c for c in self._categories()], self._categories())
        return CategoricalParams(np.tile(uniform, (n_components, 1)))

    def _groups(self) -> tuple[Group, ...]:
        offsets = [int(o) for o in self._offsets()]
        return (
            Group(
                "probabilities",
                (offsets[-1],),
                check_distributions(offsets),
                dof=self.n_stats - self.n_features,
                pack=self._pack,
            ),
        )

    def _pack(self, value: Any, whole: bool) -> Array:
        """Known probabilities given as the fitted attribute has them, one array per
        column ((K, C_j) for all components, (C_j,) for one), packed like the statistics;
        with one column, the array alone will do."""
        categories = self._categories()
        shape = "(n_components, C_j)" if whole else "(C_j,)"
        if len(categories) == 1:
            try:
                if np.asarray(value, dtype=np.float64).ndim == (2 if whole else 1):
                    value = [value]
            except (TypeError, ValueError):
                pass
        if isinstance(value, str | bytes) or not isinstance(value, Sequence | np.ndarray):
            value = [value]
        if len(value) != len(categories):
            raise InputError(
                f"fixed 'probabilities' of the Categorical family must be a list with one "
                f"array of shape {shape} per column ({len(categories)} columns with "
                f"{list(categories)} categories), got {len(value)} entries."
            )
        parts = [np.asarray(v, dtype=np.float64) for v in value]
        for j, (part, c) in enumerate(zip(parts, categories, strict=True)):
            if part.ndim != (2 if whole else 1) or part.shape[-1] != c:
                raise InputError(
                    f"fixed 'probabilities' of the Categorical family for {column_label((), j)} "
                    f"must have shape {shape} with C_j = {c} categories, got shape {part.shape}."
                )
        if len({part.shape[:-1] for part in parts}) > 1:
            raise InputError(
                "fixed 'probabilities' of the Categorical family: the columns' arrays have "
                f"different numbers of rows ({[part.shape for part in parts]}); give each "
                "column's probabilities for every component."
            )
        return np.concatenate(parts, axis=-1)

    def sample(
        self, params: CategoricalParams, component: int, n: int, rng: np.random.Generator
    ) -> Array:
        offsets = self._offsets()
        out = np.empty((n, self.n_features))
        for j, c in enumerate(self._categories()):
            p = params.probabilities[component, offsets[j] : offsets[j + 1]]
            out[:, j] = rng.choice(c, size=n, p=p / p.sum())
        return out

    def fitted_attributes(self, params: CategoricalParams) -> dict[str, Any]:
        """``probabilities``: one ``(n_components, C_j)`` array per column."""
        offsets = self._offsets()
        return {"probabilities": [params.probabilities[:, lo:hi] for lo, hi in pairwise(offsets)]}


def _segment_total(post: DirichletPrior) -> Array:
    """Each column's total pseudo-count sum_c (alpha_c - 1), repeated over its categories."""
    return segment_sums(post.excess, post.offsets)

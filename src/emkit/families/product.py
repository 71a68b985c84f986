"""Products of families over disjoint column blocks, for mixed-type tables.

Given the component, the blocks are independent, so

    log p(x | k) = sum_b log p_b(x[cols_b] | k)

and, concatenating every block's statistics and natural parameters, the E-step is still
one matrix product ``[T_1 ... T_B] @ [eta_1 ... eta_B].T`` (DESIGN.md). The M-step splits
the summed statistics back into blocks; each block maximizes its own part.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import NDArray

from emkit.exceptions import InputError
from emkit.families._base import (
    ComponentFamily,
    Natural,
    check_family,
    expanded_log_prob,
    expanded_roundoff,
    statistic_rows,
)
from emkit.families._summary import Summary, bind_rows
from emkit.families.gaussian import GaussianFamily, far_log_prob

__all__ = ["Product"]

Array = NDArray[np.floating[Any]]
Columns = Sequence[int] | Sequence[str] | slice


@dataclass(frozen=True, eq=False)
class Product:
    """Independent families over disjoint blocks of columns.

    Parameters
    ----------
    blocks : mapping of name -> (columns, family)
        Each block names its columns (integer positions, or names of a DataFrame's
        columns) and the family that models them. Together the blocks must cover every
        column exactly once.

    Examples
    --------
    >>> import numpy as np
    >>> from emkit.families import Gaussian, Poisson
    >>> X = np.array([[0.1, 2.0, 3.0], [1.5, -1.0, 0.0], [0.7, 0.3, 5.0]])
    >>> family = Product({"size": ([0, 1], Gaussian("diag")), "visits": ([2], Poisson())})
    >>> family.bind(X, None).n_stats  # 2 x 2 Gaussian statistics + 1 count
    5
    """

    blocks: Mapping[str, tuple[Any, Any]]

    def __post_init__(self) -> None:
        if not isinstance(self.blocks, Mapping) or not self.blocks:
            raise InputError(
                "Product needs a non-empty mapping of block name -> (columns, family), e.g. "
                "Product({'size': ([0, 1], Gaussian()), 'visits': ([2], Poisson())})."
            )
        for name, block in self.blocks.items():
            if not (isinstance(block, tuple) and len(block) == 2):
                raise InputError(
                    f"Product block {name!r} must be a (columns, family) pair, got {block!r}."
                )
            if isinstance(block[1], Product):
                raise InputError(f"Product block {name!r}: nest the blocks in one Product.")
            check_family(block[1], f"Product block {name!r}'s family")

    # -- columns -------------------------------------------------------------------------

    def resolve(self, feature_names: Sequence[str] | None, n_features: int) -> Product:
        """The product with every block's columns as sorted integer positions, checked to
        cover each of the ``n_features`` columns exactly once."""
        owner: dict[int, str] = {}
        blocks: dict[str, tuple[Any, Any]] = {}
        for name, (columns, family) in self.blocks.items():
            positions = _positions(name, columns, feature_names, n_features)
            for j in positions:
                if j in owner:
                    raise InputError(
                        f"Column {_label(feature_names, j)} is in two Product blocks "
                        f"({owner[j]!r} and {name!r}); each column belongs to one block."
                    )
                owner[j] = name
            blocks[name] = (tuple(positions), family)
        missing = [j for j in range(n_features) if j not in owner]
        if missing:
            names = ", ".join(_label(feature_names, j) for j in missing[:5])
            raise InputError(
                f"Columns {names} are in no Product block; give every column a family (or "
                "drop the column from the data)."
            )
        return Product(blocks)

    @cached_property
    def _selectors(self) -> list[Any]:
        """Each block's columns as a slice (a view) where contiguous, else a list."""
        return [_selector(cols) for cols, _ in self.blocks.values()]

    def _items(self) -> list[tuple[str, Any, Any]]:
        return [
            (name, sel, fam)
            for (name, (_, fam)), sel in zip(self.blocks.items(), self._selectors, strict=True)
        ]

    def _families(self) -> list[Any]:
        return [fam for _, fam in self.blocks.values()]

    # -- shapes ------------------------------------------------------------------------

    @property
    def n_features(self) -> int:
        return sum(len(cols) for cols, _ in self.blocks.values())

    @property
    def n_stats(self) -> int:
        return sum(int(f.n_stats) for f in self._families())

    @property
    def n_shared(self) -> int:
        return sum(int(f.n_shared) for f in self._families())

    def _offsets(self, attribute: str) -> list[tuple[int, int]]:
        """Each block's (start, stop) in the concatenated ``n_stats`` or ``n_shared``."""
        sizes = [int(getattr(fam, attribute)) for fam in self._families()]
        stops = np.cumsum(sizes).tolist()
        return list(zip([0, *stops[:-1]], stops, strict=True))

    def bind(self, X: Array, weights: Array | None) -> Product:
        return bind_rows(self, X, weights)

    def summarize(
        self, X: Array, weights: Array | None, index: NDArray[np.intp], n_rows: int
    ) -> Summary:
        """Each block's summary of its columns, by block name."""
        resolved = self.resolve(None, X.shape[1])
        return Summary(
            {
                name: fam.summarize(X[:, _selector(cols)], weights, index, n_rows)
                for name, (cols, fam) in resolved.blocks.items()
            }
        )

    def bind_summary(self, summary: Summary, n_rows: int) -> Product:
        resolved = self.resolve(None, self.n_features)
        return Product(
            {
                name: (cols, fam.bind_summary(summary[name], n_rows))
                for name, (cols, fam) in resolved.blocks.items()
            }
        )

    def check(self, X: Array, labels: Sequence[str]) -> None:
        for positions, fam in self.blocks.values():
            cols = _selector(positions)
            fam.check(
                X[:, cols], [labels[j] if j < len(labels) else f"column {j}" for j in positions]
            )

    # -- E-step --------------------------------------------------------------------------

    def prepare(self, X: Array, dtype: Any) -> tuple[Any, ...]:
        return tuple(fam.prepare(X[:, cols], dtype) for _, cols, fam in self._items())

    def statistics(self, Xp: tuple[Any, ...], out: Array | None = None) -> Array:
        n, dtype = Xp[0].shape[0], Xp[0].dtype
        buf = statistic_rows(out, self.n_stats, n, dtype)
        for fam, Xb, (a, b) in zip(self._families(), Xp, self._offsets("n_stats"), strict=True):
            fam.statistics(Xb, out=buf[a:b])
        return buf.T

    def natural(self, params: tuple[Any, ...], dtype: Any) -> Natural:
        parts = tuple(
            fam.natural(p, dtype) for fam, p in zip(self._families(), params, strict=True)
        )
        return Natural(
            np.concatenate([p.eta for p in parts], axis=1),
            np.sum([p.log_norm for p in parts], axis=0),
            any(p.exact_form for p in parts),
            parts,
        )

    def log_prob(
        self,
        Xp: tuple[Any, ...],
        T: Array,
        params: tuple[Any, ...],
        natural: Natural,
        offset: Array | None = None,
    ) -> Array:
        rows = self._far_rows(Xp, params)
        with np.errstate(over="ignore", invalid="ignore"):  # far rows are redone below
            if natural.exact_form:
                # some block evaluates its densities another way: add the blocks' parts
                log_prob = self._blocks_log_prob(Xp, T, params, natural, offset)
            else:
                log_prob = expanded_log_prob(T, natural, offset)
        if rows.size:
            far = self._far_gaussian(Xp, params, rows)[0]
            for fam, Xb, p, nat, (a, b) in zip(
                self._families(), Xp, params, natural.parts, self._offsets("n_stats"), strict=True
            ):
                if not isinstance(fam, GaussianFamily):
                    far = far + fam.log_prob(Xb[rows], T[rows, a:b], p, nat, None)
            log_prob[rows] = far if offset is None else far + offset
        return log_prob

    def _blocks_log_prob(
        self,
        Xp: tuple[Any, ...],
        T: Array,
        params: tuple[Any, ...],
        natural: Natural,
        offset: Array | None,
    ) -> Array:
        total: Array | None = None
        for fam, Xb, p, nat, (a, b) in zip(
            self._families(), Xp, params, natural.parts, self._offsets("n_stats"), strict=True
        ):
            lp = fam.log_prob(Xb, T[:, a:b], p, nat, offset if total is None else None)
            total = lp if total is None else total + lp
        assert total is not None
        return total

    def _far_rows(self, Xp: tuple[Any, ...], params: tuple[Any, ...]) -> NDArray[np.intp]:
        """Rows a Gaussian block finds far beyond float64's range of squared distances."""
        far = [
            fam.far_rows(Xb, p)
            for fam, Xb, p in zip(self._families(), Xp, params, strict=True)
            if isinstance(fam, GaussianFamily)
        ]
        return np.unique(np.concatenate(far)) if far else np.zeros(0, dtype=np.intp)

    def _far_gaussian(
        self, Xp: tuple[Any, ...], params: tuple[Any, ...], rows: NDArray[np.intp]
    ) -> tuple[Array, Array]:
        """The Gaussian blocks' share of log p(x, k) for far ``rows``, apart from the
        shared term, and the shared term. Their distances add, so the blocks go through
        the far route together: one block's nearest component need not be another's."""
        parts, normalizers = [], []
        for fam, Xb, p in zip(self._families(), Xp, params, strict=True):
            if isinstance(fam, GaussianFamily):
                parts.append((fam.structure, Xb[rows], p))
                normalizers.append(fam.normalizer(p))
        rel, row = far_log_prob(parts)
        return rel + np.sum(normalizers, axis=0), row

    def row_term(
        self, Xp: tuple[Any, ...], params: tuple[Any, ...], natural: Natural
    ) -> Array | None:
        gaussian: Array | None = None  # the Gaussian blocks' terms, and the others'
        other: Array | None = None
        for fam, Xb, p, nat in zip(self._families(), Xp, params, natural.parts, strict=True):
            row = fam.row_term(Xb, p, nat)
            if row is None:
                continue
            if isinstance(fam, GaussianFamily):
                gaussian = row if gaussian is None else gaussian + row
            else:
                other = row if other is None else other + row
        rows = self._far_rows(Xp, params)
        if not rows.size:
            return gaussian if other is None else other if gaussian is None else gaussian + other
        # far rows: the Gaussian blocks' shared term is their joint one
        total = np.zeros(Xp[0].shape[0])
        for part in (gaussian, other):
            if part is not None:
                total += part
        total[rows] = self._far_gaussian(Xp, params, rows)[1]
        if other is not None:
            total[rows] += other[rows]
        return total

    def log_base_measure(self, Xp: tuple[Any, ...]) -> Array | None:
        parts = [
            base
            for fam, Xb in zip(self._families(), Xp, strict=True)
            if (base := fam.log_base_measure(Xb)) is not None
        ]
        return np.sum(parts, axis=0) if parts else None

    def shared_statistics(self, Xp: tuple[Any, ...], weights: Array | None) -> Array:
        parts = [
            fam.shared_statistics(Xb, weights) for fam, Xb in zip(self._families(), Xp, strict=True)
        ]
        return np.concatenate([np.zeros(0), *parts])

    # -- missing values: each block handles its own columns ------------------------------

    def missing_fill(self) -> Array:
        fill = np.empty(self.n_features)
        for _, cols, fam in self._items():
            fill[cols] = fam.missing_fill()
        return fill

    def missing_log_prob(
        self,
        Xp: tuple[Any, ...],
        observed: NDArray[np.bool_],
        params: tuple[Any, ...],
        natural: Natural,
        offset: Array,
    ) -> tuple[Array, tuple[Any, ...]]:
        total: Array | None = None
        states = []
        for (_, cols, fam), Xb, p, nat in zip(
            self._items(), Xp, params, natural.parts, strict=True
        ):
            lp, state = fam.missing_log_prob(
                Xb, observed[:, cols], p, nat, offset if total is None else np.zeros_like(offset)
            )
            total = lp if total is None else total + lp
            states.append(state)
        assert total is not None
        return total, tuple(states)

    def missing_row_term(self, state: tuple[Any, ...]) -> Array | None:
        """The blocks' terms of log p(x_obs, k) equal for every k, summed (or None)."""
        rows = [
            row
            for fam, s in zip(self._families(), state, strict=True)
            if hasattr(fam, "missing_row_term") and (row := fam.missing_row_term(s)) is not None
        ]
        return np.sum(rows, axis=0) if rows else None

    def missing_statistics(
        self, params: tuple[Any, ...], state: tuple[Any, ...], resp: Array
    ) -> tuple[Array, Array]:
        parts = [
            fam.missing_statistics(p, s, resp)
            for fam, p, s in zip(self._families(), params, state, strict=True)
        ]
        return (
            np.concatenate([sum_t for sum_t, _ in parts], axis=1),
            np.concatenate([np.zeros(0), *(shared for _, shared in parts)]),
        )

    def impute(self, params: tuple[Any, ...], state: tuple[Any, ...], resp: Array) -> Array:
        out = np.empty((resp.shape[0], self.n_features))
        for (_, cols, fam), p, s in zip(self._items(), params, state, strict=True):
            out[:, cols] = fam.impute(p, s, resp)
        return out

    # -- M-step --------------------------------------------------------------------------

    def m_step(
        self, params: tuple[Any, ...], nk: Array, sum_t: Array, shared: Array, total_weight: float
    ) -> tuple[Any, ...]:
        return tuple(
            fam.m_step(p, nk, sum_t[:, a:b], shared[c:e], total_weight)
            for fam, p, (a, b), (c, e) in zip(
                self._families(),
                params,
                self._offsets("n_stats"),
                self._offsets("n_shared"),
                strict=True,
            )
        )

    def natural_values(self, params: tuple[Any, ...]) -> tuple[Array, Array]:
        """(eta, log_norm) of the blocks, concatenated and summed as :meth:`natural`
        does, in float64, through each block's ``natural_values`` where it has one."""
        etas, log_norms = [], []
        for fam, p in zip(self._families(), params, strict=True):
            shortcut = getattr(fam, "natural_values", None)
            if shortcut is not None:
                eta, log_norm = shortcut(p)
            else:
                natural = fam.natural(p, np.float64)
                eta, log_norm = natural.eta, natural.log_norm
            etas.append(eta)
            log_norms.append(log_norm)
        return np.concatenate(etas, axis=1), np.sum(log_norms, axis=0)

    def expected_row_term(self, params: tuple[Any, ...], shared: Array) -> float:
        """The blocks' expected row terms (those that have one), from their shared
        statistics."""
        total = 0.0
        for fam, p, (c, e) in zip(self._families(), params, self._offsets("n_shared"), strict=True):
            term = getattr(fam, "expected_row_term", None)
            if term is not None:
                total += float(term(p, shared[c:e]))
        return total

    def m_step_gap(self, params: tuple[Any, ...], nk: Array, sum_t: Array) -> float:
        return float(
            sum(
                fam.m_step_gap(p, nk, sum_t[:, a:b])
                for fam, p, (a, b) in zip(
                    self._families(), params, self._offsets("n_stats"), strict=True
                )
            )
        )

    def objective_roundoff(
        self, params: tuple[Any, ...], nk: Array, sum_t: Array, dtype: Any = np.float64
    ) -> float:
        """The blocks' round-off estimates (their own, or that of the expanded form)."""
        total = 0.0
        for fam, p, (a, b) in zip(self._families(), params, self._offsets("n_stats"), strict=True):
            own = getattr(fam, "objective_roundoff", None)
            if own is not None:
                total += float(own(p, nk, sum_t[:, a:b], dtype))
            else:
                total += expanded_roundoff(fam.natural(p, dtype), nk, sum_t[:, a:b], dtype)
        return total

    def degenerate(self, params: tuple[Any, ...]) -> NDArray[np.bool_] | None:
        """(K,) components a block reports as collapsed (None: no block reports)."""
        reports = [
            np.asarray(fam.degenerate(p), dtype=bool)
            for fam, p in zip(self._families(), params, strict=True)
            if hasattr(fam, "degenerate")
        ]
        return np.logical_or.reduce(reports) if reports else None

    def log_prior(self, params: tuple[Any, ...]) -> float:
        return float(sum(f.log_prior(p) for f, p in zip(self._families(), params, strict=True)))

    def default_params(self, n_components: int) -> tuple[Any, ...]:
        return tuple(fam.default_params(n_components) for fam in self._families())

    def n_parameters(self, n_components: int) -> int:
        return sum(int(fam.n_parameters(n_components)) for fam in self._families())

    def sample(
        self, params: tuple[Any, ...], component: int, n: int, rng: np.random.Generator
    ) -> Array:
        out = np.empty((n, self.n_features))
        for (_, cols, fam), p in zip(self._items(), params, strict=True):
            out[:, cols] = fam.sample(p, component, n, rng)
        return out

    def fitted_attributes(self, params: tuple[Any, ...]) -> dict[str, Any]:
        return {
            name: fam.fitted_attributes(p)
            for (name, _, fam), p in zip(self._items(), params, strict=True)
        }

    def fix(self, fixed: Mapping[str, Any] | None, n_components: int) -> Product:
        """Known parameters by block: ``{block name: {parameter name: value}}``."""
        fixed = {} if fixed is None else fixed
        if not isinstance(fixed, Mapping):
            raise InputError(
                "The fixed parameters of a Product must be a dict of block name -> {parameter "
                f"name: value}}, got {type(fixed).__name__}."
            )
        for name, value in fixed.items():
            if name not in self.blocks:
                raise InputError(
                    f"fixed names the block {name!r}, but the Product's blocks are "
                    f"{', '.join(map(repr, self.blocks))} (and 'weights' fixes the mixing "
                    "weights)."
                )
            if not isinstance(value, Mapping):
                raise InputError(
                    f"fixed values of Product block {name!r} must be a dict of parameter name "
                    f"-> value, e.g. {{{name!r}: {{'means': {{0: [5.0]}}}}}}, got "
                    f"{type(value).__name__}."
                )
        return Product(
            {
                name: (cols, fam.fix(fixed.get(name), n_components))
                for name, (cols, fam) in self.blocks.items()
            }
        )

    def __repr__(self) -> str:
        blocks = ", ".join(
            f"{name!r}: ({list(cols) if not isinstance(cols, slice) else cols}, {_describe(fam)})"
            for name, (cols, fam) in self.blocks.items()
        )
        return f"Product({{{blocks}}})"


def _describe(family: ComponentFamily) -> str:
    structure = getattr(family, "structure", None)
    if structure is not None:
        return f"Gaussian({structure.name!r})"
    return f"{type(family).__name__}()"


def _label(names: Sequence[str] | None, j: int) -> str:
    return repr(names[j]) if names is not None and j < len(names) else f"column {j}"


def _positions(
    name: str, columns: Any, feature_names: Sequence[str] | None, n_features: int
) -> list[int]:
    if isinstance(columns, slice):
        return list(range(n_features)[columns])
    if isinstance(columns, str | int | np.integer):
        columns = [columns]
    positions = []
    for c in columns:
        if isinstance(c, str):
            if feature_names is None or c not in list(feature_names):
                raise InputError(
                    f"Product block {name!r} names column {c!r}, but the data has "
                    + (
                        "no column names (pass a DataFrame, or use integer positions)."
                        if feature_names is None
                        else f"no such column (columns: {list(feature_names)})."
                    )
                )
            positions.append(list(feature_names).index(c))
        elif isinstance(c, int | np.integer) and not isinstance(c, bool) and 0 <= c < n_features:
            positions.append(int(c))
        else:
            raise InputError(
                f"Product block {name!r} has column {c!r}; columns are names or integer "
                f"positions in [0, {n_features})."
            )
    if not positions:
        raise InputError(f"Product block {name!r} has no columns.")
    return sorted(positions)


def _selector(columns: Any) -> Any:
    """A slice for a contiguous run of positions (a view, no copy), else the list."""
    cols = list(columns) if not isinstance(columns, slice) else columns
    if isinstance(cols, list) and cols == list(range(cols[0], cols[-1] + 1)):
        return slice(cols[0], cols[-1] + 1)
    return cols

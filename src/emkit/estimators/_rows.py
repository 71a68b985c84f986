"""What a fit reads of the rows before EM, without whole-X arrays: a statistics pass for
the binding (shift, scale, whether values are missing) and a bounded sample for the
initialization.

The rows may be in memory or streamed from a file (:func:`emkit.io.open_table`); both go
through the engine, so that the same code binds and initializes a fit wherever the rows
live. Data with at most ``INIT_ROWS`` rows is initialized exactly as before (k-means on
every row, scikit-learn's draws); beyond it, k-means runs on a uniform sample of
``INIT_ROWS`` rows and every row is labelled by the nearest of its centers, a chunk at a
time.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.utils.validation import validate_data

from emkit._validation import has_missing_values, is_dask_collection
from emkit.engines._source import RowIndex, RowSource
from emkit.engines.streaming import release_freed_memory
from emkit.exceptions import InputError
from emkit.families._summary import column_reduce
from emkit.inference.init import (
    RandomSource,
    initial_responsibilities,
    one_hot,
    sample_rows,
    seed_from,
)

__all__ = [
    "FINGERPRINT_ROWS",
    "INIT_ROWS",
    "ColumnSummary",
    "bind_pass",
    "check_blocks",
    "check_streamed",
    "column_summary",
    "data_fingerprint",
    "filler",
    "fit_checkpoint",
    "hc_start_tree",
    "initial_statistics_bounded",
    "is_streamed",
    "mapped_blocks",
    "ordered_for_chunks",
    "pattern_order",
    "standardizer",
]

Array = NDArray[np.floating[Any]]

# Rows the initialization reads at most (a sample beyond): 2^17 rows of 32 float64
# columns are 32 MiB, and k-means' own copies and distances a few times that.
INIT_ROWS = 1 << 17
# Rows of the data a checkpoint's key reads (every row of smaller data): 8 MiB of 256
# float64 columns, a few milliseconds to hash.
FINGERPRINT_ROWS = 4096
# Rows of the evenly spaced sample a Gaussian family's column scale is the median over
# (families/gaussian.py: centred_column_scale takes every max(1, n // 65536)-th row).
_SCALE_ROWS = 65536
# initializations that draw from the number of rows alone, not their values
_ROW_BLIND = ("random", "random_from_data")


def is_streamed(X: Any) -> bool:
    """Whether ``X`` is read a block at a time: a table streamed from a file
    (:class:`emkit.io.ChunkedTable`), or a Dask array or DataFrame (whose blocks the Dask
    engine maps on the workers; :func:`check_streamed` checks it)."""
    return hasattr(X, "iter_chunks") or is_dask_collection(X)


@dataclass(frozen=True)
class ColumnSummary:
    """Additive per-column statistics of the rows: weighted sums over observed values,
    extremes, counts, and the evenly spaced rows a column scale is taken from."""

    weight: Array  # (d,) the weight of the observed values of each column
    sums: Array  # (d,) the weighted sum of the observed values
    low: Array  # (d,) the smallest observed value (+inf where none)
    high: Array  # (d,) the largest (-inf where none)
    missing: bool  # whether any value is missing
    spaced: tuple[Array, ...]  # every step-th row of the whole, in row order
    count: Array  # (d,) the number of observed values of each column (unweighted)
    plain: Array  # (d,) their unweighted sum
    total: float  # the weight of every row

    def __add__(self, other: ColumnSummary) -> ColumnSummary:
        return ColumnSummary(
            self.weight + other.weight,
            self.sums + other.sums,
            np.fmin(self.low, other.low),
            np.fmax(self.high, other.high),
            self.missing or other.missing,
            self.spaced + other.spaced,
            self.count + other.count,
            self.plain + other.plain,
            self.total + other.total,
        )

    @property
    def shift(self) -> Array:
        return self.sums / np.where(self.weight > 0, self.weight, 1.0)

    @property
    def fill_means(self) -> Array:
        """What a missing value is filled with for the binding and the initialization, in
        every estimator: its column's weighted mean over the observed values (an integer
        weight counts as a repeated row, as everywhere in a fit), so that the filled
        rows' weighted mean is the observed values' own."""
        return self.shift

    def scale(self, shift: Array) -> float:
        """max |x - shift| over the observed values (:func:`centred_scale`'s)."""
        spread = np.nan_to_num(np.maximum(self.high - shift, shift - self.low), neginf=0.0)
        return float(max(np.abs(spread).max(), 1e-300))


def column_summary(engine: Any, source: RowSource) -> ColumnSummary:
    """One pass of ``engine`` over ``source``'s rows and weights: its summary."""
    n = source.n_rows
    step = max(1, n // _SCALE_ROWS)

    def summarize(X: Array, w: Array | None, index: NDArray[np.intp]) -> ColumnSummary:
        return _summarize_columns(X, w, index, step)

    summary: ColumnSummary = engine.map_reduce(
        summarize, RowSource(source.rows, source.weights, columns=(RowIndex(n),))
    )
    # the spaced rows in one array (not beside a copy of them when a binding reads them)
    return replace(summary, spaced=(np.concatenate(summary.spaced),))


def _summarize_columns(
    X: Array, w: Array | None, index: NDArray[np.intp], step: int, *, ordered: bool = True
) -> ColumnSummary:
    """The :class:`ColumnSummary` of one chunk (``index``: its rows' positions; every
    ``step``-th row of the whole kept). ``ordered``: the column sums add the rows in
    order, as NumPy's reduction over rows does (the same last bits as ever for the
    estimators that bind from this summary); False: in another order, at the speed of a
    pass over memory (:func:`column_reduce`)."""
    n, d = X.shape

    def column_sums(values: Array) -> Array:
        if ordered:
            return np.asarray(values.sum(axis=0, dtype=np.float64))
        return column_reduce(np.add, values, np.float64)

    with np.errstate(over="ignore"):
        plain = column_sums(X)
    # NaN and infinities show in the column sums (a sum that overflows only takes the
    # exact route): a complete chunk needs no mask
    missing = not np.isfinite(plain).all()
    if missing:
        observed = ~np.isnan(X)
        missing = not bool(observed.all())
        values = np.where(observed, X, 0.0) if missing else X
        count = column_reduce(np.add, observed, np.float64)  # (exact: counts)
        with np.errstate(over="ignore"):
            plain = column_sums(values)
    else:
        count, values = np.full(d, float(n)), X
    if w is None:
        weight, sums, total = count, plain, float(n)
    else:
        w64 = np.asarray(w, dtype=np.float64)
        if missing:
            weight = w64 @ observed
        else:  # every value observed (ordered: the product the mask gave)
            weight = w64 @ np.ones((n, d)) if ordered else np.full(d, float(w64.sum()))
        with np.errstate(over="ignore"):  # (as the unweighted sums)
            sums = w64 @ values
        total = float(w64.sum())
    low = column_reduce(np.fmin, X).astype(np.float64)
    high = column_reduce(np.fmax, X).astype(np.float64)
    if missing:  # (a column with nothing observed in the chunk)
        low = np.where(np.isnan(low), np.inf, low)
        high = np.where(np.isnan(high), -np.inf, high)
    first = int((-index[0]) % step) if index.size and step else 0
    # a copy: a view would keep a streamed block alive (step 0: no rows kept)
    spaced = (X[first::step].copy(),) if step else ()
    return ColumnSummary(weight, sums, low, high, missing, spaced, count, plain, total)


def bind_pass(
    family: Any, engine: Any, X: Any, w: Array | None, *, refuse_invalid: bool = False
) -> tuple[Any, bool, Any]:
    """``family`` bound to the rows ``X`` from a statistics pass of ``engine``, wherever
    the rows live (in memory, streamed from a file, on Dask): ``(family, missing, fill)``,
    ``missing`` whether a value is missing, ``fill`` None or the function that fills a
    chunk's missing values with their column's weighted mean (what the binding and the
    initialization read; :attr:`ColumnSummary.fill_means`).

    One pass sums every chunk's family summary (``family.summarize``,
    :mod:`emkit.families._summary`) and what the checks read (column counts, weights,
    extremes); with missing values, a second pass summarizes the filled rows. No whole-X
    array is made. In memory, the pass runs on chunks of about a cache's size, on the
    engine's threads. A family whose summary holds its column sums and extremes
    (``summary_columns``) is summarized first: an unweighted chunk whose sums are finite
    is complete and read from it alone; any other chunk (NaN, an infinity, a sum that
    overflows, weights) is summarized column by column first
    (:func:`_summarize_columns`), as every chunk of other families is.

    An infinity is refused: with ``refuse_invalid``, rows in memory with an infinity or
    with nothing observed are refused by :func:`~emkit._validation.has_missing_values`
    (its errors name the row), the whole ``X`` checked only when the pass saw a missing
    or infinite value.
    """
    n = int(X.shape[0])
    first = bool(getattr(family, "summary_columns", False))

    def both(rows: Array, wc: Array | None, index: NDArray[np.intp]) -> _Pair:
        summary = None
        if first and wc is None:
            # (an infinity or a sum that overflows is refused after the pass)
            with np.errstate(over="ignore", invalid="ignore"):
                summary = family.summarize(rows, wc, index, n)
            sums = summary["sums"]
            if np.isfinite(sums).all():  # no NaN nor infinity was added: the chunk's
                # column summary is the family's (no spaced rows, as below)
                n_rows = float(rows.shape[0])
                size = np.full(rows.shape[1], n_rows)
                low, high = summary["low"].value, summary["high"].value
                columns = ColumnSummary(size, sums, low, high, False, (), size, sums, n_rows)
                return _Pair(columns, summary)
        # (the family keeps the spaced rows it needs: none in the column summary; the
        # chunks' sums add in another order than one sum over X would anyway)
        columns = _summarize_columns(rows, wc, index, 0, ordered=False)
        # a chunk with missing values is summarized filled, in the second pass
        if columns.missing:
            summary = None
        elif summary is None:
            summary = family.summarize(rows, wc, index, n)
        return _Pair(columns, summary)

    # (the in-memory engine's chunks: a row's values, a few MiB a chunk)
    source = RowSource(X, w, columns=(RowIndex(n),), work_bytes=8 * int(X.shape[1]))
    pair = engine.map_reduce(both, source)
    columns, summary = pair.columns, pair.family
    # an infinite extreme of a column with a value observed (one with none has low
    # +inf and high -inf)
    infinite = np.isposinf(columns.high) | np.isneginf(columns.low)
    if refuse_invalid and isinstance(X, np.ndarray) and (columns.missing or infinite.any()):
        has_missing_values(X)  # infinities and rows with nothing observed: refused
    if infinite.any():
        raise InputError(
            f"X contains infinity (first in column {int(np.argmax(infinite))}). Replace "
            "infinities; mark a missing value with NaN."
        )
    if (columns.count <= 0).any():
        raise InputError(
            f"Column {int(np.argmax(columns.count <= 0))} of X has no observed value; nothing "
            "can be learned about it. Drop the column."
        )
    if (columns.weight <= 0).any():
        raise InputError(
            f"Column {int(np.argmax(columns.weight <= 0))} of X has no observed value with a "
            "positive sample_weight; nothing can be learned about it. Drop the column."
        )
    fill = None
    if columns.missing:
        fill = filler(columns.fill_means)

        def filled(rows: Array, wc: Array | None, index: NDArray[np.intp]) -> Any:
            return family.summarize(fill(rows), wc, index, n)

        summary = engine.map_reduce(filled, source)
    return family.bind_summary(summary, n), columns.missing, fill


@dataclass(frozen=True)
class _Pair:
    """A chunk's column summary and family summary, added part by part."""

    columns: ColumnSummary
    family: Any  # None where a chunk had missing values

    def __add__(self, other: _Pair) -> _Pair:
        # (None: a chunk with missing values, summarized in a second pass)
        family = None if self.family is None or other.family is None else self.family + other.family
        return _Pair(self.columns + other.columns, family)


def mapped_blocks(table: Any, fn: Any) -> Any:
    """The streamed ``table`` with ``fn`` applied to every block of rows as it is read
    (e.g. binarized values): the same file, the same blocks. Dask rows: ``fn`` mapped
    over their blocks where they live."""
    if hasattr(table, "take_rows"):  # Dask rows
        from emkit.engines.dask import DaskRows

        return DaskRows(table.array.map_blocks(fn, dtype=table.dtype), table.names)
    read = table._read

    def read_mapped(block: int) -> Any:
        for rows in read(block):
            yield fn(rows)

    return replace(table, _read=read_mapped)


def check_blocks(family: Any, X: Any, labels: Any) -> None:
    """``family.check`` on every block of a streamed table, a message naming the block's
    first row (the row in the message counts from it). Dask rows' blocks are checked as
    Dask tasks, where they live."""
    if hasattr(X, "take_rows"):  # Dask rows
        import dask

        sizes = X.array.chunks[0]
        starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(int)
        tasks = [
            dask.delayed(_check_block, pure=False)(
                family,
                block,
                None if labels is None else labels[start : start + size],
                int(start),
                repr(X),
            )
            for block, start, size in zip(X.array.to_delayed().ravel(), starts, sizes, strict=True)
        ]
        dask.compute(*tasks)
        return
    for start, rows in X.iter_chunks():
        _check_block(family, rows, labels, start, repr(X))


def _check_block(family: Any, rows: Any, labels: Any, start: int, where: str) -> None:
    try:
        family.check(np.asarray(rows), labels)
    except InputError as exc:
        raise InputError(
            f"In the block of rows {start}..{start + rows.shape[0] - 1} of {where} (rows "
            f"below count from {start}): {exc}"
        ) from exc


def pattern_order(X: Array) -> NDArray[np.intp]:
    """The order of the rows by their number of missing values, then by which: rows of a
    pattern together (one index a row; the patterns' bits are packed a chunk at a time)."""
    n = X.shape[0]
    keys = np.empty((n, (X.shape[1] + 7) // 8), dtype=np.uint8)
    counts = np.empty(n, dtype=np.intp)
    for start in range(0, n, 1 << 16):
        missing = np.isnan(X[start : start + (1 << 16)])
        keys[start : start + missing.shape[0]] = np.packbits(missing, axis=1)
        counts[start : start + missing.shape[0]] = missing.sum(axis=1)
    return np.asarray(np.lexsort((*keys.T[::-1], counts)), dtype=np.intp)


class PatternOrdered:
    """In-memory rows read in :func:`pattern_order`: a slice of it is the rows at those
    positions of the order (a chunk-sized copy), so that the chunks an in-memory engine
    maps hold few missing-value patterns each (whose products the E-step then shares),
    while the order costs one index a row instead of a reordered copy of X."""

    ndim = 2

    def __init__(self, X: Array, order: NDArray[np.intp]) -> None:
        self.X = X
        self.order = order
        self.shape = X.shape
        self.dtype = X.dtype
        self.itemsize = X.itemsize

    def __getitem__(self, key: Any) -> Array:
        return np.asarray(self.X[self.order[key]])

    def __array__(self, dtype: Any = None, copy: Any = None) -> Array:
        rows = self.X[self.order]
        return rows if dtype is None else rows.astype(dtype)


def ordered_for_chunks(
    engine: Any, X: Any, weights: Array | None, labels: NDArray[np.intp] | None
) -> tuple[Any, Array | None, NDArray[np.intp] | None]:
    """The rows EM maps, with their weights and labels: rows in memory with missing values
    in :func:`pattern_order` (so that a row's position, which keys Monte-Carlo draws, does
    not depend on the chunking), read through the order (:class:`PatternOrdered`, one
    index a row) where an in-memory engine splits them into chunks, else a reordered copy
    (one chunk of fewer than 4096 rows, or another engine). A file's blocks and Dask
    blocks stay as they are: each chunk groups its own patterns."""
    from emkit.engines.memory import _MIN_ROWS, InMemoryEngine

    if is_streamed(X) or hasattr(X, "take_rows"):
        return X, weights, labels
    order = pattern_order(X)
    n, size = X.shape[0], getattr(engine, "chunk_size", None)
    one_chunk = n < _MIN_ROWS and (size is None or size >= n)
    chunked = isinstance(engine, InMemoryEngine) and not one_chunk
    return (
        PatternOrdered(X, order) if chunked else X[order],
        None if weights is None else weights[order],
        None if labels is None else labels[order],
    )


def filler(means: Array) -> Any:
    """A function that fills the missing values (NaN) of rows with ``means``."""

    def fill(rows: Array) -> Array:
        return np.where(np.isnan(rows), means.astype(rows.dtype), rows)

    return fill


def check_streamed(estimator: Any, X: Any, *, reset: bool) -> Any:
    """A streamed table as the estimator's ``X``: its number of columns set (a fit) or
    checked (a fitted estimator) as scikit-learn's ``validate_data`` does for arrays.

    A Dask array or DataFrame becomes :class:`~emkit.engines.dask.DaskRows` (checked
    without computing it; :func:`~emkit.engines.dask.as_dask_rows`), its feature names
    set or checked by ``validate_data``: every estimator that streams a table fits and
    predicts Dask rows through this one path (the Dask engine is chosen by the rows)."""
    dask = is_dask_collection(X)
    rows = X
    if dask:
        from emkit.engines.dask import as_dask_rows

        rows = as_dask_rows(X)
    d = int(rows.shape[1])
    coded = getattr(rows, "categories", None)  # open_table's text columns, as codes
    if coded and not getattr(estimator, "_fits_categories", False):
        name = next(iter(coded))
        raise InputError(
            f"{rows!r} reads the text column {name!r} as the codes of its categories, and "
            f"{type(estimator).__name__} would fit those codes as numbers. Drop the column "
            f"(open_table(..., columns=['^{name}'])), or fit a MixtureModel with a "
            "Categorical family for it."
        )
    if not reset and d != estimator.n_features_in_:
        fix = (
            "Select the columns the estimator was fitted on."
            if dask
            else "Open the table with the columns the estimator was fitted on (columns=...)."
        )
        raise InputError(
            f"X has {d} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input ({rows!r}). {fix}"
        )
    if dask:
        # a DataFrame's names as pandas gives them (its empty meta frame)
        described = X._meta if rows.names is not None else X
        validate_data(estimator, described, reset=reset, skip_check_array=True)
    elif reset:
        estimator.n_features_in_ = d
        if hasattr(estimator, "feature_names_in_"):
            del estimator.feature_names_in_
    return rows


def fit_checkpoint(
    estimator: Any, directory: Any, X: Any, weights: Any = None, labels: Any = None
) -> Any:
    """The :class:`~emkit.inference.checkpoint.Checkpoint` of ``fit(..., checkpoint=)``
    (None without one), keyed by the estimator's arguments and the data: its shape, its
    dtype, a bounded sample of its rows, its weights and its known labels
    (:func:`data_fingerprint`), so that a resume against other data is refused."""
    if directory is None:
        return None
    from emkit.inference.checkpoint import Checkpoint

    if getattr(estimator, "accelerate", None) is not None:
        raise InputError(
            f"checkpoint works with plain EM steps; accelerate={estimator.accelerate!r} "
            "carries state between iterations. Fit with accelerate=None to checkpoint."
        )
    # what the result depends on; not where it runs (engine, threads) nor what it logs
    ignored = {"engine", "n_threads", "verbose", "verbose_interval"}
    params = sorted((k, repr(v)) for k, v in estimator.get_params().items() if k not in ignored)
    data = data_fingerprint(X, weights, labels)
    key = repr((type(estimator).__name__, params, tuple(int(s) for s in X.shape), data))
    return Checkpoint(directory, key)


def data_fingerprint(X: Any, weights: Any = None, labels: Any = None) -> str:
    """A SHA-256 digest of the data a fit reads: shape and dtype, ``FINGERPRINT_ROWS``
    evenly spaced rows (every row of smaller data; read a block at a time from a stream),
    and the weights and labels (one number a row, whole). Rows in memory and the same rows
    streamed from a file give the same digest (values as float64)."""
    n = int(X.shape[0])
    digest = hashlib.sha256()
    digest.update(repr((tuple(int(s) for s in X.shape), str(X.dtype))).encode())
    indices = np.unique(np.linspace(0, max(n - 1, 0), min(n, FINGERPRINT_ROWS)).astype(np.intp))
    # (a sparse matrix's rows made dense: a bounded number of them)
    dense = X[indices].toarray() if hasattr(X, "toarray") else _rows_at(X, indices)
    digest.update(np.ascontiguousarray(dense, dtype=np.float64).tobytes())
    for values in (weights, labels):
        digest.update(b"|" if values is None else np.ascontiguousarray(values).tobytes())
    return digest.hexdigest()


def _sample_seed(rng: RandomSource) -> int:
    if isinstance(rng, np.random.RandomState):
        return int(rng.randint(np.iinfo(np.int32).max))
    return seed_from(rng)


def uniform_rows(rng: np.random.Generator, n: int, size: int) -> NDArray[np.intp]:
    """``size`` distinct indices of ``range(n)``, a uniform draw, sorted, in memory of the
    order of ``size`` whatever ``n`` (``Generator.choice`` shuffles all ``n`` indices
    when ``size`` exceeds ``n / 50``: 32 MiB for 4 million rows)."""
    if n <= 4 * size:
        return np.sort(rng.choice(n, size, replace=False))
    # distinct values of uniform draws, then a uniform subset of them: a uniform subset
    chosen = np.unique(rng.integers(0, n, size + size // 8))
    while chosen.shape[0] < size:
        chosen = np.union1d(chosen, rng.integers(0, n, size - chosen.shape[0] + size // 8))
    return np.sort(rng.choice(chosen, size, replace=False))


def _rows_at(X: Any, indices: NDArray[np.intp]) -> Array:
    """The rows of ``X`` at sorted ``indices`` (read block by block from a stream, or
    gathered by the source itself where it can: Dask rows)."""
    if hasattr(X, "take_rows"):
        return np.asarray(X.take_rows(indices))
    if not is_streamed(X):
        return np.asarray(X[indices])
    out = np.empty((indices.shape[0], X.shape[1]))
    for start, rows in X.iter_chunks():
        lo, hi = np.searchsorted(indices, [start, start + rows.shape[0]])
        out[lo:hi] = rows[indices[lo:hi] - start]
    return out


# Rows whose random draws come from one generator: a row's draws depend on its index only,
# not on the chunks an engine splits the rows into (memory, file blocks, Dask blocks).
_DRAW_ROWS = 4096


def _uniform_rows(seed: int, index: NDArray[np.intp], k: int) -> Array:
    """Uniform draws of shape (len(index), k) for the consecutive rows ``index``, row i's
    taken from the generator keyed by (seed, i // _DRAW_ROWS)."""
    first, last = int(index[0]) // _DRAW_ROWS, int(index[-1]) // _DRAW_ROWS
    draws = np.vstack(
        [
            np.random.default_rng([seed, b]).uniform(size=(_DRAW_ROWS, k))
            for b in range(first, last + 1)
        ]
    )
    offset = first * _DRAW_ROWS
    return draws[index[0] - offset : index[-1] - offset + 1]


def initial_statistics_bounded(
    method: str,
    model: Any,
    engine: Any,
    X: Any,
    w: Array | None,
    n_components: int,
    rng: RandomSource,
    prepare: Any = None,
    work_bytes: int = 0,
    tree: Any = None,
    view: Any = None,
    known: NDArray[np.intp] | None = None,
) -> Any:
    """The statistics EM starts from, for ``init_params=method``, reading at most
    ``INIT_ROWS`` rows at once. ``tree`` is a hierarchy built beforehand on the same rows
    for ``'hc'`` (:class:`~emkit.inference.hierarchical.HierarchicalTree`), used on the
    exact path.

    With at most ``INIT_ROWS`` rows in memory this is the exact initialization
    (:func:`~emkit.inference.init.initial_responsibilities` on every row). Beyond, or for
    rows streamed from a file: k-means (or k-means++, or the random draw of rows) on a
    uniform sample of ``INIT_ROWS`` rows gives ``n_components`` centers, every row is
    labelled by the nearest (``'kmeans'``), a chunk at a time, and the model's statistics
    of those labels are summed; ``'random'`` draws each chunk's soft responsibilities from
    a generator keyed by the chunk's first row. ``'auto'`` is ``'kmeans'`` with a bound
    of :func:`~emkit.inference.init.sample_rows` rows instead of ``INIT_ROWS``.

    ``prepare`` maps rows to what the model's statistics and the initialization read
    (default: the rows; e.g. missing values filled). ``view(rows)`` returns the map from
    prepared rows to the coordinates the clustering works in, fixed from ``rows`` (every
    row on the exact path, the sample beyond; e.g. standardized columns); default: the
    prepared rows themselves. ``known`` (labels of some rows, -1 elsewhere) renames the
    start's components to agree with them and fixes those rows; it takes the exact path
    whatever the number of rows (the labels are per row already).
    """
    from emkit.models.kmeans import nearest

    n = X.shape[0]
    K = n_components
    prepare = prepare or _same
    view = view or _identity_view
    # 'auto' reads a smaller sample than INIT_ROWS (:func:`sample_rows`), whatever n
    limit = sample_rows(method, K) or INIT_ROWS
    if n <= limit or known is not None:
        from emkit.estimators._mixture_base import align_to_labels, initial_statistics

        rows = prepare(X.read() if is_streamed(X) else X)
        # (random starts read the number of rows only)
        seen = rows if method in _ROW_BLIND else view(rows)(rows)
        resp = initial_responsibilities(method, seen, K, rng, w, tree=tree)
        del seen
        if known is not None:
            resp = align_to_labels(resp, known, K)
        return initial_statistics(model, engine, rows, w, resp, K, work_bytes)
    seed = _sample_seed(rng)
    if method == "random":

        def random_stats(Xc: Array, wc: Array | None, index: NDArray[np.intp]) -> Any:
            resp = _uniform_rows(seed, index, K)
            resp /= resp.sum(axis=1, keepdims=True)
            return model.statistics_from_resp(prepare(Xc), wc, resp)

        source = RowSource(X, w, columns=(RowIndex(n),), work_bytes=work_bytes)
        return engine.map_reduce(random_stats, source)
    # what the work before (the binding) and the pass that reads the sample (its blocks,
    # a file's buffers) freed goes back to the system, not held beside k-means' work
    release_freed_memory()
    indices = uniform_rows(np.random.default_rng(seed), n, limit)
    sample = prepare(_rows_at(X, indices))
    release_freed_memory()
    w_sample = None if w is None else w[indices]
    to_view = view(sample)
    seen = to_view(sample)
    if method in ("kmeans", "auto"):  # k-means reads only ``seen`` (the sample or the view's copy)
        del sample
    # k-means centres the rows it reads in place (the sample is this function's own
    # copy): no second copy of them
    labels = initial_responsibilities(method, seen, K, rng, w_sample, overwrite=True)
    if method not in ("kmeans", "auto"):  # seeds only: the labelled rows of the sample
        seeds = np.flatnonzero(labels >= 0)
        wk = None if w_sample is None else w_sample[seeds]
        return model.statistics_from_resp(sample[seeds], wk, one_hot(labels[seeds], K))
    # the centers k-means ended with: the (weighted) means of its clusters, summed a
    # column at a time in row order (no weighted copy of the sample)
    weights = np.ones(labels.shape[0]) if w_sample is None else w_sample.astype(np.float64)
    totals = np.bincount(labels, weights, minlength=K)
    sums = np.column_stack(
        [np.bincount(labels, weights * seen[:, j], minlength=K) for j in range(seen.shape[1])]
    )
    centers = np.where(totals[:, None] > 0, sums / np.maximum(totals, 1e-300)[:, None], seen[0])
    del seen
    release_freed_memory()  # the sample and k-means' work, before the labelling pass

    def labelled_stats(Xc: Array, wc: Array | None) -> Any:
        rows = prepare(Xc)
        labels = nearest(to_view(rows), centers)
        return model.statistics_from_resp(rows, wc, one_hot(labels, K))

    return engine.map_reduce(labelled_stats, RowSource(X, w, work_bytes=work_bytes))


def hc_start_tree(X: Array, rng: RandomSource, subset: int | None = None) -> Any:
    """mclust's hierarchical start (:func:`~emkit.inference.hierarchical.hc_tree`) of the
    rows ``X`` in memory, reading only the rows the tree is built on: the ``subset`` rows
    (default mclust's 2000) that ``hc_tree`` draws with ``rng`` (every row of smaller
    data), their missing values filled with their column's mean
    (:attr:`ColumnSummary.fill_means`, from a statistics pass over every row), never a
    filled copy of ``X``. The same tree as ``hc_tree`` on the filled ``X``: its rows index
    ``X``."""
    from emkit.engines.memory import InMemoryEngine
    from emkit.inference.hierarchical import DEFAULT_SUBSET, hc_tree

    n = int(X.shape[0])
    size = DEFAULT_SUBSET if subset is None else int(subset)
    if n > size:  # the rows hc_tree draws on more rows than its subset
        source = rng if rng is not None else np.random.default_rng()
        indices = np.sort(source.choice(n, size=size, replace=False)).astype(np.intp)
        rows = np.asarray(X[indices])
    else:
        indices, rows = np.arange(n, dtype=np.intp), np.asarray(X)
    if np.isnan(rows).any():
        with InMemoryEngine() as engine:
            means = column_summary(engine, RowSource(X)).fill_means
        rows = filler(means)(rows)
    tree = hc_tree(rows, subset=max(size, rows.shape[0]))
    return replace(tree, rows=indices[tree.rows], n_samples=n)


def _same(rows: Array) -> Array:
    return rows


def _identity_view(rows: Array) -> Any:
    return _same


def standardizer(rows: Array) -> Any:
    """The map to columns of mean 0 and variance 1 (constant columns at 0) that k-means
    on ``rows`` works in, its constants taken from ``rows``: applied to ``rows`` it gives
    their standardized copy; applied to other rows (a chunk), the same affine map."""
    # divided by the columns' largest |x| first: the squares of values around 1e200 (or
    # 1e-200) would leave float64 and make every row look alike
    size = np.max(np.abs(rows), axis=0).astype(np.float64)
    size = np.where(size > 0, size, 1.0)
    scaled = rows / size
    mean = scaled.mean(axis=0, dtype=np.float64)
    std = scaled.std(axis=0, dtype=np.float64)
    std = np.where(std > 0, std, 1.0)
    del scaled

    def standardize(chunk: Array) -> Array:
        return np.asarray((chunk / size - mean) / std)

    return standardize


def partial_fit_rows(
    estimator: Any,
    X: Any,
    sample_weight: Any,
    *,
    start: Any,
    batch: Any,
    finish: Any,
) -> Any:
    """``partial_fit``'s work, one code path for every estimator that has it: one step of
    online EM (:func:`~emkit.inference.online.online_update`, the engine's ``map_reduce``
    of the batch's statistics, as every pass of a fit) on the mini-batch ``X``, or on each
    block of a table streamed from a file (:func:`emkit.io.open_table`) in turn, each
    block a mini-batch with its slice of ``sample_weight``.

    The estimator's hooks: ``start(engine, X, sample_weight) -> (state, first)``, the
    :class:`~emkit.inference.online.OnlineState` an estimator without a running one
    begins from (``first``: it was unfitted and initialized from this batch);
    ``batch(X, sample_weight, state) -> RowSource``, the batch's checked rows and weights;
    ``finish(state, trace, dtype, seen)``, its fitted attributes after the step (``dtype``:
    that of the first batch's rows when the run began unfitted, else None; ``seen``: the
    sample weight seen before the batch).
    """
    from emkit.estimators._mixture_base import fit_engine
    from emkit.inference.em import EMTrace
    from emkit.inference.online import check_schedule, online_update

    check_schedule(estimator.learning_offset, estimator.learning_decay)
    if is_streamed(X):
        n = int(X.shape[0])
        weights = None if sample_weight is None else np.asarray(sample_weight)
        if weights is not None and (weights.ndim != 1 or weights.shape[0] != n):
            raise InputError(
                f"sample_weight must have shape ({n},): one weight per row of {X!r}, got "
                f"shape {weights.shape}."
            )
        for first_row, block in X.iter_chunks():
            stop = first_row + block.shape[0]
            part = None if weights is None else weights[first_row:stop]
            partial_fit_rows(estimator, block, part, start=start, batch=batch, finish=finish)
        return estimator
    state = getattr(estimator, "_online", None)
    first = False
    with fit_engine(estimator, X) as engine:
        if state is None:
            state, first = start(engine, X, sample_weight)
        source = batch(X, sample_weight, state)
        seen = state.seen
        state = online_update(
            state,
            engine,
            source,
            float(estimator.learning_offset),
            float(estimator.learning_decay),
        )
    previous = estimator.lower_bounds_ if state.updates > 1 else np.zeros(0)
    trace = EMTrace(np.append(previous, state.objective), np.zeros(previous.shape[0] + 1))
    finish(state, trace, source.rows.dtype if first else None, seen)
    estimator._online = state
    return estimator

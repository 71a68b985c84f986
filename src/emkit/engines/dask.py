"""Dask engine: each chunk's statistics computed where its rows live, and reduced by Dask.

A fit on a :class:`dask.array.Array` or :class:`dask.dataframe.DataFrame` maps the model's
function over the array's blocks as Dask tasks, one a block, and sums their results in a
tree of Dask tasks (``split_every`` partial results a task), so that only statistics
(a few kilobytes) travel to the client. The mapped function holds the parameters of the
iteration: it enters each iteration's graph once, as one key every block's task depends
on, and Dask sends it once to each worker that needs it. Dask does the scheduling, the
data placement and the retries; a block lost with a worker is computed again from the
graph, so a fit survives the loss of a worker and ends with the same model.

On a ``distributed`` cluster the rows are persisted in the workers' memory for the
length of a fit (one read of the source, then every EM pass reads worker memory); on
the local schedulers they are not, so that a fit never holds a whole array in this
process (``persist`` chooses). Per-row values that live in this process (sample
weights, the initialization's labels) are split along the rows' blocks and enter the
graph once per fit.

The sum of blocks' statistics in a tree, rather than in row order, changes results only
by round-off: a fit gives the in-memory engine's model to about 1e-12.

``map_rows`` (``predict``, ``score_samples``, ...) on Dask rows returns a Dask array with
the rows' blocks, computed when the caller computes it (as dask-ml's estimators do); on
rows in memory it returns a NumPy array.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache, reduce
from operator import add
from typing import Any, cast

import numpy as np

from emkit._validation import is_dask_collection
from emkit.engines._source import RowIndex, RowSource, as_source
from emkit.exceptions import InputError

__all__ = ["DaskEngine", "DaskRows", "as_dask_rows"]

# A closed client, or one shutting down, cannot run a fit.
_DEAD_STATUSES = ("closing", "closed", "closing_gracefully", "failed", "stopped", "stopping")


class DaskRows:
    """The rows of a Dask array or DataFrame, checked for a fit (:func:`as_dask_rows`).

    A source whose rows are read a block at a time: the Dask engine maps over
    :attr:`array`'s blocks on the workers; the in-memory and streaming engines compute
    one block at a time in this process (:meth:`iter_chunks`).

    Attributes
    ----------
    array : dask.array.Array
        2-D float32 or float64, known chunk sizes, one chunk across the columns.
    names : list of str or None
        The DataFrame's column names (None for an array).
    shape : tuple of (int, int)
    dtype : numpy.dtype
    """

    ndim = 2

    def __init__(self, array: Any, names: list[str] | None = None) -> None:
        self.array = array
        self.names = names
        self.shape = (int(array.shape[0]), int(array.shape[1]))
        self.dtype = np.dtype(array.dtype)
        self.itemsize = self.dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"DaskRows(shape={self.shape}, dtype={self.dtype}, blocks={self.array.numblocks[0]})"

    def iter_chunks(self) -> Any:
        """(index of the first row, rows) for every block, computed one at a time."""
        start = 0
        for index, size in enumerate(self.array.chunks[0]):
            rows = np.asarray(self.array.blocks[index].compute())
            yield start, checked_block(rows, index, start, size, self.shape[1])
            start += size

    def read(self) -> Any:
        """Every row in one NumPy array (for rows that fit in this process)."""
        return np.asarray(self.array.compute())

    def take_rows(self, indices: Any) -> Any:
        """The rows at sorted ``indices``, gathered by Dask (only those travel)."""
        return np.asarray(self.array[np.asarray(indices)].compute())


def checked_block(rows: Any, index: int, start: int, n_rows: int, n_cols: int) -> Any:
    """A block's rows, checked against the shape the array declares for it."""
    if rows.shape != (n_rows, n_cols):
        raise InputError(
            f"Block {index} of X (rows {start} to {start + n_rows - 1}) holds an array of "
            f"shape {rows.shape}, but the dask array declares ({n_rows}, {n_cols}) for it: "
            "its blocks do not match its metadata (e.g. DataFrame partitions with different "
            "columns, or a wrong shape given to dask.array.from_delayed). Give every "
            "partition the same columns (select them by name) before fitting."
        )
    return rows


def _numeric(dtype: Any) -> bool:
    return isinstance(dtype, np.dtype) and dtype.kind in "biuf"


def as_dask_rows(X: Any, name: str = "X") -> DaskRows:
    """``X`` (a Dask array or DataFrame) as rows a fit reads, or a clear :class:`InputError`.

    Checks what the metadata tells without computing anything, except a DataFrame's
    partition lengths (one pass that counts its rows): numeric columns, two dimensions,
    known chunk sizes. Integer and boolean values become float64; several chunks across
    the columns become one.
    """
    import dask.array as da

    names = None
    if not isinstance(X, da.Array):
        if getattr(X, "ndim", None) == 2 and hasattr(X, "columns"):  # a DataFrame
            bad = [f"{c!r} ({t})" for c, t in X.dtypes.items() if not _numeric(t)]
            if bad:
                raise InputError(
                    f"{name} is a dask DataFrame with non-numeric columns: {', '.join(bad)}. "
                    f"A fit reads numeric columns: select them, e.g. "
                    f"{name}.select_dtypes('number'), encode categories as numbers, and "
                    "convert nullable numeric columns with .astype('float64') (missing "
                    "values become NaN)."
                )
            names = [str(c) for c in X.columns]
            X = X.to_dask_array(lengths=True)
        elif hasattr(X, "to_dask_array") and getattr(X, "ndim", None) == 1:  # a Series
            raise InputError(
                f"{name} is a dask Series; a fit reads a table of shape (n_samples, "
                f"n_features). Pass {name}.to_frame() for a single feature."
            )
        else:
            raise InputError(
                f"{name} is a Dask {type(X).__name__}; a fit reads a dask.array.Array or a "
                "dask.dataframe.DataFrame. Convert it to one of these."
            )
    if X.ndim != 2:
        raise InputError(
            f"{name} must be a 2-D dask array of shape (n_samples, n_features), got shape "
            f"{X.shape}. Reshape a single feature with {name}.reshape(-1, 1)."
        )
    if any(np.isnan(c) for axis in X.chunks for c in axis):
        raise InputError(
            f"{name} is a dask array with unknown chunk sizes (shape {X.shape}, chunks "
            f"{X.chunks}), e.g. after boolean indexing: a fit needs the number of rows of "
            f"each block to keep them aligned with their weights and outputs. Call "
            f"{name} = {name}.compute_chunk_sizes() first (from a DataFrame: "
            "df.to_dask_array(lengths=True))."
        )
    if not _numeric(X.dtype):
        raise InputError(
            f"{name} has non-numeric values (dtype {X.dtype}). Encode categorical columns as "
            f"numbers, e.g. {name}.astype('float64') where the values are numbers as text."
        )
    if X.shape[0] < 1 or X.shape[1] < 1:
        raise InputError(
            f"{name} has shape {X.shape}; a fit needs at least one sample and one feature."
        )
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    return DaskRows(X, names)


# glibc's mallopt parameters, and its own thresholds' values (malloc(3), mallopt(3)):
# the mmap threshold starts at 128 KiB and, unless a threshold is set, rises with the
# sizes freed up to 32 MiB on 64-bit systems; the trim threshold is twice it.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_DEFAULT_THRESHOLD = 128 << 10
_TASK_MMAP_THRESHOLD = 32 << 20
_TASK_TRIM_THRESHOLD = 64 << 20


@cache
def _mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt`` (None elsewhere), looked up once per process."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    mallopt = getattr(libc, "mallopt", None)
    return None if mallopt is None else cast("Callable[[int, int], int]", mallopt)


@contextmanager
def reused_heap() -> Iterator[None]:
    """A block's work with its temporaries' memory reused, in a process whose malloc
    thresholds are set (as ``distributed`` sets its workers': ``MALLOC_TRIM_THRESHOLD_``).

    A set threshold turns off glibc's dynamic mmap threshold: every array of more than
    128 KiB is then a fresh ``mmap`` whose pages are faulted in again, and a cache-sized
    chunk's E-step allocates several (a 250,000-row block's task took 3x as long). For the
    length of the task, the thresholds are those glibc reaches by itself on such work (32
    MiB, 64 MiB to trim), so freed temporaries are reused; then the process's own
    settings come back and the freed memory is returned to the system (``malloc_trim``),
    which is what the setting is for. Elsewhere (no threshold set, not glibc) it does
    nothing."""
    import os

    trim = os.environ.get("MALLOC_TRIM_THRESHOLD_")
    mmap = os.environ.get("MALLOC_MMAP_THRESHOLD_")
    mallopt = _mallopt() if (trim or mmap) else None
    if mallopt is None:
        yield
        return
    mallopt(_M_MMAP_THRESHOLD, _TASK_MMAP_THRESHOLD)
    mallopt(_M_TRIM_THRESHOLD, _TASK_TRIM_THRESHOLD)
    try:
        yield
    finally:
        mallopt(_M_TRIM_THRESHOLD, _threshold(trim))
        mallopt(_M_MMAP_THRESHOLD, _threshold(mmap))
        from emkit.engines.streaming import release_freed_memory

        release_freed_memory()


def _threshold(value: str | None) -> int:
    """A malloc threshold given in the environment (glibc's default if none or bad)."""
    try:
        return int(value) if value else _DEFAULT_THRESHOLD
    except ValueError:
        return _DEFAULT_THRESHOLD


def _call_reduce(
    fn: Callable[..., Any],
    index: int,
    start: int,
    n_rows: int,
    n_cols: int | None,
    work_bytes: int,
    rows: Any,
    weights: Any,
    labels: Any,
    *columns: Any,
) -> Any:
    """One block's task of :meth:`DaskEngine.map_reduce`: ``fn`` summed over the block in
    cache-sized chunks, one thread (the in-memory engine's work on a block)."""
    from emkit.engines.memory import InMemoryEngine

    rows = np.asarray(rows)
    if n_cols is not None:
        checked_block(rows, index, start, n_rows, n_cols)
    block = RowSource(rows, weights, labels, tuple(columns), work_bytes)
    with reused_heap():
        return InMemoryEngine(n_threads=1).map_reduce(fn, block)


def _call_rows(
    fn: Callable[..., Any],
    index: int,
    start: int,
    n_rows: int,
    n_cols: int | None,
    work_bytes: int,
    rows: Any,
    *columns: Any,
) -> Any:
    """One block's task of :meth:`DaskEngine.map_rows`: ``fn(rows, *columns)`` over the
    block in cache-sized chunks, one thread."""
    from emkit.engines.memory import InMemoryEngine

    rows = np.asarray(rows)
    if n_cols is not None:
        checked_block(rows, index, start, n_rows, n_cols)
    block = RowSource(rows, columns=tuple(columns), work_bytes=work_bytes)
    with reused_heap():
        return InMemoryEngine(n_threads=1).map_rows(fn, block)


def _sum(*parts: Any) -> Any:
    """Partial results added in row order (one node of the reduction tree)."""
    return reduce(add, parts)


class DaskEngine:
    """Map functions over the blocks of Dask arrays on a Dask scheduler.

    Parameters
    ----------
    client : distributed.Client or None, default=None
        The cluster to run on. ``None`` uses the current client (``distributed``'s
        default, the last one created) if there is one, else Dask's configured scheduler
        (the local threaded scheduler by default).
    persist : bool or None, default=None
        Hold the rows in the workers' memory for the length of a fit (one read of their
        source, e.g. Parquet files, instead of one per EM pass). ``None``: on a
        ``distributed`` cluster only (on a local scheduler, persisting would hold every
        row in this process).
    split_every : int, default=8
        Partial results summed by one task of the reduction tree.
    chunk_size : int or None, default=None
        Rows per block: Dask rows are rechunked to it, rows in memory split into it.
        ``None`` keeps a Dask array's blocks and splits rows in memory into Dask's
        automatic chunks.

    Use as a context manager around a fit (estimators do): what it persisted is released
    when it exits.

    Examples
    --------
    >>> import dask.array as da
    >>> from emkit import GaussianMixture
    >>> from emkit.engines import DaskEngine
    >>> X = da.random.default_rng(0).normal(size=(2000, 2), chunks=(500, 2))
    >>> gm = GaussianMixture(2, random_state=0, engine=DaskEngine()).fit(X)
    >>> gm.predict(X).chunks  # predictions stay a dask array, block for block
    ((500, 500, 500, 500),)
    """

    # a mapped function's in-place writes to per-row values (k-means' labels and bounds)
    # stay on the workers: an estimator keeps no per-row state across its maps here
    keeps_row_state = False

    def __init__(
        self,
        client: Any = None,
        *,
        persist: bool | None = None,
        split_every: int = 8,
        chunk_size: int | None = None,
    ) -> None:
        if persist is not None and not isinstance(persist, bool):
            raise InputError(f"persist must be True, False or None, got {persist!r}.")
        if isinstance(split_every, bool) or not isinstance(split_every, int) or split_every < 2:
            raise InputError(f"split_every must be an integer >= 2, got {split_every!r}.")
        if chunk_size is not None and (
            isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1
        ):
            raise InputError(f"chunk_size must be a positive integer or None, got {chunk_size!r}.")
        self.client = client
        self.persist = persist
        self.split_every = split_every
        self.chunk_size = chunk_size
        self._session = False
        # id of a per-row value -> (the value, kept alive; its blocks as a dask array)
        self._arrays: dict[Any, tuple[Any, Any]] = {}

    def __repr__(self) -> str:
        return f"DaskEngine(client={self.client!r}, persist={self.persist!r})"

    # -- the session (a fit) ---------------------------------------------------------

    def __enter__(self) -> DaskEngine:
        self._check_client()
        self._session = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release what the session persisted."""
        self._session = False
        self._arrays.clear()

    def _current_client(self) -> Any:
        if self.client is not None:
            return self.client
        import sys

        if "distributed" not in sys.modules:  # no client can exist
            return None
        from distributed import default_client

        try:
            return default_client()
        except ValueError:  # none
            return None

    def _check_client(self) -> Any:
        """The client to run on (None: Dask's local scheduler), checked to be open."""
        client = self._current_client()
        if client is not None and str(getattr(client, "status", "running")) in _DEAD_STATUSES:
            which = (
                "The client given to DaskEngine"
                if self.client is not None
                else ("The current distributed client")
            )
            raise InputError(
                f"{which} is {client.status} ({client!r}): it cannot run a fit. Connect a "
                "new one, e.g. distributed.Client('tcp://scheduler:8786'), and pass "
                "engine=DaskEngine(client=...), or close every client to fit on the local "
                "scheduler."
            )
        return client

    def _persisting(self, client: Any) -> bool:
        return self._session and (client is not None if self.persist is None else self.persist)

    def _compute(self, client: Any, *values: Any) -> tuple[Any, ...]:
        import dask

        if client is not None:
            return tuple(dask.compute(*values, scheduler=client))
        return tuple(dask.compute(*values))

    # -- per-row values as blocks ------------------------------------------------------

    def _rows(self, rows: Any, client: Any, *, keep: bool) -> tuple[Any, int | None, bool]:
        """(rows as a dask array, the number of columns each block must have (None for
        rows in memory, checked already), whether they came as a Dask collection);
        ``keep``: persisted and kept for the session (a fit's passes)."""
        import dask.array as da

        lazy = isinstance(rows, DaskRows) or is_dask_collection(rows)
        if not lazy and hasattr(rows, "iter_chunks"):
            raise InputError(
                f"The Dask engine maps dask arrays and arrays in memory, got {rows!r}, a table "
                "streamed from a file by this process. Read it with Dask (e.g. "
                "dask.dataframe.read_parquet) so that the workers read it, or fit it with "
                "engine='streaming'."
            )
        if not lazy and hasattr(rows, "tocsr"):
            raise InputError(
                "The Dask engine maps dense rows; got a sparse matrix. Fit it with engine='memory'."
            )
        cached = self._arrays.get(id(rows)) if keep else None
        if cached is not None:
            arr = cached[1]
        else:
            if isinstance(rows, DaskRows):
                arr = rows.array
            elif lazy:
                arr = as_dask_rows(rows).array
            else:
                values = np.asarray(rows)
                arr = da.from_array(values, chunks=(self.chunk_size or "auto", *values.shape[1:]))
            if lazy and self.chunk_size is not None:
                arr = arr.rechunk({0: self.chunk_size})
            if keep and self._session:
                if self._persisting(client):
                    arr = client.persist(arr) if client is not None else arr.persist()
                self._arrays[id(rows)] = (rows, arr)
        return arr, (int(arr.shape[1]) if lazy else None), lazy

    def _part(self, values: Any, row_chunks: Sequence[int], client: Any) -> list[Any]:
        """A per-row value (weights, labels, a cached column) split along the rows' blocks:
        one Delayed (or None) a block."""
        import dask.array as da

        if values is None:
            return [None] * len(row_chunks)
        key = (id(values), tuple(row_chunks))
        cached = self._arrays.get(key)
        if cached is not None:
            arr = cached[1]
        else:
            chunks = (tuple(row_chunks),)
            if isinstance(values, RowIndex):
                arr = da.arange(values.shape[0], chunks=chunks, dtype=np.intp)
            elif isinstance(values, DaskRows) or is_dask_collection(values):
                arr = values.array if isinstance(values, DaskRows) else values
                arr = arr.rechunk(chunks + tuple((s,) for s in arr.shape[1:]))
            else:
                array = np.asarray(values)
                arr = da.from_array(array, chunks=chunks + array.shape[1:])
            if self._session:
                if self._persisting(client):
                    arr = client.persist(arr) if client is not None else arr.persist()
                self._arrays[key] = (values, arr)
        return list(arr.to_delayed().ravel())

    def _blocks(
        self, source: RowSource, client: Any, *, keep: bool
    ) -> tuple[list[tuple[Any, ...]], Any, int | None, bool]:
        arr, n_cols, lazy = self._rows(source.rows, client, keep=keep)
        row_chunks = arr.chunks[0]
        rows = list(arr.to_delayed().ravel())
        parts = [self._part(p, row_chunks, client) for p in (source.weights, source.labels)]
        columns = [self._part(c, row_chunks, client) for c in source.columns]
        starts = np.concatenate([[0], np.cumsum(row_chunks)[:-1]]).astype(int)
        blocks = [
            (i, int(starts[i]), int(row_chunks[i]), rows[i], *(p[i] for p in (*parts, *columns)))
            for i in range(len(row_chunks))
        ]
        return blocks, arr, n_cols, lazy

    # -- the maps ----------------------------------------------------------------------

    def map_reduce(self, fn: Callable[..., Any], source: Any) -> Any:
        """Sum of ``fn(rows, weights, *columns)`` (``labels=`` when the source has
        labels) over the blocks, computed on the scheduler and summed in a tree."""
        from dask import delayed

        client = self._check_client()
        source = as_source(source)
        blocks, _, n_cols, _ = self._blocks(source, client, keep=True)
        # the parameters travel once an iteration: one key every block's task reads
        shared = delayed(fn, name=f"emkit-fn-{uuid.uuid4().hex}")
        task = delayed(_call_reduce, pure=False)
        partial = [
            task(shared, i, start, size, n_cols, source.work_bytes, rows, *parts)
            for i, start, size, rows, *parts in blocks
        ]
        node = delayed(_sum, pure=False)
        while len(partial) > 1:
            step = self.split_every
            partial = [node(*partial[j : j + step]) for j in range(0, len(partial), step)]
        return self._compute(client, partial[0])[0]

    def map_rows(self, fn: Callable[..., Any], source: Any) -> Any:
        """``fn(rows, *columns)`` over the blocks, in row order: a Dask array with the
        rows' blocks for Dask rows (computed when the caller computes it), a NumPy array
        for rows in memory.

        For Dask rows, the first row is computed at once (``fn`` on it gives the output's
        shape and dtype)."""
        import dask.array as da
        from dask import delayed

        client = self._check_client()
        source = as_source(source)
        blocks, arr, n_cols, lazy = self._blocks(source, client, keep=False)
        shared = delayed(fn, name=f"emkit-fn-{uuid.uuid4().hex}")
        task = delayed(_call_rows, pure=False)
        pieces = [
            task(shared, i, start, size, n_cols, source.work_bytes, rows, *parts[2:])
            for i, start, size, rows, *parts in blocks
        ]
        if not lazy:
            return np.concatenate(self._compute(client, *pieces))
        first = self._compute(client, arr[:1])[0]
        head = [_first(c) for c in source.columns]
        probe = np.asarray(fn(np.asarray(first), *head))
        return da.concatenate(
            [
                da.from_delayed(piece, shape=(size, *probe.shape[1:]), dtype=probe.dtype)
                for piece, (_, _, size, *_) in zip(pieces, blocks, strict=True)
            ],
            axis=0,
        )


def _first(column: Any) -> Any:
    """The first row's value of a cached column, in memory."""
    if column is None:
        return None
    if isinstance(column, RowIndex):
        return column[0:1]
    first = column[0:1]
    return np.asarray(first.compute() if is_dask_collection(first) else first)

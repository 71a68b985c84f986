"""What an engine maps over: a source of rows and the per-row values that travel with them.

A :class:`RowSource` names the parts that used to travel as a positional tuple: the rows
(an array, a sparse matrix, or a table streamed from a file), their sample weights, their
known component labels, and cached per-row columns (values computed once per fit, such as
a family's base measure, or per-row memory an E-step updates in place, such as k-means'
labels and bounds). Every part is split at the same row boundaries; a chunk knows the
index of its first row (:attr:`RowChunk.start`).

An engine calls a mapped function the same way whatever holds the rows:
``fn(rows, weights, *columns)`` (with ``labels=`` when the source has labels) for
:meth:`~emkit.engines.Engine.map_reduce`, and ``fn(rows, *columns)`` for
:meth:`~emkit.engines.Engine.map_rows`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

__all__ = ["RowChunk", "RowIndex", "RowSource", "as_source"]


class RowChunk(NamedTuple):
    """Rows ``start`` to ``start + len(rows)`` of a source, with their per-row values."""

    start: int
    rows: Any
    weights: Any
    columns: tuple[Any, ...]
    labels: Any

    def reduce_args(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Arguments of a function reduced over the chunk: rows, weights, columns, labels."""
        kwargs = {} if self.labels is None else {"labels": self.labels}
        return (self.rows, self.weights, *self.columns), kwargs

    def row_args(self) -> tuple[Any, ...]:
        """Arguments of a function mapped row-wise: the rows and the cached columns."""
        return (self.rows, *self.columns)


class RowIndex:
    """A cached column of the rows' indices in the whole data, made only a chunk at a time
    (a slice is ``numpy.arange(start, stop)``): a mapped function that needs to know where
    its rows are (every k-th row of the whole, draws keyed by row) takes it as a column."""

    def __init__(self, n_rows: int) -> None:
        self.shape = (int(n_rows),)

    def __getitem__(self, key: slice) -> Any:
        start, stop, step = key.indices(self.shape[0])
        return np.arange(start, stop, step)


def _take(values: Any, start: int, stop: int) -> Any:
    return None if values is None else values[start:stop]


@dataclass(frozen=True)
class RowSource:
    """Rows and the per-row values that are split with them into chunks.

    Parameters
    ----------
    rows : array-like of shape (n_samples, n_features), sparse matrix, or a streamed table
        Anything with ``shape`` whose row slices are the rows (in memory), or a
        :class:`~emkit.io.ChunkedTable` that yields them chunk by chunk.
    weights : ndarray of shape (n_samples,) or None
        Sample weights (None: every row weighs 1).
    labels : ndarray of shape (n_samples,) or None
        Known component of each row (-1: unknown), or None when no row has one.
    columns : tuple of ndarray of shape (n_samples, ...) or None
        Cached per-row values, passed after the weights (a None column stays None).
    first_row : int
        Index of the first row in the whole data (a block of a larger source), so that
        chunks carry their position in the whole.
    work_bytes : int
        Bytes a row of a chunk needs while a function is mapped over it (its prepared
        values, statistics and log-probabilities); the in-memory engine sizes its chunks
        for the cache from it, other engines ignore it.
    """

    rows: Any
    weights: Any = None
    labels: Any = None
    columns: tuple[Any, ...] = field(default=())
    work_bytes: int = 0
    first_row: int = 0

    @property
    def n_rows(self) -> int:
        return int(self.rows.shape[0])

    @property
    def streamed(self) -> bool:
        """Whether the rows are read chunk by chunk (a file), not sliced in memory."""
        return hasattr(self.rows, "iter_chunks")

    def chunk(self, start: int, stop: int, rows: Any = None) -> RowChunk:
        """Rows ``start:stop`` (``rows`` given when the caller read them from a stream)."""
        return RowChunk(
            self.first_row + start,
            self.rows[start:stop] if rows is None else rows,
            _take(self.weights, start, stop),
            tuple(_take(c, start, stop) for c in self.columns),
            _take(self.labels, start, stop),
        )

    def whole(self) -> RowChunk:
        """Every row as one chunk."""
        return RowChunk(self.first_row, self.rows, self.weights, self.columns, self.labels)

    def blocks(self) -> Iterator[RowSource]:
        """The blocks of a streamed source, as sources of rows in memory, in row order."""
        for start, rows in self.rows.iter_chunks():
            block = self.block(start, rows)
            del rows  # not held while the next block is read
            yield block
            del block

    def block(self, start: int, rows: Any) -> RowSource:
        """The source of rows ``start:start + len(rows)`` (read from a stream), its per-row
        values sliced to match."""
        stop = start + int(rows.shape[0])
        return RowSource(
            rows,
            _take(self.weights, start, stop),
            _take(self.labels, start, stop),
            tuple(_take(c, start, stop) for c in self.columns),
            self.work_bytes,
            self.first_row + start,
        )


def as_source(data: Any) -> RowSource:
    """``data`` as a :class:`RowSource`: itself, or rows with no per-row values."""
    return data if isinstance(data, RowSource) else RowSource(data)

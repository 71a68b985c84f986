"""Streaming engine: rows read from a file a block at a time, each block mapped in memory.

Each map reads the file from its start (one EM iteration is one pass), maps every block
as the in-memory engine maps rows (cache-sized chunks on its thread pool) and adds the
partial results in row order (the in-memory engine itself reads a streamed source this
way; this engine names the choice). Memory holds one block of rows and its work,
whatever the file's size; results of :meth:`map_rows` (one value per row) are held whole,
as in memory.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import reduce
from operator import add
from typing import Any

import numpy as np

from emkit.engines._source import RowChunk, RowSource, as_source

__all__ = ["StreamingEngine"]


class StreamingEngine:
    """Map functions over a source whose rows are streamed (:func:`emkit.io.open_table`).

    Parameters
    ----------
    chunk_size : int or None
        Rows per chunk of the in-memory work on a block (``None``: sized for the cache).
    n_threads : int or None
        Threads for the chunks of a block (``None``: every available core).

    A source held in memory is mapped as the in-memory engine maps it. Use as a context
    manager to keep one thread pool for many maps.
    """

    def __init__(self, chunk_size: int | None = None, n_threads: int | None = None) -> None:
        from emkit.engines.memory import InMemoryEngine

        self._memory = InMemoryEngine(chunk_size, n_threads)

    def __enter__(self) -> StreamingEngine:
        self._memory.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._memory.close()

    def _run(
        self,
        fn: Callable[[RowChunk], Any],
        source: RowSource,
        combine: Callable[[Iterator[Any]], Any],
    ) -> Any:
        # the in-memory engine reads a streamed source block by block
        return self._memory._run(fn, source, combine)

    def map_reduce(self, fn: Callable[..., Any], source: Any) -> Any:
        from emkit.engines.memory import reducing

        return self._run(reducing(fn), as_source(source), lambda results: reduce(add, results))

    def map_rows(self, fn: Callable[..., Any], source: Any) -> Any:
        from emkit.engines.memory import rowwise

        return self._run(
            rowwise(fn), as_source(source), lambda results: np.concatenate(list(results))
        )

"""Streaming engine: rows read from a file a block at a time, each block mapped in memory.

Each map reads the file from its start (one EM iteration is one pass). The calling thread
reads the blocks; each block is split into cache-sized chunks as the in-memory engine
splits rows, and its chunks are mapped on the engine's thread pool while the calling
thread reads the next block, so reading overlaps the work and no thread is started per
pass. Partial results are added in row order (per block, then over blocks), as the
in-memory engine adds them. Memory holds at most two blocks of rows (the one mapped and
the one being read) and the chunks' work, whatever the file's size; results of
:meth:`map_rows` (one value per row) are held whole, as in memory. The in-memory engine
reads a streamed source the same way (:func:`map_blocks`); this engine names the choice.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from contextlib import nullcontext
from functools import cache, reduce
from operator import add
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from emkit.engines._source import RowChunk, RowSource, as_source

if TYPE_CHECKING:
    from emkit.engines.memory import InMemoryEngine

__all__ = ["StreamingEngine", "map_blocks"]


class StreamingEngine:
    """Map functions over a source whose rows are streamed (:func:`emkit.io.open_table`).

    Parameters
    ----------
    chunk_size : int or None
        Rows per chunk of the in-memory work on a block (``None``: sized for the cache).
    n_threads : int or None
        Threads for the chunks of a block (``None``: every available core); with more
        than one, the next block is read while they map the current one.

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
        # the in-memory engine reads a streamed source through map_blocks
        return self._memory._run(fn, source, combine)

    def map_reduce(self, fn: Callable[..., Any], source: Any) -> Any:
        from emkit.engines.memory import reducing

        return self._run(reducing(fn), as_source(source), lambda results: reduce(add, results))

    def map_rows(self, fn: Callable[..., Any], source: Any) -> Any:
        from emkit.engines.memory import rowwise

        return self._run(
            rowwise(fn), as_source(source), lambda results: np.concatenate(list(results))
        )


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` (None elsewhere), looked up once per process."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    return None if trim is None else cast("Callable[[int], int]", trim)


def release_freed_memory() -> None:
    """Give the memory that C's allocator keeps after it was freed back to the system.

    NumPy allocates through ``malloc``, which keeps freed memory for reuse: a pass over a
    file would otherwise hold, beside its own blocks, what the work before it (the
    initialization's sample, k-means' copies) freed. glibc's ``malloc_trim`` returns it
    (about a millisecond); elsewhere this does nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def map_blocks(
    engine: InMemoryEngine,
    fn: Callable[[RowChunk], Any],
    source: RowSource,
    combine: Callable[[Iterator[Any]], Any],
) -> Any:
    """``fn`` mapped over the chunks of every block of a streamed ``source`` with
    ``engine``'s chunk sizes and threads, the results combined per block then over the
    blocks, in row order.

    The calling thread reads block ``i + 1`` while the pool maps block ``i``'s chunks,
    then waits for them before it reads on: at most two blocks are held at once.
    """
    from emkit.engines.memory import _blas_controller

    pool: ThreadPoolExecutor | None = None
    if engine.n_threads > 1:
        if engine._pool is None:
            engine._pool = ThreadPoolExecutor(engine.n_threads, thread_name_prefix="emkit")
        pool = engine._pool
    if engine._entered:  # BLAS on one thread for the session (the chunks use the cores)
        engine._limit_blas()
        limit: Any = nullcontext()
    elif engine._session is None:  # a map outside a session: limited for this map only
        limit = _blas_controller().limit(limits=1, user_api="blas")
    else:
        limit = nullcontext()

    def start(block: RowSource) -> list[Future[Any]]:
        """The block's chunks mapped on the pool (done here without one)."""
        chunks = engine._chunks(block)
        if pool is not None:
            return [pool.submit(fn, c) for c in chunks]
        done: Future[Any] = Future()
        done.set_result(combine(fn(c) for c in chunks))
        return [done]

    def finish(futures: list[Future[Any]]) -> Any:
        return combine(f.result() for f in futures) if pool is not None else futures[0].result()

    release_freed_memory()  # the work since the last pass: not held beside this one
    results = []
    started: list[list[Future[Any]]] = []  # at most two blocks: the last one and the new
    with limit:
        try:
            for block in source.blocks():  # the next block is read while these run
                started.append(start(block))
                del block
                if len(started) == 2:
                    results.append(finish(started.pop(0)))
            while started:
                results.append(finish(started.pop(0)))
        finally:  # on an error, no chunk is left running over a block
            wait([f for futures in started for f in futures])
    return combine(iter(results))

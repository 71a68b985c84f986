"""In-memory engine: rows in chunks sized for cache, chunks on a thread pool (the calling
thread maps chunks beside the pool's: ``n_threads`` in all).

NumPy and BLAS release the GIL, so the chunks of one map run in parallel; BLAS itself is
held to one thread meanwhile (chunks are small, and the pool already uses the cores).
Partial results are added in chunk order, so a result never depends on the number of
threads.

Small data pays for none of this: a map of one chunk runs in the calling thread, and BLAS
is limited only for maps of at least ``_MIN_ROWS`` rows (below it, BLAS libraries keep
such small products on one thread by themselves, and the limit would cost as much as the
work). The limit is entered once per engine session, through a controller of the
process's BLAS libraries that is built once per process (finding the libraries takes tens
of milliseconds; setting a limit with a built controller, a tenth of a millisecond).
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from functools import cache, reduce
from operator import add
from typing import Any

import numpy as np

from emkit.engines._source import RowChunk, RowSource, as_source
from emkit.exceptions import InputError

__all__ = ["InMemoryEngine"]

# A chunk's working set (rows, statistics, log-probabilities) should fit in a core's L2
# cache (2 MiB here; float32 lost its 2x on d=2 data beyond it), yet each NumPy call on
# it must be long enough that two threads do not queue for the GIL between calls, which
# made 1 MiB chunks slower on two threads than on one (bench/): at least 4096 rows.
_CHUNK_BYTES = 2 << 20
_MIN_ROWS = 4096
# Automatic chunks come in a multiple of this many (of the most of 16, 8, 4, 2 that keeps
# them at _MIN_ROWS rows, and at half the rows the bytes asked for): the threads of a pool
# of 2, 4, 8 or 16 then end together, where 9 chunks on 2 threads left one idle for a
# ninth of the map. A number of the data, not of the threads: the chunks, and so the
# order of the sums, are the same on any pool. The half: rounding up to a multiple at
# most doubles the chunks, each of which costs a call, a task of the pool and a sum of
# its results (~25 us): a pass whose row needs few bytes (the one-pass E-step, whose
# tiles stay in cache whatever the chunk) asked for 2 to 4 chunks of 100k rows and got
# 16, 0.3 ms an iteration of a fit that takes 2 to 3.5
_CHUNK_MULTIPLE = 16


@cache
def _blas_controller() -> Any:
    """The BLAS libraries loaded in this process (threadpoolctl), found once."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _row_bytes(source: RowSource) -> int:
    """Bytes a row of ``source`` needs while a function is mapped over it: the source's
    ``work_bytes``, or, where it gives none, the row itself (a pass that makes a
    temporary or two of its chunk, such as a filled or centred copy, then holds a few
    cache-sized chunks instead of copies of the whole X)."""
    if source.work_bytes:
        return source.work_bytes
    rows = source.rows
    shape: tuple[int, ...] = getattr(rows, "shape", ())
    width = int(shape[1]) if len(shape) > 1 else 1
    return width * np.dtype(getattr(rows, "dtype", np.float64)).itemsize


def _available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class InMemoryEngine:
    """Process arrays held in memory in chunks of rows, on ``n_threads`` threads.

    Parameters
    ----------
    chunk_size : int or None
        Rows per chunk. ``None`` picks it from the bytes a row needs (about 2 MiB a chunk,
        at least 4096 rows).
    n_threads : int or None
        Threads in the pool. ``None`` uses every core this process may run on.

    Use as a context manager to keep one thread pool for many maps (an EM fit).
    """

    def __init__(self, chunk_size: int | None = None, n_threads: int | None = None) -> None:
        if chunk_size is not None and (isinstance(chunk_size, bool) or int(chunk_size) < 1):
            raise InputError(f"chunk_size must be a positive integer or None, got {chunk_size!r}.")
        if n_threads is not None and (isinstance(n_threads, bool) or int(n_threads) < 1):
            raise InputError(f"n_threads must be a positive integer or None, got {n_threads!r}.")
        self.chunk_size = None if chunk_size is None else int(chunk_size)
        self.n_threads = _available_cores() if n_threads is None else int(n_threads)
        self._pool: ThreadPoolExecutor | None = None
        self._session: Any = None  # the BLAS limit, held until close()
        self._entered = False

    def __enter__(self) -> InMemoryEngine:
        # BLAS is limited at the first map that needs it, then for the rest of the
        # session (an EM fit), not per map.
        self._entered = True
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._entered = False
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._session is not None:
            session, self._session = self._session, None
            session.__exit__(None, None, None)

    def _limit_blas(self) -> None:
        """One BLAS thread until :meth:`close`: a chunk's matrices are small, and
        threaded BLAS on them, beside the pool's threads, was measured 10-17x slower."""
        if self._session is None:
            session = _blas_controller().limit(limits=1, user_api="blas")
            self._session = session.__enter__()

    def _rows_per_chunk(self, n_rows: int, row_bytes: int) -> int:
        if self.chunk_size is not None:
            return self.chunk_size
        rows = _CHUNK_BYTES // max(row_bytes, 1)
        rows = int(min(max(rows, _MIN_ROWS), max(n_rows, 1)))
        chunks = -(-n_rows // rows)
        multiple = _CHUNK_MULTIPLE
        while multiple > 1 and chunks > 1:
            even = -(-n_rows // (-(-chunks // multiple) * multiple))  # rows a chunk
            if even >= max(_MIN_ROWS, rows // 2):
                return even
            multiple //= 2
        return rows

    def _chunks(self, source: RowSource) -> list[RowChunk]:
        n = source.n_rows
        step = self._rows_per_chunk(n, _row_bytes(source))
        return [source.chunk(start, start + step) for start in range(0, n, step)]

    def _run(
        self,
        fn: Callable[[RowChunk], Any],
        source: RowSource,
        combine: Callable[[Iterator[Any]], Any],
    ) -> Any:
        if source.streamed:  # rows read from a file: a block read while the last is mapped
            from emkit.engines.streaming import map_blocks

            return map_blocks(self, fn, source, combine)
        n = source.n_rows
        if n < _MIN_ROWS and (self.chunk_size is None or self.chunk_size >= n):
            # one small chunk: no pool, no limit
            return combine(iter([fn(source.chunk(0, n, source.rows))]))
        if n >= _MIN_ROWS and self._session is None:
            if not self._entered:  # a map outside a session: limited for this map only
                with _blas_controller().limit(limits=1, user_api="blas"):
                    return self._map(fn, source, combine)
            self._limit_blas()
        return self._map(fn, source, combine)

    def _map(
        self,
        fn: Callable[[RowChunk], Any],
        source: RowSource,
        combine: Callable[[Iterator[Any]], Any],
    ) -> Any:
        n = source.n_rows
        step = self._rows_per_chunk(n, _row_bytes(source))
        starts = range(0, n, step)

        def run(start: int) -> Any:
            # the chunk made where it is mapped: rows that are a gather, not a view
            # (missing-value patterns read in order through an index), are copied a
            # chunk at a time, not all at once
            return fn(source.chunk(start, start + step))

        if len(starts) == 1 or self.n_threads == 1:
            return combine(run(start) for start in starts)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.n_threads, thread_name_prefix="emkit")
        return combine(iter(self._shared(run, starts)))

    def _shared(self, run: Callable[[int], Any], starts: range) -> list[Any]:
        """``run`` of every start, in the pool's threads and this one: each takes the
        next chunk when it is done with its last; the results in chunk order. The
        calling thread maps chunks rather than waits for the pool's: a thread fewer to
        wake at the start of each map and at its end (100k-8d's E-step, two chunks of
        about 0.8 ms in float32: 0.2 ms of an iteration's 1.3 went to the hand-overs).
        An error stops the threads at their next chunk; the caller's is raised, else a
        pool thread's."""
        results: list[Any] = [None] * len(starts)
        order = itertools.count()  # its next() is atomic: each chunk is taken once
        failed = threading.Event()

        def work() -> None:
            while not failed.is_set():
                i = next(order)
                if i >= len(starts):
                    return
                try:
                    results[i] = run(starts[i])
                except BaseException:
                    failed.set()
                    raise

        assert self._pool is not None
        helpers = [self._pool.submit(work) for _ in range(min(self.n_threads, len(starts)) - 1)]
        try:
            work()
        finally:
            errors = [helper.exception() for helper in helpers]  # (waits for each)
        for error in errors:
            if error is not None:
                raise error
        return results

    def one_chunk(self, source: RowSource) -> bool:
        """Whether ``source`` is mapped as one small chunk, in the calling thread (the
        function then gets the source's own arrays, the same ones every map)."""
        if source.streamed:
            return False
        n = source.n_rows
        return n < _MIN_ROWS and (self.chunk_size is None or self.chunk_size >= n)

    def map_reduce(self, fn: Callable[..., Any], source: Any) -> Any:
        source = as_source(source)
        if self.one_chunk(source):
            # the function on the whole source, directly: no chunk list to reduce, and
            # the same arrays every call (a fit's row cache knows its rows by them)
            # (a column that makes its slices, such as RowIndex, makes the whole one)
            n = source.n_rows
            columns = tuple(
                c if c is None or isinstance(c, np.ndarray) else c[0:n] for c in source.columns
            )
            kwargs = {} if source.labels is None else {"labels": source.labels}
            return fn(source.rows, source.weights, *columns, **kwargs)
        return self._run(reducing(fn), source, lambda results: reduce(add, results))

    def map_rows(self, fn: Callable[..., Any], source: Any) -> Any:
        return self._run(
            rowwise(fn), as_source(source), lambda results: np.concatenate(list(results))
        )


def reducing(fn: Callable[..., Any]) -> Callable[[RowChunk], Any]:
    """``fn`` called on a chunk as :meth:`map_reduce` calls it (rows, weights, columns)."""

    def call(chunk: RowChunk) -> Any:
        args, kwargs = chunk.reduce_args()
        return fn(*args, **kwargs)

    return call


def rowwise(fn: Callable[..., Any]) -> Callable[[RowChunk], Any]:
    """``fn`` called on a chunk as :meth:`map_rows` calls it (rows, columns)."""
    return lambda chunk: fn(*chunk.row_args())

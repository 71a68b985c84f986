"""The one-method interface every engine implements: where rows live, how sums are made."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, Protocol

from emkit.exceptions import InputError

__all__ = ["Engine", "resolve_engine"]


class Engine(Protocol):
    """Runs a function over blocks of rows and combines the results.

    An engine knows nothing about models. It owns the data: ``source`` is a
    :class:`~emkit.engines.RowSource` (or bare rows), and how it is split into chunks is
    the engine's own business. ``fn`` receives a chunk's aligned parts (``None`` stays
    ``None``): ``fn(rows, weights, *columns)`` (and ``labels=`` when the source has
    labels) for :meth:`map_reduce`, whose results support ``+``; ``fn(rows, *columns)``
    for :meth:`map_rows`.
    """

    def map_reduce(self, fn: Callable[..., Any], source: Any) -> Any:
        """Sum of ``fn`` over chunks, in row order (so results do not depend on threads)."""
        ...

    def map_rows(self, fn: Callable[..., Any], source: Any) -> Any:
        """``fn`` applied to chunks, results concatenated along the first axis in row order."""
        ...


def resolve_engine(
    engine: Any, chunk_size: int | None = None, n_threads: int | None = None, data: Any = None
) -> AbstractContextManager[Any]:
    """The engine an estimator's ``engine`` argument names, as a context manager.

    ``None`` or ``"memory"``: the in-memory engine with ``chunk_size`` and ``n_threads``
    (``None`` with ``data`` a Dask collection: the Dask engine);
    ``"streaming"``: the streaming engine (files opened with :func:`emkit.io.open_table`);
    ``"dask"``: the Dask engine on the current ``distributed`` client, else on Dask's
    local scheduler (:class:`emkit.engines.DaskEngine`, ``chunk_size`` rows a block);
    an object with ``map_reduce`` and ``map_rows``: itself (entered if it is a context
    manager).
    """
    from emkit._validation import is_dask_collection

    if engine is None and (is_dask_collection(data) or hasattr(data, "take_rows")):
        engine = "dask"
    if isinstance(engine, str) and engine == "dask":
        from emkit.engines.dask import DaskEngine

        if n_threads is not None:
            raise InputError(
                f"n_threads={n_threads!r} sets the in-memory engine's threads; on engine="
                "'dask' the workers' threads are the cluster's (e.g. distributed.LocalCluster("
                "threads_per_worker=...)). Leave n_threads=None."
            )
        return DaskEngine(chunk_size=chunk_size)
    if engine is None or (isinstance(engine, str) and engine == "memory"):
        from emkit.engines.memory import InMemoryEngine

        return InMemoryEngine(chunk_size, n_threads)
    if isinstance(engine, str) and engine == "streaming":
        from emkit.engines.streaming import StreamingEngine

        return StreamingEngine(chunk_size, n_threads)
    if isinstance(engine, str) or not (
        callable(getattr(engine, "map_reduce", None))
        and callable(getattr(engine, "map_rows", None))
    ):
        raise InputError(
            f"engine must be None, 'memory', 'streaming', 'dask' or an object with map_reduce "
            f"and map_rows methods (emkit.engines.Engine), got {engine!r}."
        )
    if hasattr(engine, "__enter__") and hasattr(engine, "__exit__"):
        return engine
    return nullcontext(engine)

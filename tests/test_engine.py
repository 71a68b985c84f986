"""The in-memory engine on its own: chunking, ordered reduction, thread pool, BLAS limit."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_info

from emkit import InputError
from emkit.engines import InMemoryEngine, RowSource


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


@pytest.mark.parametrize(("chunk_size", "n_threads"), [(1, 1), (3, 2), (7, 2), (1000, 1)])
def test_map_reduce_and_map_rows_cover_every_row_once(chunk_size: int, n_threads: int) -> None:
    X = np.arange(40.0).reshape(20, 2)
    w = np.arange(20.0)
    with InMemoryEngine(chunk_size, n_threads) as engine:
        total = engine.map_reduce(lambda x, wc: wc @ x, RowSource(X, w))
        rows = engine.map_rows(
            lambda x, c: x[:, 0] * 10 + (c is None), RowSource(X, columns=(None,))
        )
    np.testing.assert_array_equal(total, w @ X)
    np.testing.assert_array_equal(rows, X[:, 0] * 10 + 1)


def test_reduction_is_in_chunk_order_whatever_the_threads() -> None:
    X = np.random.default_rng(0).normal(size=(5000, 1)) * 1e8
    sums = set()
    for n_threads in (1, 2, 3):
        with InMemoryEngine(7, n_threads) as engine:
            sums.add(float(engine.map_reduce(lambda x, _w: x.sum(), X)))
    assert len(sums) == 1  # same float, to the last bit


def test_the_calling_thread_maps_chunks_beside_the_pools() -> None:
    """A map of many chunks runs on the pool's threads and the caller's: each chunk once,
    the results in chunk order, whatever thread took which."""
    caller = threading.get_ident()
    X = np.arange(4000.0)[:, None]

    def which(x: np.ndarray) -> np.ndarray:
        time.sleep(0.002)  # (the GIL released, as NumPy's and the kernels' work does)
        return np.full(len(x), threading.get_ident())

    with InMemoryEngine(100, 3) as engine:
        seen = engine.map_rows(which, X)
        rows = engine.map_rows(lambda x: x[:, 0], X)
    np.testing.assert_array_equal(rows, X[:, 0])
    assert caller in set(seen.tolist())  # 40 chunks: the caller took some
    assert len(set(seen.tolist())) >= 2


@pytest.mark.parametrize("failing", [0, 57, 99])
def test_an_error_in_any_chunk_is_raised_and_stops_the_map(failing: int) -> None:
    """An error in a chunk (the caller's or a pool thread's) is raised from the map, and
    the threads take no chunk after it is seen; the engine maps again after."""
    X = np.arange(4000.0)[:, None]
    done: list[int] = []

    def fn(x: np.ndarray, _w: object) -> float:
        start = int(x[0, 0]) // 40
        if start == failing:
            raise ValueError(f"chunk {start}")
        time.sleep(0.0005)  # (the GIL released, as the kernels' work does)
        done.append(start)
        return float(x.sum())

    with InMemoryEngine(40, 2) as engine:
        with pytest.raises(ValueError, match=f"chunk {failing}"):
            engine.map_reduce(fn, X)
        # the chunks before it, and the few the other thread took before it saw the error
        # (one, unless the failing thread was descheduled for a while)
        assert len(done) <= failing + 4
        assert engine.map_reduce(lambda x, _w: x.sum(), X) == X.sum()


@pytest.mark.parametrize("n_threads", [1, 2])
def test_blas_is_single_threaded_in_a_session_of_large_maps_and_restored_after(
    n_threads: int,
) -> None:
    before = _blas_threads()
    big = np.zeros((4096, 1))
    with InMemoryEngine(n_threads=n_threads) as engine:
        inside = engine.map_reduce(lambda x, _w: np.array(_blas_threads()), big)
        assert _blas_threads() == [1] * len(before)  # held for the rest of the session
    assert list(inside) == [1] * len(before)
    assert _blas_threads() == before
    # a map outside a session is limited while it runs
    inside = InMemoryEngine(4096).map_reduce(lambda x, _w: np.array(_blas_threads()), big)
    assert list(inside) == [1] * len(before)
    assert _blas_threads() == before


def test_small_maps_run_without_a_pool_or_a_blas_limit() -> None:
    """A map of fewer than 4096 rows in one chunk costs no thread-pool set-up: it runs in
    the caller's thread, with BLAS as it was (such products are too small to thread)."""
    before = _blas_threads()
    with InMemoryEngine(n_threads=2) as engine:
        inside = engine.map_reduce(lambda x, _w: np.array(_blas_threads()), np.zeros((4095, 1)))
        threads = engine.map_rows(lambda x: np.array([threading.get_ident()]), np.zeros((3, 1)))
        assert engine._pool is None and engine._session is None
    assert list(inside) == before
    assert threads.tolist() == [threading.get_ident()]


def test_a_one_chunk_map_reduce_gets_the_sources_own_arrays() -> None:
    """A small map calls the function once, on the source's arrays themselves (not
    slices of them), so that what a fit caches about its rows is found every iteration."""
    X, w, c = np.zeros((10, 2)), np.ones(10), np.arange(10)
    seen: list[tuple[object, ...]] = []
    with InMemoryEngine() as engine:
        for _ in range(2):
            engine.map_reduce(
                lambda x, wc, cc, labels: seen.append((x, wc, cc, labels)) or 0,
                RowSource(X, w, c, columns=(c,)),
            )
    assert len(seen) == 2 and all(a[0] is X and a[1] is w and a[2] is c for a in seen)
    assert all(a[3] is c for a in seen)
    # chunks of rows still reduce in order
    with InMemoryEngine(3) as engine:
        assert engine.map_reduce(lambda x, wc: wc @ x[:, 0], RowSource(X + 1, w)) == 10.0


def test_automatic_chunks_are_large_enough_for_threads() -> None:
    engine = InMemoryEngine()
    assert engine._rows_per_chunk(10**6, row_bytes=8000) == 4096
    # within the byte budget, in 48 chunks (a multiple of 16) of 20,834 rows
    assert engine._rows_per_chunk(10**6, row_bytes=100) == 20834 <= (2 << 20) // 100
    assert engine._rows_per_chunk(50, row_bytes=100) == 50


@pytest.mark.parametrize(
    ("n", "row_bytes", "rows", "chunks"),
    [
        (100_000, 168, 6250, 16),  # 13 chunks by the budget: 16
        (200_000, 296, 6250, 32),  # 29: 32
        (500_000, 552, 4096, 123),  # 128, 124 or 122 would fall below 4096 rows
        (9 * 4096, 8000, 4096, 9),  # too few rows to even out
        # rows of few bytes (the one-pass E-step's): 4 by the budget stay 4 (16 would
        # take 4x the chunks' calls, 8 twice)
        (100_000, 80, 25000, 4),
        (100_000, 40, 50000, 2),
        (1_000_000, 16, 125000, 8),  # 8 by the budget: 16 (62,500 rows) is twice as many
    ],
)
def test_automatic_chunks_come_in_a_multiple_that_pools_share_evenly(
    n: int, row_bytes: int, rows: int, chunks: int
) -> None:
    """16, 8, 4 or 2 chunks a batch where each keeps 4096 rows or more, whatever the
    threads (so the order of the sums is the same on any pool)."""
    for threads in (1, 2, 3):
        assert InMemoryEngine(n_threads=threads)._rows_per_chunk(n, row_bytes) == rows
    assert -(-n // rows) == chunks


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size": 0}, "chunk_size must be a positive integer or None, got 0"),
        ({"n_threads": 0}, "n_threads must be a positive integer or None, got 0"),
        ({"chunk_size": True}, "chunk_size must be a positive integer"),
    ],
)
def test_bad_arguments(kwargs: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        InMemoryEngine(**kwargs)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 3_000_000), st.integers(1, 20_000))
def test_automatic_chunks_at_most_double_the_budgets(n: int, row_bytes: int) -> None:
    """Rounding the chunks up to a multiple at most doubles the count the byte budget
    asks for (each chunk costs a call and a task), and never makes them larger."""
    budget = min(max((2 << 20) // row_bytes, 4096), n)
    rows = InMemoryEngine()._rows_per_chunk(n, row_bytes)
    assert rows <= budget
    assert rows >= min(n, max(4096, budget // 2))


def test_prediction_asks_for_the_general_routes_bytes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The one-pass E-step asks for the few bytes it writes a row (its tiles stay in
    cache; fewer chunks save calls); prediction takes the general route, whose chunks
    hold every row's statistics and log-probabilities, and asks for those: its chunks
    stay cache-sized."""
    from emkit import GaussianMixture

    X = np.random.default_rng(0).normal(size=(6000, 3))
    gm = GaussianMixture(2, random_state=0).fit(X)
    seen: list[int] = []
    original = InMemoryEngine.map_rows

    def spy(self: InMemoryEngine, fn: object, source: RowSource) -> object:
        seen.append(source.work_bytes)
        return original(self, fn, source)  # type: ignore[arg-type]

    monkeypatch.setattr(InMemoryEngine, "map_rows", spy)
    gm.predict(X)
    gm.predict_proba(X)
    # the row, 2 x 2 log-probabilities and the scalars at least, in float64
    assert len(seen) == 2 and all(b >= (3 + 2 * 2 + 5) * 8 for b in seen)

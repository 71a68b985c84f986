"""The in-memory engine on its own: chunking, ordered reduction, thread pool, BLAS limit."""

from __future__ import annotations

import numpy as np
import pytest
from threadpoolctl import threadpool_info

from emkit import InputError
from emkit.engines import InMemoryEngine


def _blas_threads() -> list[int]:
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


@pytest.mark.parametrize(("chunk_size", "n_threads"), [(1, 1), (3, 2), (7, 2), (1000, 1)])
def test_map_reduce_and_map_rows_cover_every_row_once(chunk_size: int, n_threads: int) -> None:
    X = np.arange(40.0).reshape(20, 2)
    w = np.arange(20.0)
    with InMemoryEngine(chunk_size, n_threads) as engine:
        total = engine.map_reduce(lambda x, wc: wc @ x, X, w)
        rows = engine.map_rows(lambda x, wc: x[:, 0] * 10 + (wc is None), X, None)
    np.testing.assert_array_equal(total, w @ X)
    np.testing.assert_array_equal(rows, X[:, 0] * 10 + 1)


def test_reduction_is_in_chunk_order_whatever_the_threads() -> None:
    X = np.random.default_rng(0).normal(size=(5000, 1)) * 1e8
    sums = set()
    for n_threads in (1, 2, 3):
        with InMemoryEngine(7, n_threads) as engine:
            sums.add(float(engine.map_reduce(lambda x: x.sum(), X)))
    assert len(sums) == 1  # same float, to the last bit


def test_blas_is_single_threaded_during_a_session_and_restored_after() -> None:
    before = _blas_threads()
    with InMemoryEngine() as engine:
        inside = engine.map_reduce(lambda x: np.array(_blas_threads()), np.zeros((3, 1)))
        assert _blas_threads() == [1] * len(before)
    assert list(inside) == [1] * len(before)
    assert _blas_threads() == before


def test_automatic_chunks_are_large_enough_for_threads() -> None:
    engine = InMemoryEngine()
    assert engine._rows_per_chunk(10**6, row_bytes=8000) == 4096
    assert engine._rows_per_chunk(10**6, row_bytes=100) == (2 << 20) // 100
    assert engine._rows_per_chunk(50, row_bytes=100) == 50


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

"""Engines own the data: a row source, chunks that know their first row, and every
estimator running on the engine it is given."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import emkit
from emkit import InputError
from emkit.engines import InMemoryEngine, ReducedEngine, RowIndex, RowSource, StreamingEngine


class Recording:
    """An engine that runs another and records the first row of every chunk it maps."""

    def __init__(self) -> None:
        self.inner = InMemoryEngine(chunk_size=7, n_threads=1)
        self.starts: list[int] = []

    def _wrap(self, source: Any) -> RowSource:
        source = source if isinstance(source, RowSource) else RowSource(source)
        return source

    def map_reduce(self, fn: Any, source: Any) -> Any:
        source = self._wrap(source)
        self.starts += [c.start for c in self.inner._chunks(source)]
        return self.inner.map_reduce(fn, source)

    def map_rows(self, fn: Any, source: Any) -> Any:
        source = self._wrap(source)
        self.starts += [c.start for c in self.inner._chunks(source)]
        return self.inner.map_rows(fn, source)


_RNG = np.random.default_rng(0)
_GAUSS = np.vstack([_RNG.normal(0, 1, (30, 3)), _RNG.normal(4, 1, (30, 3))])
_COUNTS = _RNG.poisson(3.0, (60, 3)).astype(float)
_BINARY = (_RNG.uniform(size=(60, 3)) < 0.4).astype(float)
_CODES = _RNG.integers(0, 3, (60, 2)).astype(float)

ESTIMATORS = [
    (lambda e: emkit.GaussianMixture(2, random_state=0, engine=e), _GAUSS),
    (lambda e: emkit.GaussianMixture(2, covariance_type="diag", random_state=0, engine=e), _GAUSS),
    (lambda e: emkit.MixtureModel(n_components=2, random_state=0, engine=e), _GAUSS),
    (lambda e: emkit.PoissonMixture(2, random_state=0, engine=e), _COUNTS),
    (lambda e: emkit.BernoulliMixture(2, random_state=0, engine=e), _BINARY),
    (lambda e: emkit.CategoricalMixture(2, random_state=0, engine=e), _CODES),
    (lambda e: emkit.StudentTMixture(2, random_state=0, engine=e), _GAUSS),
    (lambda e: emkit.MixtureOfPPCA(2, n_factors=1, random_state=0, engine=e), _GAUSS),
    (lambda e: emkit.PPCA(1, random_state=0, engine=e), _GAUSS),
    (lambda e: emkit.FactorAnalysis(1, random_state=0, engine=e), _GAUSS),
    (lambda e: emkit.KMeans(2, random_state=0, n_init=1, engine=e), _GAUSS),
]
IDS = [
    "gm-full",
    "gm-diag",
    "mixture",
    "poisson",
    "bernoulli",
    "categorical",
    "student-t",
    "ppca-mixture",
    "ppca",
    "fa",
    "kmeans",
]


@pytest.mark.parametrize(("make", "X"), ESTIMATORS, ids=IDS)
def test_every_estimator_runs_on_the_engine_it_is_given(make: Any, X: np.ndarray) -> None:
    default = make(None).fit(X)
    engine = Recording()
    given = make(engine).fit(X)
    assert engine.starts, "the estimator did not use the engine it was given"
    assert set(engine.starts) <= set(range(0, X.shape[0], 7))
    np.testing.assert_allclose(given.score(X), default.score(X), rtol=1e-8)
    named = make("memory").fit(X)
    np.testing.assert_allclose(named.score(X), default.score(X), rtol=1e-12)


def test_chunks_carry_their_first_row_and_every_part_is_split_alike() -> None:
    X = np.arange(20.0).reshape(10, 2)
    w = np.arange(10.0)
    labels = np.arange(10) % 3
    cached = np.arange(10) * 100
    source = RowSource(X, w, labels, (cached, None))
    seen: list[tuple[int, ...]] = []

    def fn(rows: np.ndarray, weights: np.ndarray, col: np.ndarray, none: None, *, labels: Any):
        assert none is None
        assert (weights == rows[:, 0] / 2).all() and (col == weights * 100).all()
        assert (labels == weights.astype(int) % 3).all()
        seen.append(tuple(weights.astype(int)))
        return weights.sum()

    with InMemoryEngine(chunk_size=3, n_threads=2) as engine:
        assert engine.map_reduce(fn, source) == w.sum()
        starts = [c.start for c in engine._chunks(source)]
    assert starts == [0, 3, 6, 9]
    assert sorted(seen) == [(0, 1, 2), (3, 4, 5), (6, 7, 8), (9,)]
    # a block of a larger source keeps the whole's row numbers
    block = source.block(4, X[4:8])
    assert [c.start for c in InMemoryEngine(chunk_size=3)._chunks(block)] == [4, 7]
    np.testing.assert_array_equal(block.weights, w[4:8])


def test_map_rows_passes_rows_and_cached_columns_in_row_order() -> None:
    X = np.arange(12.0).reshape(6, 2)
    cached = np.arange(6.0)
    with StreamingEngine(chunk_size=4) as engine:  # rows in memory: mapped as in memory
        out = engine.map_rows(lambda rows, c: rows[:, 0] + c, RowSource(X, columns=(cached,)))
    np.testing.assert_array_equal(out, X[:, 0] + cached)
    whole = ReducedEngine().map_reduce(lambda stats: stats * 2, RowSource(np.ones(3)))
    np.testing.assert_array_equal(whole, np.full(3, 2.0))


@pytest.mark.parametrize("engine", ["dask-ish", 3, object()])
def test_an_unknown_engine_is_refused_with_the_choices(engine: Any) -> None:
    with pytest.raises(InputError, match=r"must be None, 'memory', 'streaming', 'dask' or an"):
        emkit.GaussianMixture(2, engine=engine).fit(_GAUSS)


def test_a_streamed_source_is_read_by_blocks_and_chunked_within_them(tmp_path: Any) -> None:
    from emkit.io import open_table

    X = np.arange(46.0).reshape(23, 2)
    np.save(tmp_path / "x.npy", X)
    table = open_table(tmp_path / "x.npy", block_rows=10)
    w = np.arange(23.0)
    starts: list[int] = []

    def fn(rows: np.ndarray, weights: np.ndarray, index: np.ndarray) -> np.ndarray:
        starts.append(int(index[0]))
        np.testing.assert_array_equal(rows[:, 0] / 2, weights)  # weights follow their rows
        return weights @ rows

    source = RowSource(table, w, columns=(RowIndex(23),))
    for engine in (InMemoryEngine(chunk_size=4, n_threads=1), StreamingEngine(4, 1)):
        starts.clear()
        np.testing.assert_array_equal(engine.map_reduce(fn, source), w @ X)
        # blocks of 10 rows, chunks of 4 within each: the chunk size is not ignored
        assert starts == [0, 4, 8, 10, 14, 18, 20]
    rows = InMemoryEngine().map_rows(lambda r: r[:, 1], table)
    np.testing.assert_array_equal(rows, X[:, 1])

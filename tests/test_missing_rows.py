"""Rows with missing values (NaN) in BayesianGaussianMixture, StudentTMixture and
ModelBasedClustering's hierarchical start, without whole-X copies: the binding and the
fill come from statistics passes, the start reads the rows in their order (filled a chunk
at a time, at most ``INIT_ROWS`` of them), EM reads them in pattern order through an
index (``PatternOrdered``), and the hierarchy fills only the rows it is built on."""

from __future__ import annotations

import pathlib
import warnings
from typing import Any

import numpy as np
import pytest

from emkit import (
    BayesianGaussianMixture,
    GaussianMixture,
    ModelBasedClustering,
    StudentTMixture,
)
from emkit.engines import InMemoryEngine
from emkit.estimators._rows import PatternOrdered, bind_pass, hc_start_tree, pattern_order
from emkit.exceptions import ConvergenceWarning
from emkit.families import Gaussian
from emkit.inference.hierarchical import hc_tree
from emkit.inference.init import init_random_source
from emkit.io import open_table


def _data(n: int = 240, d: int = 4, share: float = 0.15, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) + rng.normal(0, 4, (3, d))[rng.integers(0, 3, n)]
    X[rng.uniform(size=X.shape) < share] = np.nan
    return X[~np.isnan(X).all(axis=1)]


X = _data()
W = np.random.default_rng(1).integers(1, 4, len(X)).astype(np.float64)


def _filled(X: np.ndarray, w: np.ndarray | None) -> np.ndarray:
    """X with each missing value at its column's weighted mean, written out here."""
    observed = ~np.isnan(X)
    weights = np.ones(len(X)) if w is None else w
    means = (weights @ np.where(observed, X, 0.0)) / (weights @ observed)
    return np.where(observed, X, means)


ESTIMATORS: dict[str, tuple[Any, tuple[str, ...]]] = {
    "bgm": (
        lambda **kw: BayesianGaussianMixture(n_components=3, covariance_type="full", **kw),
        ("weights_", "means_", "covariances_", "mean_prior_", "covariance_prior_"),
    ),
    "student-t": (
        lambda **kw: StudentTMixture(3, covariance_type="full", **kw),
        ("weights_", "means_", "covariances_", "degrees_of_freedom_"),
    ),
}


def _make(name: str, **kw: Any) -> Any:
    options: dict[str, Any] = {"random_state": 0, "tol": 0.0, "max_iter": 4}
    return ESTIMATORS[name][0](**(options | kw))


def _same(a: Any, b: Any, name: str, tol: float = 1e-10) -> None:
    assert a.n_iter_ == b.n_iter_
    np.testing.assert_allclose(a.lower_bounds_, b.lower_bounds_, rtol=tol, atol=0)
    for attr in ESTIMATORS[name][1]:
        np.testing.assert_allclose(getattr(a, attr), getattr(b, attr), rtol=tol, atol=tol)


def _fit(model: Any, *args: Any, **kwargs: Any) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # a fixed number of iterations
        return model.fit(*args, **kwargs)


class _RecordingEngine(InMemoryEngine):
    """The in-memory engine, recording the rows every pass reads."""

    def __init__(self, chunk_size: int | None = None) -> None:
        super().__init__(chunk_size=chunk_size, n_threads=1)
        self.rows: list[Any] = []

    def map_reduce(self, fn: Any, source: Any) -> Any:
        self.rows.append(source.rows)
        return super().map_reduce(fn, source)


def test_the_fill_is_the_weighted_column_mean_where_weights_count_rows() -> None:
    """One fill for every estimator: a column's weighted mean of its observed values, so
    that integer weights fill as repeated rows do."""
    counts = W.astype(np.intp)
    repeated = np.repeat(X, counts, axis=0)
    with InMemoryEngine(chunk_size=50) as engine:
        _, missing, fill = bind_pass(Gaussian("full"), engine, X, W)
        _, _, fill_repeated = bind_pass(Gaussian("full"), engine, repeated, None)
    assert missing and fill is not None and fill_repeated is not None
    np.testing.assert_allclose(fill(X), _filled(X, W), rtol=1e-14)
    np.testing.assert_allclose(fill_repeated(X), fill(X), rtol=1e-14)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_em_reads_the_rows_through_the_pattern_order_and_no_copy(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Beyond ``INIT_ROWS`` rows, every pass reads X itself or X through the pattern
    order (an index), never a reordered or filled n x d copy; EM's passes read the
    pattern order. (Up to ``INIT_ROWS`` rows the start reads a filled copy of them.)"""
    monkeypatch.setattr("emkit.estimators._rows.INIT_ROWS", 128)
    engine = _RecordingEngine(chunk_size=50)
    _fit(_make(name, engine=engine), X, sample_weight=W)
    assert engine.rows, "the engine was not used"
    for rows in engine.rows:
        assert rows is X or (isinstance(rows, PatternOrdered) and rows.X is X), type(rows)
    ordered = [rows for rows in engine.rows if isinstance(rows, PatternOrdered)]
    assert ordered, "EM did not read the rows in pattern order"
    np.testing.assert_array_equal(ordered[0].order, pattern_order(X))


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_the_start_is_that_of_the_rows_filled_in_their_order(name: str) -> None:
    """The start (``max_iter=0``) reads the rows in the caller's order with missing values
    at their column's weighted mean: the start of those filled rows, as before."""
    start = _fit(_make(name, max_iter=0), X, sample_weight=W)
    filled = _fit(_make(name, max_iter=0), _filled(X, W), sample_weight=W)
    for attr in ESTIMATORS[name][1]:
        np.testing.assert_allclose(getattr(start, attr), getattr(filled, attr), rtol=1e-10)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_em_on_the_index_is_em_on_the_rows_reordered_by_hand(name: str) -> None:
    """From the same parameters, EM over X read through the pattern order gives what EM
    over a copy of X reordered by pattern gives (the earlier path)."""
    reordered = pattern_order(X)
    start = _fit(_make(name, max_iter=2), X, sample_weight=W)
    fits = []
    for rows, w in ((X, W), (X[reordered], W[reordered])):
        model = _make(name, max_iter=5, warm_start=True, chunk_size=64)
        for attr in vars(start):
            if attr.endswith("_") and not attr.startswith("_"):
                setattr(model, attr, getattr(start, attr))
        fits.append(_fit(model, rows, sample_weight=w))
    _same(fits[0], fits[1], name)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_chunks_and_threads_do_not_change_the_fit(name: str) -> None:
    one = _fit(_make(name), X, sample_weight=W)
    many = _fit(_make(name, chunk_size=37, n_threads=2), X, sample_weight=W)
    single = _fit(_make(name, chunk_size=37, n_threads=1), X, sample_weight=W)
    _same(one, many, name)
    _same(many, single, name, 1e-13)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_a_file_in_the_callers_order_gives_the_in_memory_fit(
    name: str, tmp_path: pathlib.Path
) -> None:
    """A streamed table keeps the file's order and fills each block as it is read; in
    memory EM reads the pattern order: the same start, the same fit up to round-off."""
    np.save(tmp_path / "x.npy", X)
    table = open_table(tmp_path / "x.npy", block_rows=64)
    memory = _fit(_make(name), X, sample_weight=W)
    streamed = _fit(_make(name), table, sample_weight=W)
    _same(memory, streamed, name)
    np.testing.assert_allclose(streamed.predict_proba(table), memory.predict_proba(X), atol=1e-10)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_dask_rows_with_missing_values_give_the_in_memory_fit(name: str) -> None:
    da = pytest.importorskip("dask.array")
    memory = _fit(_make(name), X, sample_weight=W)
    lazy = _fit(_make(name), da.from_array(X, chunks=(90, -1)), sample_weight=W)
    _same(memory, lazy, name)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_student_t_integer_weights_are_repeated_rows_with_missing_values(
    covariance_type: str,
) -> None:
    """From the same parameters, integer weights give the iterations of repeated rows."""
    data = _data(90, 3, 0.1, seed=3)
    counts = np.random.default_rng(4).integers(0, 3, len(data))
    repeated = np.repeat(data, counts, axis=0)
    kw: dict[str, Any] = {"covariance_type": covariance_type, "tol": 0.0, "random_state": 0}
    start = _fit(StudentTMixture(2, max_iter=2, **kw), repeated)
    fits = []
    for rows, w in ((repeated, None), (data, counts)):
        model = StudentTMixture(2, max_iter=6, warm_start=True, **kw)
        for attr in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
            setattr(model, attr, getattr(start, attr))
        model.degrees_of_freedom_ = start.degrees_of_freedom_
        model.precisions_ = start.precisions_
        fits.append(_fit(model, rows, sample_weight=w))
    np.testing.assert_allclose(fits[1].lower_bounds_, fits[0].lower_bounds_, rtol=1e-10)
    for attr in ("weights_", "means_", "covariances_", "degrees_of_freedom_"):
        np.testing.assert_allclose(getattr(fits[1], attr), getattr(fits[0], attr), rtol=1e-9)


@pytest.mark.parametrize(("n", "seed"), [(300, 0), (2300, 1)])
def test_the_hierarchy_fills_only_its_rows_and_is_the_filled_datas(n: int, seed: int) -> None:
    """ModelBasedClustering's start: hc on the rows it draws (every row up to 2000), their
    missing values at the column means over every row: the tree of the whole filled X."""
    data = _data(n, 3, 0.1, seed=seed)
    ours = hc_start_tree(data, init_random_source(seed))
    theirs = hc_tree(_filled(data, None), rng=init_random_source(seed))
    assert ours.n_samples == theirs.n_samples == data.shape[0]
    np.testing.assert_array_equal(ours.rows, theirs.rows)
    np.testing.assert_array_equal(ours.merges, theirs.merges)
    np.testing.assert_allclose(ours.cost, theirs.cost, rtol=1e-10)
    np.testing.assert_array_equal(ours.labels(4), theirs.labels(4))


def test_model_based_clustering_starts_missing_values_from_the_filled_hierarchy() -> None:
    """A cell's fit is EM from the whole filled X's hierarchy cut at its n_components."""
    data = _data(240, 2, 0.1, seed=5)
    mbc = ModelBasedClustering(n_components=[2, 3], covariance_types=["VVV"]).fit(data)
    tree = hc_tree(_filled(data, None), rng=init_random_source(None))
    for row, k in enumerate(mbc.results_["n_components"]):
        model = GaussianMixture(
            int(k), covariance_type="VVV", init_params="hc", tol=1e-5, max_iter=1000
        )
        model._hc_tree = tree  # type: ignore[attr-defined]  # (what the sweep sets)
        model.fit(data)
        assert float(model.score(data)) * len(data) == pytest.approx(
            mbc.results_["log_likelihood"][row], rel=1e-12
        )


def test_bgm_beyond_init_rows_starts_from_a_sample_as_a_streamed_file_does(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    """Complete rows too: beyond ``INIT_ROWS`` the start reads a uniform sample and
    labels every row a chunk at a time (no pass reads a copy of X), as the same rows
    streamed from a file do."""
    monkeypatch.setattr("emkit.estimators._rows.INIT_ROWS", 128)
    complete = np.nan_to_num(X, nan=0.25)
    engine = _RecordingEngine(chunk_size=50)
    memory = _fit(_make("bgm", engine=engine), complete, sample_weight=W)
    assert engine.rows and all(rows is complete for rows in engine.rows)
    np.save(tmp_path / "x.npy", complete)
    streamed = _fit(_make("bgm"), open_table(tmp_path / "x.npy", block_rows=64), sample_weight=W)
    _same(memory, streamed, "bgm")


def test_model_based_clusterings_column_scales_of_many_rows_are_read_by_blocks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Beyond a block of rows the columns' standard deviations are merged from blocks
    (no whole-X temporaries): numpy's nanstd to round-off."""
    from emkit.estimators import selection

    monkeypatch.setattr(selection, "_STD_ROWS", 64)
    np.testing.assert_allclose(selection._column_scale(X), np.nanstd(X, axis=0), rtol=1e-12)
    constant = np.column_stack([X[:, 0], np.full(len(X), 3.0)])
    assert selection._column_scale(constant)[1] == 1.0

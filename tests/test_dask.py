"""Fitting Dask arrays and DataFrames (the Dask engine, on Dask's local schedulers): the
in-memory model to 1e-10, predictions that stay Dask arrays, and clear errors for bad input
before any EM iteration. A real cluster, and a worker lost mid-fit: test_dask_distributed.py."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

da = pytest.importorskip("dask.array")
dd = pytest.importorskip("dask.dataframe")

import dask  # noqa: E402

import emkit  # noqa: E402
import emkit.engines.dask as dask_module  # noqa: E402
import emkit.estimators._rows as rows_module  # noqa: E402
from emkit import GaussianMixture, InputError, MixtureModel  # noqa: E402
from emkit.engines import DaskEngine, RowIndex, RowSource  # noqa: E402

RNG = np.random.default_rng(0)
X = np.vstack([RNG.normal(0, 1, (300, 3)), RNG.normal(5, 2, (400, 3))])
KW: dict[str, Any] = {"random_state": 0, "tol": 1e-8}


def _assert_same_model(a: GaussianMixture, b: GaussianMixture, tol: float = 1e-10) -> None:
    assert a.n_iter_ == b.n_iter_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=0, atol=tol)
    # the first objective is the start's; with covariances at reg_covar (seeds) it is near
    # -1e6 per sample, its round-off as large
    np.testing.assert_allclose(b.lower_bounds_[0], a.lower_bounds_[0], rtol=1e-8)
    np.testing.assert_allclose(b.lower_bounds_[1:], a.lower_bounds_[1:], rtol=tol, atol=tol)


def _frame(data: np.ndarray, npartitions: int = 3) -> Any:
    names = ["a", "b", "c"][: data.shape[1]]
    return dd.from_pandas(pd.DataFrame(data, columns=names), npartitions=npartitions)


@pytest.fixture(autouse=True)
def _threads() -> Any:
    with dask.config.set(scheduler="threads"):
        yield


@pytest.mark.parametrize("kind", ["array", "dataframe"])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied", "spherical"])
def test_a_dask_fit_is_the_in_memory_fit(kind: str, covariance_type: str) -> None:
    Xd = da.from_array(X, chunks=(128, 2)) if kind == "array" else _frame(X)
    kw = {**KW, "covariance_type": covariance_type}
    memory = GaussianMixture(2, **kw).fit(X)
    fitted = GaussianMixture(2, **kw).fit(Xd)  # the Dask engine, chosen by itself
    _assert_same_model(memory, fitted)
    labels = fitted.predict(Xd)
    proba = fitted.predict_proba(Xd)
    density = fitted.score_samples(Xd)
    # predictions of Dask rows are Dask arrays, block for block
    assert isinstance(labels, da.Array) and isinstance(proba, da.Array)
    assert labels.chunks[0] == proba.chunks[0] == density.chunks[0]
    assert proba.shape == (X.shape[0], 2) and labels.dtype == memory.predict(X).dtype
    np.testing.assert_array_equal(labels.compute(), memory.predict(X))
    np.testing.assert_allclose(proba.compute(), memory.predict_proba(X), atol=1e-10)
    np.testing.assert_allclose(density.compute(), memory.score_samples(X), atol=1e-10)
    assert fitted.score(Xd) == pytest.approx(memory.score(X), abs=1e-10)
    assert fitted.bic(Xd) == pytest.approx(memory.bic(X), rel=1e-12)
    assert fitted.aic(Xd) == pytest.approx(memory.aic(X), rel=1e-12)
    if kind == "dataframe":
        assert list(fitted.feature_names_in_) == ["a", "b", "c"]
        # the fitted model predicts the same table in memory
        frame = pd.DataFrame(X, columns=["a", "b", "c"])
        np.testing.assert_array_equal(fitted.predict(frame), memory.predict(X))


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_initialization_with_weights(init_params: str) -> None:
    w = RNG.uniform(0.5, 2.0, X.shape[0])
    kw = {**KW, "init_params": init_params, "random_state": 1}
    memory = GaussianMixture(2, **kw).fit(X, sample_weight=w)
    fitted = GaussianMixture(2, **kw).fit(da.from_array(X, chunks=100), sample_weight=w)
    _assert_same_model(memory, fitted)


@pytest.mark.parametrize("init_params", ["kmeans", "random"])
def test_beyond_the_sample_bound_no_whole_array_reaches_the_client(
    monkeypatch: pytest.MonkeyPatch, init_params: str
) -> None:
    """Past INIT_ROWS rows, k-means runs on a sample gathered by Dask and the initial
    statistics are summed on the workers: the client never holds the whole array."""
    monkeypatch.setattr(rows_module, "INIT_ROWS", 150)
    kw = {**KW, "init_params": init_params}
    memory = GaussianMixture(2, **kw).fit(X)
    sampled: list[int] = []
    take_rows = dask_module.DaskRows.take_rows

    def spy(self: Any, indices: Any) -> Any:
        sampled.append(len(indices))
        return take_rows(self, indices)

    def refuse(self: Any) -> Any:
        raise AssertionError("the whole array was brought to the client")

    monkeypatch.setattr(dask_module.DaskRows, "take_rows", spy)
    monkeypatch.setattr(dask_module.DaskRows, "read", refuse)
    monkeypatch.setattr(dask_module.DaskRows, "iter_chunks", refuse)
    fitted = GaussianMixture(2, **kw).fit(da.from_array(X, chunks=(64, 3)))
    _assert_same_model(memory, fitted)
    assert sampled == ([150] if init_params == "kmeans" else [])


def test_missing_values_are_fitted_in_row_order() -> None:
    Xm = X.copy()
    Xm[RNG.uniform(size=X.shape) < 0.1] = np.nan
    # the same start (in memory, rows are reordered by their missing pattern first)
    start = GaussianMixture(2, random_state=0, max_iter=1, tol=0).fit(X)
    kw: dict[str, Any] = {
        "weights_init": start.weights_,
        "means_init": start.means_,
        "precisions_init": start.precisions_,
        "tol": 1e-8,
    }
    memory = GaussianMixture(2, **kw).fit(Xm)
    fitted = GaussianMixture(2, **kw).fit(da.from_array(Xm, chunks=(90, 3)))
    _assert_same_model(memory, fitted, tol=1e-9)
    Xd = da.from_array(Xm, chunks=(90, 3))
    np.testing.assert_allclose(fitted.score_samples(Xd).compute(), memory.score_samples(Xm))
    np.testing.assert_allclose(fitted.impute(Xd).compute(), memory.impute(Xm), atol=1e-9)


def test_float32_and_integer_arrays() -> None:
    X32 = X.astype(np.float32)
    memory = GaussianMixture(2, **KW).fit(X32)
    fitted = GaussianMixture(2, **KW).fit(da.from_array(X32, chunks=200))
    assert fitted.means_.dtype == np.float32
    np.testing.assert_allclose(fitted.means_, memory.means_, rtol=1e-5)
    proba = fitted.predict_proba(da.from_array(X32, chunks=200))
    assert proba.dtype == np.float32 and proba.compute().dtype == np.float32
    counts = np.round(X * 10).astype(np.int64)
    memory = GaussianMixture(2, **KW).fit(counts)
    fitted = GaussianMixture(2, **KW).fit(da.from_array(counts, chunks=150))
    _assert_same_model(memory, fitted)


def test_every_way_to_name_the_engine_gives_the_same_model() -> None:
    memory = GaussianMixture(2, **KW).fit(X)
    Xd = da.from_array(X, chunks=(250, 3))
    # 'dask' on rows in memory: blocks of chunk_size rows; predictions in memory
    named = GaussianMixture(2, engine="dask", chunk_size=100, **KW).fit(X)
    _assert_same_model(memory, named)
    labels = named.predict(X)
    assert isinstance(labels, np.ndarray)
    np.testing.assert_array_equal(labels, memory.predict(X))
    # an engine object, rechunking the rows
    given = GaussianMixture(2, engine=DaskEngine(chunk_size=64, split_every=2), **KW).fit(Xd)
    _assert_same_model(memory, given)
    assert given.predict(Xd).chunks[0][:2] == (64, 64)
    # the in-memory engine computes the Dask blocks one at a time in this process
    local = GaussianMixture(2, engine="memory", **KW).fit(Xd)
    _assert_same_model(memory, local)
    np.testing.assert_array_equal(local.predict(Xd), memory.predict(X))
    # fit_predict keeps a Dask array a Dask array
    assert isinstance(GaussianMixture(2, **KW).fit_predict(Xd), da.Array)


def test_the_synchronous_scheduler_and_persisting_locally() -> None:
    memory = GaussianMixture(2, **KW).fit(X)
    with dask.config.set(scheduler="synchronous"):
        fitted = GaussianMixture(2, engine=DaskEngine(persist=True), **KW).fit(
            da.from_array(X, chunks=(100, 3))
        )
    _assert_same_model(memory, fitted)


def test_the_engine_aligns_every_per_row_value_with_the_blocks() -> None:
    rows = da.from_array(np.arange(40.0).reshape(20, 2), chunks=(6, 1))
    w = np.arange(20.0)
    labels = np.arange(20) % 3
    cached = da.from_array(np.arange(20) * 100, chunks=7)  # other blocks: rechunked
    seen: list[int] = []

    def fn(X: Any, weights: Any, col: Any, index: Any, none: None, *, labels: Any) -> Any:
        assert none is None and X.shape[1] == 2
        np.testing.assert_array_equal(weights, X[:, 0] / 2)
        np.testing.assert_array_equal(col, weights * 100)
        np.testing.assert_array_equal(index, weights)
        np.testing.assert_array_equal(labels, weights.astype(int) % 3)
        seen.append(int(index[0]))
        return weights @ X

    source = RowSource(rows, w, labels, (cached, RowIndex(20), None))
    with DaskEngine(split_every=2) as engine:
        total = engine.map_reduce(fn, source)
        out = engine.map_rows(lambda X, col: X[:, 0] + col, RowSource(rows, columns=(cached,)))
    np.testing.assert_allclose(total, w @ np.arange(40.0).reshape(20, 2))
    assert sorted(seen) == [0, 6, 12, 18]
    assert isinstance(out, da.Array) and out.chunks == ((6, 6, 6, 2),)
    np.testing.assert_array_equal(out.compute(), np.arange(0.0, 40.0, 2) + np.arange(20) * 100)


@pytest.mark.parametrize(
    "make",
    [
        lambda e: MixtureModel(n_components=2, random_state=0, engine=e),
        lambda e: emkit.StudentTMixture(2, random_state=0, engine=e),
        lambda e: emkit.PPCA(1, random_state=0, engine=e),
    ],
    ids=["mixture", "student-t", "ppca"],
)
def test_other_estimators_run_on_the_dask_engine_with_rows_in_memory(make: Any) -> None:
    default = make(None).fit(X)
    named = make("dask").fit(X)
    assert named.score(X) == pytest.approx(default.score(X), rel=1e-12)


# -- bad input: named, with the fix, before any EM iteration ---------------------------


def test_unknown_chunk_sizes_are_refused_with_the_fix() -> None:
    Xd = da.from_array(X, chunks=(100, 3))
    subset = Xd[Xd[:, 0] > 0]  # boolean indexing: NaN chunk sizes
    with pytest.raises(InputError, match=r"unknown chunk sizes .*compute_chunk_sizes\(\)"):
        GaussianMixture(2).fit(subset)
    fitted = GaussianMixture(2, **KW).fit(subset.compute_chunk_sizes())  # (in place)
    assert fitted.n_features_in_ == 3
    with pytest.raises(InputError, match=r"unknown chunk sizes"):
        fitted.predict(Xd[Xd[:, 1] > 0])


def test_non_numeric_dataframe_columns_are_named_with_the_fix() -> None:
    frame = pd.DataFrame({"a": X[:, 0], "kind": ["x", "y"] * 350, "c": X[:, 2]})
    ddf = dd.from_pandas(frame, npartitions=2)
    with pytest.raises(InputError, match=r"non-numeric columns: 'kind' .*select_dtypes"):
        GaussianMixture(2).fit(ddf)
    fitted = GaussianMixture(2, **KW).fit(ddf.select_dtypes("number"))
    assert list(fitted.feature_names_in_) == ["a", "c"]


def test_a_block_with_other_columns_is_named() -> None:
    from dask import delayed

    good = da.from_array(X[:350], chunks=(350, 3))
    # a block whose rows have 4 columns while the array declares 3
    bad = da.from_delayed(delayed(np.ones)((350, 4)), shape=(350, 3), dtype=float)
    gm = GaussianMixture(2)
    with pytest.raises(InputError, match=r"Block 1 of X \(rows 350 to 699\) .*shape \(350, 4\)"):
        gm.fit(da.concatenate([good, bad]))
    assert not hasattr(gm, "weights_")


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: da.from_array(X[:, 0], chunks=100), r"must be a 2-D dask array .*reshape"),
        (lambda: _frame(X)["a"], r"is a dask Series.*to_frame\(\)"),
        (lambda: da.from_array(X.astype(str), chunks=100), r"non-numeric values \(dtype <U"),
        (lambda: da.zeros((0, 3), chunks=10), r"shape \(0, 3\); a fit needs at least one"),
    ],
)
def test_other_bad_dask_inputs(make: Any, match: str) -> None:
    with pytest.raises(InputError, match=match):
        GaussianMixture(2).fit(make())


def test_a_fitted_model_refuses_other_features() -> None:
    fitted = GaussianMixture(2, **KW).fit(da.from_array(X, chunks=200))
    with pytest.raises(ValueError, match=r"X has 2 features, but GaussianMixture is expecting 3"):
        fitted.predict(da.from_array(X[:, :2], chunks=200))


def test_unsupported_combinations_are_refused() -> None:
    Xd = da.from_array(X, chunks=200)
    with pytest.raises(InputError, match=r"n_threads=2 sets the in-memory engine's threads"):
        GaussianMixture(2, engine="dask", n_threads=2).fit(Xd)
    y = np.full(X.shape[0], -1)
    y[:3] = 0
    with pytest.raises(InputError, match=r"semi_supervised=True .*X is a Dask collection"):
        GaussianMixture(2, semi_supervised=True).fit(Xd, y)


def test_a_file_table_is_refused_by_the_dask_engine(tmp_path: Any) -> None:
    from emkit.io import open_table

    np.save(tmp_path / "x.npy", X)
    table = open_table(tmp_path / "x.npy")
    with pytest.raises(InputError, match=r"streamed from a file by this process.*read_parquet"):
        GaussianMixture(2, engine="dask").fit(table)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"persist": "yes"}, r"persist must be True, False or None, got 'yes'"),
        ({"split_every": 1}, r"split_every must be an integer >= 2, got 1"),
        ({"chunk_size": 0}, r"chunk_size must be a positive integer or None, got 0"),
    ],
)
def test_bad_engine_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InputError, match=match):
        DaskEngine(**kwargs)


BENCH = __import__("pathlib").Path(__file__).resolve().parents[1] / "bench" / "bench_dask.py"


@pytest.mark.slow  # a benchmark smoke run (no timing asserted)
@pytest.mark.skipif(not BENCH.exists(), reason="needs the source tree")
def test_bench_quick_run_reports_the_same_model(tmp_path: Any) -> None:
    import json
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    args = ["--rows", "20000", "--block-rows", "5000", "--iters", "2", "--local"]
    result = subprocess.run(
        [sys.executable, str(BENCH), *args, "--json", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(out.read_text())
    assert report["blocks"] == 4 and report["memory_s_per_iter"] > 0
    (run,) = report["dask"]
    assert run["same_n_iter"] and run["max_abs_mean_difference"] < 1e-10
    assert run["ratio"] == pytest.approx(run["dask_s_per_iter"] / report["memory_s_per_iter"])


def test_a_block_task_reuses_memory_under_a_malloc_threshold_and_restores_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Under MALLOC_TRIM_THRESHOLD_ (distributed's workers), a block's task holds glibc's
    own thresholds (temporaries reused, not mmapped afresh), then restores the worker's
    settings and trims; without one set, the task leaves malloc alone."""
    calls: list[tuple[int, int]] = []
    monkeypatch.setattr(
        dask_module, "_mallopt", lambda: lambda param, value: calls.append((param, value)) or 1
    )
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_", raising=False)
    memory = GaussianMixture(2, **KW).fit(X)
    GaussianMixture(2, **KW).fit(da.from_array(X, chunks=200))
    assert calls == []
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    with dask.config.set(scheduler="synchronous"):  # one task at a time: calls in order
        fitted = GaussianMixture(2, **KW).fit(da.from_array(X, chunks=200))
    _assert_same_model(memory, fitted)
    trim, mmap = -1, -3  # mallopt's M_TRIM_THRESHOLD, M_MMAP_THRESHOLD
    held = [(mmap, 32 << 20), (trim, 64 << 20)]
    restored = [(trim, 65536), (mmap, 128 << 10)]
    assert len(calls) >= 4 and len(calls) % 4 == 0
    assert calls == (held + restored) * (len(calls) // 4)

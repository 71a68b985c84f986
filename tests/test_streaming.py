"""Fitting tables streamed from files (emkit.io.open_table): the same model as in memory,
a block of rows at a time, and clear errors for bad files before anything is fitted."""

from __future__ import annotations

import pathlib
from typing import Any

import numpy as np
import pandas as pd
import pytest

import emkit.estimators._rows as rows_module
import emkit.estimators.gaussian_mixture as gaussian_mixture
import emkit.models._small_block as small_block
from emkit import GaussianMixture, InputError
from emkit.io import ChunkedTable, open_table

RNG = np.random.default_rng(0)
X = np.vstack([RNG.normal(0, 1, (300, 3)), RNG.normal(5, 2, (400, 3))])


def _write(path: pathlib.Path, data: np.ndarray) -> pathlib.Path:
    frame = pd.DataFrame(data, columns=["a", "b", "c"][: data.shape[1]])
    if path.suffix == ".npy":
        np.save(path, data)
    elif path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False, sep="\t" if path.suffix == ".tsv" else ",")
    return path


def _assert_same_model(a: GaussianMixture, b: GaussianMixture, tol: float = 1e-10) -> None:
    assert a.n_iter_ == b.n_iter_
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=0, atol=tol)
    # the first objective is that of the start, which for seeds (k-means++) has covariances
    # at reg_covar: a per-sample log-likelihood near -1e6, its round-off as large
    np.testing.assert_allclose(b.lower_bounds_[0], a.lower_bounds_[0], rtol=1e-8)
    np.testing.assert_allclose(b.lower_bounds_[1:], a.lower_bounds_[1:], rtol=tol, atol=tol)


@pytest.mark.parametrize("spill", ["auto", False])
@pytest.mark.parametrize("suffix", [".npy", ".parquet", ".csv", ".tsv"])
@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied", "spherical"])
def test_a_streamed_fit_is_the_in_memory_fit(
    tmp_path: pathlib.Path, suffix: str, covariance_type: str, spill: Any
) -> None:
    table = open_table(_write(tmp_path / f"x{suffix}", X), block_rows=128, spill=spill)
    assert isinstance(table, ChunkedTable) and table.shape == X.shape
    assert (table.spill is not None) == (spill == "auto" and suffix != ".npy")
    kw: dict[str, Any] = {"covariance_type": covariance_type, "random_state": 0, "tol": 1e-8}
    memory = GaussianMixture(2, **kw).fit(X)
    streamed = GaussianMixture(2, **kw).fit(table)
    _assert_same_model(memory, streamed)
    np.testing.assert_allclose(streamed.predict_proba(table), memory.predict_proba(X), atol=1e-10)
    np.testing.assert_array_equal(streamed.predict(table), memory.predict(X))
    assert streamed.score(table) == pytest.approx(memory.score(X), abs=1e-10)
    assert streamed.bic(table) == pytest.approx(memory.bic(X), rel=1e-12)


@pytest.mark.parametrize("init_params", ["kmeans", "k-means++", "random", "random_from_data"])
def test_every_initialization_streams_with_weights(
    tmp_path: pathlib.Path, init_params: str
) -> None:
    table = open_table(_write(tmp_path / "x.npy", X), block_rows=100)
    w = RNG.uniform(0.5, 2.0, X.shape[0])
    kw: dict[str, Any] = {"init_params": init_params, "random_state": 1, "tol": 1e-8}
    memory = GaussianMixture(2, **kw).fit(X, sample_weight=w)
    streamed = GaussianMixture(2, **kw).fit(table, sample_weight=w)
    _assert_same_model(memory, streamed)


def test_missing_values_stream_in_file_order(tmp_path: pathlib.Path) -> None:
    Xm = X.copy()
    Xm[RNG.uniform(size=X.shape) < 0.1] = np.nan
    table = open_table(_write(tmp_path / "x.csv", Xm), block_rows=90)
    # the same start (in memory, rows are reordered by their missing pattern first)
    start = GaussianMixture(2, random_state=0, max_iter=1, tol=0).fit(X)
    kw: dict[str, Any] = {
        "weights_init": start.weights_,
        "means_init": start.means_,
        "precisions_init": start.precisions_,
        "tol": 1e-8,
    }
    memory = GaussianMixture(2, **kw).fit(Xm)
    streamed = GaussianMixture(2, **kw).fit(table)
    _assert_same_model(memory, streamed, tol=1e-9)
    np.testing.assert_allclose(streamed.score_samples(table), memory.score_samples(Xm), atol=1e-9)


def test_beyond_the_sample_bound_memory_and_file_start_from_the_same_sample(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past INIT_ROWS rows, k-means runs on a uniform sample and every row is labelled by
    its nearest center a chunk at a time: in memory and streamed alike."""
    table = open_table(_write(tmp_path / "x.parquet", X), block_rows=64)
    exact = GaussianMixture(2, random_state=0, tol=1e-8).fit(X)
    monkeypatch.setattr(rows_module, "INIT_ROWS", 150)
    memory = GaussianMixture(2, random_state=0, tol=1e-8).fit(X)
    streamed = GaussianMixture(2, random_state=0, tol=1e-8).fit(table)
    _assert_same_model(memory, streamed)
    # the sampled start reaches the exact start's optimum on separated clusters
    np.testing.assert_allclose(
        np.sort(memory.means_, axis=0), np.sort(exact.means_, axis=0), atol=1e-6
    )


def test_a_table_with_other_columns_is_refused_by_a_fitted_model(tmp_path: pathlib.Path) -> None:
    gm = GaussianMixture(2, random_state=0).fit(X)
    table = open_table(_write(tmp_path / "x.npy", X[:, :2]))
    with pytest.raises(InputError, match=r"X has 2 features, but GaussianMixture is expecting 3"):
        gm.predict(table)


def test_columns_select_what_is_streamed(tmp_path: pathlib.Path) -> None:
    table = open_table(_write(tmp_path / "x.parquet", X), columns=["c", "a"], block_rows=50)
    assert table.names == ["c", "a"]
    np.testing.assert_array_equal(table.read(), X[:, [2, 0]])
    starts = [start for start, _ in table.iter_chunks()]
    assert starts == list(range(0, X.shape[0], 50))


# -- bad input: named file, named row, before any fit ------------------------------------


def test_missing_and_unknown_files_are_refused(tmp_path: pathlib.Path) -> None:
    with pytest.raises(InputError, match=r"nope.csv' does not exist. Check the path"):
        open_table(tmp_path / "nope.csv")
    with pytest.raises(InputError, match=r"is a directory"):
        open_table(tmp_path / "dir.npy").shape if (tmp_path / "dir.npy").mkdir() is None else None
    (tmp_path / "x.xlsx").write_text("")
    with pytest.raises(InputError, match=r"unknown file type '.xlsx'.*\.npy, \.parquet, \.csv"):
        open_table(tmp_path / "x.xlsx")
    with pytest.raises(InputError, match=r"block_rows must be a positive integer or None, got 0"):
        open_table(_write(tmp_path / "x.npy", X), block_rows=0)


@pytest.mark.parametrize("suffix", [".npy", ".parquet"])
def test_a_truncated_binary_file_is_refused(tmp_path: pathlib.Path, suffix: str) -> None:
    path = _write(tmp_path / f"x{suffix}", X)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=rf"x\{suffix}' is not a .*truncated"):
        open_table(path)


def test_a_row_with_other_fields_in_the_middle_names_its_line(tmp_path: pathlib.Path) -> None:
    lines = ["a,b,c"] + [f"{i},{i + 1},{i + 2}" for i in range(5000)]
    lines[3001] = "7,8"
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"x.csv' has 2 fields at line 3002 \(data row 3001\)"):
        open_table(path)


def test_a_truncated_text_file_names_its_last_line(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a,b,c\n1,2,3\n4,5,6\n7,8")
    with pytest.raises(InputError, match=r"2 fields at line 4 \(data row 3\).*truncated file"):
        open_table(path)


def test_a_non_numeric_cell_in_the_middle_names_its_row_and_column(tmp_path: pathlib.Path) -> None:
    lines = ["a,b,c"] + [f"{i},{i + 1},{i + 2}" for i in range(5000)]
    lines[4000] = "1,oops,3"
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        InputError, match=r"non-numeric value 'oops' at line 4001 \(data row 4000\), column 'b'"
    ):
        open_table(path)
    # a column left out is not read
    assert open_table(path, columns=["a", "c"]).shape == (5000, 2)


def test_a_parquet_column_neither_numbers_nor_text_is_refused_with_the_fix(
    tmp_path: pathlib.Path,
) -> None:
    # (text columns read as categories: tests/test_streaming_text.py)
    path = tmp_path / "x.parquet"
    when = pd.to_datetime(["2024-01-01", "2024-01-02"])
    pd.DataFrame({"a": [1.0, 2.0], "when": when}).to_parquet(path)
    with pytest.raises(
        InputError, match=r"column 'when' \(position 1\) of type timestamp.*columns=\.\.\."
    ):
        open_table(path)
    assert open_table(path, columns=["a"]).shape == (2, 1)


def test_a_file_changed_while_it_is_read_is_reported(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "x.npy", X)
    table = open_table(path)
    np.save(path, X[:10])
    with pytest.raises(InputError, match=r"changed while it was read: it had 700 data rows"):
        GaussianMixture(2).fit(table)


# -- the command line ----------------------------------------------------------------------


def test_emkit_fit_stream_writes_what_the_in_memory_fit_writes(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from emkit.cli import main

    # digit for digit: the in-memory fit by the Python step, start and final pass, as the
    # streamed one runs (the compiled blocks, starts and passes of small fits equal them
    # to round-off: tests/test_small_em.py, tests/test_selection_pass.py)
    monkeypatch.setattr(small_block, "_SMALL_EM", False)
    monkeypatch.setattr(small_block, "_COMPILED_START", False)
    monkeypatch.setattr(gaussian_mixture, "_COMPILED_PASS", False)

    path = _write(tmp_path / "x.parquet", X)
    common = [str(path), "--components", "1-2", "--no-plot"]
    assert main(["fit", *common, "--stream", "--out", str(tmp_path / "s")]) == 0
    assert main(["fit", *common, "--out", str(tmp_path / "m")]) == 0
    for name in ("summary.csv", "labels.csv"):
        assert (tmp_path / "s" / name).read_text() == (tmp_path / "m" / name).read_text()
    capsys.readouterr()
    out = tmp_path / "p"
    assert main(["fit", str(path), "--stream", "--family", "poisson", "--out", str(out)]) == 2
    assert "Column 'a' holds 0.12573; the poisson family needs counts" in capsys.readouterr().err
    assert not out.exists()
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,x\n")
    assert main(["fit", str(bad), "--stream", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "non-numeric value 'x' at line 3 (data row 2), column 'b'" in err
    assert "read the table into memory with --no-stream" in err
    assert not (tmp_path / "o").exists()  # nothing written


@pytest.mark.slow  # a benchmark smoke run: deselect with -m "not slow"
def test_memory_bench_quick_run_reports_memory_and_stream(tmp_path: pathlib.Path) -> None:
    import json
    import os
    import subprocess
    import sys

    bench = pathlib.Path(__file__).resolve().parents[1] / "bench" / "bench_memory.py"
    report = tmp_path / "memory.json"
    src = str(pathlib.Path(__file__).resolve().parents[1] / "src")
    subprocess.run(
        [
            sys.executable,
            str(bench),
            "--quick",
            "--workloads",
            "0",
            "--stream",
            "--json",
            str(report),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": src},
        timeout=300,
    )
    rows = json.loads(report.read_text())
    assert [row["how"] for row in rows] == ["memory", "stream"]
    assert all(row["rss_growth_bytes"] > 0 and row["traced_peak_bytes"] > 0 for row in rows)
    # the same data, fitted in memory and from the file: the same model
    assert rows[0]["lower_bound"] == pytest.approx(rows[1]["lower_bound"], abs=1e-10)


# -- priors on streamed tables and in partial_fit ---------------------------------------------


@pytest.mark.parametrize("prior", ["mclust", "auto"])
@pytest.mark.parametrize("covariance_type", ["full", "VEI"])
def test_a_prior_streams_to_the_in_memory_fit(
    tmp_path: pathlib.Path, prior: str, covariance_type: str
) -> None:
    """The prior's data defaults (the mean, the covariance for its scale) come from the
    statistics pass over the blocks: the same MAP fit as in memory, NaN and weights too."""
    data = X.copy()
    data[[5, 300, 301], [0, 2, 1]] = np.nan
    w = RNG.uniform(0.5, 2.0, data.shape[0])
    path = _write(tmp_path / "x.npy", data)
    table = open_table(path, block_rows=64)
    options: dict[str, Any] = {"covariance_type": covariance_type, "prior": prior}
    options.update(random_state=0, tol=0.0, max_iter=10)
    memory = GaussianMixture(2, **options).fit(data, sample_weight=w)
    streamed = GaussianMixture(2, **options).fit(table, sample_weight=w)
    _assert_same_model(memory, streamed)
    assert streamed.bic(table) == pytest.approx(memory.bic(data), rel=1e-12)


def test_model_based_clustering_takes_a_prior_on_a_streamed_table(tmp_path: pathlib.Path) -> None:
    from emkit import ModelBasedClustering

    table = open_table(_write(tmp_path / "x.npy", X), block_rows=100)
    options: dict[str, Any] = {"n_components": [1, 2], "covariance_types": ["EII", "VVV"]}
    options.update(prior="mclust", random_state=0)
    memory = ModelBasedClustering(**options).fit(X)
    streamed = ModelBasedClustering(**options).fit(table)
    np.testing.assert_allclose(
        np.asarray(streamed.results_["bic"], dtype=float),
        np.asarray(memory.results_["bic"], dtype=float),
        rtol=1e-10,
    )
    assert streamed.best_index_ == memory.best_index_


@pytest.mark.parametrize("prior", ["mclust", None])
def test_partial_fit_with_a_prior_is_map_online_em(prior: str | None) -> None:
    """With learning_decay=0 a partial_fit on the whole data is one EM step: with a prior,
    the MAP step (the prior enters the M-step) that one more iteration of fit takes."""
    options: dict[str, Any] = {"prior": prior, "random_state": 0, "tol": 0.0}
    five = GaussianMixture(2, max_iter=5, learning_decay=0.0, **options).fit(X)
    six = GaussianMixture(2, max_iter=6, **options).fit(X)
    five.partial_fit(X)
    np.testing.assert_allclose(five.means_, six.means_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(five.covariances_, six.covariances_, rtol=0, atol=1e-10)


def test_partial_fit_with_a_prior_starts_from_the_first_batch() -> None:
    """An unfitted estimator's first partial_fit binds the prior's defaults on its batch,
    as fit on that batch does; its second is a MAP step with those defaults."""
    first, second = X[::2], X[1::2]
    online = GaussianMixture(2, prior="mclust", random_state=0, learning_decay=0.0)
    online.partial_fit(first)
    start = GaussianMixture(2, prior="mclust", random_state=0, max_iter=1, tol=0.0).fit(first)
    np.testing.assert_allclose(online.means_, start.means_, rtol=0, atol=1e-10)
    online.partial_fit(second)
    assert online._bound_prior[0].mean == pytest.approx(first.mean(axis=0), rel=1e-12)
    plain = GaussianMixture(2, random_state=0, learning_decay=0.0)
    plain.partial_fit(first)
    plain.partial_fit(second)
    assert not np.allclose(plain.covariances_, online.covariances_, rtol=1e-8)


def test_partial_fit_of_a_loaded_model_with_a_prior_says_what_to_do(tmp_path: pathlib.Path) -> None:
    from emkit import load_model, save_model

    save_model(GaussianMixture(2, prior="mclust", random_state=0).fit(X), tmp_path / "m.npz")
    loaded = load_model(tmp_path / "m.npz")
    with pytest.raises(InputError, match=r"partial_fit continues this model with prior='mclust'"):
        loaded.partial_fit(X)

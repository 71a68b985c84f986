"""Text columns of streamed CSV and Parquet files (:func:`emkit.io.open_table`): read as
the codes of their sorted categories, equal to the table read whole whatever the blocks,
fitted and predicted as the in-memory model does, and the bad inputs refused clearly."""

from __future__ import annotations

import importlib
import pathlib
import re
from typing import Any

import numpy as np
import pandas as pd
import pytest

from emkit import GaussianMixture, InputError, MixtureModel
from emkit.cli import main
from emkit.families import Categorical, Gaussian, Poisson, Product
from emkit.io import open_table
from emkit.io.tables import read_columns

open_table_module = importlib.import_module("emkit.io.open_table")
N = 900


def _frame(seed: int = 0) -> pd.DataFrame:
    """Two clusters: a measurement and a count with missing values, and a country column
    whose values come in another order than sorted, with spaces around some, missing
    cells written several ways, and a value that looks like a number."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, N)
    country = np.where(
        z == 0, rng.choice(["it", "US", " FR"], N), rng.choice(["DE", "FR ", "10", "US"], N)
    ).astype(object)
    country[rng.uniform(size=N) < 0.06] = ""
    country[rng.uniform(size=N) < 0.03] = "NA"
    country[rng.uniform(size=N) < 0.03] = " n/a"
    size = rng.normal(np.where(z == 0, 0.0, 4.0), 1.0)
    size[rng.uniform(size=N) < 0.05] = np.nan
    return pd.DataFrame(
        {"size": size, "country": country, "visits": rng.poisson(np.where(z == 0, 1, 6))}
    )


def _write(frame: pd.DataFrame, path: pathlib.Path) -> pathlib.Path:
    if path.suffix == ".parquet":
        frame.to_parquet(path, row_group_size=200)  # a dictionary of its own a row group
    else:
        frame.to_csv(path, index=False)
    return path


def _whole_codes(path: pathlib.Path) -> tuple[np.ndarray, list[str]]:
    """The table read whole, its text column made a pandas category column: the codes
    (NaN for missing) and the categories, as the in-memory CLI and MixtureModel see them."""
    table = read_columns(path)
    assert table.kinds == ["float", "text", "integer"]
    column = pd.Series(table.columns[1], dtype="category")
    codes = column.cat.codes.to_numpy().astype(np.float64)
    codes[codes < 0] = np.nan
    X = np.column_stack([table.columns[0], codes, table.columns[2]])
    return X, [str(c) for c in column.cat.categories]


@pytest.fixture
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    """pyarrow's batches a few rows each: a value first seen in a later batch, codes
    found across many batches."""
    monkeypatch.setattr(open_table_module, "_TEXT_BLOCK", 512)
    monkeypatch.setattr(open_table_module, "_SPILL_BATCH", 64)
    monkeypatch.setattr(open_table_module, "_DECODE_BYTES", 8 * 3 * 50)


@pytest.mark.usefixtures("small_batches")
@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("spill", ["auto", False])
def test_text_columns_read_as_the_codes_of_the_table_read_whole(
    tmp_path: pathlib.Path, suffix: str, spill: Any
) -> None:
    path = _write(_frame(), tmp_path / f"t{suffix}")
    X, categories = _whole_codes(path)
    assert categories == ["10", "DE", "FR", "US", "it"]  # stripped, sorted, no markers
    for block_rows in (None, 37, 250):
        table = open_table(path, spill=spill, block_rows=block_rows, spill_dir=tmp_path)
        assert (table.spill is not None) == (spill == "auto")
        assert table.categories == {"country": categories}
        np.testing.assert_array_equal(table.read(), X)  # NaN where NaN
        table.close()
    # a selection of columns: codes alone
    table = open_table(path, columns=["country"], spill=spill, spill_dir=tmp_path)
    np.testing.assert_array_equal(table.read()[:, 0], X[:, 1])


def test_the_spill_holds_float64_codes_not_text(tmp_path: pathlib.Path) -> None:
    path = _write(_frame(), tmp_path / "t.csv")
    with open_table(path, spill_dir=tmp_path) as table:
        assert table.spill is not None and table.spill.stat().st_size == N * 3 * 8
        spilled = np.fromfile(table.spill).reshape(N, 3)[:, 1]
        # codes in the order values are first seen, -1 for a missing cell
        assert set(np.unique(spilled)) <= set(range(-1, 20))
        np.testing.assert_array_equal(table.read(), _whole_codes(path)[0])


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
@pytest.mark.parametrize("block_rows", [101, 512])
def test_a_streamed_mixture_model_fits_and_predicts_as_the_in_memory_one(
    tmp_path: pathlib.Path, suffix: str, block_rows: int
) -> None:
    path = _write(_frame(1), tmp_path / f"t{suffix}")
    family = Product(
        {
            "g": (["size"], Gaussian("full")),
            "c": (["country"], Categorical()),
            "p": (["visits"], Poisson()),
        }
    )
    options: dict[str, Any] = {"random_state": 0, "tol": 0.0, "max_iter": 12}
    X, categories = _whole_codes(path)
    frame = pd.DataFrame(
        {
            "size": X[:, 0],
            "country": pd.Categorical.from_codes(
                np.nan_to_num(X[:, 1], nan=-1).astype(int), categories
            ),
            "visits": X[:, 2],
        }
    )
    memory = MixtureModel(family, 2, **options).fit(frame)
    table = open_table(path, block_rows=block_rows)
    streamed = MixtureModel(family, 2, **options).fit(table)
    assert streamed.categories_ == memory.categories_ == {"country": categories}
    assert streamed.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(streamed.weights_, memory.weights_, rtol=0, atol=1e-10)
    _assert_close(streamed.component_params_, memory.component_params_)
    proba = streamed.predict_proba(table)
    np.testing.assert_allclose(proba, memory.predict_proba(frame), rtol=0, atol=1e-10)
    np.testing.assert_array_equal(streamed.predict(table), memory.predict(frame))

    # another file with fewer categories is coded by the model's when told so
    other = _write(_frame(1).iloc[:300].replace({"country": {"10": "US"}}), tmp_path / f"o{suffix}")
    with pytest.raises(
        InputError,
        match=r"reads column 'country' as the codes of \[.*\], and the model was fitted on the "
        r"codes of \['10', 'DE'.*categories=model.categories_",
    ):
        streamed.predict(open_table(other))
    coded = open_table(other, categories=streamed.categories_)
    assert coded.categories == {"country": categories}
    head = frame.iloc[:300].copy()
    head.loc[head["country"] == "10", "country"] = "US"
    np.testing.assert_allclose(
        streamed.predict_proba(coded), memory.predict_proba(head), atol=1e-10
    )
    with pytest.raises(InputError, match=r"GaussianMixture would fit those codes as numbers"):
        GaussianMixture(2).fit(table)


def _assert_close(a: Any, b: Any) -> None:
    """Nested dicts, sequences and arrays of parameters equal to 1e-10."""
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for key in a:
            _assert_close(a[key], b[key])
    elif isinstance(a, list | tuple):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_close(x, y)
    else:
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_emkit_fit_and_predict_stream_text_columns_as_the_table_read_whole(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], suffix: str
) -> None:
    path = _write(_frame(2), tmp_path / f"t{suffix}")
    common = ["fit", str(path), "--components", "1-2", "--no-plot", "--init", "kmeans"]
    assert _run([*common, "--stream", "--out", str(tmp_path / "s")], capsys)[0] == 0
    assert _run([*common, "--no-stream", "--out", str(tmp_path / "m")], capsys)[0] == 0
    summary = pd.read_csv(tmp_path / "s" / "summary.csv")
    memory_summary = pd.read_csv(tmp_path / "m" / "summary.csv")
    pd.testing.assert_frame_equal(summary, memory_summary, check_exact=False, rtol=1e-12)
    labels = pd.read_csv(tmp_path / "s" / "labels.csv")
    memory_labels = pd.read_csv(tmp_path / "m" / "labels.csv")
    np.testing.assert_array_equal(labels["label"], memory_labels["label"])
    np.testing.assert_allclose(labels["uncertainty"], memory_labels["uncertainty"], atol=1e-10)
    # either model labels a file, streamed or read whole, as the other does
    for name in ("s", "m"):
        for stream in ("--stream", "--no-stream"):
            predicted = tmp_path / f"{name}{stream}.csv"
            argv = ["predict", str(tmp_path / name / "model.npz"), str(path), stream]
            assert _run([*argv, "--out", str(predicted)], capsys)[0] == 0
            predicted_labels = pd.read_csv(predicted)
            np.testing.assert_array_equal(predicted_labels["row"], np.arange(1, N + 1))
            np.testing.assert_array_equal(predicted_labels["label"], memory_labels["label"])
            np.testing.assert_allclose(
                predicted_labels["uncertainty"], memory_labels["uncertainty"], atol=1e-10
            )
    # a category the model has not seen: an error naming it, its row and its column,
    # streamed or not, and nothing written
    new = _frame(2)
    new.loc[6, "country"] = "ZZ"
    new_path = _write(new, tmp_path / f"new{suffix}")
    for stream, message in [
        ("--stream", r"column 'country' has category 'ZZ' at data row 7 that is not among"),
        ("--no-stream", r"Column 'country' has category 'ZZ' \(row 6\) that was not seen"),
    ]:
        out = tmp_path / f"p{stream}.csv"
        argv = ["predict", str(tmp_path / "s" / "model.npz"), str(new_path), stream]
        code, _, err = _run([*argv, "--out", str(out)], capsys)
        assert code == 2 and re.search(message, err) and not out.exists()


def test_a_text_column_asked_as_numbers_is_refused_before_any_output(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _write(_frame(), tmp_path / "t.csv")
    out = tmp_path / "o"
    argv = ["fit", str(path), "--stream", "--family", "country=poisson", "--out", str(out)]
    code, _, err = _run(argv, capsys)
    assert code == 2 and not out.exists()
    assert re.search(
        r"Column 'country' of '.*t.csv' holds text \('\w+' at data row \d+\); the poisson family "
        r"needs numbers. Fit it as categorical \(--family country=categorical\) or drop it "
        r"\(--columns \^country\)",
        err,
    )


def test_a_column_of_numbers_with_text_further_down_names_the_row_and_the_fix(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the first values are numbers (a file's first block types a streamed column)
    lines = ["a,code"] + [f"{i % 7}.5,{i % 3}" for i in range(3000)]
    lines[2501] = "1.5,B7"
    path = tmp_path / "x.csv"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(
        InputError,
        match=r"non-numeric value 'B7' at line 2502 \(data row 2501\), column 'code' "
        r"\(position 1\), which is read as numbers: its first rows hold no text. If the column "
        r"holds categories, read it as text from its first row \(text=\['code'\]",
    ):
        open_table(path, spill_dir=tmp_path)
    assert not list(tmp_path.glob("emkit-spill-*"))
    # read as text from the first row: the codes of the table read whole
    table = open_table(path, text=["code"])
    assert table.categories == {"code": ["0", "1", "2", "B7"]}
    whole = read_columns(path)
    codes = pd.Series(whole.columns[1], dtype="category").cat.codes.to_numpy()
    np.testing.assert_array_equal(table.read()[:, 1], codes)
    # the command line: --family code=categorical reads it as text; streamed = in memory
    out = {}
    for stream in ("--stream", "--no-stream"):
        argv = ["fit", str(path), "--components", "2", "--no-plot", "--init", "kmeans", stream]
        argv += ["--family", "code=categorical", "--out", str(tmp_path / stream)]
        assert _run(argv, capsys)[0] == 0
        out[stream] = (tmp_path / stream / "labels.csv").read_text()
    assert out["--stream"] == out["--no-stream"]
    code, _, err = _run(["fit", str(path), "--stream", "--out", str(tmp_path / "o")], capsys)
    assert code == 2 and "emkit fit: --family code=categorical)" in err
    assert "read the table into memory with --no-stream" in err and not (tmp_path / "o").exists()


def test_text_read_columns_of_numbers_or_true_false_read_as_the_table_read_whole(
    tmp_path: pathlib.Path,
) -> None:
    path = tmp_path / "x.csv"
    path.write_text("n,flag,c\n1,true,a\n2.5,no,b\nNA,,a\n4,FALSE,c\n")
    table = open_table(path, text=["n"])
    assert table.categories == {"c": ["a", "b", "c"]}
    np.testing.assert_array_equal(
        table.read(), [[1.0, 1.0, 0.0], [2.5, 0.0, 1.0], [np.nan, np.nan, 0.0], [4.0, 0.0, 2.0]]
    )
    whole = read_columns(path)
    assert whole.kinds == ["float", "bool", "text"]
    np.testing.assert_array_equal(table.read()[:, :2], np.column_stack(whole.columns[:2]))


def test_too_many_distinct_values_name_the_limit_the_row_and_the_fix(
    tmp_path: pathlib.Path,
) -> None:
    frame = pd.DataFrame({"x": np.arange(40.0), "id": [f"user{i // 2}" for i in range(40)]})
    for suffix in (".csv", ".parquet"):
        path = _write(frame, tmp_path / f"t{suffix}")
        with pytest.raises(
            InputError,
            match=r"column 'id' holds more than 8 distinct values \(the 9th, 'user8', at data "
            r"row 17\)\. A text column with that many categories is most likely an identifier "
            r"or free text.*columns=\['\^id'\], emkit fit --columns \^id\), or pass a larger "
            r"max_categories=",
        ):
            open_table(path, max_categories=8, spill_dir=tmp_path)
        assert not list(tmp_path.glob("emkit-spill-*"))
        assert open_table(path, max_categories=20).categories["id"][:2] == ["user0", "user1"]


def test_a_value_not_among_the_categories_given_names_its_row(tmp_path: pathlib.Path) -> None:
    for suffix in (".csv", ".parquet"):
        path = _write(_frame(), tmp_path / f"t{suffix}")
        with pytest.raises(
            InputError,
            match=r"column 'country' has category 'it' at data row \d+ that is not among the "
            r"categories given \(the model's: \['10', 'DE', 'FR', 'US'\]\)\. Refit with it",
        ):
            open_table(path, categories={"country": ["10", "DE", "FR", "US"]}, spill_dir=tmp_path)
        assert not list(tmp_path.glob("emkit-spill-*"))
        # categories the file does not all use keep their codes
        given = ["10", "AT", "DE", "FR", "US", "it"]
        table = open_table(path, categories={"country": given})
        X, categories = _whole_codes(path)
        recoded = np.array([given.index(c) for c in categories], dtype=np.float64)
        expected = np.where(np.isnan(X[:, 1]), np.nan, recoded[np.nan_to_num(X[:, 1]).astype(int)])
        np.testing.assert_array_equal(table.read()[:, 1], expected)


def test_text_arguments_are_checked(tmp_path: pathlib.Path) -> None:
    csv = _write(_frame(), tmp_path / "t.csv")
    parquet = _write(_frame(), tmp_path / "t.parquet")
    np.save(tmp_path / "t.npy", np.zeros((3, 2)))
    for call, message in [
        (lambda: open_table(parquet, text=["country"]), r"text= applies to .csv and .tsv"),
        (lambda: open_table(tmp_path / "t.npy", categories={"x0": ["a"]}), r"a .npy file of"),
        (lambda: open_table(csv, max_categories=0), r"max_categories must be a positive int"),
        (lambda: open_table(csv, categories=["a"]), r"categories must be a dict of column"),
        (lambda: open_table(csv, categories={"country": [1, 2]}), r"must be a list of strings"),
        (lambda: open_table(csv, categories={"country": ["a", "a"]}), r"lists 'a' twice"),
        (
            lambda: open_table(csv, columns=["size"], categories={"country": ["a"]}),
            r"categories= names column 'country', which is not among the selected columns",
        ),
        (
            lambda: open_table(csv, columns=["size"], text=["country"]),
            r"text= names column 'country' of .*, which is not among the selected columns",
        ),
        (
            lambda: open_table(parquet, categories={"size": ["a"]}),
            r"categories= names column 'size' of .*, which holds numbers \(type double\)",
        ),
    ]:
        with pytest.raises(InputError, match=message):
            call()


def test_a_text_value_added_between_passes_is_reported(tmp_path: pathlib.Path) -> None:
    path = _write(_frame(), tmp_path / "t.csv")
    table = open_table(path, spill=False)
    changed = _frame()
    changed.loc[4, "country"] = "XX"
    changed.to_csv(path, index=False)
    with pytest.raises(
        InputError, match=r"changed while it was read: column 'country' holds 'XX' \(data row 5\)"
    ):
        table.read()


def test_emkit_predict_stream_codes_numeric_categories_and_fits_every_model(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(4)
    z = rng.integers(0, 2, 300)
    frame = pd.DataFrame(
        {
            "size": rng.normal(4.0 * z, 1.0),
            "code": np.where(z == 0, rng.choice([3, 7], 300), rng.choice([7, 9], 300)),
            "id": [f"row{i}" for i in range(300)],  # not fitted: the models name their columns
        }
    )
    path = _write(frame, tmp_path / "t.csv")
    fits = {
        "mixed": ["--family", "code=categorical", "--columns", "size,code"],
        "gaussian": ["--columns", "size,code", "--covariance", "diag"],
    }
    for name, options in fits.items():
        argv = ["fit", str(path), "--components", "2", "--no-plot", "--init", "kmeans"]
        assert _run([*argv, *options, "--out", str(tmp_path / name)], capsys)[0] == 0
        model = str(tmp_path / name / "model.npz")
        streamed = _run(["predict", model, str(path), "--stream"], capsys)
        assert streamed[0] == 0
        assert streamed[1] == _run(["predict", model, str(path), "--no-stream"], capsys)[1]
    frame.loc[10, "code"] = 5
    _write(frame, path)
    model = str(tmp_path / "mixed" / "model.npz")
    code, _, err = _run(["predict", model, str(path), "--stream"], capsys)
    assert code == 2
    assert re.search(
        r"Column 'code' of '.*t.csv' has category 5 at data row 11 that was not seen in fit "
        r"\(categories: \['3', '7', '9'\]\)\. Refit with it, or map it to a known category",
        err,
    )
    code, _, err = _run(["predict", model, str(path), "--stream", "--delimiter", ";"], capsys)
    assert code == 2 and "drop --header and --delimiter, or --stream" in err

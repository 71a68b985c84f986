"""Reading tables: column kinds, missing cells, index columns, selections, delimiters, and
the same results from pyarrow's reader and the NumPy fallback."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from emkit.exceptions import InputError
from emkit.io.tables import read_columns, read_table, resolve_columns


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(params=["pyarrow", "numpy"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test with pyarrow's CSV reader and with the NumPy fallback."""
    if request.param == "numpy":
        monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    else:
        pytest.importorskip("pyarrow.csv")
    return str(request.param)


MIXED = "size,colour,n,flag,ok\n1.5,red,3,0,true\n 2.5 , blue ,,1,False\nNA,,0,1,\n4,red,7,0,yes\n"


def test_kinds_and_missing_cells(tmp_path: Path, reader: str) -> None:
    table = read_columns(_write(tmp_path, "d.csv", MIXED))
    assert table.names == ["size", "colour", "n", "flag", "ok"]
    assert table.kinds == ["float", "text", "integer", "integer", "bool"]
    np.testing.assert_array_equal(table.columns[0], [1.5, 2.5, np.nan, 4.0])
    assert table.columns[1].tolist() == ["red", "blue", None, "red"]
    np.testing.assert_array_equal(table.columns[2], [3, np.nan, 0, 7])
    np.testing.assert_array_equal(table.columns[4], [1.0, 0.0, np.nan, 1.0])
    assert table.row_ids is None and table.index_note is None and table.n_rows == 4


def test_numeric_read_refuses_text_with_line_and_column(tmp_path: Path, reader: str) -> None:
    with pytest.raises(
        InputError,
        match=r"non-numeric value 'red' at line 2 \(data row 1\), column 'colour' \(position 1\)",
    ):
        read_table(_write(tmp_path, "d.csv", MIXED))


def test_npy_with_nan_reads_it(tmp_path: Path) -> None:
    np.save(tmp_path / "d.npy", np.array([[1.0, np.nan], [2.0, 3.0]]))
    X, _ = read_table(tmp_path / "d.npy")
    np.testing.assert_array_equal(X, [[1.0, np.nan], [2.0, 3.0]])


@pytest.mark.parametrize(
    ("text", "ids", "why"),
    [
        (",a,b\n0,1.5,2\n1,2.5,3\n2,0.5,1\n", [0, 1, 2], r"0, 1, 2, \.\.\. as pandas"),
        ('"","a","b"\n"1",1.5,2\n"2",2.5,3\n"3",0.5,1\n', [1, 2, 3], r"1, 2, 3, \.\.\. as R"),
        (",a,b\nann,1.5,2\nbob,2.5,3\ncat,0.5,1\n", ["ann", "bob", "cat"], "distinct row names"),
        ("a,b\nann,1.5,2\nbob,2.5,3\ncat,0.5,1\n", ["ann", "bob", "cat"], "one field fewer"),
    ],
)
def test_index_columns_are_row_ids(
    tmp_path: Path, reader: str, text: str, ids: list[Any], why: str
) -> None:
    table = read_columns(_write(tmp_path, "d.csv", text))
    assert table.names == ["a", "b"]
    assert table.row_ids is not None and table.row_ids.tolist() == ids
    assert table.index_note is not None and re.search(why, table.index_note)
    X, names = read_table(tmp_path / "d.csv")
    assert names == ["a", "b"] and X.tolist() == [[1.5, 2], [2.5, 3], [0.5, 1]]


def test_unnamed_first_column_that_is_data_is_kept(tmp_path: Path, reader: str) -> None:
    table = read_columns(_write(tmp_path, "d.csv", ",a\n0.5,1\n0.7,2\n"))
    assert table.names == ["x0", "a"] and table.row_ids is None


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (["^id"], ["a", "b", "c", "d"]),
        (["1:3"], ["a", "b", "c"]),
        (["a:c", "^b"], ["a", "c"]),
        (["c:"], ["c", "d", "x:y"]),
        ([":a"], ["id", "a"]),
        (["d", "0"], ["d", "id"]),
        (["^0", "^d"], ["a", "b", "c"]),
        (["^1:2"], ["id", "c", "d"]),
        (["x:y"], ["x:y"]),  # an exact name wins over a range
    ],
)
def test_column_selections(columns: list[str], expected: list[str]) -> None:
    names = ["id", "a", "b", "c", "d", "x:y"]
    got = [names[j] for j in resolve_columns(columns, names, "f.csv")]
    if columns[0].startswith("^"):
        expected = [*expected, "x:y"]
    assert got == expected


@pytest.mark.parametrize(
    ("columns", "message"),
    [
        (["c:a"], r"range 'c:a' is empty: 'c' \(position 3\) comes after 'a'"),
        (["^"], r"'\^' excludes a column: write it before a name"),
        (["a:zz"], r"has no column 'zz'.*ranges like 2:5"),
        (["^a", "^b", "^c", "^d", "^id", "^x:y"], r"leaves no column"),
        (["1:9"], r"position 9 is out of range"),
        (["a", "0:2"], r"Column 'a' is selected twice"),
    ],
)
def test_bad_column_selections(columns: list[str], message: str) -> None:
    with pytest.raises(InputError, match=message):
        resolve_columns(columns, ["id", "a", "b", "c", "d", "x:y"], "f.csv")


def test_delimiter(tmp_path: Path, reader: str) -> None:
    path = _write(tmp_path, "d.csv", "a;b\n1;2\n3;4\n")
    with pytest.raises(InputError, match=r"first line holds ';': pass --delimiter ';'"):
        read_table(path)
    X, names = read_table(path, delimiter=";")
    assert names == ["a", "b"] and X.tolist() == [[1, 2], [3, 4]]
    # a decimal comma is text to the reader: it says which cell
    path = _write(tmp_path, "e.csv", "a;b\n1,5;2\n3;4\n")
    with pytest.raises(InputError, match=r"non-numeric value '1,5' at line 2"):
        read_table(path, delimiter=";", columns=["a"])
    X, names = read_table(_write(tmp_path, "s.txt", "a;b\n1;2\n"))
    assert X.tolist() == [[1, 2]]
    with pytest.raises(InputError, match=r"delimiter must be one character"):
        read_table(path, delimiter=";;")


@pytest.mark.parametrize("text", ["a,b\n1,2\n3,4,5\n", "a,b\n1,2\n3\n", "1,2\n3,4,5\n"])
def test_ragged_rows_on_both_readers(tmp_path: Path, reader: str, text: str) -> None:
    with pytest.raises(InputError, match=r"rows of different lengths: line \d \(data row \d\)"):
        read_table(_write(tmp_path, "d.csv", text))


def test_both_readers_agree_on_a_larger_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pyarrow.csv")
    rng = np.random.default_rng(0)
    X = rng.normal(size=(500, 3))
    X[rng.random(X.shape) < 0.05] = np.nan
    path = tmp_path / "d.csv"
    np.savetxt(path, X, delimiter=",", header="p,q,r", comments="", fmt="%.17g")
    fast, names = read_table(path)
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    slow, _ = read_table(path)
    assert names == ["p", "q", "r"]
    np.testing.assert_array_equal(fast, X)
    np.testing.assert_array_equal(slow, X)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    values=arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 4)),
        elements=st.floats(-1e6, 1e6) | st.just(np.nan),
    ),
    numpy_reader=st.booleans(),
)
def test_numbers_and_missing_cells_read_back_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, values: np.ndarray, numpy_reader: bool
) -> None:
    """Any float table written with full precision (NaN as empty cells) reads back as it was,
    through either reader."""
    path = tmp_path / "d.csv"
    lines = [",".join(f"c{j}" for j in range(values.shape[1]))]
    # an empty line is blank: a one-column table writes its missing cells as NA
    missing = "" if values.shape[1] > 1 else "NA"
    lines += [",".join(missing if np.isnan(v) else repr(float(v)) for v in row) for row in values]
    path.write_text("\n".join(lines) + "\n")
    with monkeypatch.context() as patch:
        if numpy_reader:
            patch.setitem(sys.modules, "pyarrow.csv", None)
        X, names = read_table(path, header=True)
    assert names == [f"c{j}" for j in range(values.shape[1])]
    np.testing.assert_array_equal(X, values)

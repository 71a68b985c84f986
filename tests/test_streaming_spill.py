"""A CSV or Parquet table spilled when opened: converted once into a temporary file of
float64 rows that every pass reads, the same blocks as reading the file itself, the file
removed whatever ends the table's life (close, context, garbage collection, a bad file or
an interrupt while it is written), and a clear choice where there is no room for it."""

from __future__ import annotations

import errno
import gc
import importlib
import logging
import pathlib
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from emkit import GaussianMixture, InputError
from emkit.io import open_table

# the module (emkit.io's attribute of that name is the function)
open_table_module = importlib.import_module("emkit.io.open_table")

RNG = np.random.default_rng(3)
X = np.vstack([RNG.normal(0, 1, (2000, 4)), RNG.normal(5, 2, (2500, 4))])[RNG.permutation(4500)]
X[[7, 3000], [1, 3]] = np.nan  # missing cells travel as NaN


def _write(path: pathlib.Path, data: np.ndarray = X) -> pathlib.Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.suffix == ".parquet":
        table = pa.table({f"c{j}": data[:, j] for j in range(data.shape[1])})
        pq.write_table(table, path, row_group_size=1000)  # blocks straddle row groups
    else:
        np.savetxt(path, data, delimiter=",", header="a,b,c,d", comments="", fmt="%.17g")
    return path


def _spills(directory: pathlib.Path) -> list[pathlib.Path]:
    return sorted(directory.glob("emkit-spill-*"))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_spilled_table_gives_the_blocks_of_the_file_and_is_removed_on_close(
    tmp_path: pathlib.Path, suffix: str
) -> None:
    path = _write(tmp_path / f"x{suffix}")
    where = tmp_path / "spills"
    where.mkdir()
    direct = open_table(path, block_rows=700, spill=False)
    spilled = open_table(path, block_rows=700, spill_dir=where)
    assert direct.spill is None
    assert spilled.spill is not None and spilled.spill.parent in _spills(where)
    # float64 rows, n_rows x n_columns x 8 bytes
    assert spilled.spill.stat().st_size == X.size * 8
    pairs = list(zip(direct.iter_chunks(), spilled.iter_chunks(), strict=True))
    assert [start for (start, _), _ in pairs] == list(range(0, 4500, 700))
    for (start, a), (same, b) in pairs:
        assert start == same and b.dtype == np.float64 and b.flags.c_contiguous
        np.testing.assert_array_equal(b, a)
    np.testing.assert_array_equal(spilled.read(), X)
    # a selection of columns spills those columns only, in the order asked
    chosen = open_table(path, columns=[3, 1], spill_dir=where)
    assert chosen.spill is not None and chosen.spill.stat().st_size == 4500 * 2 * 8
    np.testing.assert_array_equal(chosen.read(), X[:, [3, 1]])
    chosen.close()
    spilled.close()
    assert _spills(where) == []
    with pytest.raises(InputError, match=r"was closed: its spill file is removed. Open the"):
        spilled.read()


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_fit_of_a_spilled_table_is_the_in_memory_fit_and_reads_the_rows_as_opened(
    tmp_path: pathlib.Path, suffix: str
) -> None:
    data = np.nan_to_num(X)
    path = _write(tmp_path / f"x{suffix}", data)
    kw: dict[str, Any] = {"covariance_type": "full", "random_state": 0, "tol": 1e-8}
    memory = GaussianMixture(2, **kw).fit(data)
    with open_table(path, block_rows=512, spill_dir=tmp_path) as table:
        _write(path, data[:100])  # the file changes after it was opened: not read again
        streamed = GaussianMixture(2, **kw).fit(table)
        np.testing.assert_array_equal(streamed.predict(table), memory.predict(data))
    assert _spills(tmp_path) == []
    assert streamed.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(streamed.means_, memory.means_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(streamed.covariances_, memory.covariances_, rtol=0, atol=1e-10)


def test_a_table_no_longer_referenced_takes_its_spill_with_it(tmp_path: pathlib.Path) -> None:
    table = open_table(_write(tmp_path / "x.csv"), spill_dir=tmp_path)
    assert len(_spills(tmp_path)) == 1
    del table
    gc.collect()
    assert _spills(tmp_path) == []


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
@pytest.mark.parametrize("stop", [KeyboardInterrupt, InputError])
def test_opening_that_fails_or_is_interrupted_leaves_no_spill(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, suffix: str, stop: Any
) -> None:
    path = _write(tmp_path / f"x{suffix}")
    reading = open_table_module._checked if suffix == ".parquet" else open_table_module._as_float
    # parquet: once the first column was written; text: at its first batch (one here)
    last = 2 if suffix == ".parquet" else 1
    calls = []

    def interrupted(*args: Any) -> Any:
        calls.append(1)
        if len(calls) == last:
            raise stop("stopped while spilling")
        return reading(*args)

    monkeypatch.setattr(
        open_table_module, "_checked" if suffix == ".parquet" else "_as_float", interrupted
    )
    with pytest.raises(stop, match="stopped while spilling"):
        open_table(path, spill_dir=tmp_path, block_rows=100)
    assert len(calls) == last and _spills(tmp_path) == []


def test_a_bad_cell_is_reported_and_leaves_no_spill(tmp_path: pathlib.Path) -> None:
    path = _write(tmp_path / "x.csv")
    lines = path.read_text().splitlines()
    lines[4000] = "1.0,oops,2.0,3.0"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match=r"non-numeric value 'oops' at line 4001 \(data row 4000"):
        open_table(path, spill_dir=tmp_path)
    assert _spills(tmp_path) == []


def test_parquet_is_spilled_a_column_at_a_time(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pyarrow holds the pages of the columns it decodes at once: one column, not all
    widths = []
    checked = open_table_module._checked

    def counting(batches: Iterator[Any], where: str) -> Iterator[Any]:
        for batch in checked(batches, where):
            widths.append(batch.num_columns)
            yield batch

    monkeypatch.setattr(open_table_module, "_checked", counting)
    table = open_table(_write(tmp_path / "x.parquet"), spill_dir=tmp_path)
    assert table.spill is not None and widths and set(widths) == {1}
    np.testing.assert_array_equal(table.read(), X)


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_without_room_auto_reads_the_file_and_true_says_what_to_do(
    tmp_path: pathlib.Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    suffix: str,
) -> None:
    path = _write(tmp_path / f"x{suffix}")

    class Usage:
        free = 100_000  # bytes: less than the 144,000 the rows take

    monkeypatch.setattr(open_table_module.shutil, "disk_usage", lambda where: Usage())
    with caplog.at_level(logging.INFO, logger="emkit.io.open_table"):
        table = open_table(path, spill_dir=tmp_path)
    assert table.spill is None and _spills(tmp_path) == []
    assert "not spilling it" in caplog.text and "free space" in caplog.text
    np.testing.assert_array_equal(table.read(), X)
    with pytest.raises(InputError, match=r"Cannot spill .*more than the free space.*spill_dir"):
        open_table(path, spill=True, spill_dir=tmp_path)
    assert _spills(tmp_path) == []


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_spill_that_cannot_be_written_falls_back_or_raises(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    path = _write(tmp_path / f"x{suffix}")

    def full(*args: Any) -> Any:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(
        open_table_module, "_spill_parquet" if suffix == ".parquet" else "_spill_text", full
    )
    table = open_table(path, spill_dir=tmp_path)
    assert table.spill is None and _spills(tmp_path) == []
    np.testing.assert_array_equal(table.read(), X)
    with pytest.raises(InputError, match=r"Cannot spill .*No space left on device.*spill_dir"):
        open_table(path, spill=True, spill_dir=tmp_path)
    assert _spills(tmp_path) == []
    with pytest.raises(InputError, match=r"Cannot spill .*temporary directory cannot be made"):
        open_table(path, spill=True, spill_dir=tmp_path / "missing")


def test_spill_values_are_checked(tmp_path: pathlib.Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, X)
    with pytest.raises(InputError, match=r"spill=True applies to .csv, .tsv and .parquet files"):
        open_table(path, spill=True)
    assert open_table(path, spill=False).spill is None
    with pytest.raises(InputError, match=r'spill must be "auto", True or False, got \'yes\''):
        open_table(_write(tmp_path / "x.csv"), spill="yes")

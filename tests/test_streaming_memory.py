"""What streaming a file holds at once: two blocks of rows (the one mapped, the one read),
pyarrow's pages rather than whole row groups, the same blocks from every file type, and the
same result and errors as block-by-block reading."""

from __future__ import annotations

import pathlib
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from emkit import GaussianMixture, InputError
from emkit.engines import InMemoryEngine, RowIndex, RowSource, StreamingEngine
from emkit.io import ChunkedTable, open_table

RNG = np.random.default_rng(7)
X = np.vstack([RNG.normal(0, 1, (3000, 3)), RNG.normal(6, 1.5, (3000, 3))])[RNG.permutation(6000)]


class CountingTable:
    """Blocks of ``X`` made on demand, counting how many earlier blocks are still alive
    (anywhere in the process) whenever a new one is made."""

    def __init__(self, data: np.ndarray, block_rows: int) -> None:
        self.data = data
        self.block_rows = block_rows
        self.made_blocks: list[weakref.ref[np.ndarray]] = []
        self.most_alive = 0
        self.made = 0

    def read(self, block: int) -> Iterator[np.ndarray]:
        for start in range(0, self.data.shape[0], block):
            alive = sum(made() is not None for made in self.made_blocks)
            self.most_alive = max(self.most_alive, alive)
            rows = self.data[start : start + block].copy()
            self.made_blocks.append(weakref.ref(rows))
            self.made += 1
            yield rows
            del rows

    def table(self) -> ChunkedTable:
        shape = (int(self.data.shape[0]), int(self.data.shape[1]))
        return ChunkedTable(
            pathlib.Path("counted"), ["a", "b", "c"], shape, self.block_rows, self.read
        )


@pytest.mark.parametrize("n_threads", [1, 2])
def test_a_fit_holds_at_most_the_block_mapped_while_the_next_is_read(n_threads: int) -> None:
    counting = CountingTable(X, block_rows=500)
    kw: dict[str, Any] = {"random_state": 0, "tol": 1e-8, "n_threads": n_threads}
    streamed = GaussianMixture(2, chunk_size=128, **kw).fit(counting.table())
    # the summary pass, the initial statistics and one pass per EM iteration, 12 blocks each
    assert counting.made >= 12 * (2 + streamed.n_iter_)
    # when a block is read, only the one the threads map may still be held
    assert counting.most_alive <= 1
    memory = GaussianMixture(2, **kw).fit(X)
    assert streamed.n_iter_ == memory.n_iter_
    np.testing.assert_allclose(streamed.means_, memory.means_, rtol=0, atol=1e-10)
    np.testing.assert_allclose(streamed.covariances_, memory.covariances_, rtol=0, atol=1e-10)


@pytest.mark.parametrize("engine", [InMemoryEngine, StreamingEngine])
def test_blocks_are_summed_in_row_order_whatever_the_threads(engine: Any) -> None:
    counting = CountingTable(X, block_rows=700)
    source = RowSource(counting.table())
    totals = []
    for n_threads in (1, 2, 3):
        with engine(chunk_size=100, n_threads=n_threads) as e:
            totals.append(e.map_reduce(lambda rows, w: rows.sum(axis=0), source))
            rows = e.map_rows(lambda rows: rows[:, 1], source)
        np.testing.assert_array_equal(rows, X[:, 1])
    # the same chunks added in the same order: equal to the last bit
    np.testing.assert_array_equal(totals[1], totals[0])
    np.testing.assert_array_equal(totals[2], totals[0])
    np.testing.assert_allclose(totals[0], X.sum(axis=0), rtol=1e-12)
    assert counting.most_alive <= 1


def test_an_error_in_a_mapped_block_stops_the_map_and_the_engine_maps_again() -> None:
    table = CountingTable(X, block_rows=1000).table()

    def fails_in_the_third_block(rows: np.ndarray, w: Any, index: np.ndarray) -> np.ndarray:
        if index[0] >= 2000:
            raise ValueError("bad block at row 2000")
        return rows.sum(axis=0)

    with InMemoryEngine(chunk_size=250, n_threads=2) as engine:
        with pytest.raises(ValueError, match="bad block at row 2000"):
            engine.map_reduce(fails_in_the_third_block, RowSource(table, columns=(RowIndex(6000),)))
        total = engine.map_reduce(lambda rows, w: rows.sum(axis=0), RowSource(table))
    np.testing.assert_allclose(total, X.sum(axis=0), rtol=1e-12)


def _parquet(path: pathlib.Path, data: np.ndarray, **options: Any) -> pathlib.Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({f"c{j}": data[:, j] for j in range(data.shape[1])})
    pq.write_table(table, path, **options)
    return path


def test_parquet_is_read_a_few_pages_at_a_time_not_a_row_group_at_once(
    tmp_path: pathlib.Path,
) -> None:
    import pyarrow as pa

    big = np.random.default_rng(1).normal(size=(120_000, 4))  # 3.7 MiB, one row group
    path = _parquet(
        tmp_path / "x.parquet",
        big,
        use_dictionary=False,
        data_page_size=1 << 15,
        compression="none",
    )
    table = open_table(path, block_rows=5_000, spill=False)
    before = pa.total_allocated_bytes()
    most = 0
    starts = []
    for start, rows in table.iter_chunks():
        most = max(most, pa.total_allocated_bytes() - before)
        np.testing.assert_array_equal(rows, big[start : start + rows.shape[0]])
        starts.append(start)
    assert starts == list(range(0, 120_000, 5_000))
    # pyarrow holds a batch being decoded and a page a column, not the row group (3.7 MiB)
    assert most < 1 << 20


@pytest.mark.parametrize("suffix", [".parquet", ".csv", ".npy"])
def test_every_file_type_gives_blocks_of_block_rows(tmp_path: pathlib.Path, suffix: str) -> None:
    path = tmp_path / f"x{suffix}"
    if suffix == ".parquet":
        # row groups of 1000 rows: blocks of 700 straddle them
        _parquet(path, X, row_group_size=1000)
    elif suffix == ".csv":
        np.savetxt(path, X, delimiter=",", header="a,b,c", comments="", fmt="%.17g")
    else:
        np.save(path, X)
    table = open_table(path, block_rows=700)
    blocks = list(table.iter_chunks())
    assert [start for start, _ in blocks] == list(range(0, 6000, 700))
    assert all(rows.shape == (min(700, 6000 - start), 3) for start, rows in blocks)
    assert all(rows.dtype == np.float64 and rows.flags.c_contiguous for _, rows in blocks)
    np.testing.assert_array_equal(np.vstack([rows for _, rows in blocks]), X)


@pytest.mark.parametrize("layout", ["float32", "int16", "fortran", "columns"])
def test_npy_files_of_every_layout_stream_as_float64(tmp_path: pathlib.Path, layout: str) -> None:
    data = (X * 100).astype(np.int16) if layout == "int16" else X
    data = data.astype(np.float32) if layout == "float32" else data
    data = np.asfortranarray(data) if layout == "fortran" else data
    np.save(tmp_path / "x.npy", data)
    columns = [2, 0] if layout == "columns" else None
    table = open_table(tmp_path / "x.npy", columns=columns, block_rows=999)
    expected = np.asarray(data, dtype=np.float64)[:, columns or slice(None)]
    np.testing.assert_array_equal(table.read(), expected)
    assert [start for start, _ in table.iter_chunks()] == list(range(0, 6000, 999))


@pytest.mark.parametrize("suffix", [".npy", ".parquet", ".csv"])
def test_a_file_grown_or_cut_after_it_was_opened_is_reported(
    tmp_path: pathlib.Path, suffix: str
) -> None:
    path = tmp_path / f"x{suffix}"

    def write(data: np.ndarray) -> None:
        if suffix == ".npy":
            np.save(path, data)
        elif suffix == ".parquet":
            _parquet(path, data)
        else:
            np.savetxt(path, data, delimiter=",", fmt="%.17g")

    write(X[:3000])
    # (read on every pass: a spilled table reads the rows of the file as it was opened)
    table = open_table(path, block_rows=1000, spill=False)
    write(X)  # grown
    with pytest.raises(InputError, match=r"changed while it was read: it had 3000 data rows"):
        table.read()
    write(X[:2500])  # cut
    with pytest.raises(
        InputError, match=r"changed while it was read: it had 3000 data rows.* 2500 now"
    ):
        GaussianMixture(2).fit(table)


@pytest.mark.parametrize("n", [1500, 4000, 10_000_000])
def test_the_initialization_sample_is_uniform_and_sized_by_the_sample_not_the_rows(n: int) -> None:
    import tracemalloc

    from emkit.estimators._rows import uniform_rows

    tracemalloc.start()
    indices = uniform_rows(np.random.default_rng(0), n, 1000)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert indices.shape == (1000,) and np.all(np.diff(indices) > 0)
    assert 0 <= indices[0] and indices[-1] < n
    # memory of the sample's order (a shuffle of every index would be 8 n bytes)
    assert peak < 200_000
    # every row as likely: the draws of many seeds spread evenly over tenths of the rows
    counts = sum(
        np.bincount(uniform_rows(np.random.default_rng(s), n, 1000) * 10 // n, minlength=10)
        for s in range(40)
    )
    assert np.abs(counts / 4000 - 1).max() < 0.1


@pytest.mark.slow  # a benchmark smoke run: deselect with -m "not slow"
def test_stream_bench_quick_run_reports_memory_time_and_agreement(tmp_path: pathlib.Path) -> None:
    import json
    import os
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[1]
    report = tmp_path / "stream.json"
    subprocess.run(
        [
            sys.executable,
            str(root / "bench" / "bench_stream.py"),
            "--quick",
            "--formats",
            "npy,parquet",
            "--no-tracemalloc",
            "--dir",
            str(tmp_path),
            "--json",
            str(report),
        ],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
        timeout=300,
    )
    rows = json.loads(report.read_text())["rows"]
    assert [row["source"] for row in rows] == ["memory", "npy", "parquet"]
    assert all(row["rss_growth_bytes"] > 0 and row["ms_per_iteration"] > 0 for row in rows)
    # the file's fits are the in-memory fit
    assert all(row["largest_difference"] < 1e-10 for row in rows)
    assert rows[0]["time_over_memory"] == 1.0


@pytest.mark.parametrize("spill", ["auto", False])
def test_text_read_ahead_is_bounded_by_the_block_of_text(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, spill: Any
) -> None:
    import importlib
    import tracemalloc

    module = importlib.import_module("emkit.io.open_table")
    # pyarrow reads up to 32 blocks of text ahead: 32 x 8 KiB here, not the whole file
    monkeypatch.setattr(module, "_TEXT_BLOCK", 1 << 13)
    data = np.random.default_rng(2).normal(size=(40_000, 3))
    path = tmp_path / "x.csv"
    np.savetxt(path, data, delimiter=",", fmt="%.17g")
    assert path.stat().st_size > 2_000_000
    tracemalloc.start()
    table = open_table(path, block_rows=1000, spill=spill, spill_dir=tmp_path)
    most = tracemalloc.get_traced_memory()[1]
    for _ in table.iter_chunks():
        most = max(most, tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
    assert most < 1_000_000
    np.testing.assert_array_equal(table.read(), data)
